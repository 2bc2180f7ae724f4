"""Points grouped into chunks, one BulkIngest command each, with ids derived from their content.

A chunk holds points of one series from one source (what one IngestPoints command takes) and
closes when it is full, when its first point has waited long enough (a live feed's latency
bound), or when its series repeats a snap (the service takes a snap once per command: an
identical repeat is skipped, a different value waits for the next chunk, as a correction).

The id is a uuid5 of the series, the source and the points themselves. The service applies a
command id once, so a chunk sent again for any reason (a broken stream, a re-run of the same
history load, a restarted feed that reads the same page again) is answered as a duplicate and
stores nothing twice. History loads close chunks on size only, so the same load always makes
the same chunks.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import Point, ValueKind

# Fixed forever: changing it would give every past chunk a new id, so a re-run would store
# its points again instead of being answered with duplicates.
_NAMESPACE = uuid.UUID("9a3c1f52-5e2b-4d0c-8c71-6a0f3e2b9d14")

Key = tuple[str, str, ValueKind]


@dataclass(frozen=True, slots=True)
class Chunk:
    command_id: str
    series_id: str
    source_id: str
    kind: ValueKind
    points: tuple[Point, ...]


def chunk_id(series_id: str, source_id: str, kind: ValueKind, points: tuple[Point, ...]) -> str:
    digest = hashlib.sha256()
    for point in points:
        digest.update(f"{point.snap_us},{point.offset_min},{','.join(point.values)};".encode())
    name = f"qis-feed|{series_id}|{source_id}|{kind}|{len(points)}|{digest.hexdigest()}"
    return str(uuid.uuid5(_NAMESPACE, name))


def salvage_id(command_id: str) -> str:
    """Id of the chunk re-sent with the rows the service did not refuse: derived, so that a
    second salvage of the same refusal is a duplicate too."""
    return str(uuid.uuid5(_NAMESPACE, f"{command_id}|salvage"))


def make_chunk(series_id: str, source_id: str, kind: ValueKind, points: tuple[Point, ...]) -> Chunk:
    return Chunk(chunk_id(series_id, source_id, kind, points), series_id, source_id, kind, points)


@dataclass
class _Open:
    started: float
    points: list[Point] = field(default_factory=list)
    snaps: dict[int, tuple[str, ...]] = field(default_factory=dict)


class Batcher:
    def __init__(
        self,
        max_points: int,
        max_delay_s: float | None,
        counters: FeedCounters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_delay_s` None: chunks close on size only (history loads: deterministic)."""
        if not 1 <= max_points <= 10_000:
            raise ValueError(f"points per chunk {max_points} is not 1 to 10,000")
        self._max_points = max_points
        self._max_delay_s = max_delay_s
        self._counters = counters
        self._clock = clock
        self._open: dict[Key, _Open] = {}

    def add(self, point: Point) -> list[Chunk]:
        """The chunks `point` closed (none, one, or two when it repeats a snap and fills)."""
        key = (point.series_id, point.source_id, point.kind)
        closed: list[Chunk] = []
        batch = self._open.get(key)
        if batch is not None and (seen := batch.snaps.get(point.snap_us)) is not None:
            if seen == point.values:
                self._counters.skipped += 1
                return closed
            closed.append(self._close(key))
            batch = None
        if batch is None:
            batch = self._open[key] = _Open(self._clock())
        batch.points.append(point)
        batch.snaps[point.snap_us] = point.values
        if len(batch.points) >= self._max_points:
            closed.append(self._close(key))
        return closed

    def next_due(self) -> float | None:
        """When the oldest open chunk must close (clock time), None when nothing waits."""
        if self._max_delay_s is None or not self._open:
            return None
        return min(batch.started for batch in self._open.values()) + self._max_delay_s

    def due(self) -> list[Chunk]:
        if self._max_delay_s is None:
            return []
        limit = self._clock() - self._max_delay_s
        return [self._close(k) for k, b in list(self._open.items()) if b.started <= limit]

    def drain(self) -> list[Chunk]:
        return [self._close(key) for key in list(self._open)]

    def _close(self, key: Key) -> Chunk:
        batch = self._open.pop(key)
        series_id, source_id, kind = key
        return make_chunk(series_id, source_id, kind, tuple(batch.points))
