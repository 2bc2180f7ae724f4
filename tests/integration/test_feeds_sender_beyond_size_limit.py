"""The feeds' BulkIngest sender against a command service whose request size limit
(QIS_COMMAND_MAX_REQUEST_BYTES) is below its chunks' size, beyond what the service refuses
itself: a chunk over twice the limit is refused by gRPC (RESOURCE_EXHAUSTED without details),
and is halved as one the service refuses (REQUEST_TOO_LARGE) is; order, windows and backoff."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as pb
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, encode
from qis_feeds.application.batching import Chunk
from qis_feeds.application.counters import FeedCounters

from tests.integration.command_service_support import command_service
from tests.integration.test_feeds_sender_size_limit import LIMIT, QUICK, days, prices, send
from tests.unit.adapters.test_edge_command_service import USER


async def test_a_chunk_over_twice_the_limit_is_halved_until_it_fits_too(tmp_path: Path) -> None:
    """The module docstring: a chunk refused as too large is sent again in halves "until they
    fit". Beyond twice the limit, gRPC refuses it (RESOURCE_EXHAUSTED, no ErrorInfo) and the
    sender backs off and resends it whole until max_stream_failures (a feed has none: forever).
    (Failed before: resent whole.)"""
    big = days(10, 3_000)
    assert encode(big).ByteSize() > 2 * LIMIT
    chunks = [days(0, 10), big, days(3_010, 10)]
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store, command_max_request_bytes=LIMIT) as served:
        counters = FeedCounters()
        await send(BulkIngestSender(served.stub, USER, counters, QUICK), chunks)
        # The chunk ahead of it may go unanswered (gRPC fails the call at once): sent again, a
        # duplicate.
        assert (counters.accepted + counters.duplicates, counters.rejected) == (3_020, 0)


async def test_a_single_point_over_twice_the_limit_is_refused_for_good_too(
    tmp_path: Path,
) -> None:
    """As for one just over the limit (the commit's test): the point is refused and counted,
    the others land. (Failed before: resent until the failure limit, then AioRpcError.)"""
    huge = prices(10, ["1" * (2 * LIMIT + 100)])
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store, command_max_request_bytes=LIMIT) as served:
        counters = FeedCounters()
        await send(
            BulkIngestSender(served.stub, USER, counters, QUICK),
            [days(0, 10), huge, days(11, 10)],
        )
        assert (counters.accepted + counters.duplicates, counters.rejected) == (20, 1)


async def test_halves_keep_the_chunks_order_with_a_full_window(tmp_path: Path) -> None:
    """With several chunks in flight behind the oversized one, every point lands once and the
    acknowledgements come in snap order (the halves first, then the chunks sent after it)."""
    chunks = [days(0, 10), days(10, 1_500), days(1_510, 10), days(1_520, 7)]
    acknowledged: list[Chunk] = []

    def record(chunk: Chunk, _: pb.IngestPointsResponse) -> None:
        acknowledged.append(chunk)

    settings = dataclasses.replace(QUICK, window=8)
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store, command_max_request_bytes=LIMIT) as served:
        counters = FeedCounters()
        sender = BulkIngestSender(served.stub, USER, counters, settings, record)
        await send(sender, chunks)
        snaps = [p.snap_us for c in acknowledged for p in c.points]
        assert snaps == sorted(snaps)
        assert len(snaps) == len(set(snaps)) == 1_527
        assert (counters.accepted, counters.duplicates, counters.sent) == (1_527, 0, 1_527)
        assert counters.chunks == len(acknowledged) == 5  # the big one as two halves
        # Halving costs one stream, not a backoff round; one more, sent at once, when gRPC's
        # asyncio client loses the service's status to a write in flight (grpc/grpc#36066).
        assert sender.streams in (2, 3)
        assert counters.last_error == ""  # no failure, no backoff


async def test_the_limit_is_not_a_failure_of_the_service(tmp_path: Path) -> None:
    """Halving needs no backoff (the commit's claim): with a backoff of seconds, a chunk refused
    as too large still lands at once."""
    slow = dataclasses.replace(QUICK, backoff_first_s=5.0, backoff_cap_s=5.0)
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store, command_max_request_bytes=LIMIT // 3) as served:
        counters = FeedCounters()
        loop = asyncio.get_running_loop()
        started = loop.time()
        big = days(0, 700)
        assert LIMIT // 3 < encode(big).ByteSize() < 2 * (LIMIT // 3)
        await send(BulkIngestSender(served.stub, USER, counters, slow), [big])
        assert counters.accepted == 700
        assert loop.time() - started < 4.0


def test_a_refusal_by_grpc_of_a_size_no_chunk_has_halves_nothing() -> None:
    """gRPC's refusal names the refused message's size: with no chunk in flight of that size,
    no chunk is halved or refused on a guess (the stream is retried as after any failure)."""
    sender = BulkIngestSender(None, USER, FeedCounters(), QUICK)  # type: ignore[arg-type]
    in_flight = deque([days(0, 10), prices(10, ["1"])])
    before = list(in_flight)
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="Received message larger than max (999999 vs. 40000)",
    )
    assert not sender._halved(error, in_flight)  # what is under test
    assert list(in_flight) == before
    sizes = [encode(chunk).ByteSize() for chunk in before]
    named = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=f"Received message larger than max ({sizes[0]} vs. 40000)",
    )
    assert sender._halved(named, in_flight)
    assert [len(c.points) for c in in_flight] == [5, 5, 1]


class LostStatusCall:
    """A stream gRPC's asyncio client reports as INTERNAL "Internal error from Core", having
    lost the status the service ended it with to a write in flight (grpc/grpc#36066)."""

    async def write(self, request: pb.IngestPointsRequest) -> None:
        return None

    async def done_writing(self) -> None:
        return None

    def cancel(self) -> bool:
        return True

    def __aiter__(self) -> LostStatusCall:
        return self

    async def __anext__(self) -> pb.BulkIngestResponse:
        await asyncio.sleep(0.01)  # the writer sends meanwhile
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.INTERNAL,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="Internal error from Core",
        )


class FirstStreamsLost:
    """The service's stub, but for its first `lost` BulkIngest streams."""

    def __init__(self, stub: Any, lost: int) -> None:
        self._stub = stub
        self._lost = lost

    def BulkIngest(self, metadata: Any) -> Any:
        if self._lost:
            self._lost -= 1
            return LostStatusCall()
        return self._stub.BulkIngest(metadata=metadata)


async def test_a_status_lost_by_the_grpc_client_is_sent_again_at_once(tmp_path: Path) -> None:
    """Not a failure of the service: no backoff (of seconds here), nothing counted failed."""
    slow = dataclasses.replace(QUICK, backoff_first_s=5.0, backoff_cap_s=5.0)
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store) as served:
        counters = FeedCounters()
        stub = FirstStreamsLost(served.stub, 3)
        sender = BulkIngestSender(stub, USER, counters, slow)  # type: ignore[arg-type]
        started = asyncio.get_running_loop().time()
        await send(sender, [days(0, 10), days(10, 10)])
        assert asyncio.get_running_loop().time() - started < 4.0
        assert (counters.accepted, counters.duplicates) == (20, 0)
        assert sender.streams == 4
        assert counters.last_error == ""


async def test_a_status_lost_again_and_again_is_a_broken_stream(tmp_path: Path) -> None:
    """Three in a row are sent again at once; then each is a failure, backoff and limit."""
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store) as served:
        counters = FeedCounters()
        stub = FirstStreamsLost(served.stub, 100)
        sender = BulkIngestSender(stub, USER, counters, QUICK)  # type: ignore[arg-type]
        with pytest.raises(grpc.aio.AioRpcError):
            await send(sender, [days(0, 10)])
        # 3 at once, then failures 1 and 2 (QUICK's limit), and the third fails the load
        assert sender.streams == 3 + 3
        assert counters.last_error == "BulkIngest: Internal error from Core"


class BreaksWhenTaken(asyncio.Queue[Chunk | None]):
    """The sender's input; `trigger` is set as `chunk` is taken from it."""

    def __init__(self, chunk: Chunk) -> None:
        super().__init__()
        self._chunk = chunk
        self.trigger = asyncio.Event()

    async def get(self) -> Chunk | None:
        item = await super().get()
        if item is self._chunk:
            self.trigger.set()
        return item


class BreaksOnTrigger(LostStatusCall):
    """A stream that breaks as the sender's writer takes the next chunk (before it is sent)."""

    def __init__(self, trigger: asyncio.Event) -> None:
        self._trigger = trigger

    async def __anext__(self) -> pb.BulkIngestResponse:
        await self._trigger.wait()
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="gone"
        )


async def test_a_chunk_taken_as_the_stream_breaks_goes_again_after_the_unanswered_ones(
    tmp_path: Path,
) -> None:
    """The writer had sent `first` and taken `second` when the stream broke: both go again, in
    their order. (Failed before: the writer put `second` back after the sender had put
    `first` ahead, so `second` went first.)"""
    first, second = days(0, 10), days(10, 10)
    queue = BreaksWhenTaken(second)
    for item in (first, second, None):
        queue.put_nowait(item)
    acknowledged: list[Chunk] = []

    def record(chunk: Chunk, _: pb.IngestPointsResponse) -> None:
        acknowledged.append(chunk)

    class Stub:
        def __init__(self, real: Any) -> None:
            self.real, self.calls = real, 0

        def BulkIngest(self, metadata: Any) -> Any:
            self.calls += 1
            if self.calls == 1:
                return BreaksOnTrigger(queue.trigger)
            return self.real.BulkIngest(metadata=metadata)

    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store) as served:
        stub = Stub(served.stub)
        sender = BulkIngestSender(stub, USER, FeedCounters(), QUICK, record)  # type: ignore[arg-type]
        await asyncio.wait_for(sender.send_all(queue), 20)
    assert [c.command_id for c in acknowledged] == [first.command_id, second.command_id]
