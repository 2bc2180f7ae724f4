"""Backpressure: a subscriber that stops reading during a large ingest is disconnected with
RESOURCE_EXHAUSTED and the query process's memory stays flat; it resumes without a gap. A
subscriber that keeps reading through the same ingest is not disconnected."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import grpc.aio
import pytest
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.e2e.harness import (
    QUERY,
    US,
    Cluster,
    MakeCluster,
    as_user,
    bulk_ingest,
    micros,
    price_series,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

POINTS = 200_000
CHUNK = 1_000
STALL_S = 2.0
RSS_CEILING_MIB = 400
BASE = 1_730_000_000 * US - (1_730_000_000 * US) % (3600 * US)


async def sample_rss(cluster: Cluster, name: str, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(cluster.rss_kib(name))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def test_stalled_subscriber_is_cut_off_and_memory_stays_bounded(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(
        {"QIS_SUBSCRIBE_STALL_TIMEOUT_S": str(STALL_S), "QIS_QUERY_MAX_WAIT_S": "30"}
    )
    series_id, source = unique("flood"), unique("src")
    name = f"series/{series_id}"
    items = [(BASE + i * US, f"{100 + i % 997}.{i % 89:02d}") for i in range(POINTS)]
    expected = list(items)
    md = as_user("subscriber")

    async with cluster.clients() as c:
        defined = await setup_series(
            c, series_id, price_series([(source, 1)], series_pb2.FREQUENCY_SECOND)
        )
        samples: list[int] = []
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(cluster, QUERY, samples, stop_sampling))
        await asyncio.sleep(0.2)
        baseline_kib = min(samples)

        # The stalled subscriber: the call is open, nobody reads it.
        stalled = c.query.Subscribe(
            q.SubscribeRequest(series=[name], after_position=defined), metadata=md
        )

        # A healthy subscriber on the same feed keeps up and is never cut off.
        healthy_seen = 0

        async def healthy() -> None:
            nonlocal healthy_seen
            call = c.query.Subscribe(
                q.SubscribeRequest(series=[name], after_position=defined), metadata=md
            )
            try:
                async for reply in call:
                    healthy_seen += len(reply.values)
                    if healthy_seen >= POINTS:
                        return
            finally:
                call.cancel()

        reader = asyncio.create_task(healthy())
        started = time.monotonic()
        acks = await bulk_ingest(c, series_id, source, items, chunk=CHUNK)
        ingest_s = time.monotonic() - started
        assert len(acks) == POINTS // CHUNK
        assert all(a.WhichOneof("outcome") == "result" for a in acks)
        last = acks[-1].result.commit_position
        await asyncio.wait_for(reader, 60)
        assert healthy_seen == POINTS

        # Only now does the stalled client look: what was in flight, then RESOURCE_EXHAUSTED.
        buffered: list[q.OfficialValue] = []
        tokens: list[str] = []

        async def drain() -> None:
            async for reply in stalled:
                buffered.extend(reply.values)
                tokens.append(reply.resume_token)

        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await asyncio.wait_for(drain(), 30)
        assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "resume" in (cut.value.details() or "")
        # What it got is what HTTP/2 flow control let through before the server's write blocked
        # (a few MB), not the whole feed: the server stopped sending instead of queueing.
        assert len(buffered) < POINTS // 2, "the server kept sending to a stalled client"

        stop_sampling.set()
        await sampler
        peak_kib = max(samples)
        print(
            f"\ningest {POINTS} points in {ingest_s:.1f} s ({POINTS / ingest_s:.0f}/s);"
            f" stalled client got {len(buffered)} values before RESOURCE_EXHAUSTED;"
            f" query RSS baseline {baseline_kib / 1024:.0f} MiB, peak {peak_kib / 1024:.0f} MiB"
            f" ({len(samples)} samples)"
        )
        assert peak_kib < RSS_CEILING_MIB * 1024
        assert peak_kib - baseline_kib < 200 * 1024

        # It resumes from its last token and gets the rest, with no gap.
        resumed: list[q.OfficialValue] = []
        request = q.SubscribeRequest(series=[name])
        if tokens:
            request.resume_token = tokens[-1]
        else:
            request.after_position = defined
        call = c.query.Subscribe(request, metadata=md)
        try:
            while len(buffered) + len(resumed) < POINTS:
                message = await asyncio.wait_for(call.read(), 10)
                assert isinstance(message, q.SubscribeResponse)
                resumed.extend(message.values)
        finally:
            call.cancel()
        union = [(micros(v.snap_time), v.value.price.value) for v in buffered + resumed]
        assert list(dict.fromkeys(union)) == expected
        assert acks[-2].result.commit_position < resumed[-1].record_position <= last
