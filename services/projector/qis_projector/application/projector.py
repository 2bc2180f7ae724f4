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
from qis_adapters.readstore.port import ReadModelWriter

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
        self.events_projected = 0
        self.points_projected = 0
        self.batches = 0

    async def run(self, until_position: int | None = None) -> None:
        """Project forever, or until the checkpoint reaches `until_position`."""
        self.checkpoint = await self._store.checkpoint()
        if until_position is not None and (self.checkpoint or 0) >= until_position:
            return
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(self._limits.queue_events)
        reader = asyncio.create_task(self._read(queue))
        try:
            while until_position is None or (self.checkpoint or 0) < until_position:
                await self._project_batch(queue, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def lag(self) -> int:
        """Events (by commit position) written but not yet projected."""
        head = await self._events.head_position()
        return max(0, head - (self.checkpoint or 0))

    async def _read(self, queue: asyncio.Queue[RecordedEvent]) -> None:
        async for record in self._events.subscribe(self.checkpoint, EVENT_FILTER):
            await queue.put(record)

    async def _project_batch(
        self, queue: asyncio.Queue[RecordedEvent], reader: asyncio.Task[None]
    ) -> None:
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
        projection = Projection()
        for record in records:
            projection.handle(self._codec.decode(record))
        started = time.perf_counter()
        await self._store.apply(projection.take(), records[-1].position)
        self.checkpoint = records[-1].position
        self.events_projected += len(records)
        self.points_projected += points
        self.batches += 1
        log.debug(
            "projected %d events (%d points) in %.1f ms, checkpoint %d",
            len(records),
            points,
            (time.perf_counter() - started) * 1000,
            self.checkpoint,
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
