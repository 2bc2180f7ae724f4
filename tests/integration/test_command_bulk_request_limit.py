"""The command service's request size limit, checked on the raw bytes in the
identity wrapper (identity.RequestLimit), at its edges: exactly at the limit, the first chunk of
a stream, chunks sent behind the oversized one, a caller without an identity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as pb

from tests.integration.test_command_bulk_streams import (
    LIMIT,
    OVER_LIMIT_POINTS,
    assert_refused_as_too_large,
    chunk,
    serve,
)
from tests.support.blocking_streams import first_answer, path_of
from tests.unit.adapters.test_edge_command_service import USER


@pytest.mark.parametrize("slack", [0, -1], ids=["at-the-limit", "one-byte-over"])
async def test_a_request_of_exactly_the_limit_is_taken_and_one_byte_more_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: int
) -> None:
    request = chunk(1, points=1_000)
    size = request.ByteSize()
    async with serve(tmp_path, monkeypatch, max_request_bytes=size + slack) as served:
        if slack == 0:
            assert (await served.stub.IngestPoints(request, metadata=USER)).accepted == 1_000
            return
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.stub.IngestPoints(request, metadata=USER)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"a request of {size:,} bytes" in (refused.value.details() or "")


async def test_a_first_chunk_over_the_limit_ends_the_stream_storing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(tmp_path, monkeypatch, max_request_bytes=LIMIT) as served:
        call = served.stub.BulkIngest(
            iter([chunk(1, points=OVER_LIMIT_POINTS), chunk(2)]), metadata=USER
        )
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
        assert_refused_as_too_large(ended.value)
        # Neither the oversized chunk nor the one behind it was applied.
        assert not (await served.stub.IngestPoints(chunk(1), metadata=USER)).duplicate
        assert not (await served.stub.IngestPoints(chunk(2), metadata=USER)).duplicate


async def test_chunks_sent_behind_the_oversized_one_are_not_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipelining client (the feeds' window) has chunks on the wire behind the oversized one:
    the stream answers chunk 0 and ends; chunks 2 and 3 are not applied (a sender that resends
    everything unanswered must not meet them as duplicates of something it never saw)."""
    async with serve(tmp_path, monkeypatch, max_request_bytes=LIMIT) as served:
        requests = [chunk(0), chunk(1, points=OVER_LIMIT_POINTS), chunk(2), chunk(3)]
        call = served.stub.BulkIngest(iter(requests), metadata=USER)
        first = await asyncio.wait_for(call.read(), 5)
        assert isinstance(first, pb.BulkIngestResponse)
        assert first.command_id == "chunk-0"
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 5)
        assert_refused_as_too_large(ended.value)
        for later in (2, 3):
            assert not (await served.stub.IngestPoints(chunk(later), metadata=USER)).duplicate


async def test_a_caller_without_an_identity_is_unauthenticated_whatever_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Identity first: an anonymous caller learns nothing of the service's limit."""
    async with serve(tmp_path, monkeypatch, max_request_bytes=LIMIT) as served:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.stub.IngestPoints(chunk(1, points=OVER_LIMIT_POINTS))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The blocking client: the asyncio one would lose this status to its write in flight.
        ended = await first_answer(
            f"127.0.0.1:{served.port}",
            path_of(pb.DESCRIPTOR.services_by_name["CommandService"], "BulkIngest"),
            chunk(1, points=OVER_LIMIT_POINTS),
            pb.BulkIngestResponse,
            (),
            wait_s=30,
        )
        assert ended.code == grpc.StatusCode.UNAUTHENTICATED
