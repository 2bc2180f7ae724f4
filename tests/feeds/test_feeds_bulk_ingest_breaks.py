"""The feeds' BulkIngest sender against a fake call (services/feeds bulk_ingest.py): a stream
that breaks at each await point of the writer, or that the service ends without a status before
the half-close, still lands every chunk once, in the order given; a cancelled load still cancels
its stream; only gRPC's own lost status is sent again at once; streams ended at once are
failures, not a loop, and streams that answered a chunk start the failure row again."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as pb
from qis_feeds.adapters.bulk_ingest import BulkIngestSender
from qis_feeds.application.batching import Chunk
from qis_feeds.application.counters import FeedCounters

from tests.feeds.feeds_support import ScriptedCommands, scripted
from tests.integration.test_feeds_sender_size_limit import QUICK, days

_BREAK = object()
_END = object()


class Call:
    """A BulkIngest stream answering each chunk as written; `hang_at` (a write's index, or
    "done_writing") breaks the stream there, the write left hanging as the stream ends."""

    def __init__(self, hang_at: int | str | None = None) -> None:
        self.hang_at = hang_at
        self.writes = 0
        self.responses: asyncio.Queue[object] = asyncio.Queue()
        self.cancelled = False

    def breaks(self) -> None:
        self.responses.put_nowait(_BREAK)

    async def write(self, request: pb.IngestPointsRequest) -> None:
        self.writes += 1
        if self.hang_at == self.writes:
            self.breaks()
            await asyncio.Event().wait()
        self.responses.put_nowait(
            pb.BulkIngestResponse(
                command_id=request.command_id,
                result=pb.IngestPointsResponse(accepted=len(request.columns.snap_time_micros)),
            )
        )

    async def done_writing(self) -> None:
        if self.hang_at == "done_writing":
            self.breaks()
            await asyncio.Event().wait()
        self.responses.put_nowait(_END)

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def __aiter__(self) -> Call:
        return self

    async def __anext__(self) -> pb.BulkIngestResponse:
        item = await self.responses.get()
        if item is _END:
            raise StopAsyncIteration
        if item is _BREAK:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone"
            )
        assert isinstance(item, pb.BulkIngestResponse)
        return item


class Stub:
    """The first stream is `first`; every other one answers all."""

    def __init__(self, first: Call) -> None:
        self.calls = [first]
        self.opened = 0

    def BulkIngest(self, metadata: Any) -> Call:
        self.opened += 1
        if self.opened > 1:
            self.calls.append(Call())
        return self.calls[-1]


class EveryStream:
    """A stub whose every stream is a new call of `make`, counting them."""

    def __init__(self, make: Callable[[], Call]) -> None:
        self.make = make
        self.streams = 0

    def BulkIngest(self, metadata: Any) -> Call:
        self.streams += 1
        return self.make()


class Input(asyncio.Queue[Chunk | None]):
    """The sender's input; the first stream breaks as `at` (a chunk, or the end: None) is
    taken from it."""

    def __init__(self, first: Call, at: object) -> None:
        super().__init__()
        self._first, self._at = first, at

    async def get(self) -> Chunk | None:
        item = await super().get()
        if item is self._at:
            self._first.breaks()
            self._at = object()
        return item


CHUNKS = [days(10 * i, 10) for i in range(4)]


async def run(first: Call, queue: asyncio.Queue[Chunk | None], window: int = 8) -> list[str]:
    acknowledged: list[str] = []
    sender = BulkIngestSender(
        Stub(first),  # type: ignore[arg-type]
        (),
        FeedCounters(),
        dataclasses.replace(QUICK, window=window),
        lambda chunk, _: acknowledged.append(chunk.command_id),
    )
    await asyncio.wait_for(sender.send_all(queue), 10)
    return acknowledged


def filled(queue: asyncio.Queue[Chunk | None]) -> asyncio.Queue[Chunk | None]:
    for item in [*CHUNKS, None]:
        queue.put_nowait(item)
    return queue


@pytest.mark.parametrize("hang_at", [1, 2, 4, "done_writing"])
async def test_a_stream_broken_in_a_write_or_the_half_close_lands_each_chunk_once_in_order(
    hang_at: int | str,
) -> None:
    first = Call(hang_at)
    assert await run(first, filled(asyncio.Queue())) == [c.command_id for c in CHUNKS]


@pytest.mark.parametrize("at", [*range(4), None])
async def test_a_stream_broken_as_the_writer_takes_from_the_input_keeps_the_order(
    at: int | None,
) -> None:
    first = Call()
    queue = filled(Input(first, None if at is None else CHUNKS[at]))
    assert await run(first, queue) == [c.command_id for c in CHUNKS]


async def test_a_stream_broken_with_a_full_window_keeps_the_order() -> None:
    """Window 1, the first chunk unanswered: the writer waits for room when it breaks."""

    class Unanswered(Call):
        async def write(self, request: pb.IngestPointsRequest) -> None:
            self.writes += 1
            asyncio.get_running_loop().call_later(0.01, self.breaks)

    assert await run(Unanswered(), filled(asyncio.Queue()), window=1) == [
        c.command_id for c in CHUNKS
    ]


async def test_a_stream_broken_while_the_writer_waits_for_input_keeps_the_order() -> None:
    first = Call()
    await lands_all_after_a_pause(first, first.breaks)  # the writer waits for the next chunk


async def lands_all_after_a_pause(
    first: Call, in_the_pause: Callable[[], None] | None = None
) -> None:
    """The first chunk, then, after a pause in which `in_the_pause` runs (nothing in flight),
    the others: every chunk lands once, in order."""
    queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
    queue.put_nowait(CHUNKS[0])

    async def later() -> None:
        await asyncio.sleep(0.02)
        if in_the_pause is not None:
            in_the_pause()
        await asyncio.sleep(0.03)
        for item in [*CHUNKS[1:], None]:
            queue.put_nowait(item)

    feeder = asyncio.create_task(later())
    assert await run(first, queue) == [c.command_id for c in CHUNKS]
    await feeder


async def test_a_load_cancelled_as_its_stream_ends_still_cancels_the_stream() -> None:
    """Cancelled twice (a timeout and a shutdown, say), the second while the stream awaits its
    writer's cancellation: the call must still be cancelled, or the stream stays open on the
    service until the channel closes or the call is collected. Fails at 19a2f80 (the `finally`
    awaits the writer before `call.cancel()`); passed before."""
    call = Call()
    queue: asyncio.Queue[Chunk | None] = asyncio.Queue()  # nothing to send: the writer waits
    sender = BulkIngestSender(Stub(call), (), FeedCounters(), QUICK)  # type: ignore[arg-type]
    task = asyncio.create_task(sender.send_all(queue))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0)  # the stream's `finally` runs: it now awaits the writer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert call.cancelled


async def test_the_services_own_internal_error_is_a_failure_with_backoff() -> None:
    """Only gRPC's lost status ("Internal error from Core") is sent again at once."""

    class Internal(Call):
        async def write(self, request: pb.IngestPointsRequest) -> None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "db broke"
            )

        async def __anext__(self) -> pb.BulkIngestResponse:
            await asyncio.sleep(0.005)
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "db broke"
            )

    counters = FeedCounters()
    stub = EveryStream(Internal)
    sender = BulkIngestSender(stub, (), counters, QUICK)  # type: ignore[arg-type]
    queue = filled(asyncio.Queue())
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(sender.send_all(queue), 10)
    assert stub.streams == 3  # QUICK: two failures, the third fails the load
    assert counters.last_error == "BulkIngest: db broke"


class EndsEarly(Call):
    """A stream the service ends without a status (OK) before the client half-closed it: it
    answers nothing until the write `at_write`, then the first `answered` chunks, and ends;
    writing on the ended stream raises what gRPC's asyncio client raises."""

    def __init__(self, answered: int, at_write: int) -> None:
        super().__init__()
        self.answered, self.at_write = answered, at_write
        self.written: list[pb.IngestPointsRequest] = []

    async def write(self, request: pb.IngestPointsRequest) -> None:
        if len(self.written) == self.at_write:
            raise asyncio.InvalidStateError("RPC is already finished.")
        self.written.append(request)
        if len(self.written) == self.at_write:
            for answered in self.written[: self.answered]:
                await super().write(answered)
            self.responses.put_nowait(_END)


@pytest.mark.parametrize("answered", [0, 1, 2])
async def test_a_stream_the_service_ends_with_chunks_unanswered_sends_them_again(
    answered: int,
) -> None:
    """Three chunks written (window 8), the first `answered` answered, then the stream ends;
    the fourth is written on the ended stream. The others go again, in order. The load failed
    before (the writer's InvalidStateError), or waited forever for the answers."""
    first = EndsEarly(answered, 3)
    assert await run(first, filled(asyncio.Queue())) == [c.command_id for c in CHUNKS]


async def test_a_stream_the_service_ends_while_the_writer_waits_for_input_goes_on() -> None:
    """Nothing unanswered when the service ends the stream: the next chunks go on a new one.
    The writer wrote them on the ended stream before, and the load failed."""
    await lands_all_after_a_pause(EndsEarly(1, 1))  # the first stream ends in the pause


async def test_streams_the_service_ends_at_once_are_failures_not_a_loop() -> None:
    """Every stream ends before the sender wrote on it: a failure each, with backoff, until
    the failure limit (QUICK: two), not a new stream at once, round and round."""

    class AtOnce(Call):
        def __init__(self) -> None:
            super().__init__()
            self.responses.put_nowait(_END)

        async def write(self, request: pb.IngestPointsRequest) -> None:
            raise asyncio.InvalidStateError("RPC is already finished.")

    stub = EveryStream(AtOnce)
    sender = BulkIngestSender(stub, (), FeedCounters(), QUICK)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="ended the stream without answering"):
        await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 10)
    assert stub.streams == 3


async def test_streams_that_each_break_after_an_answer_go_on_past_the_failure_limit() -> None:
    """Each of the first three streams answers one chunk, then breaks (UNAVAILABLE): the load
    progresses, so each break is a first failure, and QUICK's limit of two in a row is never
    reached. Before, they counted as three in a row and the load failed with a chunk unsent."""
    service = ScriptedCommands(break_after=[1, 1, 1])
    acknowledged: list[str] = []
    async with scripted(service) as stub:
        sender = BulkIngestSender(
            stub, (), FeedCounters(), QUICK, lambda c, _: acknowledged.append(c.command_id)
        )
        await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 10)
    assert acknowledged == list(service.seen) == [c.command_id for c in CHUNKS]
    assert service.streams == 4
