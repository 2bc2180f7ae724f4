"""The feeds' BulkIngest sender's failure row (max_stream_failures, backoff): a broken stream
that answered a chunk (progress: a result or a refusal for good) starts the row again; one that
answered nothing, or could not be opened, counts on."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import status_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis_feeds.adapters.bulk_ingest import BulkIngestSender
from qis_feeds.application.counters import FeedCounters

from tests.feeds.feeds_support import ScriptedCommands, scripted
from tests.feeds.test_feeds_bulk_ingest_breaks import CHUNKS, Call, filled
from tests.integration.test_feeds_sender_size_limit import QUICK


async def test_the_failure_row_restarts_only_after_a_stream_that_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Streams answering 1, 0, 1, 0, 0 chunks before breaking: failures 1, 2, then 1 again,
    2, 3: past QUICK's limit of two at the fifth stream, a chunk unsent. (The fake calls break
    with UNAVAILABLE every time; over gRPC a break may come as the lost status, which is sent
    again at once and counts no failure.)"""
    rows: list[int] = []
    backoff = BulkIngestSender._backoff

    def spy(self: BulkIngestSender, failures: int) -> float:
        rows.append(failures)
        return backoff(self, failures)

    class Scripted:
        """Stream n breaks at its write answers[n] + 1, having answered the writes before."""

        answers = (1, 0, 1, 0, 0)
        opened = 0

        def BulkIngest(self, metadata: Any) -> Call:
            self.opened += 1
            return Call(hang_at=self.answers[self.opened - 1] + 1)

    monkeypatch.setattr(BulkIngestSender, "_backoff", spy)
    acknowledged: list[str] = []
    stub = Scripted()
    sender = BulkIngestSender(
        stub,  # type: ignore[arg-type]
        (),
        FeedCounters(),
        QUICK,
        lambda chunk, _: acknowledged.append(chunk.command_id),
    )
    with pytest.raises(grpc.aio.AioRpcError, match="gone"):
        await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 10)
    assert rows == [1, 2, 1, 2]
    assert stub.opened == 5
    assert acknowledged == [c.command_id for c in CHUNKS[:2]]


async def test_a_stream_that_cannot_be_opened_is_not_the_last_ones_progress() -> None:
    """The first stream answers a chunk, then breaks; every later BulkIngest() fails as it is
    opened. Those are broken streams with no answer: the load must end at QUICK's limit of
    two. On fad8e41 the first stream's answer was read again for each of them, each was a
    first failure again, and the load never ended."""

    class Stub:
        opened = 0

        def BulkIngest(self, metadata: Any) -> Call:
            self.opened += 1
            if self.opened == 1:
                return Call(hang_at=2)  # answers the first chunk, breaks on the second
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "no route"
            )

    stub = Stub()
    sender = BulkIngestSender(stub, (), FeedCounters(), QUICK)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError, match="no route"):
        await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 5)
    assert stub.opened == 3  # failures 1 (the first stream), 2, then 3: past the limit


async def test_streams_answering_only_refusals_progress_too() -> None:
    """A refusal for good (no rows named, no stop_on_refusal) is an answer: the chunk is done
    (dropped, counted), so a stream that answered one before breaking is progress too."""

    class Refusing(ScriptedCommands):
        async def BulkIngest(self, request_iterator: Any, context: Any) -> Any:
            stream = self.streams
            self.streams += 1
            async for chunk in request_iterator:
                if stream < 3 and len(self.arrivals) > stream:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted: stream broken")
                self.arrivals.append(chunk.command_id)
                yield cmd.BulkIngestResponse(
                    command_id=chunk.command_id,
                    error=status_pb2.Status(
                        code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="no"
                    ),
                )

    service = Refusing()
    counters = FeedCounters()
    async with scripted(service) as stub:
        sender = BulkIngestSender(stub, (), counters, QUICK)
        await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 10)
    assert service.arrivals == [c.command_id for c in CHUNKS]
    assert counters.rejected == sum(len(c.points) for c in CHUNKS)
    assert service.streams == 4
