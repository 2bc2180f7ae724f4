"""ScalarPoints at the edge: whatever form the edge keeps a batch in, it
must read as the pairs the per-point form makes of the same points, and the texts it keeps for
the events must be each figure's own text (str(Decimal)), whatever the client wrote."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal

from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.proto.columns import points_from_columns
from qis_adapters.proto.values import points_from_proto
from qis_command.application.commands import IngestPoints
from qis_domain.command_log import fingerprint, legacy_fingerprint
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import ScalarPoints
from qis_domain.snaps import Snap
from qis_domain.values import Price

US = 1_000_000
T0 = 1_709_326_800 * US

# Texts a client may write, its figure's own or not: exponents, signs, leading and trailing
# zeros, many zeros after "0.", "-0", non-ASCII digits, the longest the bounds take.
texts = st.sampled_from(
    [
        "1",
        "-0",
        "-0.0",
        "0.000000",
        "0.0000000",
        "0.000001",
        "0.0000001",
        "1E+3",
        "1e3",
        "1000",
        "2e-2",
        "+1",
        "01",
        ".5",
        "1.",
        "1.50",
        "-1.50",
        "\u0661\u0662",  # Arabic-Indic "12"
        "999999999999999999.999999999999999999",
        "0.000000000000000001",
        "123456789012345678",
    ]
) | st.integers(0, 8).flatmap(lambda places: st.decimals(-(10**17), 10**17, places=places).map(str))


def _per_point(
    snaps: list[int], minutes: list[int], column: list[str]
) -> list[values_pb2.DataPoint]:
    out = []
    for i, (us, text) in enumerate(zip(snaps, column, strict=True)):
        point = values_pb2.DataPoint(
            snap_time=timestamp_pb2.Timestamp(seconds=us // US, nanos=us % US * 1_000),
            value=values_pb2.DataValue(price=values_pb2.Price(value=text)),
        )
        if minutes:
            point.utc_offset.CopyFrom(
                duration_pb2.Duration(seconds=60 * minutes[i if len(minutes) > 1 else 0])
            )
        out.append(point)
    return out


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[int], list[int], list[str]]:
    n = draw(st.integers(1, 12))
    snaps = draw(
        st.lists(st.integers(T0, T0 + 5 * 86_400 * US), min_size=n, max_size=n, unique=True)
    )
    if draw(st.booleans()):
        snaps.sort()
    minutes = draw(
        st.sampled_from([[], [60], [-300]])
        | st.lists(st.integers(-1439, 1439), min_size=n, max_size=n)
    )
    return snaps, minutes, draw(st.lists(texts, min_size=n, max_size=n))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(batches())
def test_columns_and_per_point_prices_read_as_the_same_pairs_and_keep_only_own_texts(
    batch: tuple[list[int], list[int], list[str]],
) -> None:
    snaps, minutes, column = batch
    request = values_pb2.PointColumns(
        snap_time_micros=snaps,
        utc_offset_minutes=minutes,
        prices=values_pb2.DecimalColumn(texts=column),
    )
    v: list[FieldViolation] = []
    columnar = points_from_columns(request, v)
    w: list[FieldViolation] = []
    per_point = points_from_proto(_per_point(snaps, minutes, column), w)
    assert (v == []) == (w == [])
    if v:
        return
    assert isinstance(columnar, ScalarPoints)
    assert isinstance(per_point, ScalarPoints)  # one currency (none), unique snaps
    expected = [
        (Snap(us, 60 * (minutes[i if len(minutes) > 1 else 0] if minutes else 0)), Price(d, ""))
        for i, (us, d) in enumerate(zip(snaps, map(Decimal, column), strict=True))
    ]
    assert columnar == expected == per_point
    assert list(columnar) == list(per_point)
    assert repr(columnar) == repr(expected)
    # The texts the events will store are the Decimals' own, whatever the client wrote; those
    # sent are reused exactly when each is its Decimal's own (no exponent).
    own = all(str(Decimal(t)) == t and "E" not in t for t in column)
    for points in (columnar, per_point):
        assert points.own_texts() == list(map(str, points.figures))
        assert (points.own_texts() is points.texts) == own
    # One command whichever form, in both schemes.
    a = IngestPoints("SPX", "bbg", columnar)
    b = IngestPoints("SPX", "bbg", per_point)
    c = IngestPoints("SPX", "bbg", expected)
    assert fingerprint(a) == fingerprint(b) == fingerprint(c)
    assert legacy_fingerprint(a) == legacy_fingerprint(b) == legacy_fingerprint(c)


def test_a_per_point_batch_with_a_snap_twice_or_a_currency_stays_a_list() -> None:
    """Only prices in the series' currency at unique snaps go into columns; others are the
    list the handler walks to name each violation."""
    twice = _per_point([T0, T0 + US, T0], [], ["1", "2", "3"])
    v: list[FieldViolation] = []
    points = points_from_proto(twice, v)
    assert v == []
    assert type(points) is list
    assert [s.utc_us for s, _ in points] == [T0, T0 + US, T0]
    priced = _per_point([T0, T0 + US], [], ["1", "2"])
    priced[1].value.price.currency = "USD"
    points = points_from_proto(priced, v)
    assert type(points) is list
    assert points == [
        (Snap(T0, 0), Price(Decimal(1), "")),
        (Snap(T0 + US, 0), Price(Decimal(2), "USD")),
    ]


def test_a_command_of_columns_copies_and_pickles_as_the_same_command() -> None:
    request = values_pb2.PointColumns(
        snap_time_micros=[T0 + 2 * US, T0, T0 + US],
        utc_offset_minutes=[-300],
        prices=values_pb2.DecimalColumn(texts=["1.50", "-0", "2"]),
    )
    v: list[FieldViolation] = []
    points = points_from_columns(request, v)
    assert isinstance(points, ScalarPoints)
    command = IngestPoints("SPX", "bbg", points)
    for other in (
        copy.copy(command),
        copy.deepcopy(command),
        pickle.loads(pickle.dumps(command)),
    ):
        assert other == command
        assert isinstance(other.points, ScalarPoints)
        assert other.points.texts == points.texts
        assert fingerprint(other) == fingerprint(command)
