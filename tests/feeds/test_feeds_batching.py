"""Chunks: closed by size, age or a repeated snap; ids derived from content."""

from __future__ import annotations

from qis_feeds.application.batching import Batcher, make_chunk
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import Point, ValueKind


def price(series: str, snap_us: int, value: str, source: str = "src") -> Point:
    return Point(series, source, ValueKind.PRICE, snap_us, 0, (value,))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_chunks_close_at_their_size_per_series_and_source() -> None:
    batcher = Batcher(3, None, FeedCounters())
    closed = []
    for i in range(7):
        closed += batcher.add(price("A", i, "1"))
        closed += batcher.add(price("B", i, "2"))
        closed += batcher.add(price("A", i, "3", source="other"))
    closed += batcher.drain()
    sizes = sorted((c.series_id, c.source_id, len(c.points)) for c in closed)
    assert sizes == sorted(
        [(s, src, n) for s, src in (("A", "src"), ("B", "src"), ("A", "other")) for n in (3, 3, 1)]
    )
    assert all(len({p.series_id for p in c.points}) == 1 for c in closed)


def test_a_waiting_chunk_closes_after_the_delay_only_in_live_mode() -> None:
    clock = Clock()
    live = Batcher(1000, 0.1, FeedCounters(), clock)
    assert live.add(price("A", 1, "1")) == []
    assert live.next_due() == 0.1
    clock.now = 0.05
    assert live.due() == []
    clock.now = 0.1
    [chunk] = live.due()
    assert [p.snap_us for p in chunk.points] == [1]
    assert live.next_due() is None
    history = Batcher(1000, None, FeedCounters(), clock)
    history.add(price("A", 1, "1"))
    clock.now = 100.0
    assert history.due() == []
    assert history.next_due() is None


def test_a_repeated_snap_is_skipped_when_identical_and_waits_for_the_next_chunk_otherwise() -> None:
    counters = FeedCounters()
    batcher = Batcher(1000, None, counters)
    batcher.add(price("A", 1, "10"))
    assert batcher.add(price("A", 1, "10")) == []
    assert counters.skipped == 1
    [first] = batcher.add(price("A", 1, "11"))  # a correction: the service takes a snap once
    [second] = batcher.drain()
    assert [p.values for p in first.points] == [("10",)]
    assert [p.values for p in second.points] == [("11",)]


def test_ids_come_from_the_content_alone() -> None:
    points = (price("A", 1, "10"), price("A", 2, "11"))
    same = make_chunk("A", "src", ValueKind.PRICE, points)
    assert same.command_id == make_chunk("A", "src", ValueKind.PRICE, points).command_id
    others = [
        make_chunk("A", "src", ValueKind.PRICE, points[:1]),
        make_chunk("A", "src", ValueKind.PRICE, (points[0], price("A", 2, "11.0"))),
        make_chunk("A", "other", ValueKind.PRICE, points),
        make_chunk("B", "src", ValueKind.PRICE, points),
        make_chunk("A", "src", ValueKind.VOLUME, points),
    ]
    assert len({same.command_id, *(c.command_id for c in others)}) == 6
