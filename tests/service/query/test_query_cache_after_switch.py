"""The cache across a rebuild's switch to a generation behind the last checkpoint seen (the
first three went stale before the fixes of the commit that added this file): an answer as of a knowledge time
read right after the switch is not final on the old generation's knowledge time, in L1 or L2;
a switch behind is noticed at once, not GENERATION_CHECK_S later, so an answer read from the
new generation is not kept with the old generation's horizon; ReadPosition keeps the read that
started last, not an older one that finished last. And read-your-writes past a switch behind
waits for the new generation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import LATEST, AsOf, KnownAt
from qis_projector.application.projector import Projector
from qis_query.adapters.redis_cache import RedisCache
from qis_query.application import cache as cache_module
from qis_query.application.cache import QueryCache
from qis_query.application.consistency import ReadModelBehind, ReadPosition
from qis_query.application.handlers import QueryHandlers
from redis.asyncio import Redis

from tests.service.query.cache_support import FEED, MAX_WAIT_S, CacheWorld, CountingReader, snap
from tests.support.redis import RedisServer, start_redis

S, T = "S", "T"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


class Instance:
    """A query instance with an L2 on the shared Redis; a new one is a restarted service."""

    def __init__(self, world: CacheWorld, url: str) -> None:
        reader = CountingReader(world.database)
        self.shared = RedisCache(Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1))
        cache = QueryCache(reader, shared=self.shared)
        self.handlers = QueryHandlers(
            reader, ReadPosition(reader, MAX_WAIT_S, 0), FEED, cache=cache
        )


@pytest.fixture
async def instances(redis_server: RedisServer) -> AsyncIterator[list[Instance]]:
    made: list[Instance] = []
    yield made
    for instance in made:
        await instance.shared.close()


async def versions(handlers: QueryHandlers, series_id: str, as_of: AsOf, at: int) -> list[int]:
    read = await handlers.values(series_id, [snap(0)], as_of, at)
    return [v.version for v in read.value]


async def rebuilt(world: CacheWorld) -> Projector:
    """S and T published and projected into g1, and into a rebuilt g2: the rebuild's projector."""
    await world.define(S)
    await world.define(T)
    await world.publish(S, [snap(0)], "100")
    await world.publish(T, [snap(0)], "7")
    await world.project()
    rebuilder = Projector(world.events, InMemoryReadStore(world.database, "g2"))
    await rebuilder.run(until_position=world.head)
    return rebuilder


async def restate_into_g1(world: CacheWorld) -> int:
    """S restated, then T published twice, projected into g1 only (g2 falls behind): the
    restatement's knowledge time, below that of T's last change."""
    await world.publish(S, [snap(0)], "99")
    restated_us = world.now_us
    await world.publish(T, [snap(0)], "8")
    await world.publish(T, [snap(0)], "9")
    assert world.now_us > restated_us
    await world.project()
    return restated_us


async def test_a_knowledge_time_answer_read_after_a_switch_behind_is_not_kept_stale(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, instances: list[Instance]
) -> None:
    """An answer as of a knowledge time below that of the old generation's newest change, read
    from the new generation before it projected the changes known by then, is not final: not
    kept in L1 past them, nor put in L2 for ttl_historical_s (an hour), where a restarted
    instance would take it too (6c8d7fc kept that knowledge time across the switch)."""
    monkeypatch.setattr(cache_module, "GENERATION_CHECK_S", 0.0)  # the switch is seen at once
    world = CacheWorld()
    rebuilder = await rebuilt(world)
    instances.append(Instance(world, redis_server.url))
    (running,) = instances
    await versions(running.handlers, T, LATEST, 0)  # it follows g1 from here
    restated_us = await restate_into_g1(world)
    await versions(running.handlers, T, LATEST, world.head)  # ...up to its head
    known_at = KnownAt(restated_us)

    world.database.activate("g2")  # behind the restatement
    assert await versions(running.handlers, S, known_at, 0) == [1]  # g2 has not projected it
    await rebuilder.run(until_position=world.head)
    expected = await versions(world.fresh(), S, known_at, world.head)
    assert expected == [2]
    instances.append(Instance(world, redis_server.url))  # a restart of the query service
    restarted = instances[1]
    assert [
        await versions(running.handlers, S, known_at, world.head),
        await versions(restarted.handlers, S, known_at, world.head),
    ] == [expected, expected]


async def test_an_answer_read_right_after_a_switch_behind_is_not_kept_past_the_change() -> None:
    """With GENERATION_CHECK_S as in the service (a second), a switch to a generation behind
    the horizon is noticed at the first query whose position is below the horizon, not when
    the second is up: otherwise a miss reads the new generation and its answer is kept as read
    at the old generation's horizon, so a read-your-writes request at a position the new
    generation has by then projected is answered from before it (as on 6c8d7fc)."""
    world = CacheWorld()
    rebuilder = await rebuilt(world)
    cached, _ = world.handlers()
    await versions(cached, T, LATEST, 0)  # it follows g1 from here
    await restate_into_g1(world)
    await versions(cached, T, LATEST, world.head)  # ...up to its head, which g2 is behind
    loop = asyncio.get_running_loop()
    started = loop.time()

    world.database.activate("g2")
    assert await versions(cached, S, LATEST, 0) == [1]  # right: g2 is behind the restatement
    await rebuilder.run(until_position=world.head)
    answered = await versions(cached, S, LATEST, world.head)
    assert loop.time() - started < cache_module.GENERATION_CHECK_S  # within the second
    assert answered == await versions(world.fresh(), S, LATEST, world.head) == [2]


async def test_read_your_writes_past_a_switch_behind_waits_for_the_new_generation() -> None:
    """A request for a position only the old generation had reached is refused for now
    (ReadModelBehind, a retry-later), not answered as if the new one had it; once the new
    generation projects it, the answer holds the change."""
    world = CacheWorld()
    rebuilder = await rebuilt(world)
    cached, _ = world.handlers()
    await versions(cached, T, LATEST, 0)
    await restate_into_g1(world)
    assert await versions(cached, S, LATEST, world.head) == [2]

    world.database.activate("g2")
    with pytest.raises(ReadModelBehind):
        await versions(cached, S, LATEST, world.head)
    await rebuilder.run(until_position=world.head)
    assert await versions(cached, S, LATEST, world.head) == [2]


class _Checkpoints:
    """A reader whose first checkpoint read answers `first` once `gate` opens, and every later
    one `then` at once: two reads of a moving checkpoint finishing out of order."""

    def __init__(self, first: int, then: int) -> None:
        self.gate = asyncio.Event()
        self._first: int | None = first
        self._then = then

    async def checkpoint(self) -> int:
        if self._first is None:
            return self._then
        first, self._first = self._first, None
        await self.gate.wait()
        return first


async def test_the_position_answers_claim_does_not_go_back_within_a_generation() -> None:
    """Two requests read the checkpoint at once and the one that started first, seeing less,
    finishes last: ReadPosition keeps the newer value (6c8d7fc kept the older, so the next
    requests claimed a lower read position than one already answered on the same generation:
    the token a client keeps went back, and with it what it can ask of another instance)."""
    reader = _Checkpoints(first=5, then=7)
    position = ReadPosition(reader, MAX_WAIT_S, max_age_s=60)  # type: ignore[arg-type]
    older = asyncio.create_task(position.at_least(0))
    await asyncio.sleep(0)  # it is reading
    assert await position.at_least(6) == 7
    reader.gate.set()
    assert await older == 5
    assert await position.at_least(0) == 7
