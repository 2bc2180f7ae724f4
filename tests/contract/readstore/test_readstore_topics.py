"""The topics' read models (TopicVersion, TopicEntry) on every read-store adapter: every
definition kept by position so that the one in force at any position can be read back, and each
topic's log read in (position, index) order up to the checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qis_adapters.readstore.port import (
    ProjectionBatch,
    ResumeToken,
    TopicEntry,
    TopicVersion,
)

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Adapter

BEFORE_ALL = ResumeToken(-1, -1)
DEFINITION = {
    "event_types": ["DataPublished"],
    "series_patterns": ["EQ.*"],
    "min_severity": "",
    "max_attempts": 5,
    "ack_timeout_s": 30,
    "description": 'é and a "quote"',
}


def entry(topic: str, position: int, index: int = 0, series: str = "EQ.A") -> TopicEntry:
    # Payload bytes of every value, a NUL and bytes that are not UTF-8 included.
    payload = bytes([position % 256, 0, 0xFF, index % 256]) * 3
    return TopicEntry(topic, position, index, series, "DataPublished", payload, position * 1000)


async def test_topics_in_force_at_a_position(store: Adapter) -> None:
    a1 = TopicVersion("a.prices", 10, 10_000, DEFINITION)
    b1 = TopicVersion("b.issues", 11, 11_000, {**DEFINITION, "min_severity": "error"})
    a2 = TopicVersion("a.prices", 20, 20_000, {**DEFINITION, "series_patterns": []})
    b_deleted = TopicVersion("b.issues", 30, 30_000)
    # Written out of order over two batches: the versions are keyed, not replaced.
    await store.apply(ProjectionBatch(topics=[a2, b_deleted]), 30)
    await store.apply(ProjectionBatch(topics=[b1, a1]), 30)
    assert await store.topics() == [a2, b_deleted]
    assert await store.topics(29) == [a2, b1]
    assert await store.topics(19) == [a1, b1]
    assert await store.topics(10) == [a1]
    assert await store.topics(9) == []
    # A replay changes nothing.
    await store.apply(ProjectionBatch(topics=[a1, a2, b1, b_deleted]), 30)
    assert (await store.dump_all())["topics"] == [a1, a2, b1, b_deleted]


async def test_topic_entries_page_in_log_order_per_topic(store: Adapter) -> None:
    mine = [entry("a.prices", p, i) for p in (5, 7, 9) for i in range(2)]
    other = [entry("a.prices-x", 6), entry("a", 8)]  # names that sort around it
    await store.apply(ProjectionBatch(topic_entries=list(reversed(mine)) + other), 9)
    assert await store.topic_entries("a.prices", BEFORE_ALL, 100) == mine
    assert await store.topic_entries("a.prices", BEFORE_ALL, 3) == mine[:3]
    assert await store.topic_entries("a.prices", ResumeToken(7, 0), 100) == mine[3:]
    assert await store.topic_entries("a.prices", ResumeToken(9, 1), 100) == []
    assert await store.topic_entries("a.prices", BEFORE_ALL, 0) == []
    assert await store.topic_entries("absent", BEFORE_ALL, 10) == []
    await store.apply(ProjectionBatch(topic_entries=mine), 9)  # replayed: no twin
    assert await store.topic_entries("a.prices", BEFORE_ALL, 100) == mine


async def test_topic_entries_stop_at_the_checkpoint(store: Adapter) -> None:
    """Entries of a batch above the checkpoint may be half-written: a reader paging past them
    could skip the rest forever."""
    await store.apply(ProjectionBatch(topic_entries=[entry("t", 3)]), 3)
    await store.apply(ProjectionBatch(topic_entries=[entry("t", 4)]), 3)
    assert await store.topic_entries("t", BEFORE_ALL, 10) == [entry("t", 3)]
