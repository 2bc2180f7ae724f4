"""Events of the scheduler's checkpoint (qis_domain.scheduler_state): the state of the process
manager for time-driven work as of a log position, so that a start reads only the log after it.

Each event carries the whole state (a snapshot): the aggregate is its stream's last event."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from qis_domain.events.base import DomainEvent
from qis_domain.service_levels import Deadline, ServiceLevel
from qis_domain.snaps import Frequency


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScheduledLevel(_Value):
    """A series' service level with what its schedule depends on."""

    level: ServiceLevel
    frequency: Frequency
    time_zone: str
    calendar: str = ""
    sources: tuple[str, ...] = ()


class ScheduledSeries(_Value):
    """What the scheduler knows of a series from its definition."""

    series_id: str
    frequency: Frequency
    time_zone: str
    level: ScheduledLevel | None = None  # the one in force


class DueWork(_Value):
    """Work that falls due: `kind` "cutoff" | "override" | "metrics", of a bucket (start) or a
    metrics window (start, end), at `times` (UTC µs; for metrics, log positions)."""

    kind: str
    series_id: str
    start_us: int
    end_us: int = 0
    times: tuple[int, ...]


class OpenWindow(_Value):
    """A metrics window with publications not measured yet: the last one's commit position
    and time."""

    series_id: str
    start_us: int
    end_us: int
    last_position: int
    last_seen_us: int


class LevelWatch(_Value):
    """One deadline of a service level, walked over its expected snaps from `start_us` up to
    `next_us` (checked) until `until_us` (when another level took effect; None: in force)."""

    series_id: str
    rule: str
    source_id: str
    deadline: Deadline
    severity: str
    level: ScheduledLevel
    start_us: int
    next_us: int
    until_us: int | None = None


class SchedulerSnapshot(_Value):
    """The scheduler's state once it has observed every watched event up to `position`."""

    position: int
    series: tuple[ScheduledSeries, ...] = ()
    due: tuple[DueWork, ...] = ()
    windows: tuple[OpenWindow, ...] = ()
    watches: tuple[LevelWatch, ...] = ()


class SchedulerCheckpointed(DomainEvent):
    event_type: ClassVar[str] = "SchedulerCheckpointed"
    snapshot: SchedulerSnapshot
