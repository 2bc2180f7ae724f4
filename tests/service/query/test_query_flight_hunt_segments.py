"""The Flight endpoint's fast path (prices and volumes read straight from the segments:
qis_query.entrypoints.flight._SegmentBatches, qis_query.application.segment_export) where it
leaves the common case: the service's loop shutting down while a store read is under way, a
store read after a series' tiny first buckets, a corrupt segment after the first batch, and a
client that cancels mid-stream. Each is held to what the paged path answers, or to what the
module docstrings promise.

The read models are written as the projector writes them (tests.support.segmenting), in the
day buckets of a minute series."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl
import pytest
from qis.data.v1 import values_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import AsOf, ProjectionBatch, Segment
from qis_query.application import segment_export
from qis_query.bootstrap import build
from qis_query.entrypoints.flight import QueryFlight
from qis_query.settings import QuerySettings
from qis_runtime.auth import server_security

from tests.service.query.test_query_flight import version
from tests.service.query.test_query_flight_fast_path import (
    DAY,
    T0,
    USER,
    History,
    _entry,
    both,
    endpoints,
    write,
)
from tests.support.loops import loop_in_thread
from tests.support.segmenting import SegmentingStore

TICKET = {"series": ["series/S0"]}
CONFIG = QuerySettings(auth="dev", query_address="127.0.0.1:0", flight_address="")


def _price(number: int) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=f"{number}.5", currency="USD"))


def wait_for(condition: Callable[[], bool], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {within_s} s"
        time.sleep(0.01)


@pytest.fixture
def one_segment_a_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store read of the fast path takes one segment: a short series streams in many."""
    monkeypatch.setattr(segment_export, "SEGMENTS_PER_READ", 1)
    monkeypatch.setattr(segment_export, "ROWS_PER_READ", 1)


# --- the loop shutting down while a store read is under way ----------------------------------


class HangingReads(InMemoryReadStore):
    """Segment reads that, after the first two (the export's first store read and the one
    ahead of it), never answer (a store gone quiet): the loop's shutdown is what ends them."""

    def __init__(self, database: InMemoryReadDatabase) -> None:
        super().__init__(database)
        self.reads = 0
        self.hanging = threading.Event()

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        self.reads += 1
        if self.reads > 2:
            self.hanging.set()
            await asyncio.get_running_loop().create_future()
        return await super().segments(series_id, from_bucket_us, end_us, as_of, limit)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A query loop in a thread of its own, as qis-query's: the test is the Flight client."""
    with loop_in_thread() as loop:
        yield loop


def _on(loop: asyncio.AbstractEventLoop, work: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(work, loop).result(30)


@pytest.mark.usefixtures("one_segment_a_read")
def test_a_loop_shutdown_during_a_store_read_ends_the_stream_unavailable(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """asyncio.run's shutdown cancels every task, the store read the Flight thread waits for
    too: the client is told the service is stopping (UNAVAILABLE, retry elsewhere), as the
    paged path tells it (_ReadAhead; tests/service/query/test_query_flight_read_ahead.py), not
    INTERNAL with an error logged as a bug."""
    written = _on(loop, write(History([("price", "USD", 80)], [], with_frequency=True)))
    store = HangingReads(written.database)
    app = _on(loop, build(CONFIG, store))
    security = server_security(CONFIG)
    endpoint = QueryFlight(app.handlers, app.access, "127.0.0.1:0", security, segments=store)
    port = _on(loop, endpoint.start())
    try:
        with fl.FlightClient(f"grpc+tcp://127.0.0.1:{port}") as client:
            options = fl.FlightCallOptions(headers=USER, timeout=30)
            reader = client.do_get(fl.Ticket(json.dumps(TICKET).encode()), options)
            reader.read_chunk()
            assert store.hanging.wait(10)

            def cancel_every_task() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()

            loop.call_soon_threadsafe(cancel_every_task)
            started = time.monotonic()
            with pytest.raises(pa.ArrowException) as caught:
                reader.read_all()
        assert time.monotonic() - started < 10
        message = str(caught.value)
        assert "UNAVAILABLE: the query service is stopping" in message, message
        assert "Traceback" not in message
    finally:
        _on(loop, endpoint.stop(0))
        _on(loop, app.close())


# --- the size of a store read after tiny buckets ---------------------------------------------

SPARSE, DENSE, DENSE_POINTS = 4, 30, 20
"""Buckets of one point, then buckets of 20."""


async def sparse_then_dense() -> InMemoryReadStore:
    writer = SegmentingStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await writer.apply(ProjectionBatch(series=[_entry("S0", "price", "USD", True)]), 5)
    snaps = [day * DAY for day in range(1, SPARSE + 1)]
    snaps += [
        (SPARSE + 1 + day) * DAY + point * (DAY // DENSE_POINTS)
        for day in range(DENSE)
        for point in range(DENSE_POINTS)
    ]
    versions = [
        version("S0", snap, 1, _price(i), at=10_000, position=10) for i, snap in enumerate(snaps)
    ]
    await writer.apply(ProjectionBatch(versions=versions), 10)
    return InMemoryReadStore(writer.database)


async def test_a_read_after_tiny_buckets_holds_at_most_the_maximum_of_segments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rows of the read before guess at the next one's: after tiny buckets, full ones are
    read MAX_SEGMENTS_PER_READ at most (before, up to 1,024: of second prices ~3.7M values,
    ~300 MB decoded, in one read)."""
    rows_per_read, most = 100, 2 * SPARSE
    monkeypatch.setattr(segment_export, "SEGMENTS_PER_READ", SPARSE)
    monkeypatch.setattr(segment_export, "ROWS_PER_READ", rows_per_read)
    monkeypatch.setattr(segment_export, "MAX_SEGMENTS_PER_READ", most)
    read_rows: list[int] = []
    parts = segment_export.parts

    def counted(found: Sequence[Segment], *args: Any) -> Any:
        read_rows.append(sum(s.rows for s in found))
        return parts(found, *args)

    monkeypatch.setattr(segment_export, "parts", counted)
    store = await sparse_then_dense()
    async with endpoints(store) as where:
        fast, paged = await both(where, TICKET)
    assert fast.num_rows == SPARSE + DENSE * DENSE_POINTS
    assert fast.equals(paged, check_metadata=True)
    assert read_rows[0] == SPARSE
    assert max(read_rows) == most * DENSE_POINTS, read_rows


# --- a corrupt segment after the first batch -------------------------------------------------


@pytest.mark.usefixtures("one_segment_a_read")
async def test_a_corrupt_segment_mid_stream_ends_it_internal_as_the_pages_do(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload of the encoder's frame whose record batch is cut short: decode_many's one
    IPC stream fails in the decoding thread, after batches were sent. The stream ends INTERNAL
    with a logged reference (as a store's failure mid-stream ends: UNKNOWN on the wire, the
    same message), as the pages refuse the same read model; no traceback, no hang."""
    store = await write(History([("price", "USD", 80)], [], with_frequency=True))
    segments = store.segments
    tenth_bucket = T0 + 10 * DAY

    async def corrupted(*args: Any) -> list[Segment] | None:
        found = await segments(*args)
        if found is None:
            return None
        return [_broken(s) if s.bucket_us == tenth_bucket else s for s in found]

    monkeypatch.setattr(store, "segments", corrupted)
    async with endpoints(store) as where:
        for location in (where.fast, where.paged):
            started = time.monotonic()
            with pytest.raises(pa.ArrowException) as caught:
                await asyncio.to_thread(_read_all, location)
            assert time.monotonic() - started < 10
            message = str(caught.value)
            assert "INTERNAL: internal error (reference " in message, (location, message)
            assert "Traceback" not in message
    assert sum("internal error" in r.getMessage() for r in caplog.records) == 2


def _broken(segment: Segment) -> Segment:
    """`segment` with its record batch cut in half, its frame (schema message, end marker)
    kept: decode_many reads it in its one stream."""
    payload = segment.payload
    end = b"\xff\xff\xff\xff\x00\x00\x00\x00"
    assert payload.endswith(end)
    return dataclasses.replace(segment, payload=payload[: len(payload) // 2] + end)


def _read_all(location: str) -> pa.Table:
    with fl.FlightClient(location) as client:
        raw = fl.Ticket(json.dumps(TICKET).encode())
        options = fl.FlightCallOptions(headers=USER, timeout=30)
        return client.do_get(raw, options).read_all()


# --- a client that cancels mid-stream --------------------------------------------------------


class SlowReads(InMemoryReadStore):
    """Segment reads that take a while and are counted: a stream is still reading when its
    client cancels."""

    def __init__(self, database: InMemoryReadDatabase) -> None:
        super().__init__(database)
        self.reads = 0

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        self.reads += 1
        await asyncio.sleep(0.05)
        return await super().segments(series_id, from_bucket_us, end_us, as_of, limit)


def _read_one_batch_and_cancel(location: str) -> None:
    with fl.FlightClient(location) as client:
        raw = fl.Ticket(json.dumps(TICKET).encode())
        reader = client.do_get(raw, fl.FlightCallOptions(headers=USER, timeout=30))
        reader.read_chunk()
        reader.cancel()


def _store_reads_under_way() -> list[asyncio.Task[Any]]:
    """The export's first store read, and the task running the reads after it."""
    reading = {segment_export.read.__qualname__, segment_export.ReadsAhead._read_from.__qualname__}
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") in reading
    ]


@pytest.mark.usefixtures("one_segment_a_read")
async def test_a_client_that_cancels_mid_stream_leaves_no_store_read_running() -> None:
    """The stream stops reading once its client cancels: the read ahead of the batch being
    sent ends (cancelled, or done and dropped), no later one starts, the store is read no
    more."""
    written = await write(History([("price", "USD", 80)], [], with_frequency=True))
    store = SlowReads(written.database)  # 24 buckets: 24 store reads for the whole series
    async with endpoints(store) as where:
        await asyncio.to_thread(_read_one_batch_and_cancel, where.fast)
        deadline = time.monotonic() + 10
        while _store_reads_under_way():
            assert time.monotonic() < deadline, "a store read still runs"
            await asyncio.sleep(0.02)
        reads = store.reads
        await asyncio.sleep(0.5)
        assert store.reads == reads
    assert reads < 24
