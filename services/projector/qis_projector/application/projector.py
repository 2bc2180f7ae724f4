"""The projector: a catch-up subscription to the event store that keeps the read models.

Exactly-once effect without transactions (docs/architecture.md §3): every read-model write is idempotent and
the checkpoint is written after its batch, so a crash anywhere replays a suffix of the log and
changes nothing that was already right. The projector never writes to the event store.

Nothing stops it silently. A store that fails for a while (full disk, lock, read-only file,
unreachable server) is waited out and tried again from the checkpoint; `status` says why
meanwhile. An event that cannot be projected halts it right before that event, with a report
naming the event: retrying an immutable log would fail the same way forever.

Telemetry (docs/observability.md), when given: a span per batch, *linked* to the trace context
each event carries (a link, not a parent: the work happens later, and again at each replay),
and the measures of qis_projector.application.metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, StatusCode
from qis_adapters.eventstore.codec import DecodedEvent, EventCodec, columns_length
from qis_adapters.eventstore.port import EventFilter, EventStore, RecordedEvent
from qis_adapters.faults import store_fault
from qis_adapters.readstore.port import ProjectionBatch, ReadModelWriter
from qis_runtime.telemetry import link_to

from qis_projector.application.faults import Backoff, describe
from qis_projector.application.metrics import ProjectorMetrics
from qis_projector.application.projection import PROJECTED_TYPES, Projection
from qis_projector.application.segments import BucketKey, SegmentBuilder
from qis_projector.application.topics import routes_at

log = logging.getLogger(__name__)

# Streams of the qis aggregates: series definitions and buckets, data sources, the access
# policies and the records of denials. Every command's events are in them, so the checkpoint
# passes the position of each command (a min_position read of it would otherwise time out).
# The scheduler's checkpoints project nothing, but a projector that never reads them would count
# them as lag (its checkpoint would stop short of the log's head).
EVENT_FILTER = EventFilter(
    stream_prefixes=("series/", "sources/", "access/", "routing/", "scheduler/")
)

# Waiting this long for the next event with the subscription alive means the projector is
# caught up: whatever failed before works again (there is just nothing to write).
_IDLE_S = 0.5


@dataclass(frozen=True, slots=True)
class ProjectorLimits:
    max_batch_events: int = 200
    max_batch_points: int = 50_000
    queue_events: int = 400  # read-ahead bound: memory stays flat however far behind we are


@dataclass(frozen=True, slots=True)
class Status:
    serving: bool
    reason: str


class ProjectionHalted(Exception):
    """The projector stopped in this generation: an event it cannot project (`record`), or a
    failure that is neither an event's nor the store's passing trouble (`record` None)."""

    def __init__(
        self, error: BaseException, record: RecordedEvent | None, checkpoint: int | None
    ) -> None:
        self.error = error
        self.record = record
        self.checkpoint = checkpoint
        what = (
            "the projector failed"
            if record is None
            else f"cannot project the event at position {record.position}"
            f" ({record.type} in stream {record.stream!r})"
        )
        super().__init__(f"{what}: {describe(error)}; halted at checkpoint {checkpoint}")


@dataclass(frozen=True, slots=True)
class _Batch:
    records: ProjectionBatch
    published: dict[BucketKey, pa.Table]  # new rows by bucket: for the segments
    last: RecordedEvent
    events: int
    points: int
    floor_us: int  # the projection's knowledge-time floor after the batch
    span: Span | None  # ended once the batch is written
    decoded: list[DecodedEvent]  # for the metrics, once written (empty without metrics)


class _BatchFailed(Exception):
    """A deterministic failure somewhere in the events up to `last` (not yet written)."""

    def __init__(self, last: RecordedEvent, error: BaseException) -> None:
        super().__init__(describe(error))
        self.last = last
        self.error = error


class Projector:
    def __init__(
        self,
        events: EventStore,
        store: ReadModelWriter,
        codec: EventCodec | None = None,
        limits: ProjectorLimits = ProjectorLimits(),
        backoff: Backoff | None = None,
        *,
        metrics: ProjectorMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """`metrics`, `tracer`: none, nothing is measured or traced (and nothing is spent on
        it)."""
        self._events = events
        self._metrics = metrics
        self._tracer = tracer
        self._store = store
        self._codec = codec or EventCodec()
        self._limits = limits
        self._backoff = backoff or Backoff()
        self.checkpoint: int | None = None
        # The knowledge-time floor as of the checkpoint: it carries from one batch to the next,
        # and a retry starts again from it.
        self._floor_us = 0
        self.unavailable = ""
        """Why the projector is waiting for its stores; empty when it is not."""
        self.retries = 0
        """Transient failures in a row."""
        self.halted: ProjectionHalted | None = None
        self.events_projected = 0
        self.points_projected = 0
        self.batches = 0

    async def run(self, until_position: int | None = None) -> None:
        """Project forever, or until the checkpoint reaches `until_position`.

        Store failures are waited out (see `status`). Raises ProjectionHalted, after logging
        it, when an event cannot be projected: everything before it is written.
        """
        self.halted = None
        while True:
            try:
                if await self._attempt(until_position):
                    return
            except ProjectionHalted as halted:
                self.halted = halted
                log.error("%s", halted)
                raise

    async def status(self, max_lag: int) -> Status:
        """Whether the read model is current, and why not."""
        if self.halted is not None:
            return Status(False, str(self.halted))
        if self.unavailable:
            return Status(False, self.unavailable)
        try:
            lag = await self.lag()
        except Exception as error:
            return Status(False, f"cannot read the head of the log: {describe(error)}")
        if lag > max_lag:
            return Status(False, f"{lag} positions behind the log (more than {max_lag})")
        return Status(True, f"checkpoint {self.checkpoint}, {lag} positions behind the log")

    async def lag(self) -> int:
        """Events (by commit position) written but not yet projected."""
        head = await self._events.head_position()
        lag = max(0, head - (self.checkpoint or 0))
        if self._metrics is not None:
            self._metrics.lag(lag)
        return lag

    async def _attempt(self, until_position: int | None) -> bool:
        """One pass from the stored checkpoint: True once it reached `until_position`."""
        try:
            try:
                await self._project(until_position, self._limits.max_batch_events)
                return True
            except _BatchFailed as failed:
                # Which event? The failed events again, one per write: those before the culprit
                # get written, the culprit fails alone (below) and the report can name it.
                await self._project(failed.last.position, 1)
                return False  # it did not fail again: on with whole batches
        except _BatchFailed as alone:
            raise ProjectionHalted(alone.error, alone.last, self.checkpoint) from alone.error
        except Exception as error:
            cause = store_fault(error)
            if cause is None:
                raise ProjectionHalted(error, None, self.checkpoint) from error
            await self._wait_out(cause)
            return False

    async def _wait_out(self, cause: BaseException) -> None:
        self.retries += 1
        delay = self._backoff.delay(self.retries)
        self.unavailable = (
            f"store unavailable ({describe(cause)}); retry {self.retries} in {delay:.1f} s"
            f" from checkpoint {self.checkpoint}"
        )
        log.warning("%s", self.unavailable)
        await asyncio.sleep(delay)

    def _recovered(self) -> None:
        if self.retries:
            log.info("stores available again after %d retries", self.retries)
        self.retries = 0
        self.unavailable = ""

    async def _project(self, until_position: int | None, batch_events: int) -> None:
        """Projects from the stored checkpoint.

        Projecting a batch (Python, on the event loop) overlaps with writing the previous one
        (SQLite, on the store's thread); writes stay strictly in order, each with its
        checkpoint, so a crash still replays from the last batch written.
        """
        self.checkpoint = await self._store.checkpoint()
        # The topics in force where projection resumes: which events a topic takes is decided
        # by the definitions at each event's position, as a rebuild from 0 decides it.
        projection = Projection(self._floor_us, await routes_at(self._store, self.checkpoint))
        segments = SegmentBuilder(self._store)
        projected = self.checkpoint or 0
        if until_position is not None and projected >= until_position:
            return
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(self._limits.queue_events)
        reader = asyncio.create_task(self._read(queue))
        writing: asyncio.Task[None] | None = None
        try:
            while until_position is None or projected < until_position:
                first = await self._first(queue, reader, writing)
                batch = self._project_batch(projection, first, queue, batch_events)
                built = await segments.build(batch.published)
                batch.records.segments, batch.records.segment_closures = built
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._write(batch))
                projected = batch.last.position
            if writing is not None:
                await writing
        except Exception:
            # The write in flight comes first: its failure is the earlier one in the log, and
            # its success moves the checkpoint that a retry starts from.
            if writing is not None:
                await writing
            raise
        finally:
            for task in (reader, writing):
                if task is not None:
                    task.cancel()
                    # What a finished task failed with was raised above, or lost to an earlier
                    # failure that a retry from the checkpoint meets first.
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _read(self, queue: asyncio.Queue[RecordedEvent]) -> None:
        async for record in self._events.subscribe(self.checkpoint, EVENT_FILTER):
            await queue.put(record)

    async def _first(
        self,
        queue: asyncio.Queue[RecordedEvent],
        reader: asyncio.Task[None],
        writing: asyncio.Task[None] | None,
    ) -> RecordedEvent:
        """The next event. Raises what the reader or the write in flight failed with: a dead
        subscription must not look idle, nor a failed write look pending while no event comes."""
        getter = asyncio.ensure_future(queue.get())
        watched: set[asyncio.Future[Any]] = {getter, reader}
        if writing is not None:
            watched.add(writing)
        try:
            while True:
                done, _ = await asyncio.wait(
                    watched, timeout=_IDLE_S, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    return getter.result()
                if reader in done:
                    reader.result()
                    raise RuntimeError("event subscription ended unexpectedly")
                if writing is not None and writing in done:
                    writing.result()
                    watched.remove(writing)
                elif not done and (writing is None or writing.done()):
                    self._recovered()
        finally:
            getter.cancel()

    def _project_batch(
        self,
        projection: Projection,
        first: RecordedEvent,
        queue: asyncio.Queue[RecordedEvent],
        max_events: int,
    ) -> _Batch:
        started_ns = time.time_ns()  # the batch's span covers its projection and its write
        records = [first]
        points = _points(first)
        while (
            len(records) < max_events
            and points < self._limits.max_batch_points
            and not queue.empty()
        ):
            record = queue.get_nowait()
            records.append(record)
            points += _points(record)
        links: dict[str, Link] = {}
        measured: list[DecodedEvent] = []
        for record in records:
            if not self._reads(record):
                projection.advance(record)
                continue
            try:
                decoded = self._codec.decode(record)
                projection.handle(decoded)
            except Exception as error:
                raise _BatchFailed(record, error) from error
            if self._metrics is not None:
                measured.append(decoded)
            traceparent = decoded.metadata.traceparent
            if self._tracer is not None and traceparent not in links:
                link = link_to(traceparent, decoded.metadata.tracestate)
                if link is not None:
                    links[traceparent] = link
        records_of_batch, published = projection.take()
        span = None
        if self._tracer is not None:
            span = self._tracer.start_span(
                "projector batch",
                context=Context(),  # a root: whatever runs the projector, it is not its cause
                start_time=started_ns,
                links=list(links.values()),
                attributes={
                    "qis.events": len(records),
                    "qis.position.first": first.position,
                    "qis.position.last": records[-1].position,
                },
            )
        return _Batch(
            records_of_batch,
            published,
            records[-1],
            len(records),
            points,
            projection.floor_us,
            span,
            measured,
        )

    def _reads(self, record: RecordedEvent) -> bool:
        """Whether anything here reads the event, so that it is decoded: the read models, the
        metrics or the trace links. The others (DataReconciled: ~45 % of a load's decoding)
        only move knowledge time on, and a payload of theirs that would not decode no longer
        halts the projector; a type the registry does not know is decoded, and fails."""
        return (
            record.type in PROJECTED_TYPES
            or self._metrics is not None
            or self._tracer is not None
            or not self._codec.registry.knows(record.type)
        )

    async def _write(self, batch: _Batch) -> None:
        started = time.perf_counter()
        position = batch.last.position
        try:
            await self._store.apply(batch.records, position)
        except Exception as error:
            if batch.span is not None:
                batch.span.record_exception(error)
                batch.span.set_status(StatusCode.ERROR, describe(error))
            if store_fault(error) is not None:
                raise
            raise _BatchFailed(batch.last, error) from error
        finally:
            if batch.span is not None:
                batch.span.end()
        if self._metrics is not None:
            # Only once written: a batch that failed is projected, and counted, again.
            for decoded in batch.decoded:
                self._metrics.observe(decoded)
            self._metrics.written(batch.events, position, batch.last.recorded_at_us)
        self.checkpoint = position
        self._floor_us = batch.floor_us
        self.events_projected += batch.events
        self.points_projected += batch.points
        self.batches += 1
        self._recovered()
        log.debug(
            "wrote %d events (%d points) in %.1f ms, checkpoint %d",
            batch.events,
            batch.points,
            (time.perf_counter() - started) * 1000,
            position,
        )


def _points(record: RecordedEvent) -> int:
    """What an event weighs in a batch: its points (a columnar event's snaps, counted in its
    head; columns written once make its bytes no measure of them), or for any other event its
    payload bytes per ~60-byte point."""
    n = columns_length(record.data)
    return max(1, len(record.data) // 60 if n is None else n)
