"""BulkIngest streams that misbehave or go away, with the read-ahead (grpc_service._ReadAhead),
over real gRPC (in-process server, the real SQLite event store): what the client gets, what the
server keeps afterwards (tasks, errors nobody retrieved, memory), and the idle timeout. Each test
states what a client saw before the read-ahead too."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import qis_adapters.eventstore.sqlite as sqlite_module
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.application.commands import IngestPoints
from qis_command.application.handlers import CommandHandlers
from qis_command.entrypoints import grpc_service

from tests.integration.command_service_support import command_service
from tests.unit.adapters.test_edge_command_service import USER, _point

IDLE_S = 0.5
METHOD = "/qis.data.v1.CommandService/BulkIngest"


def chunk(i: int, points: int = 3) -> pb.IngestPointsRequest:
    first = 1_262_379_600 + i * 400 * 86_400  # 2010-01-01T21:00:00Z, 400 days per chunk
    return pb.IngestPointsRequest(
        command_id=f"chunk-{i}",
        series="series/PX",
        source="sources/bbg",
        points=[
            _point(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first + d * 86_400)))
            for d in range(points)
        ],
    )


@dataclass
class Served:
    stub: pb_grpc.CommandServiceAsyncStub
    channel: grpc.aio.Channel
    server: Any
    port: int
    loop_errors: list[dict[str, Any]]
    appending: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def raw_bulk(self) -> Any:
        """BulkIngest sending bytes as they are (undecodable ones included)."""
        return self.channel.stream_stream(
            METHOD, request_serializer=None, response_deserializer=pb.BulkIngestResponse.FromString
        )


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    hold_appends: bool = False,
    max_request_bytes: int = 4 * 1024 * 1024,
) -> AsyncIterator[Served]:
    """A command service; with `hold_appends`, each append of the store waits (on its worker)
    until `release` is set, having set `appending`: a chunk caught in its write."""
    append = SqliteEventStore._append_sync
    loop_thread = threading.get_ident()
    loop_errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    store = await SqliteEventStore.open(tmp_path / "events.db")
    served: Served | None = None

    def held(self: SqliteEventStore, *args: Any) -> Any:
        assert served is not None
        # Held on the loop, the append would stop the whole service, not catch one write.
        assert threading.get_ident() != loop_thread, "an append held on the loop"
        served.appending.set()
        served.release.wait(10)
        return append(self, *args)

    try:
        async with command_service(
            store, bulk_idle_timeout_s=IDLE_S, command_max_request_bytes=max_request_bytes
        ) as running:
            served = Served(
                running.stub, running.channel, running.server, running.port, loop_errors
            )
            if hold_appends:
                # A small append runs on the loop itself when the store has not written for
                # a while (eventstore/sqlite.py): every append goes to the worker instead.
                monkeypatch.setattr(sqlite_module, "_INLINE_APPEND_BYTES", -1)
                monkeypatch.setattr(SqliteEventStore, "_append_sync", held)
            try:
                yield served
            finally:
                served.release.set()
    finally:
        await _settle()
        loop.set_exception_handler(previous_handler)


async def _settle() -> None:
    """Lets cancelled tasks finish and unreachable ones be collected (and reported)."""
    for _ in range(5):
        await asyncio.sleep(0.05)
        gc.collect()


def read_ahead_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if "_ReadAhead" in getattr(t.get_coro(), "__qualname__", "") and not t.done()
    ]


def leaks(errors: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("message")) for e in errors]


async def wait_until(ready: Callable[[], bool], what: str) -> None:
    """Polls `ready` for up to 4 s (the thing waited for may happen on another thread)."""
    for _ in range(400):
        if ready():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def wait_for(event: threading.Event) -> None:
    await wait_until(event.is_set, "never set")


class Outbox:
    """A client's requests, sent when the test says so; None half-closes."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting = asyncio.Event()

    async def requests(self) -> AsyncIterator[Any]:
        while True:
            if self.queue.empty():
                self._waiting.set()
            item = await self.queue.get()
            self._waiting.clear()
            if item is None:
                return
            yield item

    async def written(self) -> None:
        """Until every queued request's write has completed. grpc.aio asks for the next
        request only once the last one is written, so an empty queue and the generator
        waiting on it mean no write is in flight. A stream the server ends while a client
        write is in flight can lose its status and answers in the asyncio client
        (grpc/grpc#36066): tests of a server ending a stream wait for this first."""
        await wait_until(
            lambda: self.queue.empty() and self._waiting.is_set(), "requests never written"
        )


# --- a client that goes away, or a server that does ---


@pytest.mark.parametrize("send_next", [True, False], ids=["next-read", "next-awaited"])
@pytest.mark.parametrize("how", ["cancel", "close-channel"])
async def test_a_client_gone_while_a_chunk_is_written_leaves_no_task_and_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, send_next: bool
) -> None:
    """Chunk 0 is caught in its write, chunk 1 was read ahead (or is awaited) when the client
    cancels or its connection closes: nothing is left running or unreported, the server serves
    on, and a resend of chunk 0 is answered once (committed or not, never half)."""
    async with serve(tmp_path, monkeypatch, hold_appends=True) as served:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{served.port}")
        stub: pb_grpc.CommandServiceAsyncStub = pb_grpc.CommandServiceStub(channel)
        outbox = Outbox()
        call = stub.BulkIngest(outbox.requests(), metadata=USER)
        await outbox.queue.put(chunk(0))
        await wait_for(served.appending)
        if send_next:
            await outbox.queue.put(chunk(1))
        await asyncio.sleep(0.1)  # chunk 1 read ahead, or awaited, while chunk 0 is written
        if how == "cancel":
            call.cancel()
        else:
            await channel.close()
        await asyncio.sleep(0.1)
        served.release.set()
        await _settle()
        assert read_ahead_tasks() == []
        assert leaks(served.loop_errors) == []
        if how == "cancel":
            await channel.close()
        again = await served.stub.IngestPoints(chunk(0), metadata=USER)
        assert again.accepted == 3
        twice = await served.stub.IngestPoints(chunk(0), metadata=USER)
        assert twice.duplicate
        assert await served.stub.IngestPoints(chunk(1), metadata=USER)  # never decided before
    assert leaks(served.loop_errors) == []


async def test_a_client_that_cancels_while_its_answer_is_sent_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many short streams cancelled at every moment (in a read, a write, an answer): no task,
    no "never retrieved" exception, no "destroyed but pending" task once they are collected."""
    async with serve(tmp_path, monkeypatch) as served:
        for i in range(40):
            outbox = Outbox()
            call = served.stub.BulkIngest(outbox.requests(), metadata=USER)
            for j in range(3):
                await outbox.queue.put(chunk(100 + 3 * i + j))
            await asyncio.sleep(0.002 * (i % 8))
            call.cancel()
        await _settle()
        assert read_ahead_tasks() == []
        assert leaks(served.loop_errors) == []
    assert leaks(served.loop_errors) == []


async def test_a_server_stopped_with_grace_ends_an_open_stream_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream answered and waiting for its next chunk (read ahead, pending) when the server
    stops with a grace: the stream ends (not hangs), its answered chunk is kept, nothing is
    left running or unreported."""
    async with serve(tmp_path, monkeypatch) as served:
        outbox = Outbox()
        call = served.stub.BulkIngest(outbox.requests(), metadata=USER)
        await outbox.queue.put(chunk(0))
        first = await call.read()
        assert isinstance(first, pb.BulkIngestResponse)
        assert first.result.accepted == 3
        await served.server.stop(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 5)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE  # as before
        await _settle()
        assert read_ahead_tasks() == []
        assert leaks(served.loop_errors) == []


# --- a client that sends what it must not ---


async def test_undecodable_bytes_after_a_chunk_in_its_write_answer_it_then_invalid_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The garbage is read ahead while chunk 0 is written: chunk 0 is still answered (and
    committed), then the stream ends INVALID_ARGUMENT; what followed the garbage is not decided."""
    async with serve(tmp_path, monkeypatch, hold_appends=True) as served:
        outbox = Outbox()
        call = served.raw_bulk()(outbox.requests(), metadata=USER)
        await outbox.queue.put(chunk(0).SerializeToString())
        await wait_for(served.appending)
        await outbox.queue.put(b"\xff\xff\xff\xff not a protobuf")
        await outbox.queue.put(chunk(2).SerializeToString())
        await outbox.written()  # read ahead while chunk 0 is written
        served.release.set()
        first = await call.read()
        assert isinstance(first, pb.BulkIngestResponse), first
        assert first.result.accepted == 3
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await _settle()
        assert read_ahead_tasks() == []
        assert leaks(served.loop_errors) == []
        assert (await served.stub.IngestPoints(chunk(0), metadata=USER)).duplicate
        assert not (await served.stub.IngestPoints(chunk(2), metadata=USER)).duplicate


LIMIT = 64_000
OVER_LIMIT_POINTS = 3_000  # a chunk of 69 kB: over LIMIT, within gRPC's own (twice LIMIT)


def refusal_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a refused call."""
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details), status
    return str(info.reason)


def assert_refused_as_too_large(error: grpc.aio.AioRpcError) -> None:
    """RESOURCE_EXHAUSTED naming the limit and the setting that sets it."""
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "64,000 bytes (QIS_COMMAND_MAX_REQUEST_BYTES)" in (error.details() or "")
    assert refusal_reason(error) == "REQUEST_TOO_LARGE"


@pytest.mark.parametrize("in_its_write", [True, False], ids=["read-ahead", "after-answer"])
async def test_a_chunk_over_the_size_limit_answers_the_ones_before_then_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_its_write: bool
) -> None:
    """The oversized chunk arrives while chunk 0 is written (read ahead), or after its answer:
    chunk 0 is answered, then the stream ends at once RESOURCE_EXHAUSTED naming the limit and
    its setting; nothing of the oversized chunk is stored. Before, gRPC refused the chunk
    itself: read ahead, the call failed with chunk 0 unanswered (though committed), and the
    message named neither the setting nor what to do."""
    oversized = chunk(1, points=OVER_LIMIT_POINTS)
    assert LIMIT < oversized.ByteSize() < 2 * LIMIT
    async with serve(
        tmp_path, monkeypatch, hold_appends=in_its_write, max_request_bytes=LIMIT
    ) as served:
        outbox = Outbox()
        call = served.stub.BulkIngest(outbox.requests(), metadata=USER)
        await outbox.queue.put(chunk(0))
        if in_its_write:
            await wait_for(served.appending)
            await outbox.queue.put(oversized)
            await outbox.written()  # read ahead while chunk 0 is written
            served.release.set()
        first = await call.read()
        assert isinstance(first, pb.BulkIngestResponse), first
        assert first.result.accepted == 3
        if not in_its_write:
            await outbox.queue.put(oversized)
            await outbox.written()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
        assert_refused_as_too_large(ended.value)  # at once: not the idle timeout's status
        await _settle()
        assert read_ahead_tasks() == []
        assert leaks(served.loop_errors) == []
        assert (await served.stub.IngestPoints(chunk(0), metadata=USER)).duplicate
        assert not (await served.stub.IngestPoints(chunk(1), metadata=USER)).duplicate


async def test_an_ingest_points_request_over_the_size_limit_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unary too (before: gRPC's "Received message larger than max", no setting named); and
    beyond gRPC's own limit, twice the service's, gRPC still refuses it unread. The service
    serves on."""
    async with serve(tmp_path, monkeypatch, max_request_bytes=LIMIT) as served:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.stub.IngestPoints(chunk(1, points=OVER_LIMIT_POINTS), metadata=USER)
        assert_refused_as_too_large(refused.value)
        far_over = chunk(1, points=3 * OVER_LIMIT_POINTS)
        assert far_over.ByteSize() > 2 * LIMIT
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.stub.IngestPoints(far_over, metadata=USER)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (refused.value.details() or "")
        assert not (await served.stub.IngestPoints(chunk(1), metadata=USER)).duplicate


async def test_half_close_after_every_kind_of_chunk_answers_each_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edges of the read-ahead: no chunk at all, one chunk, and a command id sent twice in a
    row (the second is made before the first is committed: still answered a duplicate)."""
    async with serve(tmp_path, monkeypatch) as served:
        assert [a async for a in served.stub.BulkIngest(iter([]), metadata=USER)] == []
        [one] = [a async for a in served.stub.BulkIngest(iter([chunk(0)]), metadata=USER)]
        assert one.result.accepted == 3
        same = [chunk(1), chunk(1), chunk(2)]
        answers = [a async for a in served.stub.BulkIngest(iter(same), metadata=USER)]
        assert [a.command_id for a in answers] == ["chunk-1", "chunk-1", "chunk-2"]
        assert [a.result.duplicate for a in answers] == [False, True, False]
        assert answers[1].result.commit_position == answers[0].result.commit_position


async def test_many_chunks_with_uneven_writes_are_each_decided_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decided: list[str] = []
    ingest = CommandHandlers.ingest

    async def counted(self: CommandHandlers, command: Any, ctx: Any, **kwargs: Any) -> Any:
        decided.append(ctx.command_id)
        await asyncio.sleep(random.random() * 0.01)  # some decisions overtake a read, some not
        return await ingest(self, command, ctx, **kwargs)

    monkeypatch.setattr(CommandHandlers, "ingest", counted)
    random.seed(7)
    requests = [chunk(i) for i in range(30)]
    requests[7].points[0].value.price.value = "not a number"  # refused in its turn
    async with serve(tmp_path, monkeypatch) as served:
        answers = [a async for a in served.stub.BulkIngest(iter(requests), metadata=USER)]
    assert [a.command_id for a in answers] == [r.command_id for r in requests]
    assert [a.WhichOneof("outcome") for a in answers].count("error") == 1
    assert answers[7].HasField("error")
    assert decided == [r.command_id for i, r in enumerate(requests) if i != 7]


# --- the idle timeout ---


async def test_a_chunk_sent_at_once_but_slow_to_make_is_not_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making a chunk (the server's own work, on a busy loop) longer than the idle timeout:
    the client sent it at once and is not "idle"; before, making it was outside the timeout."""
    ingest_command = grpc_service.ingest_command

    def slow(request: pb.IngestPointsRequest, v: list[Any]) -> Any:
        time.sleep(IDLE_S * 1.6)
        return ingest_command(request, v)

    monkeypatch.setattr(grpc_service, "ingest_command", slow)
    async with serve(tmp_path, monkeypatch) as served:
        answers = [
            a async for a in served.stub.BulkIngest(iter([chunk(0), chunk(1)]), metadata=USER)
        ]
        assert [a.result.accepted for a in answers] == [3, 3]


async def test_a_stream_idle_in_mid_read_ahead_ends_with_its_chunks_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 0 answered, the client silent: DEADLINE_EXCEEDED after the idle timeout (not
    sooner, not never), with the read-ahead gone and chunk 0 committed."""
    async with serve(tmp_path, monkeypatch) as served:
        outbox = Outbox()
        call = served.stub.BulkIngest(outbox.requests(), metadata=USER)
        await outbox.queue.put(chunk(0))
        first = await call.read()
        answered = time.monotonic()
        assert isinstance(first, pb.BulkIngestResponse)
        assert first.result.accepted == 3
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 10)
        waited = time.monotonic() - answered
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert IDLE_S * 0.8 <= waited < IDLE_S * 6, waited
        await _settle()
        assert read_ahead_tasks() == []
        assert leaks(served.loop_errors) == []
        assert (await served.stub.IngestPoints(chunk(0), metadata=USER)).duplicate


# --- what an open stream holds ---


async def test_an_idle_stream_holds_no_command_of_the_chunk_it_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a chunk is answered, a stream waiting for its next chunk (up to the idle timeout,
    60 s by default; many streams may wait at once) holds that chunk's command no longer: its
    points as Python objects are several times the request's size."""
    async with serve(tmp_path, monkeypatch) as served:
        outbox = Outbox()
        call = served.stub.BulkIngest(outbox.requests(), metadata=USER)
        await outbox.queue.put(chunk(0, points=2_000))
        answer = await call.read()
        assert isinstance(answer, pb.BulkIngestResponse)
        assert answer.result.accepted == 2_000
        await asyncio.sleep(0.1)  # waiting for chunk 1, which the client has not sent
        gc.collect()
        # This stream's command only: other tests of the process may keep theirs.
        held = [
            o
            for o in gc.get_objects()
            if isinstance(o, IngestPoints) and o.series_id == "PX" and len(o.points) == 2_000
        ]
        await outbox.queue.put(None)
        assert held == []
