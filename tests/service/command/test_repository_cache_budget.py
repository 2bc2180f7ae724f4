"""The aggregate cache's budget is a running total, kept as aggregates come in, grow and leave:
after every command it equals the sum of what the cached aggregates hold (so eviction happens
exactly where summing them would put it), and the bound holds."""

from __future__ import annotations

import asyncio
import random

from qis_adapters.eventstore.memory import InMemoryEventStore

from tests.service.command.test_aggregate_cache_memory import Feed


def summed(feed: Feed) -> int:
    return sum(a.size for a in feed.repository._cache.values())


async def test_the_running_total_is_the_sum_of_the_cached_sizes_after_every_command() -> None:
    budget = 2_500  # less than one full bucket (3,600 points): buckets are pushed out often
    feed = Feed(InMemoryEventStore(), budget)
    await feed.define()
    rng = random.Random(10)
    evictions = 0
    for _ in range(60):
        # Commands at once on several buckets (new ones, warm ones, restatements of points a
        # bucket already holds), so that loads and saves interleave.
        firsts = [rng.randrange(0, 5 * 3600, 50) for _ in range(rng.randint(1, 3))]
        cached_before = len(feed.repository._cache)
        await asyncio.gather(
            *(feed.ingest(f, rng.randint(1, 300), rng.randint(0, 9)) for f in firsts)
        )
        evictions += len(feed.repository._cache) < cached_before
        assert feed.repository.held == summed(feed)
        assert feed.repository.held <= budget or len(feed.repository._cache) == 1
    assert evictions > 0  # the bound was reached, not just never tested
