"""The columnar segments of the read model (port.Segment): per series and time bucket, a new
version of the bucket's segment for each batch of events that published or restated values in
it, built on the version before.

The previous version comes from the builder's own memory of the versions it built (a bounded
LRU: the writes of a batch overlap with building the next one, so the store may not hold them
yet) or else from the store. A builder lives for one pass of the projector: a pass that fails
is retried from the stored checkpoint with a fresh one, whose memory cannot hold versions that
were never written.

Replaying events already in a stored version (a crash between the segment's write and the
checkpoint's) adds nothing: a version covers every event up to the greatest position_from of
its rows, and only later versions are added to it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import (
    MAX_SEGMENT_BYTES,
    OVERFLOW_ROWS,
    OfficialVersion,
    ProjectionBatch,
    ReadModelWriter,
    Segment,
    SegmentClosure,
)
from qis_domain.snaps import Frequency, bucket_of

BucketKey = tuple[str, int]  # (series_id, bucket_us)
MEMORY_BUCKETS = 256
"""Segment versions the builder remembers, the latest of as many buckets: the buckets being
filled by a live feed or a load stay in memory, so extending one reads nothing."""


@dataclass(frozen=True, slots=True)
class _Built:
    """The latest version of a bucket's segment, as the next one builds on it."""

    segment: Segment
    rows: pa.Table | None  # None when the segment overflowed
    covered: int  # the greatest position_from of its rows: events up to it are in


class SegmentBuilder:
    def __init__(self, store: ReadModelWriter, memory: int = MEMORY_BUCKETS) -> None:
        self._store = store
        self._memory = memory
        self._built: OrderedDict[BucketKey, _Built] = OrderedDict()

    async def build(
        self, published: dict[BucketKey, pa.Table]
    ) -> tuple[list[Segment], list[SegmentClosure]]:
        """The new segment versions of the buckets in `published` (each bucket's new rows, in
        log order: segments.NewRows), and the closures of the versions they follow."""
        made: list[Segment] = []
        closures: list[SegmentClosure] = []
        for key, rows in published.items():
            if not rows.num_rows:  # official events of no points (valid by their schema)
                continue
            before = await self._latest(key)
            if before is not None and rows["position_from"][0].as_py() <= before.covered:
                rows = rows.filter(pc.greater(rows["position_from"], before.covered))
                if not rows.num_rows:
                    continue
            built = _next_version(key, before, rows)
            made.append(built.segment)
            if before is not None:
                closures.append(
                    SegmentClosure(
                        key[0],
                        key[1],
                        before.segment.position_from,
                        built.segment.recorded_from_us,
                        built.segment.position_from,
                    )
                )
            self._remember(key, built)
        return made, closures

    async def _latest(self, key: BucketKey) -> _Built | None:
        built = self._built.get(key)
        if built is not None:
            self._built.move_to_end(key)
            return built
        stored = await self._store.last_segment(*key)
        if stored is None:
            return None
        if stored.rows == OVERFLOW_ROWS:
            # The per-point records hold it all; what it covers only matters for a replay,
            # which the overflowing version it makes (and the idempotent records) absorbs.
            return _Built(stored, None, stored.position_from)
        rows = segments.decode(stored.payload)
        return _Built(stored, rows, _covered(rows))

    def _remember(self, key: BucketKey, built: _Built) -> None:
        self._built[key] = built
        self._built.move_to_end(key)
        while len(self._built) > self._memory:
            self._built.popitem(last=False)


async def add_segments(
    builder: SegmentBuilder, batch: ProjectionBatch, frequency: Frequency
) -> ProjectionBatch:
    """A copy of `batch` with the segment versions its versions make, their buckets those of `frequency`:
    for read models written without events (benchmarks, tests), as the projector would write
    them from the events of a series of that frequency."""
    by_bucket: dict[BucketKey, list[OfficialVersion]] = {}
    for v in batch.versions:
        by_bucket.setdefault((v.series_id, bucket_of(v.snap_us, frequency)), []).append(v)
    published = {key: segments.rows_from_versions(vs) for key, vs in by_bucket.items()}
    made, closures = await builder.build(published)
    return replace(
        batch,
        segments=[*batch.segments, *made],
        segment_closures=[*batch.segment_closures, *closures],
    )


def _covered(rows: pa.Table) -> int:
    covered = pc.max(rows["position_from"]).as_py()
    return -1 if covered is None else int(covered)


def _next_version(key: BucketKey, before: _Built | None, new: pa.Table) -> _Built:
    if before is not None and before.rows is None:
        return _overflowing(key, before.segment, new)
    rows = segments.extend_rows(before.rows if before is not None else segments.EMPTY, new)
    payload = segments.encode(rows)
    if len(payload) > MAX_SEGMENT_BYTES:
        return _overflowing(key, before.segment if before is not None else None, new)
    lowest, highest = pc.min_max(rows["snap_us"]).values()
    segment = Segment(
        series_id=key[0],
        bucket_us=key[1],
        first_snap_us=lowest.as_py(),
        last_snap_us=highest.as_py(),
        rows=rows.num_rows,
        payload=payload,
        recorded_from_us=new["recorded_from_us"][0].as_py(),
        position_from=new["position_from"][0].as_py(),
    )
    # The rows kept from `before` came before `new` (build leaves out those it covers): the
    # greatest position of the rows is that of `new`, found without a pass in Python.
    return _Built(segment, rows, _covered(rows))


def _overflowing(key: BucketKey, previous: Segment | None, new: pa.Table) -> _Built:
    """A version too large for a segment: readers take the per-point records of its snaps."""
    lowest, highest = (scalar.as_py() for scalar in pc.min_max(new["snap_us"]).values())
    if previous is not None:
        lowest, highest = min(lowest, previous.first_snap_us), max(highest, previous.last_snap_us)
    segment = Segment(
        series_id=key[0],
        bucket_us=key[1],
        first_snap_us=lowest,
        last_snap_us=highest,
        rows=OVERFLOW_ROWS,
        payload=b"",
        recorded_from_us=new["recorded_from_us"][0].as_py(),
        position_from=new["position_from"][0].as_py(),
    )
    return _Built(segment, None, _covered(new))
