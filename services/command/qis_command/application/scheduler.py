"""The process manager for time-driven work: cut-off publication, override expiry, quality
metrics of closed windows, service-level lateness.

It watches the event log and, when something falls due, issues an ordinary command whose id is
derived from what fell due (uuid5 of kind, series, bucket or window, and due time). Running it
twice, or in two processes, therefore does nothing twice: the aggregates answer a repeated
command id with its first outcome. It never appends events itself.

Service levels (docs/service-levels.md) are walked, per deadline of a series, over its
expected snaps from the time the level took effect: lazily, holding one cursor per deadline,
never a list of due times. Each command lists every due snap of one bucket from the bucket's
start, so that it is a function of its last snap alone: a restarted scheduler, which walks
again from the start, sends commands already handled, and the bucket raises one issue per
point however it is asked. A value that comes after its deadline is found late by its own
ingest decision (qis_domain.service_levels `Arrivals`), whether this process runs or not: the
walk raises `late_arrival` only for values still missing. The walk judges publication: a point
not official when checked, or first published after its deadline (the bucket keeps when), is
late, so a point published late while this process was stopped is found when it resumes.

**Checkpoint.** A start does not read the log from position 0: the scheduler's state is saved
as a snapshot (qis_domain.scheduler_state: stream `scheduler/state`, every event a whole
snapshot, recorded through the CheckpointScheduler command like a consumer group's checkpoint,
so the scheduler still appends nothing itself) every `checkpoint_s` seconds, or sooner after
`checkpoint_events` events observed, when it changed. A snapshot holds the position observed up
to and everything pending: the series' frequencies, zones and service levels, the due cut-offs
and override expiries, the metrics windows not measured yet, the service-level watches and
their cursors, all bounded by the series and the work not done yet (a window leaves the state
once its metrics are asked for: see `windows`). A start loads the last snapshot (one event
read) and subscribes after its position; a store without one (older stores, a first start)
starts from 0, as before.

Why nothing can be missed: a snapshot is taken in one synchronous step, after every watched
event up to its position has been observed and before any later one is, so every due item those
events created and that was not fired yet is in it (an item leaves the state only once its
command was answered). Restoring it and reading the log after its position rebuilds the state a
scheduler that never stopped would have, except for work done after the snapshot was taken,
which is still in it: that work is sent again under the same derived command ids and answered
with its first outcome. A snapshot older than the truth (the last one lost, a scheduler
stopped before its next checkpoint) therefore only costs duplicates. Metrics windows are
measured once no publication was committed in them for `metrics_quiet_s`, by the events'
commit times and positions, not by when this process read them, so that a restart fires the
same commands as a scheduler that never stopped (tests/service/command/
test_scheduler_checkpoint.py compares the two over random histories). A long catch-up (the
first start on a store without a checkpoint) may ask for a window's metrics before it has read
the window's last publication: one calculation more, never one missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec, peek_columns
from qis_adapters.eventstore.port import EventFilter, EventStore, RecordedEvent
from qis_domain.bounds import MAX_INSTANT_US
from qis_domain.commands import CommandContext
from qis_domain.definitions import SeriesDefinition
from qis_domain.errors import DomainError
from qis_domain.events import (
    DataPublished,
    DataRestated,
    DomainEvent,
    ManualOverrideSet,
    PublicationScheduled,
    SchemaEvolved,
    SeriesDefined,
)
from qis_domain.events.scheduler import (
    DueWork,
    LevelWatch,
    OpenWindow,
    ScheduledLevel,
    ScheduledSeries,
    SchedulerCheckpointed,
    SchedulerSnapshot,
)
from qis_domain.reference_data import scheduled_level
from qis_domain.rules import Severity
from qis_domain.scheduler_state import SCHEDULER_STREAM
from qis_domain.service_levels import (
    LATE_ARRIVAL,
    LATE_PUBLICATION,
    Deadline,
    expected_snaps,
)
from qis_domain.snaps import Frequency, Snap, bucket_of

from qis_command.application.commands import (
    CalculateQualityMetrics,
    CheckpointScheduler,
    ExpireOverrides,
    PublishDue,
    RaiseLateness,
)
from qis_command.application.handlers import CommandHandlers, ConcurrencyExhausted
from qis_command.application.ports import TradingCalendar
from qis_command.application.references import level_sessions

log = logging.getLogger(__name__)

SCHEDULER_USER = "qis-scheduler"
_IDS = uuid.UUID("3c1a9e0e-8f57-4b0e-9d7e-5b2f0f6a0c11")
WATCHED = EventFilter(
    stream_prefixes=("series/",),
    event_types=(
        SeriesDefined.event_type,
        SchemaEvolved.event_type,
        PublicationScheduled.event_type,
        ManualOverrideSet.event_type,
        DataPublished.event_type,
        DataRestated.event_type,
    ),
)
_PUBLICATIONS = {DataPublished.event_type, DataRestated.event_type}
_INTRADAY = {Frequency.TICK, Frequency.SECOND, Frequency.MINUTE, Frequency.HOURLY}
_DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class Due:
    kind: str  # "cutoff" | "override" | "metrics"
    series_id: str
    start_us: int  # bucket start, or window start
    end_us: int = 0  # window end (metrics only)


class Scheduler:
    def __init__(
        self,
        store: EventStore,
        handlers: CommandHandlers,
        clock_us: Callable[[], int],
        tick_s: float = 1.0,
        metrics_grace_s: float = 3600.0,
        metrics_quiet_s: float = 60.0,
        calendar: TradingCalendar | None = None,
        checkpoint_s: float = 10.0,
        checkpoint_events: int = 10_000,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._clock_us = clock_us
        self._tick_s = tick_s
        self._grace_us = int(metrics_grace_s * 1_000_000)
        self._quiet_us = int(metrics_quiet_s * 1_000_000)
        self._checkpoint_us = int(checkpoint_s * 1_000_000)
        self._checkpoint_events = checkpoint_events
        self._codec = EventCodec()
        self._frequencies: dict[str, Frequency] = {}
        self._zones: dict[str, ZoneInfo] = {}
        self.pending: dict[Due, set[int]] = {}  # what falls due -> the times it falls due
        # Metrics of a window wait until it is closed and quiet, so a bulk load of history is
        # measured once, complete; then the window leaves this map. The position of its last
        # publication goes into the command id: new data later, new calculation.
        self.windows: dict[Due, _Activity] = {}
        self.fired = 0
        self._calendar = calendar or ExchangeCalendars()
        # the service level in force, per series
        self._levels: dict[str, ScheduledLevel | None] = {}
        self.watches: list[_Watch] = []
        self.position = 0  # of the last watched event observed (0: none)
        self.checkpoint: tuple[int, int] | None = None  # (position, clock) of the last saved
        # What a start restores without a checkpoint: saving it would change nothing.
        self._saved = SchedulerSnapshot(position=0)
        self._observed = 0  # events observed since the last checkpoint

    async def run(self) -> None:
        await self.load_checkpoint()
        watcher = asyncio.create_task(self._watch())
        try:
            while True:
                await asyncio.sleep(self._tick_s)
                if watcher.done():
                    watcher.result()
                await self.fire_due()
                if self._checkpoint_due():
                    await self.save_checkpoint()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self) -> None:
        async for record in self._store.subscribe(self.position or None, WATCHED):
            self.observe_record(record)
            # A subscription hands a page of records out without a pause, and this runs on the
            # command service's event loop: let its requests in between records (a catch-up
            # page of 200 thousand-point publications held the loop for 0.6 s).
            await asyncio.sleep(0)

    def observe_record(self, record: RecordedEvent) -> None:
        """Observes a watched record as `observe` observes its event. Of a publication only
        the series and snaps are read (`peek_columns`): they are all it tells the scheduler,
        and decoding every value of every point published cost 0.5-1.8 µs a point in the
        process that ingests them (now ~0.05)."""
        if record.type in _PUBLICATIONS and (head := peek_columns(record.data)) is not None:
            at_us = self._seen(record.recorded_at_us, record.position)
            self._published(head.series_id, head.snaps, record.position, at_us)
            return
        self.observe(self._codec.decode(record).event, record.recorded_at_us, record.position)

    def observe(
        self, event: DomainEvent, recorded_at_us: int | None = None, position: int = 0
    ) -> None:
        """`recorded_at_us`: the event's commit time, from which a service level it sets is in
        force and after which a metrics window it publishes in is quiet (None: now);
        `position`: its commit position."""
        at_us = self._seen(recorded_at_us, position)
        if isinstance(event, SeriesDefined | SchemaEvolved):
            self._frequencies[event.series_id] = event.definition.frequency
            self._zones[event.series_id] = ZoneInfo(event.definition.time_zone)
            self._set_level(event.series_id, event.definition, at_us)
            return
        frequency = self._frequencies.get(getattr(event, "series_id", ""))
        if frequency is None:
            return
        if isinstance(event, PublicationScheduled):
            for snap_us, due_us in zip(event.snaps, event.due_us, strict=True):
                self._add(Due("cutoff", event.series_id, bucket_of(snap_us, frequency)), due_us)
        elif isinstance(event, ManualOverrideSet):
            for snap_us, expiry in zip(event.snaps, event.expires_us, strict=True):
                if expiry:
                    self._add(
                        Due("override", event.series_id, bucket_of(snap_us, frequency)), expiry
                    )
        elif isinstance(event, DataPublished | DataRestated):
            self._published(event.series_id, event.snaps, position, at_us)

    def _seen(self, recorded_at_us: int | None, position: int) -> int:
        """Counts an event observed; its commit time (None: now)."""
        self.position = max(self.position, position)
        self._observed += 1
        return self._clock_us() if recorded_at_us is None else recorded_at_us

    def _published(
        self,
        series_id: str,
        snaps: Sequence[int] | npt.NDArray[np.int64],
        position: int,
        at_us: int,
    ) -> None:
        frequency = self._frequencies.get(series_id)
        if frequency is None:
            return
        for start, end in _windows(snaps, frequency, self._zones[series_id]):
            self.windows[Due("metrics", series_id, start, end)] = _Activity(position, at_us)

    def _add(self, due: Due, at_us: int) -> None:
        self.pending.setdefault(due, set()).add(at_us)

    def _set_level(self, series_id: str, definition: SeriesDefinition, since_us: int) -> None:
        """A new service level applies to the snaps from `since_us` on; the one it replaces
        still to the snaps before."""
        level = scheduled_level(definition)
        if level == self._levels.get(series_id):
            return
        for watch in self.watches:
            if watch.series_id == series_id and watch.until_us is None:
                watch.until_us = since_us
        self._levels[series_id] = level
        if level is not None:
            self.watches.extend(
                _Watch(series_id, rule, source, deadline, severity, level, since_us, since_us)
                for rule, source, deadline, severity in _deadlines(level)
            )

    # --- checkpoint (see the module's docstring) ---

    def snapshot(self) -> SchedulerSnapshot:
        """The state as of `position`: one synchronous step, so no event is half observed."""
        return SchedulerSnapshot(
            position=self.position,
            series=tuple(
                ScheduledSeries(
                    series_id=series_id,
                    frequency=frequency,
                    time_zone=self._zones[series_id].key,
                    level=self._levels.get(series_id),
                )
                for series_id, frequency in self._frequencies.items()
            ),
            due=tuple(
                DueWork(
                    kind=d.kind,
                    series_id=d.series_id,
                    start_us=d.start_us,
                    end_us=d.end_us,
                    times=tuple(sorted(times)),
                )
                for d, times in self.pending.items()
            ),
            windows=tuple(
                OpenWindow(
                    series_id=w.series_id,
                    start_us=w.start_us,
                    end_us=w.end_us,
                    last_position=a.last_position,
                    last_seen_us=a.last_seen_us,
                )
                for w, a in self.windows.items()
            ),
            watches=tuple(
                LevelWatch(
                    series_id=w.series_id,
                    rule=w.rule,
                    source_id=w.source_id,
                    deadline=w.deadline,
                    severity=w.severity,
                    level=w.level,
                    start_us=w.start_us,
                    next_us=w.next_us,
                    until_us=w.until_us,
                )
                for w in self.watches
            ),
        )

    def restore(self, snapshot: SchedulerSnapshot) -> None:
        """The state of `snapshot`, in place of this scheduler's (one that observed nothing)."""
        self.position = snapshot.position
        self._frequencies = {s.series_id: s.frequency for s in snapshot.series}
        self._zones = {s.series_id: ZoneInfo(s.time_zone) for s in snapshot.series}
        self._levels = {s.series_id: s.level for s in snapshot.series}
        self.pending = {
            Due(d.kind, d.series_id, d.start_us, d.end_us): set(d.times) for d in snapshot.due
        }
        self.windows = {
            Due("metrics", w.series_id, w.start_us, w.end_us): _Activity(
                w.last_position, w.last_seen_us
            )
            for w in snapshot.windows
        }
        self.watches = [
            _Watch(
                w.series_id,
                w.rule,
                w.source_id,
                w.deadline,
                Severity(w.severity),
                w.level,
                w.start_us,
                w.next_us,
                w.until_us,
            )
            for w in snapshot.watches
        ]
        self._saved = snapshot

    async def load_checkpoint(self) -> None:
        """Restores the last snapshot saved, if any: one event read, whatever the history."""
        version = await self._store.stream_version(SCHEDULER_STREAM)
        if version is None:
            return
        records = await self._store.read_stream(SCHEDULER_STREAM, version)
        event = self._codec.decode(records[-1]).event
        assert isinstance(event, SchedulerCheckpointed)  # the stream holds nothing else
        self.restore(event.snapshot)
        self.checkpoint = (event.snapshot.position, records[-1].recorded_at_us)
        log.info("scheduler resumes after position %d", self.position)

    def _checkpoint_due(self) -> bool:
        if self._observed >= self._checkpoint_events:
            return True
        last = -self._checkpoint_us if self.checkpoint is None else self.checkpoint[1]
        return self._clock_us() - last >= self._checkpoint_us

    async def save_checkpoint(self) -> None:
        """Saves the state when it changed since the last one saved; a failure is logged and
        the next checkpoint tries again (meanwhile a start resumes from further back)."""
        snapshot, now = self.snapshot(), self._clock_us()
        observed, self._observed = self._observed, 0
        if snapshot == self._saved:
            self.checkpoint = (snapshot.position, now)
            return
        # A checkpoint is not work that fell due: saving the same state twice is harmless, so
        # its command id need not be derived from anything.
        ctx = CommandContext(str(uuid.uuid4()), SCHEDULER_USER, now)
        known = await self._store.stream_version(SCHEDULER_STREAM)
        try:
            await self._handlers.checkpoint_scheduler(CheckpointScheduler(snapshot, known), ctx)
        except (DomainError, ConcurrencyExhausted) as error:
            log.warning("scheduler checkpoint at %d failed: %s", snapshot.position, error)
            self._observed += observed
            return
        self._saved = snapshot
        self.checkpoint = (snapshot.position, now)

    async def fire_due(self) -> None:
        now = self._clock_us()
        for window, activity in list(self.windows.items()):
            if now >= max(window.end_us + self._grace_us, activity.last_seen_us + self._quiet_us):
                self._add(window, activity.last_position)  # "when": see `windows`
                del self.windows[window]
        for due, times in list(self.pending.items()):
            reached = list(times) if due.kind == "metrics" else [t for t in times if t <= now]
            if not reached:
                continue
            latest = max(reached)
            command_id = str(
                uuid.uuid5(_IDS, f"{due.kind}|{due.series_id}|{due.start_us}|{due.end_us}|{latest}")
            )
            ctx = CommandContext(command_id, SCHEDULER_USER, now)
            try:
                if due.kind == "cutoff":
                    await self._handlers.publish_due(PublishDue(due.series_id, due.start_us), ctx)
                elif due.kind == "override":
                    await self._handlers.expire_overrides(
                        ExpireOverrides(due.series_id, due.start_us), ctx
                    )
                else:
                    cmd = CalculateQualityMetrics(due.series_id, due.start_us, due.end_us)
                    await self._handlers.calculate_metrics(cmd, ctx)
            except (DomainError, ConcurrencyExhausted) as error:
                # A domain refusal will not change by retrying; a conflict will, next tick.
                log.warning("scheduled %s for %s failed: %s", due.kind, due.series_id, error)
                if isinstance(error, ConcurrencyExhausted):
                    continue
            self.fired += 1
            times.difference_update(reached)
            if not times:
                del self.pending[due]
        for watch in list(self.watches):
            await self._check(watch, now)
            if watch.until_us is not None and watch.next_us >= watch.until_us:
                self.watches.remove(watch)

    async def _check(self, watch: _Watch, now: int) -> None:
        """Sends the lateness commands of the snaps whose deadline passed since the last
        check, one per bucket; a conflict leaves the rest to the next tick."""
        level, zone = watch.level, ZoneInfo(watch.level.time_zone)
        end = now + 1 if watch.until_us is None else min(watch.until_us, now + 1)
        newly: dict[int, int] = {}  # bucket -> its last due snap
        walked_to = end
        for snap_us in self._expected(watch, watch.next_us, end):
            if watch.deadline.at(snap_us, zone) > now:
                walked_to = snap_us
                break
            newly[bucket_of(snap_us, level.frequency)] = snap_us
        for bucket_us, last_us in newly.items():
            start = max(bucket_us, watch.start_us)
            due = tuple(
                (s, watch.deadline.at(s, zone)) for s in self._expected(watch, start, last_us + 1)
            )
            key = f"lateness|{watch.series_id}|{watch.rule}|{watch.source_id}|{start}|{due[-1]}"
            ctx = CommandContext(str(uuid.uuid5(_IDS, key)), SCHEDULER_USER, now)
            cmd = RaiseLateness(
                watch.series_id, bucket_us, watch.rule, watch.source_id, due, watch.severity
            )
            try:
                await self._handlers.raise_lateness(cmd, ctx)
            except ConcurrencyExhausted:
                watch.next_us = max(watch.next_us, bucket_us)  # this bucket again next tick
                return
            except DomainError as error:
                log.warning("lateness of %s: %s", watch.series_id, error)
            self.fired += 1
        watch.next_us = walked_to

    def _expected(self, watch: _Watch, start_us: int, end_us: int) -> Iterator[int]:
        level = watch.level
        sessions = level_sessions(self._calendar, level.calendar)
        return expected_snaps(
            level.level, level.frequency, ZoneInfo(level.time_zone), start_us, end_us, sessions
        )


def _deadlines(level: ScheduledLevel) -> Iterator[tuple[str, str, Deadline, Severity]]:
    for source, deadline in level.level.arrival_deadlines(level.sources).items():
        yield LATE_ARRIVAL, source, deadline, Severity.WARNING
    if level.level.publication is not None:
        severity = Severity(level.level.publication_severity)
        yield LATE_PUBLICATION, "", level.level.publication, severity


@dataclass(slots=True)
class _Watch:
    """One deadline of a series' service level, walked over its expected snaps from
    `start_us` (when the level took effect) until `until_us` (when another one did)."""

    series_id: str
    rule: str
    source_id: str
    deadline: Deadline
    severity: Severity
    level: ScheduledLevel
    start_us: int
    next_us: int  # the first expected snap not checked yet, or an instant before it
    until_us: int | None = None


@dataclass(frozen=True, slots=True)
class _Activity:
    last_position: int  # of the window's last publication observed
    last_seen_us: int  # its commit time


def _windows(
    snaps_us: Sequence[int] | npt.NDArray[np.int64], frequency: Frequency, zone: ZoneInfo
) -> set[tuple[int, int]]:
    """The metrics windows of a batch of snaps (see `_window`). Windows cut time into
    consecutive intervals, so walking the sorted snaps needs one window per window touched,
    then skips (by bisection) the snaps before its end: a published batch of a thousand
    points costs a datetime or two per day, month or year it spans, not one per point, in the
    process that ingests them."""
    ordered = np.sort(np.asarray(snaps_us, dtype=np.int64))
    found: set[tuple[int, int]] = set()
    i = 0
    while i < len(ordered):
        window = _window_at(int(ordered[i]), frequency, zone)
        if window is None:
            i += 1
            continue
        found.add(window)
        # A window holds the snap it was found for; moving on at least one snap all the same
        # keeps a window computed wrongly from looping forever on the command's event loop.
        i = max(i + 1, int(np.searchsorted(ordered, window[1])))
    return found


def _window_at(snap_us: int, frequency: Frequency, zone: ZoneInfo) -> tuple[int, int] | None:
    """`_window`, with an intraday series' UTC day found by integer arithmetic."""
    if frequency in _INTRADAY:
        day = snap_us - snap_us % _DAY_US
        return (day, day + _DAY_US) if day + _DAY_US <= MAX_INSTANT_US else None
    return _window(snap_us, frequency, zone)


def _window(snap_us: int, frequency: Frequency, zone: ZoneInfo) -> tuple[int, int] | None:
    """The metrics window of a snap: a UTC day for intraday series; for daily ones a month and
    for weekly and monthly ones a year, from local midnight in the series' time zone (so that
    a month holds exactly that month's sessions). None for a window reaching beyond year 9999
    or before year 1 (snaps at the ends of the bounds' range): nothing measures it."""
    try:
        return _window_of(Snap(snap_us).to_datetime(), frequency, zone)
    except (OverflowError, ValueError):
        return None


def _window_of(moment: datetime, frequency: Frequency, zone: ZoneInfo) -> tuple[int, int]:
    if frequency not in _INTRADAY:
        zone_moment = moment.astimezone(zone)
        start = zone_moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if frequency is Frequency.DAILY:
            end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
        else:
            start = start.replace(month=1)
            end = start.replace(year=start.year + 1)
        return _us(start), _us(end)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    return _us(start), _us(end)


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000
