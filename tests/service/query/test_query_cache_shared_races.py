"""Query instances sharing a real Redis (tests/support/redis.py) over a history of
restatements: every answer, cached or not, is the answer of handlers without a cache, and an
older read that finishes last never makes anyone serve it after the change it missed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from qis_adapters.readstore.port import LATEST, AsOf, AtPosition, KnownAt
from qis_query.adapters.redis_cache import RedisCache
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


class Instance:
    def __init__(self, world: CacheWorld, url: str) -> None:
        self.reader = CountingReader(world.database)
        self.shared = RedisCache(Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1))
        cache = QueryCache(self.reader, shared=self.shared)
        position = ReadPosition(self.reader, MAX_WAIT_S, max_age_s=0)
        self.handlers = QueryHandlers(self.reader, position, FEED, cache=cache)


@pytest.fixture
async def world() -> CacheWorld:
    return await two_series_world(S, T)


@pytest.fixture
async def instances(world: CacheWorld, redis_server: RedisServer) -> AsyncIterator[list[Instance]]:
    made = [Instance(world, redis_server.url) for _ in range(3)]
    yield made
    for instance in made:
        await instance.shared.close()


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
