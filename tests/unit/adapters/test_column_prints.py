"""The bytes a command's fingerprint hashes of columnar points (ScalarPoints, through
command_log._scalar_columns), made from the request's columns. They must be the very bytes
`_columns` makes of the points as pairs, or a retry would not be recognised (and two commands
could share a fingerprint); the texts sent are reused exactly when each is its Decimal's own."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.proto.columns import points_from_columns
from qis_command.application.commands import IngestPoints
from qis_command.entrypoints.grpc_service import ingest_command
from qis_domain.command_log import _columns, _scalar_columns, canonical, fingerprint
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import ScalarPoints
from qis_domain.snaps import Snap
from qis_domain.values import Price

T0 = 1_709_326_800_000_000

# Plain decimal literals, canonical or not: a sign ("+" too), an integer part with or without
# leading zeros (or none), a point with or without digits after it, up to 9 zeros after "0.".
literals = st.builds(
    lambda sign, whole, point, zeros, digits: f"{sign}{whole}{point}{'0' * zeros}{digits}",
    st.sampled_from(["", "", "-", "+"]),
    st.sampled_from(["", "0", "00", "1", "012", "100", "98765"]),
    st.sampled_from(["", ".", "."]),
    st.integers(0, 9),
    st.sampled_from(["", "1", "5", "25", "0", "123"]),
)
# The texts a client usually sends: a Decimal's own.
own = st.integers(0, 8).flatmap(
    lambda places: st.decimals(-(10**17), 10**17, places=places).map(str)
)


@st.composite
def columns(draw: st.DrawFn, odd: bool) -> values_pb2.PointColumns:
    """Own texts; `odd`: one of them (anywhere) any literal instead."""
    n = draw(st.integers(1, 30))
    texts = draw(st.lists(own, min_size=n, max_size=n))
    if odd:
        texts[draw(st.integers(0, n - 1))] = draw(literals)
    column = values_pb2.DecimalColumn(texts=texts)
    offsets = draw(
        st.sampled_from([[], [60], [-300]])
        | st.lists(st.integers(-1439, 1439), min_size=n, max_size=n)
    )
    start = draw(st.integers(-(10**15), 10**15))
    step = draw(st.integers(1, 10**9))
    snaps = [start + i * step for i in range(n)]
    request = values_pb2.PointColumns(snap_time_micros=snaps, utc_offset_minutes=offsets)
    (request.prices if draw(st.booleans()) else request.volumes).CopyFrom(column)
    return request


def read(request: values_pb2.PointColumns) -> ScalarPoints | None:
    points = points_from_columns(request, [])
    if not points:
        return None
    assert type(points) is ScalarPoints
    return points


def texts_of(request: values_pb2.PointColumns) -> list[str]:
    return list((request.prices if request.HasField("prices") else request.volumes).texts)


@given(columns(odd=True))
def test_columns_are_hashed_as_their_points_and_texts_reused_when_each_is_its_own(
    request: values_pb2.PointColumns,
) -> None:
    points = read(request)
    if points is None:  # a text the per-point form refuses too: no command
        return
    texts = texts_of(request)
    # (a Decimal's own text with an exponent, "1E+3", is written again from its figure)
    own = all(str(Decimal(t)) == t and "E" not in t for t in texts)
    assert (points.own_texts() is points.texts) == own
    assert points.texts == texts
    assert points.own_texts() == [str(x) for x in points.figures]
    assert _scalar_columns(points) == _columns(list(points))
    assert canonical(IngestPoints("SPX", "bbg", points)) == canonical(
        IngestPoints("SPX", "bbg", list(points))
    )


@given(columns(odd=False))
def test_the_usual_columns_reuse_their_texts(request: values_pb2.PointColumns) -> None:
    points = read(request)
    assert points is not None
    texts = texts_of(request)
    # A Decimal's own text with an exponent ("1E+3") is written again from its figure.
    assert (points.own_texts() is points.texts) == (not any("E" in t for t in texts))


def columnar_command() -> IngestPoints:
    request = pb.IngestPointsRequest(command_id="c-1", series="series/SPX", source="sources/bbg")
    request.columns.snap_time_micros.extend([T0, T0 + 1])
    request.columns.prices.CopyFrom(values_pb2.DecimalColumn(texts=["1.5", "2"]))
    violations: list[FieldViolation] = []
    command = ingest_command(request, violations)
    assert violations == []
    assert command is not None
    assert type(command.points) is ScalarPoints
    return command


OTHER_POINTS = [(Snap(T0), Price(Decimal("99"), "")), (Snap(T0 + 1), Price(Decimal("98"), ""))]


def test_a_copy_with_other_points_is_fingerprinted_by_its_own_points() -> None:
    command = columnar_command()
    copy = dataclasses.replace(command, points=OTHER_POINTS)
    fresh = IngestPoints(command.series_id, command.source_id, OTHER_POINTS)
    assert copy == fresh
    assert fingerprint(copy) == fingerprint(fresh)
    assert fingerprint(copy) != fingerprint(command)


def test_equal_commands_have_equal_fingerprints() -> None:
    command = columnar_command()
    as_tuple = dataclasses.replace(command, points=tuple(command.points))
    plain_tuple = IngestPoints(command.series_id, command.source_id, tuple(command.points))
    assert as_tuple == plain_tuple
    # Columns stand for a list ("["): a tuple of the same points is hashed as a tuple.
    assert fingerprint(as_tuple) == fingerprint(plain_tuple)
    assert fingerprint(as_tuple) != fingerprint(command)
