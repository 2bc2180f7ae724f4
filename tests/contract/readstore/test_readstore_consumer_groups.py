"""The consumer groups' read models (ConsumerGroupEntry, ParkedEntry) on every read-store
adapter: a group's checkpoint replaced only by a newer write, parked entries keyed by entry and
moved between states (parked, replayed, settled) only by a newer write, listed in entry order
per group and state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qis_adapters.readstore.port import (
    PARKED,
    REPLAYED,
    SETTLED,
    ConsumerGroupEntry,
    ParkedEntry,
    ParkedState,
    ProjectionBatch,
    ResumeToken,
)

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Adapter

BEFORE_ALL = ResumeToken(-1, -1)


def parked(group: str, entry: int, index: int = 0, position: int = 100) -> ParkedEntry:
    return ParkedEntry("t.a", group, entry, index, 5, 'boom "é"', position * 10, PARKED, position)


async def test_group_checkpoint_replaced_only_by_newer_writes(store: Adapter) -> None:
    assert await store.consumer_group("t.a", "g") is None
    first = ConsumerGroupEntry("t.a", "g", 40, 2, 1_000, 50)
    newer = ConsumerGroupEntry("t.a", "g", 45, 0, 2_000, 60)
    other = ConsumerGroupEntry("t.a", "g2", 7, 0, 3_000, 61)
    await store.apply(ProjectionBatch(consumer_groups=[first, other]), 61)
    await store.apply(ProjectionBatch(consumer_groups=[newer]), 61)
    await store.apply(ProjectionBatch(consumer_groups=[first]), 61)  # a replay of the older
    assert await store.consumer_group("t.a", "g") == newer
    assert await store.consumer_group("t.a", "g2") == other
    assert await store.consumer_group("t.ab", "g") is None
    assert (await store.dump_all())["consumer_groups"] == [newer, other]


async def test_parked_entries_page_by_entry_per_group(store: Adapter) -> None:
    mine = [parked("g", p, i) for p in (5, 9, 12) for i in range(2)]
    others = [parked("g-x", 6), parked("f", 7), parked("gg", 8)]  # names sorting around "g"
    await store.apply(ProjectionBatch(parked=list(reversed(mine)) + others), 100)
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 100) == mine
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 2) == mine[:2]
    assert await store.parked_entries("t.a", "g", ResumeToken(9, 0), 100) == mine[3:]
    assert await store.parked_entries("t.a", "g", ResumeToken(12, 1), 100) == []
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 0) == []
    assert await store.parked_entries("t.b", "g", BEFORE_ALL, 10) == []


async def test_parked_states_move_only_forward_in_the_log(store: Adapter) -> None:
    a, b, c = parked("g", 5), parked("g", 6), parked("g", 7)
    await store.apply(ProjectionBatch(parked=[a, b, c]), 100)
    replay = [ParkedState("t.a", "g", e.entry_position, 0, REPLAYED, 110) for e in (a, b)]
    absent = ParkedState("t.a", "g", 99, 0, REPLAYED, 110)  # never parked: nothing made
    await store.apply(ProjectionBatch(parked_states=[*replay, absent]), 110)
    settle = ParkedState("t.a", "g", 5, 0, SETTLED, 120)
    await store.apply(ProjectionBatch(parked_states=[settle]), 120)
    # Replayed again later in the log: an older change leaves the newer state.
    await store.apply(ProjectionBatch(parked_states=[replay[0]]), 120)
    replayed_b = ParkedEntry(b.topic, b.group, 6, 0, 5, b.last_error, b.parked_at_us, REPLAYED, 110)
    settled_a = ParkedEntry(a.topic, a.group, 5, 0, 5, a.last_error, a.parked_at_us, SETTLED, 120)
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 10, REPLAYED) == [replayed_b]
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 10, PARKED) == [c]
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 10) == [replayed_b, c]
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 10, SETTLED) == [settled_a]
    # Parked again after its replay (it failed again): a new record of the entry.
    again = parked("g", 6, position=130)
    await store.apply(ProjectionBatch(parked=[again]), 130)
    assert await store.parked_entries("t.a", "g", BEFORE_ALL, 10, PARKED) == [again, c]
    assert (await store.dump_all())["parked"] == [settled_a, again, c]
