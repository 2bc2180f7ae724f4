"""The feeds' BulkIngest sender when its writer fails on its own (a bug: a chunk that cannot be
encoded): over real gRPC the load ends with the writer's error wherever it fails; a real
cancellation that lands as the writer fails stays a cancellation; a writer's own failure that
meets another end of the stream (a status) still ends the load with it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from qis.data.v1 import command_service_pb2 as pb
from qis_feeds.adapters import bulk_ingest
from qis_feeds.adapters.bulk_ingest import BulkIngestSender
from qis_feeds.application.batching import Chunk
from qis_feeds.application.counters import FeedCounters

from tests.feeds.feeds_support import ScriptedCommands, scripted
from tests.feeds.test_feeds_bulk_ingest_breaks import CHUNKS, Call, Stub, filled
from tests.integration.test_feeds_sender_size_limit import QUICK


def failing_at(monkeypatch: pytest.MonkeyPatch, at: int, times: int = 1_000) -> None:
    """The sender's `encode` raises for CHUNKS[at], `times` times at most."""
    encode = bulk_ingest.encode
    left = [times]

    def failing(chunk: Chunk) -> pb.IngestPointsRequest:
        if chunk is CHUNKS[at] and left[0] > 0:
            left[0] -= 1
            raise RuntimeError("cannot encode")
        return encode(chunk)

    monkeypatch.setattr(bulk_ingest, "encode", failing)


@pytest.mark.parametrize("window", [1, 8])
@pytest.mark.parametrize("at", [0, 1, 3])
@pytest.mark.parametrize("delay_s", [0.0, 0.05])
async def test_over_grpc_a_writer_failing_anywhere_ends_the_load_with_its_error(
    monkeypatch: pytest.MonkeyPatch, window: int, at: int, delay_s: float
) -> None:
    """Also the first chunk, before the call is even prepared (grpc.aio cancels
    `_preparation`, whose task swallows the cancellation): RuntimeError, no hang, no
    CancelledError or gRPC error in its place."""
    failing_at(monkeypatch, at)
    service = ScriptedCommands(delay_s=delay_s)
    async with scripted(service) as stub:
        sender = BulkIngestSender(
            stub, (), FeedCounters(), dataclasses.replace(QUICK, window=window)
        )
        with pytest.raises(RuntimeError, match="cannot encode"):
            await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 10)


async def test_over_grpc_a_load_cancelled_as_its_writer_fails_is_still_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shutdown (task.cancel()) in the same loop turn as the writer's own failure: the load is
    cancelled, not ended with the writer's RuntimeError (a caller awaiting the cancelled task,
    asyncio.timeout, wait_for or a TaskGroup would see RuntimeError). Fails on 042f148."""
    encode = bulk_ingest.encode
    task: asyncio.Task[None] | None = None

    def failing(chunk: Chunk) -> pb.IngestPointsRequest:
        if chunk is CHUNKS[1]:
            assert task is not None
            asyncio.get_running_loop().call_soon(task.cancel)
            raise RuntimeError("cannot encode")
        return encode(chunk)

    monkeypatch.setattr(bulk_ingest, "encode", failing)
    async with scripted(ScriptedCommands(delay_s=0.05)) as stub:
        sender = BulkIngestSender(stub, (), FeedCounters(), QUICK)
        task = asyncio.create_task(sender.send_all(filled(asyncio.Queue())))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


class EndsAsItFails(Call):
    """A call whose end (a status) is already there when the writer fails on its own: its
    cancel is a no-op (grpc.aio's on a done call) and the reader takes the status."""

    def cancel(self) -> bool:
        self.breaks()
        return super().cancel()


async def test_a_writer_failing_on_its_own_as_the_stream_ends_otherwise_ends_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer fails on its own (once) as the stream ends with a status (UNAVAILABLE): the
    load ends with the writer's error. On 042f148 the stream was sent again and the error
    left no trace (not raised, not logged, not in last_error)."""
    failing_at(monkeypatch, 1, times=1)
    sender = BulkIngestSender(Stub(EndsAsItFails()), (), FeedCounters(), QUICK)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="cannot encode"):
        await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 10)
