"""The process manager for time-driven work: cut-off publication, override expiry, quality
metrics of closed windows.

It watches the event log and, when something falls due, issues an ordinary command whose id is
derived from what fell due (uuid5 of kind, series, bucket or window, and due time). Running it
twice, or in two processes, therefore does nothing twice: the aggregates answer a repeated
command id with its first outcome. It never appends events itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import EventFilter, EventStore
from qis_domain.bounds import MAX_INSTANT_US
from qis_domain.commands import CommandContext
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
from qis_domain.snaps import Frequency, Snap, bucket_of

from qis_command.application.commands import CalculateQualityMetrics, ExpireOverrides, PublishDue
from qis_command.application.handlers import CommandHandlers, ConcurrencyExhausted

log = logging.getLogger(__name__)

SCHEDULER_USER = "qis-scheduler"
_IDS = uuid.UUID("3c1a9e0e-8f57-4b0e-9d7e-5b2f0f6a0c11")
_WATCHED = EventFilter(
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
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._clock_us = clock_us
        self._tick_s = tick_s
        self._grace_us = int(metrics_grace_s * 1_000_000)
        self._quiet_us = int(metrics_quiet_s * 1_000_000)
        self._codec = EventCodec()
        self._frequencies: dict[str, Frequency] = {}
        self._zones: dict[str, ZoneInfo] = {}
        self.pending: dict[Due, set[int]] = {}  # what falls due -> the times it falls due
        # Metrics of a window wait until it is closed and quiet, so a bulk load of history
        # (or the catch-up after a restart) is measured once, complete. The count of
        # publications seen goes into the command id: new data later, new calculation.
        self.windows: dict[Due, _Activity] = {}
        self.fired = 0

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch())
        try:
            while True:
                await asyncio.sleep(self._tick_s)
                if watcher.done():
                    watcher.result()
                await self.fire_due()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self) -> None:
        async for record in self._store.subscribe(None, _WATCHED):
            self.observe(self._codec.decode(record).event)

    def observe(self, event: DomainEvent) -> None:
        if isinstance(event, SeriesDefined | SchemaEvolved):
            self._frequencies[event.series_id] = event.definition.frequency
            self._zones[event.series_id] = ZoneInfo(event.definition.time_zone)
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
            now = self._clock_us()
            for start, end in _windows(event.snaps, frequency, self._zones[event.series_id]):
                activity = self.windows.setdefault(
                    Due("metrics", event.series_id, start, end), _Activity()
                )
                activity.seen += 1
                activity.last_seen_us = now

    def _add(self, due: Due, at_us: int) -> None:
        self.pending.setdefault(due, set()).add(at_us)

    async def fire_due(self) -> None:
        now = self._clock_us()
        for window, activity in self.windows.items():
            quiet_since = activity.last_seen_us + self._quiet_us
            if activity.seen != activity.measured and now >= max(
                window.end_us + self._grace_us, quiet_since
            ):
                self._add(window, activity.seen)  # "when" is the publication count: see `windows`
                activity.measured = activity.seen
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


@dataclass(slots=True)
class _Activity:
    seen: int = 0  # publication events seen in the window
    last_seen_us: int = 0
    measured: int = 0  # `seen` when metrics were last asked for


def _windows(snaps_us: list[int], frequency: Frequency, zone: ZoneInfo) -> set[tuple[int, int]]:
    """The metrics windows of a batch of snaps (see `_window`). An intraday series' window is
    its UTC day, found by integer arithmetic: a published batch of a thousand ticks costs no
    datetime per point in the process that ingests them."""
    if frequency in _INTRADAY:
        days = {s - s % _DAY_US for s in snaps_us}
        return {(d, d + _DAY_US) for d in days if d + _DAY_US <= MAX_INSTANT_US}
    return {w for s in snaps_us if (w := _window(s, frequency, zone)) is not None}


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
