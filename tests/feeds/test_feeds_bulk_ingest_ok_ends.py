"""The feeds' BulkIngest sender and streams the service ends without a status (OK) before the
sender half-closed them: the end of the input taken as such a stream ends, and such ends over
real gRPC with windows of 1 and 8, with nothing or some answered, several in a row, and with
RetryInfo refusals: every chunk lands once, in order, with the right counts."""

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
from tests.feeds.test_feeds_bulk_ingest_breaks import _END, CHUNKS, Call, Input, Stub, filled
from tests.integration.test_feeds_sender_size_limit import QUICK


class EndsOk(Call):
    """A stream the service ends without a status (OK) when `breaks` is called."""

    def breaks(self) -> None:
        self.responses.put_nowait(_END)


async def test_a_stream_ended_as_the_writer_takes_the_inputs_end_ends_the_load() -> None:
    """Every chunk answered; the service ends the stream as the writer takes the end of the
    input: the writer, stopped, keeps that end (`_keep`), so the load is done, without waiting
    for a chunk that never comes (send_all's idle branch, guarded by `_input_done`)."""
    first = EndsOk()
    queue = Input(first, None)
    filled(queue)
    counters = FeedCounters()
    acknowledged: list[str] = []
    stub = Stub(first)
    sender = BulkIngestSender(
        stub,  # type: ignore[arg-type]
        (),
        counters,
        QUICK,
        lambda chunk, _: acknowledged.append(chunk.command_id),
    )
    await asyncio.wait_for(sender.send_all(queue), 5)
    assert acknowledged == [c.command_id for c in CHUNKS]
    assert stub.opened == 1
    assert counters.retried == 0
    assert not counters.last_error


@pytest.mark.parametrize("window", [1, 8])
@pytest.mark.parametrize(
    ("break_after", "retry_once"),
    [
        ([0], set()),
        ([1], set()),
        ([2], set()),
        ([0, 0], set()),
        ([3, 1], set()),
        ([2], {1}),
        ([1, 1], {0}),
    ],
)
async def test_over_grpc_ends_without_a_status_land_every_chunk_once_in_order(
    window: int, break_after: list[int], retry_once: set[int]
) -> None:
    service = ScriptedCommands(
        break_after=break_after, break_with_ok=True, retry_once=set(retry_once)
    )
    counters = FeedCounters()
    acknowledged: list[str] = []
    async with scripted(service) as stub:
        sender = BulkIngestSender(
            stub,
            (),
            counters,
            dataclasses.replace(QUICK, window=window),
            lambda c, _: acknowledged.append(c.command_id),
        )
        queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
        await asyncio.wait_for(sender.send_all(filled(queue)), 10)
    expected = [c.command_id for c in CHUNKS]
    assert acknowledged == list(service.seen) == expected
    assert counters.chunks == len(CHUNKS)
    assert counters.accepted == counters.sent == sum(len(c.points) for c in CHUNKS)
    assert counters.duplicates == 0
    assert counters.rejected == 0


async def test_a_writer_failing_on_its_own_ends_the_load_with_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chunk that cannot be encoded (a bug) while others are in flight: the load ends with
    that error. The reader waited forever for answers to the chunks written before."""
    encode = bulk_ingest.encode

    def failing(chunk: Chunk) -> pb.IngestPointsRequest:
        if chunk is CHUNKS[2]:
            raise RuntimeError("cannot encode")
        return encode(chunk)

    monkeypatch.setattr(bulk_ingest, "encode", failing)
    service = ScriptedCommands(delay_s=0.05)  # the first chunks are in flight meanwhile
    async with scripted(service) as stub:
        sender = BulkIngestSender(stub, (), FeedCounters(), QUICK)
        with pytest.raises(RuntimeError, match="cannot encode"):
            await asyncio.wait_for(sender.send_all(filled(asyncio.Queue())), 10)
