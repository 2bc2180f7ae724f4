"""The print of columnar points (ColumnPoints.printed, command_log.print_scalars): the bytes the
command's fingerprint hashes of its points, made from the request's columns. They must be the
very bytes `_columns` makes of the points themselves, or a retry would not be recognised (and
two commands could share a fingerprint); where they cannot be made so, there is none."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.proto.columns import ColumnPoints, points_from_columns
from qis_command.application.commands import IngestPoints
from qis_command.entrypoints.grpc_service import ingest_command
from qis_domain.command_log import _columns, canonical, fingerprint
from qis_domain.errors import FieldViolation
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


def read(request: values_pb2.PointColumns) -> ColumnPoints:
    return points_from_columns(request, [])


def texts_of(request: values_pb2.PointColumns) -> list[str]:
    return list((request.prices if request.HasField("prices") else request.volumes).texts)


@given(columns(odd=True))
def test_a_print_is_the_bytes_of_the_points_and_there_is_one_when_every_text_is_its_own(
    request: values_pb2.PointColumns,
) -> None:
    points, printed = read(request)
    if not points:  # a text the per-point form refuses too: no command
        return
    texts = texts_of(request)
    # (a Decimal's own text with an exponent, "1E+3", is left to the points)
    assert (printed is not None) == all(str(Decimal(t)) == t and "E" not in t for t in texts)
    if printed is not None:
        assert printed == _columns(list(points))
        command = IngestPoints.printed("SPX", "bbg", points, printed)
        assert canonical(command) == canonical(IngestPoints("SPX", "bbg", list(points)))


@given(columns(odd=False))
def test_the_usual_columns_are_printed(request: values_pb2.PointColumns) -> None:
    points, printed = read(request)
    assert points
    texts = texts_of(request)
    # A Decimal's own text with an exponent ("1E+3") is left to the points.
    assert (printed is None) == any("E" in t for t in texts)


def test_a_print_stands_for_its_points_and_is_no_part_of_the_command() -> None:
    request = values_pb2.PointColumns(
        snap_time_micros=[T0, T0 + 1], prices=values_pb2.DecimalColumn(texts=["1.5", "2"])
    )
    points, printed = read(request)
    assert printed is not None
    with_print = IngestPoints.printed("SPX", "bbg", points, printed)
    assert with_print == IngestPoints("SPX", "bbg", points)
    assert "points_print" not in repr(with_print)
    # What is hashed of the points is the print: another print is another command.
    other = IngestPoints.printed("SPX", "bbg", points, printed.replace(b"1.5", b"1.6"))
    assert fingerprint(other) != fingerprint(with_print)


def columnar_command() -> IngestPoints:
    request = pb.IngestPointsRequest(command_id="c-1", series="series/SPX", source="sources/bbg")
    request.columns.snap_time_micros.extend([T0, T0 + 1])
    request.columns.prices.CopyFrom(values_pb2.DecimalColumn(texts=["1.5", "2"]))
    violations: list[FieldViolation] = []
    command = ingest_command(request, violations)
    assert violations == []
    assert command is not None
    assert command.points_print is not None
    return command


OTHER_POINTS = [(Snap(T0), Price(Decimal("99"), "")), (Snap(T0 + 1), Price(Decimal("98"), ""))]


def test_a_copy_with_other_points_is_fingerprinted_by_its_own_points() -> None:
    command = columnar_command()
    copy = dataclasses.replace(command, points=OTHER_POINTS)
    fresh = IngestPoints(command.series_id, command.source_id, OTHER_POINTS)
    assert copy == fresh
    # The copy is made without the print (init=False): it is hashed by its own points.
    assert fingerprint(copy) == fingerprint(fresh)
    assert fingerprint(copy) != fingerprint(command)


def test_equal_commands_have_equal_fingerprints() -> None:
    command = columnar_command()
    as_tuple = dataclasses.replace(command, points=tuple(command.points))
    plain_tuple = IngestPoints(command.series_id, command.source_id, tuple(command.points))
    assert as_tuple == plain_tuple
    # A print is of a list ("["): a tuple of the same points is hashed as a tuple.
    assert fingerprint(as_tuple) == fingerprint(plain_tuple)


def test_points_added_in_place_are_fingerprinted_as_they_are() -> None:
    columnar = columnar_command()
    assert not hasattr(columnar.points, "append")  # columns (ScalarPoints) do not grow...
    points = list(columnar.points)  # ...but a list given with their print may
    command = IngestPoints.printed(
        columnar.series_id, columnar.source_id, points, columnar.points_print
    )
    points.append(OTHER_POINTS[1])  # a print stands for as many points as it was made of
    assert fingerprint(command) == fingerprint(
        IngestPoints(command.series_id, command.source_id, list(command.points))
    )
