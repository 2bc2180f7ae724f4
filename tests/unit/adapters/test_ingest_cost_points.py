"""The per-point ingest form at the edge (qis_adapters.proto.values.points_from_proto) reads a
batch of good prices a column at a time: its points and violations are those of reading every
point on its own (value_from_proto and the snap's checks), whatever the batch holds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import event, given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.proto import values as values_module
from qis_adapters.proto.times import required_snap_micros, utc_offset_from_proto
from qis_adapters.proto.values import points_from_proto, value_from_proto
from qis_domain import bounds
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import made
from qis_domain.snaps import Snap
from qis_domain.values import DataValue

Points = list[tuple[Snap, DataValue]]


def one_by_one(points: list[values_pb2.DataPoint]) -> tuple[Points, list[FieldViolation]]:
    """Every point read on its own, with the per-point functions."""
    out: Points = []
    violations: list[FieldViolation] = []
    for i, point in enumerate(points):
        failed: list[FieldViolation] = []
        utc_us = required_snap_micros(point, "snap_time", failed)
        offset_s = utc_offset_from_proto(point.utc_offset, "utc_offset", failed)
        violations += [FieldViolation(f"points[{i}].{f.field}", f.description) for f in failed]
        value = value_from_proto(point.value, f"points[{i}].value", violations)
        if utc_us is not None and offset_s is not None and value is not None:
            out.append((Snap(utc_us, offset_s), value))
    return out, violations


seconds = st.one_of(
    st.integers(1_600_000_000, 1_700_000_000),
    st.sampled_from([bounds.MIN_TIMESTAMP_SECONDS, bounds.MAX_TIMESTAMP_SECONDS]),
    st.sampled_from([bounds.MIN_TIMESTAMP_SECONDS - 1, bounds.MAX_TIMESTAMP_SECONDS + 1]),
)
nanos = st.sampled_from([0, 0, 0, 1_000, 999_999_000, 1, 1_000_000_000, -1_000])
offsets = st.sampled_from([None, 0, 3_600, -19_800, 86_340, 86_400, 30, -86_340])
texts = st.one_of(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**6), max_value=10**6
    ).map(str),
    st.sampled_from(["1e3", "", "abc", "+1.50", ".5", "-0", "1" * 19, "0." + "1" * 19, "1,5"]),
)
currencies = st.sampled_from(["", "", "USD", "EUR", "usd"])


@st.composite
def data_points(draw: st.DrawFn) -> values_pb2.DataPoint:
    point = values_pb2.DataPoint()
    if draw(st.integers(0, 20)):  # now and then no snap
        point.snap_time.CopyFrom(timestamp_pb2.Timestamp(seconds=draw(seconds), nanos=draw(nanos)))
    if (offset := draw(offsets)) is not None:
        point.utc_offset.CopyFrom(duration_pb2.Duration(seconds=offset))
    if draw(st.integers(0, 20)):
        point.value.price.CopyFrom(values_pb2.Price(value=draw(texts), currency=draw(currencies)))
    else:  # now and then another kind of value
        point.value.volume.CopyFrom(values_pb2.Volume(quantity=draw(texts)))
    return point


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(data_points(), max_size=12))
def test_a_batch_reads_as_its_points_one_by_one(points: list[values_pb2.DataPoint]) -> None:
    violations: list[FieldViolation] = []
    got = points_from_proto(points, violations)
    expected, expected_violations = one_by_one(points)
    event("accepted" if points and not violations else "refused")
    assert violations == expected_violations
    assert got == expected
    assert repr(got) == repr(expected)  # the Decimals as written: the command's fingerprint


def test_a_batch_of_good_prices_is_read_without_a_call_per_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def per_point(*_: object) -> None:
        raise AssertionError("read point by point")

    monkeypatch.setattr(values_module, "value_from_proto", per_point)
    monkeypatch.setattr(values_module, "_snap_from_proto", per_point)
    points = [
        values_pb2.DataPoint(
            snap_time=timestamp_pb2.Timestamp(seconds=1_700_000_000 + i, nanos=i * 1_000),
            utc_offset=duration_pb2.Duration(seconds=3_600 * (i % 3)),
            value=values_pb2.DataValue(price=values_pb2.Price(value=f"{i}.5", currency="USD")),
        )
        for i in range(5)
    ]
    violations: list[FieldViolation] = []
    got = points_from_proto(points, violations)
    assert violations == []
    assert [(s.utc_us, s.offset_s) for s, _ in got] == [
        ((1_700_000_000 + i) * 1_000_000 + i, 3_600 * (i % 3)) for i in range(5)
    ]
    assert [repr(v) for _, v in got] == [
        f"Price(value=Decimal('{i}.5'), currency='USD')" for i in range(5)
    ]


def test_values_are_made_column_wise_only_when_they_check_nothing() -> None:
    """`made` skips a class's __init__: a value that checks itself in __post_init__ is refused
    with a TypeError (an assert, stripped by python -O, let it through unchecked)."""

    @dataclass(frozen=True, slots=True)
    class Checked:
        amount: int

        def __post_init__(self) -> None:
            if self.amount < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="Checked checks what it is made of"):
        made(Checked, 1, [-1])
