"""Product bugs the fuzzer found that no RPC status shows, kept as plain tests."""

from __future__ import annotations

import asyncio

import pytest
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.e2e.harness import (
    COMMAND,
    US,
    Cluster,
    as_user,
    ingest_request,
    price_series,
    setup_series,
)

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]


async def test_the_scheduler_measures_tick_series(eager_cluster: Cluster) -> None:
    """Found by the fuzz run (a series defined with FREQUENCY_TICK, then values published):
    the scheduler asks for the metrics of a UTC day of an intraday series, but
    CalculateQualityMetrics accepts at most 40 buckets of the series, 10 hours for a tick
    series (15-minute buckets). Every scheduled calculation was refused (a WARNING "scheduled
    metrics for ... failed: window: ...") and tick series never got quality metrics."""
    async with eager_cluster.clients() as c:
        await setup_series(c, "TICKS", price_series([("feed", 1)], series_pb2.FREQUENCY_TICK))
        snap_us = 1_704_229_200 * US  # 2024-01-02T21:00:00Z, a window long closed
        reply = await c.command.IngestPoints(
            ingest_request("tick-1", "TICKS", "feed", [(snap_us, "100")]), metadata=as_user("a")
        )
        assert reply.published == 1
        metrics: list[q.QualityMetrics] = []
        for _ in range(50):  # the scheduler ticks every 0.2 s: 10 s is ample
            listed = await c.query.ListQualityMetrics(
                q.ListQualityMetricsRequest(series="series/TICKS"), metadata=as_user("b")
            )
            metrics = list(listed.metrics)
            if metrics:
                break
            await asyncio.sleep(0.2)
    assert metrics, eager_cluster.log_tail(COMMAND, 5)
    window = metrics[0]
    assert window.start_time.seconds * US <= snap_us < window.end_time.seconds * US
