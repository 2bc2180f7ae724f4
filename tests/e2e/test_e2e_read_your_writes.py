"""Read-your-writes with the projector paused (SIGSTOP): bounded wait, then a clear UNAVAILABLE
naming the positions; after SIGCONT the same query succeeds and sees the write."""

from __future__ import annotations

import time

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import query_service_pb2 as q

from tests.e2e.harness import (
    DAY_US,
    PROJECTOR,
    US,
    Cluster,
    MakeCluster,
    as_user,
    generation_checkpoint,
    ingest_request,
    micros,
    price_series,
    query_all,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

MAX_WAIT_S = 1.0
SNAPS = [1_717_189_200 * US + d * DAY_US for d in range(4)]  # 2024-05-31T21:00Z onwards


async def test_min_position_waits_bounded_then_unavailable(make_cluster: MakeCluster) -> None:
    cluster: Cluster = make_cluster({"QIS_QUERY_MAX_WAIT_S": str(MAX_WAIT_S)})
    series_id, source = unique("ryw"), unique("src")
    name = f"series/{series_id}"
    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(source, 1)]))
        before = await c.command.IngestPoints(
            ingest_request(unique("a"), series_id, source, [(SNAPS[0], "10"), (SNAPS[1], "11")]),
            metadata=as_user("alice"),
        )
        assert len(await query_all(c, series_id, min_position=before.commit_position)) == 2

        cluster.pause(PROJECTOR)
        try:
            paused_at = generation_checkpoint(cluster.read_db, "g1")
            assert paused_at is not None
            assert paused_at >= before.commit_position
            write = await c.command.IngestPoints(
                ingest_request(
                    unique("b"), series_id, source, [(SNAPS[2], "12"), (SNAPS[3], "13")]
                ),
                metadata=as_user("alice"),
            )
            wanted = write.commit_position
            assert wanted > paused_at

            # Reads that do not ask for the new write still answer at once.
            started = time.monotonic()
            old = await query_all(c, series_id, min_position=before.commit_position)
            assert [micros(v.snap_time) for v in old] == SNAPS[:2]
            assert time.monotonic() - started < MAX_WAIT_S * 0.8

            # A read asking for it waits about QIS_QUERY_MAX_WAIT_S, then says how far it is.
            request = q.QueryRangeRequest(series=name, min_position=wanted)
            started = time.monotonic()
            call = c.query.QueryRange(request, metadata=as_user("alice"))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in call:
                    pass
            waited = time.monotonic() - started
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert MAX_WAIT_S * 0.9 <= waited < MAX_WAIT_S + 1.5, waited
            message = error.value.details() or ""
            assert str(wanted) in message, message
            assert str(paused_at) in message, message
            status = await rpc_status.aio.from_call(call)
            retry = error_details_pb2.RetryInfo()
            assert any(d.Unpack(retry) for d in status.details), status
            assert retry.retry_delay.ToMilliseconds() > 0

            # Unary calls behave the same.
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await c.query.GetSeries(
                    q.GetSeriesRequest(name=name, min_position=wanted), metadata=as_user("alice")
                )
            assert unary.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            cluster.resume(PROJECTOR)

        started = time.monotonic()
        after = await query_all(c, series_id, min_position=wanted)
        assert [(micros(v.snap_time), v.value.price.value) for v in after] == list(
            zip(SNAPS, ["10", "11", "12", "13"], strict=True)
        )
        print(f"\nafter SIGCONT the query answered in {(time.monotonic() - started) * 1000:.0f} ms")
        history = await c.query.GetPointHistory(
            q.GetPointHistoryRequest(
                series=name, snap_time=after[3].snap_time, min_position=wanted
            ),
            metadata=as_user("alice"),
        )
        assert history.read_position >= wanted
        assert len(history.versions) == 1
        assert paused_at < history.versions[0].record_position <= wanted
