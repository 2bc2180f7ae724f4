"""Values just beyond what the command side accepts, in the per-point and in the columnar form:
each is refused with INVALID_ARGUMENT naming the field and the row, stores nothing, and never
answers UNKNOWN (an exception escaping the edge)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_domain import bounds

from tests.service.command.test_command_columns import Edge, edge

__all__ = ["edge"]  # the fixture, imported for pytest

US = 1_000_000
GOOD_SNAP = 1_767_225_600 * US


def _columns(
    snaps: list[int],
    texts: list[str] | None = None,
    unscaled: list[int] | None = None,
    scale: int = 0,
    offsets: list[int] | None = None,
) -> pb.IngestPointsRequest:
    request = pb.IngestPointsRequest(command_id="c", series="series/PRICES", source="sources/bbg")
    request.columns.snap_time_micros.extend(snaps)
    request.columns.utc_offset_minutes.extend(offsets or [])
    if unscaled is not None:
        request.columns.prices.unscaled.extend(unscaled)
        request.columns.prices.scale = scale
    else:
        request.columns.prices.texts.extend(texts or ["1"] * len(snaps))
    return request


def _point(
    seconds: int, nanos: int = 0, text: str = "1", offset_s: int = 0, offset_nanos: int = 0
) -> pb.IngestPointsRequest:
    point = values_pb2.DataPoint(
        snap_time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
        value=values_pb2.DataValue(price=values_pb2.Price(value=text)),
    )
    if offset_s or offset_nanos:
        point.utc_offset.CopyFrom(duration_pb2.Duration(seconds=offset_s, nanos=offset_nanos))
    good = values_pb2.DataPoint(
        snap_time=timestamp_pb2.Timestamp(seconds=GOOD_SNAP // US),
        value=values_pb2.DataValue(price=values_pb2.Price(value="2")),
    )
    return pb.IngestPointsRequest(
        command_id="p", series="series/PRICES", source="sources/bbg", points=[good, point]
    )


GOOD = GOOD_SNAP
CASES: dict[str, tuple[Callable[[], pb.IngestPointsRequest], str]] = {
    "column snap before year 1": (
        lambda: _columns([GOOD, bounds.MIN_INSTANT_US - 1]),
        "columns.snap_time_micros[1]",
    ),
    "column snap after year 9999": (
        lambda: _columns([GOOD, bounds.MAX_INSTANT_US + 1]),
        "columns.snap_time_micros[1]",
    ),
    "column snap at int64 min": (
        lambda: _columns([GOOD, -(2**63)]),
        "columns.snap_time_micros[1]",
    ),
    "column offset beyond +23:59": (
        lambda: _columns([GOOD, GOOD + 1], offsets=[0, 1440]),
        "columns.utc_offset_minutes[1]",
    ),
    "column offset beyond -23:59": (
        lambda: _columns([GOOD, GOOD + 1], offsets=[-1440]),
        "columns.utc_offset_minutes[0]",
    ),
    "column text with 19 places": (
        lambda: _columns([GOOD, GOOD + 1], texts=["1", "0.0000000000000000001"]),
        "columns.prices.texts[1]",
    ),
    "column text at 1e18": (
        lambda: _columns([GOOD, GOOD + 1], texts=["1", "1E+18"]),
        "columns.prices.texts[1]",
    ),
    "column text infinity": (
        lambda: _columns([GOOD, GOOD + 1], texts=["1", "Infinity"]),
        "columns.prices.texts[1]",
    ),
    "column text with underscores": (
        lambda: _columns([GOOD, GOOD + 1], texts=["1", "1_000"]),
        "columns.prices.texts[1]",
    ),
    "column text in Arabic-Indic digits": (
        lambda: _columns([GOOD, GOOD + 1], texts=["1", "\u0661\u0662"]),
        "columns.prices.texts[1]",
    ),
    "column text with spaces": (
        lambda: _columns([GOOD, GOOD + 1], texts=["1", " 1"]),
        "columns.prices.texts[1]",
    ),
    "scaled integer at 1e18, scale 0": (
        lambda: _columns([GOOD, GOOD + 1], unscaled=[1, 10**18], scale=0),
        "columns.prices.unscaled[1]",
    ),
    "scaled integer at int64 min, scale 0": (
        lambda: _columns([GOOD, GOOD + 1], unscaled=[1, -(2**63)], scale=0),
        "columns.prices.unscaled[1]",
    ),
    "scale 19": (
        lambda: _columns([GOOD], unscaled=[1], scale=19),
        "columns.prices.scale",
    ),
    "negative scale": (
        lambda: _columns([GOOD], unscaled=[1], scale=-1),
        "columns.prices.scale",
    ),
    "scale at int32 max": (
        lambda: _columns([GOOD], unscaled=[1], scale=2**31 - 1),
        "columns.prices.scale",
    ),
    "point snap before year 1": (
        lambda: _point(bounds.MIN_TIMESTAMP_SECONDS - 1),
        "points[1].snap_time.seconds",
    ),
    "point snap after year 9999": (
        lambda: _point(bounds.MAX_TIMESTAMP_SECONDS + 1),
        "points[1].snap_time.seconds",
    ),
    "point snap at int64 max seconds": (
        lambda: _point(2**63 - 1),
        "points[1].snap_time.seconds",
    ),
    "point nanos not whole microseconds": (
        lambda: _point(GOOD_SNAP // US, nanos=1),
        "points[1].snap_time",
    ),
    "point nanos beyond a second": (
        lambda: _point(GOOD_SNAP // US, nanos=1_000_000_000),
        "points[1].snap_time.nanos",
    ),
    "point negative nanos": (
        lambda: _point(GOOD_SNAP // US, nanos=-1_000),
        "points[1].snap_time.nanos",
    ),
    "point offset beyond +23:59": (
        lambda: _point(GOOD_SNAP // US + 1, offset_s=24 * 3600),
        "points[1].utc_offset",
    ),
    "point offset not whole minutes": (
        lambda: _point(GOOD_SNAP // US + 1, offset_s=61),
        "points[1].utc_offset",
    ),
    "point offset with nanos": (
        lambda: _point(GOOD_SNAP // US + 1, offset_s=60, offset_nanos=1),
        "points[1].utc_offset",
    ),
    "point offset at int64 min seconds": (
        lambda: _point(GOOD_SNAP // US + 1, offset_s=-(2**63)),
        "points[1].utc_offset",
    ),
    "point decimal with exponent beyond 4 digits": (
        lambda: _point(GOOD_SNAP // US + 1, text="0E+99999"),
        "points[1].value.price.value",
    ),
    "point decimal NaN": (
        lambda: _point(GOOD_SNAP // US + 1, text="NaN"),
        "points[1].value.price.value",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_value_beyond_the_bounds_is_refused_by_field_and_row(edge: Edge, case: str) -> None:
    build, field = CASES[case]
    assert await edge.rejected(build()) == [field]
