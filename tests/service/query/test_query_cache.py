"""The query cache's policy (qis_query.application.cache) through the query handlers, on the
real projector's read model: what is reused, what a change of the read model drops, and the
bounds. "Read from the store" is counted by the reader (cache_support.CountingReader)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import LATEST, AsOf, AtPosition, KnownAt, OfficialVersion
from qis_domain.errors import NotFound
from qis_projector.application.projector import Projector
from qis_query.application import cache as cache_module
from qis_query.application import cache_codec
from qis_query.application.cache import CacheLimits, QueryCache
from qis_query.application.consistency import ReadModelBehind, ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import RangeQuery

from tests.service.query.cache_support import FEED, MAX_WAIT_S, CacheWorld, snap

S, T = "S", "T"


async def world_with_values() -> CacheWorld:
    """S and T defined, S and T published on days 0-3; projected."""
    world = CacheWorld()
    await world.define(S)
    await world.define(T)
    await world.publish(S, [snap(d) for d in range(4)], "100.5")
    await world.publish(T, [snap(d) for d in range(4)], "7")
    await world.project()
    return world


async def values(
    handlers: QueryHandlers, series_id: str, days: list[int], as_of: AsOf = LATEST, at: int = 0
) -> list[OfficialVersion]:
    read = await handlers.values(series_id, [snap(d) for d in days], as_of, at)
    return read.value


async def range_rows(handlers: QueryHandlers, query: RangeQuery) -> list[dict[str, object]]:
    read = await handlers.query_range(query, 100, "", 0)
    return [row for page in [p async for p in read.value] for row in page.rows.to_pylist()]


async def test_a_value_is_read_once_until_its_series_changes() -> None:
    world = await world_with_values()
    cached, _ = world.handlers()
    first = await values(cached, S, [0, 1])
    reads = world.reader.value_reads
    assert await values(cached, S, [0, 1]) == first
    assert world.reader.value_reads == reads  # a hit

    await world.publish(T, [snap(0)], "8")  # another series changes: S's entries stay
    await world.project()
    assert await values(cached, S, [0, 1]) == first
    assert world.reader.value_reads == reads

    await world.publish(S, [snap(1)], "101")  # S changes: its entries are dropped
    await world.project()
    after = await values(cached, S, [0, 1])
    assert [v.version for v in after] == [1, 2]
    assert after == await values(world.fresh(), S, [0, 1])
    assert world.reader.value_reads == reads + 2


async def test_a_request_is_never_answered_older_than_its_min_position() -> None:
    world = await world_with_values()
    # The checkpoint as seen is kept 60 s: only min_position makes the handlers look again.
    cached, _ = world.handlers(max_age_s=60)
    old = await cached.values(S, [snap(0)], LATEST, 0)
    restated = await world.publish(S, [snap(0)], "99")
    await world.project()

    still = await cached.values(S, [snap(0)], LATEST, 0)  # allowed: says what it reflects
    assert (still.value, still.read_position) == (old.value, old.read_position)
    new = await cached.values(S, [snap(0)], LATEST, restated)
    assert new.read_position >= restated
    assert [v.version for v in new.value] == [2]

    unprojected = await world.publish(S, [snap(0)], "98")  # in the log, not in the read model
    with pytest.raises(ReadModelBehind):
        await cached.values(S, [snap(0)], LATEST, unprojected)


async def test_answers_at_a_passed_position_are_final_and_ahead_of_it_are_not() -> None:
    world = await world_with_values()
    head = world.head
    cached, cache = world.handlers()
    at_head = await values(cached, S, [0], AtPosition(head))
    ahead = await values(cached, S, [0], AtPosition(head + 10))
    reads = world.reader.value_reads

    await world.publish(S, [snap(0)], "99")  # head + 1: within the position ahead
    await world.project()
    assert await values(cached, S, [0], AtPosition(head)) == at_head
    assert world.reader.value_reads == reads  # final: kept through the change of S
    moved = await values(cached, S, [0], AtPosition(head + 10))
    assert moved != ahead
    assert moved == await values(world.fresh(), S, [0], AtPosition(head + 10))
    assert len(cache) == 2


async def test_answers_as_of_a_knowledge_time_are_final_once_a_later_one_is_projected() -> None:
    world = await world_with_values()
    (published,) = await values(world.fresh(), S, [0])
    known = KnownAt(published.recorded_from_us)
    cached, _ = world.handlers()
    # T's publication is the read model's latest knowledge time: a change of S could still be
    # known at it... (the cache follows the log from its first query on)
    await cached.values(S, [snap(0)], LATEST, 0)
    await world.publish(T, [snap(0)], "8")
    await world.project()
    # ...but not at an earlier time once a later event is projected.
    before = await values(cached, S, [0], known)
    reads = world.reader.value_reads
    await world.publish(S, [snap(0)], "99")
    await world.project()
    assert await values(cached, S, [0], known) == before == [published]
    assert world.reader.value_reads == reads
    now = KnownAt(world.now_us)  # not yet passed: follows the change
    assert [v.version for v in await values(cached, S, [0], now)] == [2]


async def test_a_definition_is_read_again_after_its_schema_evolves() -> None:
    world = await world_with_values()
    cached, _ = world.handlers()
    assert (await cached.series(S, 0)).schema_version == 1
    reads = world.reader.definition_reads
    assert (await cached.series(S, 0)).schema_version == 1
    assert world.reader.definition_reads == reads
    evolved = await world.define(S, unit="EUR")
    await world.project()
    entry = await cached.series(S, evolved)
    assert (entry.schema_version, entry.definition["unit"]) == (2, "EUR")
    with pytest.raises(NotFound):  # an unknown series is never remembered as one
        await cached.series("U", 0)


async def test_a_range_is_kept_when_it_is_one_page_of_few_values() -> None:
    world = await world_with_values()
    cached, _ = world.handlers(CacheLimits(max_range_rows=3))
    small = RangeQuery(S, snap(0), snap(3))  # 3 values
    large = RangeQuery(S, snap(0), snap(4))  # 4 values: beyond max_range_rows
    first = await range_rows(cached, small)
    reads = world.reader.range_reads
    assert await range_rows(cached, small) == first
    assert world.reader.range_reads == reads
    await range_rows(cached, large)
    await range_rows(cached, large)
    assert world.reader.range_reads == reads + 2

    await world.publish(S, [snap(1)], "42")
    await world.project()
    assert await range_rows(cached, small) == await range_rows(world.fresh(), small)
    assert [row["version"] for row in await range_rows(cached, small)] == [1, 2, 1]


async def test_the_cache_holds_at_most_its_bytes_least_recently_used_first() -> None:
    world = await world_with_values()
    (one,) = await values(world.fresh(), S, [0])
    entry_bytes = cache_codec.POINT.size(one)
    metrics = InMemoryMetricReader()
    cache = QueryCache(
        world.reader,
        CacheLimits(max_bytes=3 * entry_bytes),
        meter=MeterProvider(metric_readers=[metrics]).get_meter("test"),
    )
    position = ReadPosition(world.reader, MAX_WAIT_S, max_age_s=0)
    cached = QueryHandlers(world.reader, position, FEED, cache=cache)
    for day in (0, 1, 2, 0, 3):  # 0 used again: 1 is the least recently used when 3 comes
        await values(cached, S, [day])
    assert (len(cache), cache.bytes) == (3, 3 * entry_bytes)
    reads = world.reader.value_reads
    await values(cached, S, [0])
    await values(cached, S, [3])
    assert world.reader.value_reads == reads
    await values(cached, S, [1])
    assert world.reader.value_reads == reads + 1

    data = metrics.get_metrics_data()
    assert data is not None
    counted = {
        (m.name, tuple(sorted((p.attributes or {}).items()))): p.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
        if isinstance(p, NumberDataPoint)
    }
    assert counted[("qis.query.cache.evictions", (("reason", "size"),))] == 2
    value_l1 = (("kind", "value"), ("level", "l1"))
    assert counted[("qis.query.cache.hits", value_l1)] == 3
    assert counted[("qis.query.cache.misses", value_l1)] == 5


async def test_a_switch_of_generation_drops_every_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "GENERATION_CHECK_S", 0.0)
    world = await world_with_values()
    cached, cache = world.handlers()
    await values(cached, S, [0], AtPosition(world.head))  # final, yet of the old generation
    await values(cached, S, [1])
    rebuilt = InMemoryReadStore(world.database, "g2")
    await Projector(world.events, rebuilt).run(until_position=world.head)
    await rebuilt.set_active_generation("g2")  # the same checkpoint: only the switch tells
    reads = world.reader.value_reads
    await values(cached, S, [0], AtPosition(world.head))
    await values(cached, S, [1])
    assert world.reader.value_reads == reads + 2
    assert len(cache) == 2


async def test_a_bulk_of_changes_drops_what_may_change_and_keeps_what_cannot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache_module, "SYNC_PAGE", 1)
    monkeypatch.setattr(cache_module, "MAX_SYNC_ENTRIES", 2)
    world = await world_with_values()
    cached, cache = world.handlers()
    final = await values(cached, S, [0], AtPosition(world.head))
    await values(cached, S, [1])
    for day in range(4):  # four audit entries of T: beyond the follow limit
        await world.publish(T, [snap(day)], "9")
    await world.project()
    reads = world.reader.value_reads
    assert await values(cached, S, [0], AtPosition(world.head - 4)) == final
    assert await values(cached, S, [1]) == await values(world.fresh(), S, [1])
    assert world.reader.value_reads == reads + 1  # S's latest, read again
    assert cache.horizon == world.head


async def test_an_answer_as_of_the_latest_knowledge_time_follows_an_event_known_at_it_too() -> None:
    """Commit times may repeat (a store clamps a clock that stepped back): an answer as of the
    latest knowledge time projected can still change, by an event known at that same time."""
    world = await world_with_values()
    cached, _ = world.handlers()
    await values(cached, S, [1])  # the cache follows the log from here
    await world.publish(S, [snap(0)], "99")
    await world.project()
    known = KnownAt(world.now_us)
    assert [v.version for v in await values(cached, T, [0], known)] == [1]
    assert world.appends % 2 == 1  # the next append keeps the time of the one before
    await world.publish(T, [snap(0)], "8")
    await world.project()
    assert await values(world.fresh(), T, [0], known) == await values(cached, T, [0], known)
    assert [v.version for v in await values(cached, T, [0], known)] == [2]


async def test_an_answer_read_before_a_change_it_was_not_dropped_for_is_not_served() -> None:
    """A slow read returns what the read model held before a change that another query's sync
    saw meanwhile: that answer goes to its caller (its read_position is older), never to the
    next one."""
    world = await world_with_values()
    cached, _ = world.handlers()
    await values(cached, T, [0])  # the cache follows the log from here
    world.reader.gate = gate = asyncio.Event()
    slow = asyncio.create_task(values(cached, S, [0]))
    await world.reader.holding.wait()  # the slow read has read
    world.reader.gate = None
    await world.publish(S, [snap(0)], "99")
    await world.project()
    await values(cached, T, [0])  # syncs: S changed
    gate.set()
    assert [v.version for v in await slow] == [1]
    assert [v.version for v in await values(cached, S, [0])] == [2]
