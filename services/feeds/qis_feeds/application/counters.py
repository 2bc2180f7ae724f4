"""What a feed did, counted: every raw value ends in exactly one of sent, skipped, dropped or
held back (once its chunk is answered), and every resend is counted as a retry. And how long its
provider's calls took (Latencies)."""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FeedCounters:
    received: int = 0
    """Raw values handed over by the providers."""
    sent: int = 0
    """Points acknowledged by the command service: stored now, or found stored already."""
    accepted: int = 0
    """Of `sent`, points stored by this run."""
    duplicates: int = 0
    """Of `sent`, points of chunks the service had handled already (a re-run, a resend)."""
    flagged: int = 0
    """Of `accepted`, points that failed a quality rule (stored, flagged and held)."""
    skipped: int = 0
    """Identical repeats of a point already in the same chunk: not sent twice."""
    malformed: int = 0
    """Dropped before sending: not a point (NaN, no time zone, a bar for a price series)."""
    rejected: int = 0
    """Dropped by the service: points of chunks it refused (unknown series, bad value)."""
    held_back: int = 0
    """Points of the partial chunks a failed history load did not send: the re-run makes the
    same chunks and sends them there (sent now, they would be stored twice by then)."""
    chunks: int = 0
    """Chunks acknowledged (committed or duplicate)."""
    retried: int = 0
    """Chunks sent again: their stream broke before they were answered, or the service asked
    for a retry (a full or locked store, contention)."""
    last_position: int = 0
    last_error: str = ""
    received_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    """`received` per (source id, series id): a feed's health reports count their own."""
    sent_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    """`sent` per (source id, series id)."""
    health_reports: int = 0
    """Health reports of the feeds' sources recorded by the command service."""
    feeds_disabled: int = 0
    """Feeds not run because their source is disabled (its configuration, read at start)."""
    health_reports_failed: int = 0
    """Health reports it did not record (unreachable, a disabled source): the next interval's
    report follows anyway."""

    @property
    def dropped(self) -> int:
        return self.malformed + self.rejected

    def summary(self) -> str:
        return (
            f"received {self.received:,}, sent {self.sent:,} (stored {self.accepted:,},"
            f" already stored {self.duplicates:,}, flagged {self.flagged:,}), skipped"
            f" {self.skipped:,}, dropped {self.dropped:,} (malformed {self.malformed:,},"
            f" rejected {self.rejected:,}), held back {self.held_back:,}, chunks"
            f" {self.chunks:,}, retried {self.retried:,},"
            f" last position {self.last_position}"
        )


LATENCY_BUCKETS_PER_DOUBLING = 8
_LOWEST_MS = 2.0**-4
"""62.5 µs: faster calls share the first bucket."""
_BUCKETS = 1 + 24 * LATENCY_BUCKETS_PER_DOUBLING
"""Up to 2**20 ms (17 minutes, beyond any timeout here); slower calls share the last bucket."""
LATENCY_RELATIVE_ERROR = 2 ** (1 / (2 * LATENCY_BUCKETS_PER_DOUBLING)) - 1
"""At most 4.4 %: a percentile is the geometric middle of the bucket holding it."""


def _bucket(ms: float) -> int:
    if ms < _LOWEST_MS:
        return 0
    return min(_BUCKETS - 1, 1 + int(math.log2(ms / _LOWEST_MS) * LATENCY_BUCKETS_PER_DOUBLING))


def _middle_ms(bucket: int) -> float:
    if bucket == 0:
        return _LOWEST_MS
    return _LOWEST_MS * 2 ** ((bucket - 0.5) / LATENCY_BUCKETS_PER_DOUBLING)


@dataclass(frozen=True, slots=True)
class Latencies:
    """How many successful calls took how long, so far: counts per logarithmic bucket (eight a
    doubling), a fixed size whatever the number of calls. Counts only grow, so the calls of an
    interval are the difference of two readings (`since`), whoever else reads in between; a
    percentile is within LATENCY_RELATIVE_ERROR of a duration of that rank (from 62.5 µs to
    17 minutes)."""

    counts: tuple[int, ...] = ()

    @property
    def calls(self) -> int:
        return sum(self.counts)

    def since(self, earlier: Latencies) -> Latencies:
        before = earlier.counts + (0,) * (len(self.counts) - len(earlier.counts))
        return Latencies(tuple(max(0, n - b) for n, b in zip(self.counts, before, strict=False)))

    def percentile(self, fraction: float) -> float | None:
        """In ms, by nearest rank; None without calls."""
        total = self.calls
        if not total:
            return None
        rank = min(total, max(1, math.ceil(fraction * total)))
        return _middle_ms(bisect.bisect_left(list(itertools.accumulate(self.counts)), rank))


class LatencyHistogram:
    """The counts behind Latencies, as calls end."""

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS

    def record(self, ms: float) -> None:
        self._counts[_bucket(ms)] += 1

    def reading(self) -> Latencies:
        return Latencies(tuple(self._counts))
