"""The Flight endpoint's fast path (qis_query.entrypoints.flight: prices and volumes read straight
from the segments, qis_query.application.segment_export) answers every ticket with the table the
pages give (the endpoint without `segments`): the same rows, values, schema and metadata, for
histories with restatements, several series, ranges that cut buckets, as-of times and positions
between versions, empty ranges, and buckets too large for a segment (read from the per-point
records). The benchmark's case (one price series, latest, whole range) takes the fast path.

Both endpoints serve one query service's handlers over one read model, from the test's loop: the
Flight calls are made from another thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.flight as fl
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    MAX_SEGMENT_BYTES,
    OfficialVersion,
    ProjectionBatch,
    SeriesEntry,
    VersionClosure,
)
from qis_domain.snaps import BUCKET_SPAN_US, Frequency, format_snap, parse_snap
from qis_projector.application import segments as projector_segments
from qis_query.application import segment_export
from qis_query.application.ranges import SEGMENTS_PER_READ
from qis_query.bootstrap import build
from qis_query.entrypoints import flight
from qis_query.entrypoints.flight import QueryFlight
from qis_query.settings import QuerySettings
from qis_runtime.auth import server_security

from tests.service.query.test_query_flight import version
from tests.support.segmenting import FREQUENCY, SegmentingStore

DAY = BUCKET_SPAN_US[FREQUENCY]  # a bucket of the minute series the store segments
STEP = 7 * 3_600_000_000  # snaps 7 h apart: 3 or 4 a bucket
T0 = 1_700_006_400_000_000 - 1_700_006_400_000_000 % DAY  # a bucket's start
USER = [(b"x-qis-user", b"alice")]
FIRST_POSITION = 10
TYPES = {"price": values_pb2.DATA_TYPE_PRICE, "volume": values_pb2.DATA_TYPE_VOLUME}
assert FREQUENCY is Frequency.MINUTE


@dataclass(frozen=True)
class History:
    series: list[tuple[str, str, int]]
    """(data type, unit, points) of each series."""
    restatements: list[list[tuple[int, int]]]
    """Batch after batch: (series, snap index) restated, at positions 20, 30, ..."""
    with_frequency: bool


def _value(data_type: str, unit: str, number: int) -> values_pb2.DataValue:
    text = f"{number}.{number % 97:02d}"
    if data_type == "price":
        return values_pb2.DataValue(price=values_pb2.Price(value=text, currency=unit))
    return values_pb2.DataValue(volume=values_pb2.Volume(quantity=text, unit=unit))


def _version(
    series_id: str, snap: int, number: int, value: values_pb2.DataValue, position: int
) -> OfficialVersion:
    """Version `number` of a point, published at `position` (knowledge time: 1 ms a position),
    a restatement flagged."""
    flags = () if number == 1 else ("jump",)
    at = position * 1_000
    return version(series_id, snap, number, value, at=at, position=position, flags=flags)


def _entry(series_id: str, data_type: str, unit: str, with_frequency: bool) -> SeriesEntry:
    series = series_pb2.Series(
        name=f"series/{series_id}", data_type=TYPES[data_type], unit=unit, schema_version=1
    )
    if with_frequency:
        series.frequency = series_pb2.FREQUENCY_MINUTE
    return SeriesEntry(series_id, 1, json_format.MessageToDict(series), 5_000, 5)


async def write(history: History, units: Sequence[str] = ()) -> InMemoryReadStore:
    """The history's read model, as the projector writes it; `units`, if given, the unit of
    each restatement batch's values (a series whose unit changed)."""
    writer = SegmentingStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    names = [f"S{i}" for i in range(len(history.series))]
    await writer.apply(
        ProjectionBatch(
            series=[
                _entry(name, data_type, unit, history.with_frequency)
                for name, (data_type, unit, _) in zip(names, history.series, strict=True)
            ]
        ),
        5,
    )
    current: dict[tuple[int, int], OfficialVersion] = {}
    first = []
    for index, (data_type, unit, points) in enumerate(history.series):
        for snap in range(points):
            value = _value(data_type, unit, snap)
            current[index, snap] = _version(names[index], T0 + snap * STEP, 1, value, 10)
            first.append(current[index, snap])
    await writer.apply(ProjectionBatch(versions=first), FIRST_POSITION)
    for batch, restated in enumerate(history.restatements):
        position = 20 + 10 * batch
        versions, closures = [], []
        for index, snap in dict.fromkeys(restated):
            if (index, snap) not in current:
                continue
            old = current[index, snap]
            data_type, unit, _ = history.series[index]
            unit = units[batch] if units else unit
            new = _version(
                old.series_id,
                old.snap_us,
                old.version + 1,
                _value(data_type, unit, position),
                position,
            )
            versions.append(new)
            closures.append(
                VersionClosure(
                    old.series_id, old.snap_us, old.version, new.recorded_from_us, position
                )
            )
            current[index, snap] = new
        await writer.apply(ProjectionBatch(versions=versions, closures=closures), position)
    return InMemoryReadStore(writer.database)


@dataclass(frozen=True)
class Endpoints:
    fast: str
    paged: str


@contextlib.asynccontextmanager
async def endpoints(store: InMemoryReadStore) -> AsyncIterator[Endpoints]:
    """The endpoint reading prices and volumes from the segments, and one reading pages, over
    one query service."""
    config = QuerySettings(auth="dev", query_address="127.0.0.1:0", flight_address="")
    app = await build(config, store)
    security = server_security(config)
    fast = QueryFlight(app.handlers, app.access, "127.0.0.1:0", security, segments=app.reader)
    paged = QueryFlight(app.handlers, app.access, "127.0.0.1:0", security)
    try:
        fast_port, paged_port = await fast.start(), await paged.start()
        yield Endpoints(f"grpc+tcp://127.0.0.1:{fast_port}", f"grpc+tcp://127.0.0.1:{paged_port}")
    finally:
        await fast.stop(0)
        await paged.stop(0)
        await app.close()


def _read(location: str, ticket: dict[str, Any]) -> pa.Table:
    with fl.FlightClient(location) as client:
        raw = fl.Ticket(json.dumps(ticket).encode())
        return client.do_get(raw, fl.FlightCallOptions(headers=USER)).read_all()


async def both(where: Endpoints, ticket: dict[str, Any]) -> tuple[pa.Table, pa.Table]:
    fast = await asyncio.to_thread(_read, where.fast, ticket)
    paged = await asyncio.to_thread(_read, where.paged, ticket)
    return fast, paged


def _instant(us: int) -> str:
    return format_snap(us)


@st.composite
def histories(draw: st.DrawFn) -> History:
    count = draw(st.integers(1, 3))
    series = [
        (
            draw(st.sampled_from(["price", "volume"])),
            draw(st.sampled_from(["USD", "EUR"])),
            draw(st.integers(0, 80)),  # up to ~24 buckets: more than one store read
        )
        for _ in range(count)
    ]
    restated = st.tuples(st.integers(0, count - 1), st.integers(0, 80))
    restatements = draw(st.lists(st.lists(restated, max_size=12), max_size=3))
    return History(series, restatements, draw(st.booleans()))


@st.composite
def tickets(draw: st.DrawFn, series: int) -> dict[str, Any]:
    chosen = draw(st.permutations(range(series)))[: draw(st.integers(1, series))]
    ticket: dict[str, Any] = {"series": [f"series/S{i}" for i in chosen]}
    span = 82 * STEP
    if draw(st.booleans()):
        ticket["start_time"] = _instant(T0 + draw(st.integers(-STEP, span)))
    if draw(st.booleans()):
        start = ticket.get("start_time")
        low = 0 if start is None else draw(st.integers(0, span))
        end = T0 + low
        if start is not None:
            end = max(end, parse_snap(start).utc_us)  # an empty range at worst
        ticket["end_time"] = _instant(end)
    as_of = draw(st.sampled_from(["latest", "position", "time"]))
    if as_of == "position":
        ticket["as_of_position"] = draw(st.integers(0, 60))
    elif as_of == "time":
        ticket["as_of_time"] = _instant(draw(st.integers(0, 60_000)))  # between versions
    return ticket


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    data=st.data(),
    small_segments=st.booleans(),
    first_read=st.sampled_from([SEGMENTS_PER_READ, 1, 2]),
    rows_per_read=st.sampled_from([segment_export.ROWS_PER_READ, 1, 5, 9]),
)
def test_the_fast_path_answers_as_the_pages_do(
    history: History,
    data: st.DataObject,
    small_segments: bool,
    first_read: int,
    rows_per_read: int,
) -> None:
    """`first_read`, `rows_per_read`: store reads of every size, from a bucket at a time (3 or
    4 rows a bucket) to the whole series."""
    # Small segments: buckets of more than 3 rows too large for one (read from the records).
    limit = 5_300 if small_segments else MAX_SEGMENT_BYTES
    with mock.patch.object(projector_segments, "MAX_SEGMENT_BYTES", limit):
        store = asyncio.run(write(history))

    async def compare() -> None:
        with mock.patch.multiple(
            segment_export, SEGMENTS_PER_READ=first_read, ROWS_PER_READ=rows_per_read
        ):
            async with endpoints(store) as where:
                for _ in range(3):
                    ticket = data.draw(tickets(len(history.series)))
                    fast, paged = await both(where, ticket)
                    assert fast.equals(paged, check_metadata=True), ticket

    asyncio.run(compare())


class _Spy:
    """Counts the store reads the fast path decoded and the stretches it read by pages."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decoded = 0
        self.paged = 0
        decode, by_pages = segment_export.parts, flight._SegmentBatches._by_pages

        def counted_decode(*args: Any) -> Any:
            self.decoded += 1
            return decode(*args)

        def counted_by_pages(pages: Any, *args: Any) -> None:
            self.paged += 1
            by_pages(pages, *args)

        monkeypatch.setattr(segment_export, "parts", counted_decode)
        monkeypatch.setattr(flight._SegmentBatches, "_by_pages", counted_by_pages)


async def test_the_benchmarks_case_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """One price series, latest, the whole range (bench/flight.py), in more than one store
    read: every value from the segments, none by pages."""
    store = await write(History([("price", "USD", 80)], [], with_frequency=True))
    spy = _Spy(monkeypatch)
    async with endpoints(store) as where:
        fast, paged = await both(where, {"series": ["series/S0"]})
    assert fast.num_rows == 80
    assert fast.equals(paged, check_metadata=True)
    assert spy.decoded == 2  # 24 buckets: two store reads
    assert spy.paged == 0


async def test_a_read_model_without_segments_is_read_by_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A generation built before segments (`segments` answers None): the export is the pages'
    own, chosen before the first batch."""
    store = await write(History([("price", "USD", 30), ("volume", "EUR", 9)], [[(0, 4)]], True))

    async def no_segments(*args: Any) -> None:
        return None

    monkeypatch.setattr(store, "segments", no_segments)
    spy = _Spy(monkeypatch)
    async with endpoints(store) as where:
        questions: list[dict[str, Any]] = [
            {"series": ["series/S0", "series/S1"]},
            {"series": "series/S0", "as_of_position": 10},
        ]
        for ticket in questions:
            fast, paged = await both(where, ticket)
            assert fast.num_rows
            assert fast.equals(paged, check_metadata=True)
    assert spy.decoded == spy.paged == 0


async def test_a_series_whose_unit_changed_keeps_each_values_unit() -> None:
    """Restated in another currency: each row's unit as the pages give it. The `unit` column's
    dictionaries are per batch, and the batches are cut elsewhere (a store read, not a page):
    the same once the tables' dictionaries are unified."""
    history = History([("price", "USD", 40)], [[(0, 3), (0, 30)], [(0, 31)]], True)
    store = await write(history, units=["GBP", ""])
    async with endpoints(store) as where:
        fast, paged = await both(where, {"series": ["series/S0"]})
    units = fast.column("unit").to_pylist()
    assert (units[3], units[30], units[31], units[0]) == ("GBP", "GBP", "USD", "USD")
    assert fast.schema.equals(paged.schema, check_metadata=True)
    assert fast.unify_dictionaries().equals(paged.unify_dictionaries())


async def test_a_bucket_too_large_for_a_segment_before_the_start_adds_nothing() -> None:
    """The range starts after the last snap of its first bucket, which the per-point records
    hold (4 rows, more than a segment of 5,300 bytes holds): nothing of it, no refusal."""
    history = History([("price", "USD", 40)], [], with_frequency=True)
    with mock.patch.object(projector_segments, "MAX_SEGMENT_BYTES", 5_300):
        store = await write(history)
    start = T0 + 3 * STEP + STEP // 7  # an hour after the first bucket's last snap
    async with endpoints(store) as where:
        fast, paged = await both(where, {"series": ["series/S0"], "start_time": _instant(start)})
    assert fast.num_rows == 36
    assert fast.equals(paged, check_metadata=True)


async def test_a_series_whose_segments_are_gone_is_read_by_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second series' store read finds no segments (a rebuild switched generations while
    the export streams): the rest of it comes by pages, the answer unchanged."""
    history = History([("price", "USD", 30), ("volume", "EUR", 20)], [[(1, 4)]], True)
    store = await write(history)
    segments = store.segments

    async def only_the_first(series_id: str, *args: Any) -> Any:
        return None if series_id == "S1" else await segments(series_id, *args)

    monkeypatch.setattr(store, "segments", only_the_first)
    spy = _Spy(monkeypatch)
    async with endpoints(store) as where:
        fast, paged = await both(where, {"series": ["series/S0", "series/S1"]})
    assert fast.num_rows == 50
    assert fast.equals(paged, check_metadata=True)
    assert spy.decoded == spy.paged == 1
