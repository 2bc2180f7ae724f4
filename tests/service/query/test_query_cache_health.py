"""The query cache as a component of qis-query's health report (`qis.component.cache`): L1's
fill against its bound and its hit rate; the L2's reachability and latency, on a real
redis-server stopped mid-test (DEGRADED, while the queries keep answering from the store); and
the report as `qis status` renders it from a running server."""

from __future__ import annotations

import asyncio

from qis.data.v1 import status_pb2
from qis_adapters.readstore.port import LATEST
from qis_cli import status
from qis_cli.up import SERVICES
from qis_query import bootstrap
from qis_query.application.cache import CacheLimits
from qis_query.settings import QuerySettings
from qis_runtime.status import DEGRADED, SERVING

from tests.service.query.cache_support import CacheWorld, snap
from tests.service.query.test_query_cache_redis import Instance, fresh
from tests.support.redis import start_redis

S = "S"


async def _world() -> CacheWorld:
    world = CacheWorld()
    await world.define(S)
    await world.publish(S, [snap(d) for d in range(3)], "100.5")
    await world.project()
    return world


async def test_the_l1_reports_its_fill_against_its_bound_and_its_hit_rate() -> None:
    world = await _world()
    handlers, cache = world.handlers(CacheLimits(max_bytes=1 << 20))
    empty = await cache.report()
    assert (empty.status, empty.figures["l1_entries"], empty.figures["l1_hit_rate"]) == (
        SERVING,
        0,
        0.0,
    )
    days = [snap(d) for d in range(3)]
    await handlers.values(S, days, LATEST, 0)  # 3 misses
    await handlers.values(S, days, LATEST, 0)  # 3 hits
    await handlers.values(S, days[:1], LATEST, 0)  # 1 hit
    report = await cache.report()
    assert report.status == SERVING
    assert report.figures["l1_entries"] == 3
    assert report.figures["l1_bytes"] == cache.bytes > 0
    assert report.figures["l1_max_bytes"] == 1 << 20
    assert (report.figures["l1_hits"], report.figures["l1_misses"]) == (4, 3)
    assert report.figures["l1_hit_rate"] == round(4 / 7, 3)
    assert "l2_latency_ms" not in report.figures  # no L2 configured


async def test_an_unreachable_redis_degrades_the_cache_and_queries_answer_from_the_store() -> None:
    world = await _world()
    with start_redis() as server:
        instance = Instance(world, server.url, pause_s=0.2)
        try:
            assert await instance.values(S, [0, 1]) == [1, 1]
            up = await instance.cache.report()
            assert up.status == SERVING, up.reason
            assert isinstance(up.figures["l2_latency_ms"], float)
            assert "l2_hit_rate" in up.figures

            server.kill()  # mid-test: the same instance, its L1 still full
            down = await instance.cache.report()
            assert down.status == DEGRADED
            assert "unreachable" in down.reason
            assert "l2_latency_ms" not in down.figures
            await world.publish(S, [snap(1)], "101")
            await world.project()
            read = await instance.handlers.values(S, [snap(d) for d in range(3)], LATEST, 0)
            assert read.value == await fresh(world, S, [0, 1, 2])

            restarted = start_redis(server.port)
            try:
                again = await instance.cache.report()
                assert again.status == SERVING, again.reason
            finally:
                restarted.stop()
        finally:
            await instance.shared.close()


async def test_qis_status_shows_the_cache_of_a_running_query_service() -> None:
    world = await _world()
    with start_redis() as server:
        settings = QuerySettings(
            auth="dev",
            query_address="127.0.0.1:0",
            flight_address="",
            cache_redis_url=server.url,
        )
        app = await bootstrap.build(settings, world.reader)
        app.server.report_status("qis-query", app.health_checks())
        port = await app.server.start()
        try:
            await app.handlers.values(S, [snap(0)], LATEST, 0)
            address = f"127.0.0.1:{port}"
            query = next(spec for spec in SERVICES if spec.script == "qis-query")
            metadata = (("x-qis-user", "ops"),)
            rows = await asyncio.to_thread(status.rows, query, address, metadata)
            by_name = {row.component: row for row in rows}
            assert set(by_name) == {"read-store", "cache"}
            cache = by_name["cache"]
            assert cache.status == "SERVING"
            assert "l1_entries=1" in cache.details
            assert "l1_misses=1" in cache.details
            assert "l2_latency_ms=" in cache.details
            report = await asyncio.to_thread(status.report_of, address, metadata)
            component = next(c for c in report.components if c.name == "cache")
            assert component.health_service == "qis.component.cache"
            assert component.status == status_pb2.COMPONENT_STATUS_SERVING
        finally:
            await app.server.stop(0)
            await app.close()
