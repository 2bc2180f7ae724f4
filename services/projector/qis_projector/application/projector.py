"""The projector: a catch-up subscription to the event store that keeps the read models.

Exactly-once effect without transactions (DESIGN §3): every read-model write is idempotent and
the checkpoint is written after its batch, so a crash anywhere replays a suffix of the log and
changes nothing that was already right. The projector never writes to the event store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import EventFilter, EventStore, RecordedEvent
from qis_adapters.readstore.port import ProjectionBatch, ReadModelWriter

from qis_projector.application.projection import Projection

log = logging.getLogger(__name__)

# Streams of the qis aggregates: series definitions and buckets, data sources.
EVENT_FILTER = EventFilter(stream_prefixes=("series/", "sources/"))


@dataclass(frozen=True, slots=True)
class ProjectorLimits:
    max_batch_events: int = 200
    max_batch_points: int = 50_000
    queue_events: int = 400  # read-ahead bound: memory stays flat however far behind we are


class Projector:
    def __init__(
        self,
        events: EventStore,
        store: ReadModelWriter,
        codec: EventCodec | None = None,
        limits: ProjectorLimits = ProjectorLimits(),
    ) -> None:
        self._events = events
        self._store = store
        self._codec = codec or EventCodec()
        self._limits = limits
        self.checkpoint: int | None = None
        # One projection for the process's life: it carries the knowledge-time floor from one
        # batch to the next.
        self._projection = Projection()
        self.events_projected = 0
        self.points_projected = 0
        self.batches = 0

    async def run(self, until_position: int | None = None) -> None:
        """Project forever, or until the checkpoint reaches `until_position`.

        Projecting a batch (Python, on the event loop) overlaps with writing the previous one
        (SQLite, on the store's thread); writes stay strictly in order, each with its
        checkpoint, so a crash still replays from the last batch written.
        """
        self.checkpoint = await self._store.checkpoint()
        projected = self.checkpoint or 0
        if until_position is not None and projected >= until_position:
            return
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(self._limits.queue_events)
        reader = asyncio.create_task(self._read(queue))
        writing: asyncio.Task[None] | None = None
        try:
            while until_position is None or projected < until_position:
                batch, position, points, events = await self._project_batch(queue, reader)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._write(batch, position, points, events))
                projected = position
            if writing is not None:
                await writing
        finally:
            reader.cancel()
            if writing is not None and not writing.done():
                writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
                if writing is not None:
                    await writing

    async def lag(self) -> int:
        """Events (by commit position) written but not yet projected."""
        head = await self._events.head_position()
        return max(0, head - (self.checkpoint or 0))

    async def _read(self, queue: asyncio.Queue[RecordedEvent]) -> None:
        async for record in self._events.subscribe(self.checkpoint, EVENT_FILTER):
            await queue.put(record)

    async def _project_batch(
        self, queue: asyncio.Queue[RecordedEvent], reader: asyncio.Task[None]
    ) -> tuple[ProjectionBatch, int, int, int]:
        first = await _next(queue, reader)
        records = [first]
        points = _points(first)
        while (
            len(records) < self._limits.max_batch_events
            and points < self._limits.max_batch_points
            and not queue.empty()
        ):
            record = queue.get_nowait()
            records.append(record)
            points += _points(record)
        for record in records:
            self._projection.handle(self._codec.decode(record))
        return self._projection.take(), records[-1].position, points, len(records)

    async def _write(self, batch: ProjectionBatch, position: int, points: int, events: int) -> None:
        started = time.perf_counter()
        await self._store.apply(batch, position)
        self.checkpoint = position
        self.events_projected += events
        self.points_projected += points
        self.batches += 1
        log.debug(
            "wrote %d events (%d points) in %.1f ms, checkpoint %d",
            events,
            points,
            (time.perf_counter() - started) * 1000,
            position,
        )


async def _next(queue: asyncio.Queue[RecordedEvent], reader: asyncio.Task[None]) -> RecordedEvent:
    """The next record, or the reader's failure: a dead subscription must not look idle."""
    getter = asyncio.ensure_future(queue.get())
    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    reader.result()  # raises the reader's exception
    raise RuntimeError("event subscription ended unexpectedly")


def _points(record: RecordedEvent) -> int:
    """A cheap size estimate for batching: event payload bytes per ~60-byte point."""
    return max(1, len(record.data) // 60)
