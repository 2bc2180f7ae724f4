"""Read models written by tests as the projector writes them: with each batch's segments.

Tests of the query side write per-point records (versions, closures) straight through the port;
a real projector adds to every batch the segment versions of the buckets the batch published in
(qis_projector.application.segments). `SegmentingStore` (in memory) and `Segmenting` (around any
writer) do the same with the projector's own builder, in the buckets of a minute series.
"""

from __future__ import annotations

from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    OPEN_END,
    ProjectionBatch,
    ReadModelWriter,
    Segment,
    TopicVersion,
)
from qis_domain.snaps import Frequency
from qis_projector.application.segments import SegmentBuilder, add_segments

FREQUENCY = Frequency.MINUTE


class SegmentingStore(InMemoryReadStore):
    """An in-memory writer whose batches get their segments as the projector makes them."""

    def __init__(
        self, database: InMemoryReadDatabase | None = None, generation: str | None = None
    ) -> None:
        super().__init__(database, generation)
        self._segments = SegmentBuilder(self)

    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        await super().apply(await add_segments(self._segments, batch, FREQUENCY), checkpoint)


class Segmenting:
    """Any writer whose batches get their segments as the projector makes them."""

    def __init__(self, store: ReadModelWriter) -> None:
        self.store = store
        self._segments = SegmentBuilder(store)

    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        await self.store.apply(await add_segments(self._segments, batch, FREQUENCY), checkpoint)

    async def checkpoint(self) -> int | None:
        return await self.store.checkpoint()

    async def last_segment(self, series_id: str, bucket_us: int) -> Segment | None:
        return await self.store.last_segment(series_id, bucket_us)

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        return await self.store.topics(at_position)
