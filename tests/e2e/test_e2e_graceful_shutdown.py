"""SIGTERM on the command service during a BulkIngest: health goes NOT_SERVING at once, the chunks
in flight are still committed and acknowledged, and the process exits 0 within its grace; a
client re-sending after the restart gets duplicates for what was committed. SIGTERM on the query
service: subscribers are told UNAVAILABLE and resume on the restarted service without a gap."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.e2e.harness import (
    COMMAND,
    QUERY,
    US,
    MakeCluster,
    as_user,
    bulk_ingest,
    ingest_request,
    micros,
    price_series,
    query_all,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

GRACE_S = 8.0
CHUNK = 2_000
# Chunks acknowledged before SIGTERM, chunks sent but not yet acked: enough of the latter that
# the command service is still at them when the signal comes (it decides 2,000-point chunks in a
# few ms each: 6 of them were all committed before a slow test process sent the signal).
BEFORE, IN_FLIGHT = 3, 24
BASE = 1_720_000_000 * US


def chunk_items(i: int) -> list[tuple[int, str]]:
    return [(BASE + (i * CHUNK + k) * US, f"{i}.{k:04d}") for k in range(CHUNK)]


async def test_sigterm_drains_bulk_ingest(make_cluster: MakeCluster) -> None:
    # A read at the last acknowledged position waits for the projector to reach it: the 54,000
    # points take it more than the default 2 s on a loaded machine (seen under pytest-xdist).
    cluster = make_cluster({"QIS_SHUTDOWN_GRACE_S": str(GRACE_S), "QIS_QUERY_MAX_WAIT_S": "30"})
    series_id, source = unique("drain"), unique("src")
    service = "qis.data.v1.CommandService"
    async with cluster.clients() as c, cluster.channel(COMMAND) as health_channel:
        await setup_series(c, series_id, price_series([(source, 1)], series_pb2.FREQUENCY_SECOND))
        watch = health_pb2_grpc.HealthStub(health_channel).Watch(
            health_pb2.HealthCheckRequest(service=service)
        )
        first = await asyncio.wait_for(watch.read(), 5)
        assert isinstance(first, health_pb2.HealthCheckResponse)
        assert first.status == health_pb2.HealthCheckResponse.SERVING

        prefix = unique("chunk")
        call = c.command.BulkIngest(metadata=as_user("loader"))
        acks: list[cmd.BulkIngestResponse] = []

        async def ack() -> cmd.BulkIngestResponse:
            reply = await asyncio.wait_for(call.read(), GRACE_S)
            assert isinstance(reply, cmd.BulkIngestResponse), reply
            acks.append(reply)
            return reply

        for i in range(BEFORE):
            await call.write(ingest_request(f"{prefix}-{i}", series_id, source, chunk_items(i)))
            await ack()
        for i in range(BEFORE, BEFORE + IN_FLIGHT):
            await call.write(ingest_request(f"{prefix}-{i}", series_id, source, chunk_items(i)))

        pid = cluster.pid(COMMAND)
        signalled, signalled_wall_us = time.monotonic(), time.time_ns() // 1000
        cluster.signal(COMMAND, signal.SIGTERM)

        # Health says NOT_SERVING right away, while the stream is still open.
        change = await asyncio.wait_for(watch.read(), 3)
        assert isinstance(change, health_pb2.HealthCheckResponse)
        assert change.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert time.monotonic() - signalled < 2

        # New calls are refused while draining...
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await c.command.IngestPoints(
                ingest_request(unique("late"), series_id, source, chunk_items(99)),
                metadata=as_user("loader"),
                timeout=3,
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        # ...but every chunk already sent is acknowledged with its commit.
        while len(acks) < BEFORE + IN_FLIGHT:
            await ack()
        await call.done_writing()
        assert await asyncio.wait_for(call.read(), GRACE_S) is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert [a.command_id for a in acks] == [f"{prefix}-{i}" for i in range(BEFORE + IN_FLIGHT)]
        assert all(a.WhichOneof("outcome") == "result" for a in acks), acks
        assert all(a.result.accepted == CHUNK for a in acks)
        positions = [a.result.commit_position for a in acks]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)

        # The process exits 0 well within its grace period once no call is left open (a health
        # Watch is a call too: it would hold the drain for the whole grace period).
        watch.cancel()
        popen = cluster.processes[COMMAND].popen
        assert popen is not None
        assert popen.pid == pid
        code = await asyncio.to_thread(popen.wait, GRACE_S + 5)
        exited_after = time.monotonic() - signalled
        assert code == 0, cluster.log_tail(COMMAND)
        assert exited_after < GRACE_S, exited_after
        print(f"\ncommand service exited 0, {exited_after:.2f} s after SIGTERM")

        # Everything acknowledged is committed: the projector and query service still serve it.
        stored = await query_all(c, series_id, min_position=positions[-1])
        expected = [item for i in range(BEFORE + IN_FLIGHT) for item in chunk_items(i)]
        assert [(micros(v.snap_time), v.value.price.value) for v in stored] == expected
        # The last chunk was really in flight: it was committed after SIGTERM.
        assert micros(stored[-1].record_time) > signalled_wall_us

    # A client resuming after the restart re-sends from its first chunk: what was committed is
    # recognised by its chunk id (the domain remembers it, not the process) and only the rest
    # is written.
    cluster.start(COMMAND)
    total = BEFORE + IN_FLIGHT + 2
    async with cluster.clients() as c:
        replay = await bulk_ingest(
            c,
            series_id,
            source,
            [p for i in range(total) for p in chunk_items(i)],
            chunk=CHUNK,
            prefix=prefix,
        )
        assert [a.command_id for a in replay] == [f"{prefix}-{i}" for i in range(total)]
        outcomes = [(a.result.duplicate, a.result.commit_position) for a in replay]
        assert outcomes[: len(positions)] == [(True, p) for p in positions]
        assert all(not dup and p > positions[-1] for dup, p in outcomes[len(positions) :])
        stored = await query_all(c, series_id, min_position=outcomes[-1][1])
        assert len(stored) == total * CHUNK


async def test_sigterm_on_query_service_lets_subscribers_resume_elsewhere(
    make_cluster: MakeCluster,
) -> None:
    """A live subscriber is told UNAVAILABLE (retryable) when the query service drains, and
    resumes from its last token on the restarted service without a gap or a duplicate."""
    grace_s = 2.0
    cluster = make_cluster({"QIS_SHUTDOWN_GRACE_S": str(grace_s)})
    series_id, source = unique("resume"), unique("src")
    name = f"series/{series_id}"
    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(source, 1)], series_pb2.FREQUENCY_SECOND))
        before = await bulk_ingest(c, series_id, source, chunk_items(0), chunk=500)
        # min_position: the series was just defined, the read model may not know it yet.
        call = c.query.Subscribe(
            q.SubscribeRequest(
                series=[name], after_position=0, min_position=before[-1].result.commit_position
            ),
            metadata=as_user("sub"),
        )
        seen: list[tuple[int, str]] = []
        token = ""
        while len(seen) < CHUNK:
            reply = await asyncio.wait_for(call.read(), 10)
            assert isinstance(reply, q.SubscribeResponse)
            seen += [(micros(v.snap_time), v.value.price.value) for v in reply.values]
            token = reply.resume_token
        assert before[-1].result.commit_position > 0

        signalled = time.monotonic()
        cluster.signal(QUERY, signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as drained:
            await asyncio.wait_for(call.read(), grace_s + 3)
        assert drained.value.code() == grpc.StatusCode.UNAVAILABLE
        popen = cluster.processes[QUERY].popen
        assert popen is not None
        assert await asyncio.to_thread(popen.wait, grace_s + 5) == 0
        assert time.monotonic() - signalled < grace_s + 2

        # Writes go on while the query service is away.
        await bulk_ingest(c, series_id, source, chunk_items(1), chunk=500)
    cluster.start(QUERY)
    async with cluster.clients() as c:
        resumed = c.query.Subscribe(
            q.SubscribeRequest(series=[name], resume_token=token), metadata=as_user("sub")
        )
        try:
            while len(seen) < 2 * CHUNK:
                reply = await asyncio.wait_for(resumed.read(), 10)
                assert isinstance(reply, q.SubscribeResponse)
                seen += [(micros(v.snap_time), v.value.price.value) for v in reply.values]
        finally:
            resumed.cancel()
    assert seen == chunk_items(0) + chunk_items(1)
