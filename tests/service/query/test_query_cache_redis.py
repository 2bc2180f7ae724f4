"""The cache's L2 on a real redis-server (tests/support/redis.py: the test fails, never skips,
when it cannot start one): two query instances share answers through it, take another's
answer only while their own view of the log says it still holds, and answer correctly while
Redis is down; over a history of restatements every answer, shared or not, is a fresh read's,
and an older read that finishes last is never served after the change it missed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from qis_adapters.readstore.port import (
    LATEST,
    READ_MODEL_FORMAT,
    AsOf,
    AtPosition,
    KnownAt,
    OfficialVersion,
)
from qis_query.adapters.redis_cache import RedisCache
from qis_query.application import cache_codec
from qis_query.application.cache import QueryCache
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import RangeQuery
from redis.asyncio import Redis

from tests.service.query.cache_support import (
    FEED,
    MAX_WAIT_S,
    CacheWorld,
    CountingReader,
    snap,
    two_series_world,
)
from tests.support.redis import RedisServer, start_redis

S, T = "S", "T"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture
async def world() -> CacheWorld:
    return await two_series_world(S, T)


class Instance:
    """A query instance: its own reader, L1 and Redis client, on the shared read model."""

    def __init__(
        self, world: CacheWorld, url: str, pause_s: float = 5.0, timeout_s: float = 0.2
    ) -> None:
        self.reader = CountingReader(world.database)
        self.metrics = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[self.metrics]).get_meter("test")
        client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.shared = RedisCache(client, pause_s, meter)
        self.cache = QueryCache(self.reader, shared=self.shared, meter=meter)
        position = ReadPosition(self.reader, MAX_WAIT_S, max_age_s=0)
        self.handlers = QueryHandlers(self.reader, position, FEED, cache=self.cache)

    async def values(self, series_id: str, days: list[int], as_of: AsOf = LATEST) -> list[int]:
        read = await self.handlers.values(series_id, [snap(d) for d in days], as_of, 0)
        return [v.version for v in read.value]

    def counted(self, name: str) -> int:
        data = self.metrics.get_metrics_data()
        if data is None:
            return 0
        return sum(
            int(p.value)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
            if isinstance(p, NumberDataPoint)
        )


@contextlib.asynccontextmanager
async def sharing(made: list[Instance]) -> AsyncIterator[list[Instance]]:
    """`made`, their Redis clients closed after."""
    try:
        yield made
    finally:
        for instance in made:
            await instance.shared.close()


@pytest.fixture
async def pair(world: CacheWorld, redis_server: RedisServer) -> AsyncIterator[list[Instance]]:
    async with sharing([Instance(world, redis_server.url, pause_s=0.2) for _ in range(2)]) as made:
        yield made


async def fresh(
    world: CacheWorld, series_id: str, days: list[int], as_of: AsOf = LATEST
) -> list[OfficialVersion]:
    read = await world.fresh().values(series_id, [snap(d) for d in days], as_of, 0)
    return read.value


async def test_instances_share_answers_while_their_series_do_not_change(
    world: CacheWorld, pair: list[Instance]
) -> None:
    a, b = pair
    await b.values(T, [0])  # b follows the log from here on
    assert await a.values(S, [0, 1]) == [1, 1]
    assert a.reader.value_reads == 2
    assert await b.values(S, [0, 1]) == [1, 1]
    assert b.reader.value_reads == 1  # T's only: S's two values came from Redis
    assert b.counted("qis.query.cache.hits") == 2

    final = await a.values(S, [2], AtPosition(world.head))
    await world.publish(S, [snap(0)], "99")
    await world.project()
    reads = b.reader.value_reads
    # a's latest answer about S is still in Redis, but b knows S changed after it was read.
    read = await b.handlers.values(S, [snap(0), snap(1)], LATEST, 0)
    assert read.value == await fresh(world, S, [0, 1])
    assert [v.version for v in read.value] == [2, 1]
    assert b.reader.value_reads == reads + 2  # a change of S drops all of S's latest answers
    assert await b.values(S, [2], AtPosition(world.head - 1)) == final  # final: from Redis
    assert b.reader.value_reads == reads + 2


async def test_an_instance_answers_without_redis_when_it_dies(
    world: CacheWorld, pair: list[Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    await b.values(T, [0])
    await a.values(S, [0, 1, 2])
    redis_server.kill()
    await world.publish(S, [snap(1)], "101")
    await world.project()
    for instance in (a, b):
        read = await instance.handlers.values(S, [snap(d) for d in range(3)], LATEST, 0)
        assert read.value == await fresh(world, S, [0, 1, 2])
    assert b.counted("qis.query.cache.l2.errors") >= 1
    assert await b.values(S, [1]) == [2]  # L1 still serves it, Redis or not

    restarted = start_redis(redis_server.port)
    try:
        await world.publish(S, [snap(2)], "102")
        await world.project()
        await asyncio.sleep(0.25)  # the pause after a failure (0.2 s here) is over
        assert await b.values(S, [0, 1, 2]) == [1, 2, 2]
        errors = b.counted("qis.query.cache.l2.errors")
        await b.values(S, [0, 1, 2], AtPosition(world.head))
        assert b.counted("qis.query.cache.l2.errors") == errors  # Redis answers again
        client = Redis.from_url(restarted.url)
        try:
            keys = sorted(k.decode() for k in await client.keys("*") if isinstance(k, bytes))
        finally:
            await client.aclose()
        # Namespaced by read-model format, cache format and generation.
        assert keys
        namespace = f"qis:q:{READ_MODEL_FORMAT}.{cache_codec.FORMAT}:g1:"
        assert all(k.startswith(namespace) for k in keys), keys
    finally:
        restarted.stop()


# --- instances sharing Redis over a history of restatements: every answer, cached or not, is the
# answer of handlers without a cache, and an older read that finishes last is never served after
# the change it missed.


@pytest.fixture
async def instances(world: CacheWorld, redis_server: RedisServer) -> AsyncIterator[list[Instance]]:
    # Timeouts of a loaded machine: these tests compare answers, they do not time Redis.
    async with sharing([Instance(world, redis_server.url, timeout_s=1) for _ in range(3)]) as made:
        yield made


async def values(handlers: QueryHandlers, as_of: AsOf, at: int) -> list[tuple[int, int]]:
    read = await handlers.values(S, [snap(d) for d in range(3)], as_of, at)
    return [(v.snap_us, v.version) for v in read.value]


async def rows(handlers: QueryHandlers, as_of: AsOf, at: int) -> list[dict[str, object]]:
    read = await handlers.query_range(RangeQuery(S, snap(0), snap(3), as_of), 100, "", at)
    return [row for page in [p async for p in read.value] for row in page.rows.to_pylist()]


async def test_an_older_read_written_last_is_served_by_no_instance_after_the_change(
    world: CacheWorld, instances: list[Instance]
) -> None:
    a, b, c = instances
    for instance in (a, b):
        await instance.handlers.values(T, [snap(0)], LATEST, 0)  # they follow the log from here
    a.reader.gate = gate = asyncio.Event()
    slow = asyncio.create_task(a.handlers.values(S, [snap(0)], LATEST, 0))
    await a.reader.holding.wait()  # a has read S before the restatement
    a.reader.gate = None
    restated = await world.publish(S, [snap(0)], "99")
    await world.project()
    newer = await b.handlers.values(S, [snap(0)], LATEST, restated)  # into Redis first
    assert [v.version for v in newer.value] == [2]
    gate.set()
    older = await slow  # its answer goes to Redis last
    assert [v.version for v in older.value] == [1]
    assert older.read_position < restated

    expected = await values(world.fresh(), LATEST, restated)
    for instance in (a, b, c):
        assert await values(instance.handlers, LATEST, restated) == expected


async def test_answers_shared_through_redis_are_those_of_a_fresh_read(
    world: CacheWorld, instances: list[Instance]
) -> None:
    """Each round restates S, then every instance reads, in turn, latest and as of every
    position and knowledge time so far (values and ranges): the first to ask fills Redis."""
    as_ofs: list[AsOf] = [LATEST]
    for round_ in range(4):
        as_ofs += [AtPosition(world.head), KnownAt(world.now_us), KnownAt(world.now_us - 1)]
        await world.publish(S, [snap(round_ % 3)], f"{round_}.5")
        if round_ % 2:
            await world.publish(T, [snap(0)], f"{round_}")
        await world.project()
        for instance in instances[round_ % 3 :] + instances[: round_ % 3]:
            for as_of in as_ofs:
                for at in (0, world.head):
                    fresh = world.fresh()
                    assert await values(instance.handlers, as_of, at) == await values(
                        fresh, as_of, at
                    ), (round_, as_of, at)
                    assert await rows(instance.handlers, as_of, at) == await rows(
                        fresh, as_of, at
                    ), (round_, as_of, at)
    # Redis served some of them: the test compared shared answers, not only fresh reads.
    assert sum(i.reader.value_reads for i in instances) < 3 * 4 * len(as_ofs) * 2
