"""Service levels of a series: when each expected snap's values must have arrived, and when the
point must be official, so that lateness is raised as a quality issue (docs/service-levels.md).

The expected snaps come from the series' calendar (or its weekdays) and a grid of times of
day; they are generated lazily between two instants, so that an intraday series' schedule is
never a list as long as its history. The scheduler walks them; the series bucket decides.

A level applies to the expected snaps from the time it took effect (the commit time of the
event that set it) on. Lateness is judged twice, and raised once per point, rule and source:
by the scheduler, for a value still missing at its deadline, and by the decision of a value
that arrives after its deadline (`Arrivals`), by the command's time, so that a value that came
late while the scheduler was stopped is late all the same. Publication is judged by the
scheduler alone, against when the point's first version was decided (kept with the point): a
point that became official late while the scheduler was stopped is late when it checks again.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qis_domain.snaps import Frequency, Snap

DAY_SECONDS = 86_400
MAX_AFTER_SECONDS = 7 * DAY_SECONDS
MAX_DAYS_AFTER = 7
MAX_SOURCE_DEADLINES = 64
LATE_ARRIVAL = "late_arrival"
LATE_PUBLICATION = "late_publication"
STEP_SECONDS = {Frequency.SECOND: 1, Frequency.MINUTE: 60, Frequency.HOURLY: 3600}
"""Intraday frequencies with a grid of snaps to expect. Ticks have no grid; weekly and monthly
series no agreed day of the period: no lateness is raised for them."""

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_Severity = Literal["warning", "error"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deadline(_Frozen):
    """Either `after_s` seconds after the snap, or (daily series) the wall-clock time
    `local_time_s` (seconds after local midnight, in the series' time zone) on the snap's local
    day plus `days_after` days. A wall time a daylight-saving change skips counts as the same
    time in the offset before the change (02:30 → 03:30)."""

    after_s: Annotated[int, Field(ge=0, le=MAX_AFTER_SECONDS)] | None = None
    local_time_s: Annotated[int, Field(ge=0, lt=DAY_SECONDS)] | None = None
    days_after: Annotated[int, Field(ge=0, le=MAX_DAYS_AFTER)] = 0

    @model_validator(mode="after")
    def _one_form(self) -> Deadline:
        if (self.after_s is None) == (self.local_time_s is None):
            raise ValueError("a deadline is either after_s or local_time_s, exactly one")
        if self.days_after and self.local_time_s is None:
            raise ValueError("days_after goes with local_time_s")
        return self

    def at(self, snap_us: int, zone: ZoneInfo) -> int:
        """The deadline of the snap at `snap_us` (UTC µs)."""
        if self.after_s is not None:
            return snap_us + self.after_s * _US
        assert self.local_time_s is not None  # one form, by construction
        day = Snap(snap_us).to_datetime().astimezone(zone).date() + timedelta(self.days_after)
        return wall_clock_us(day, _wall(self.local_time_s), zone)


class SourceDeadline(_Frozen):
    source_id: str
    deadline: Deadline


class ServiceLevel(_Frozen):
    """Expected snaps: on the sessions of the series' calendar (without one: on `weekdays`,
    ISO, 1 = Monday), a daily series' snap at `first_snap_s` (local wall clock); an intraday
    series' snaps every step from `first_snap_s` to `last_snap_s` (included; None: the day's
    last step). Each of the series' sources must have delivered by `arrival` (or its own entry
    of `source_arrivals`), each point be official by `publication`. Arrival lateness is a
    warning: a missing value has nothing to hold. Publication lateness is `publication_severity`."""

    first_snap_s: Annotated[int, Field(ge=0, lt=DAY_SECONDS)] = 0
    last_snap_s: Annotated[int, Field(ge=0, lt=DAY_SECONDS)] | None = None
    weekdays: Annotated[tuple[Annotated[int, Field(ge=1, le=7)], ...], Field(max_length=7)] = (
        1,
        2,
        3,
        4,
        5,
    )
    arrival: Deadline | None = None
    source_arrivals: Annotated[
        tuple[SourceDeadline, ...], Field(max_length=MAX_SOURCE_DEADLINES)
    ] = ()
    publication: Deadline | None = None
    publication_severity: _Severity = "warning"

    @model_validator(mode="after")
    def _consistent(self) -> ServiceLevel:
        if self.arrival is None and self.publication is None and not self.source_arrivals:
            raise ValueError("a service level states at least one deadline")
        if not self.weekdays or len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError("weekdays: each ISO weekday once, at least one")
        ids = [s.source_id for s in self.source_arrivals]
        if len(set(ids)) != len(ids):
            raise ValueError("source_arrivals: one deadline per source")
        if self.last_snap_s is not None and self.last_snap_s < self.first_snap_s:
            raise ValueError("last_snap_s is before first_snap_s")
        return self

    def arrival_deadlines(self, sources: tuple[str, ...]) -> dict[str, Deadline]:
        """The deadline of each of the series' `sources` that has one."""
        own = {s.source_id: s.deadline for s in self.source_arrivals}
        return {s: d for s in sources if (d := own.get(s, self.arrival)) is not None}

    def deadlines(self) -> Iterator[tuple[str, Deadline]]:
        """Each deadline with its field path."""
        if self.arrival is not None:
            yield "arrival", self.arrival
        for i, s in enumerate(self.source_arrivals):
            yield f"source_arrivals[{i}].deadline", s.deadline
        if self.publication is not None:
            yield "publication", self.publication


CONTRACT_NAMES = {
    "after_s": "after",
    "local_time_s": "local_time",
    "first_snap_s": "first_snap",
    "last_snap_s": "last_snap",
    "source_id": "source",
}
"""The contract's names of the fields whose names here carry their unit or kind."""


def contract_path(path: str) -> str:
    """A field path of a ServiceLevel ("source_arrivals[0].source_id") as the contract names it
    ("source_arrivals[0].source"), for field violations."""
    return ".".join(CONTRACT_NAMES.get(part, part) for part in path.split(".")) if path else ""


def problems(
    level: ServiceLevel, frequency: Frequency | None, sources: tuple[str, ...] | None
) -> list[tuple[str, str]]:
    """What makes `level` unfit for a series of `frequency` with `sources` (None: not known
    here, not checked), as (field path, reason); the model checks the rest."""
    out = []
    if frequency is not None and frequency is not Frequency.DAILY and frequency not in STEP_SECONDS:
        out.append(("", f"a {frequency.value} series has no grid of snaps to expect"))
    for path, deadline in level.deadlines():
        if deadline.local_time_s is None:
            continue
        if frequency is not None and frequency is not Frequency.DAILY:
            out.append((path, "a time of day is for daily series: use a span after the snap"))
        elif deadline.days_after * DAY_SECONDS + deadline.local_time_s <= level.first_snap_s:
            out.append((path, "falls before the snap: add days_after"))
    if level.last_snap_s is not None and frequency is Frequency.DAILY:
        out.append(("last_snap_s", "a daily series has one snap a day, at first_snap_s"))
    if sources is not None:
        for i, s in enumerate(level.source_arrivals):
            if s.source_id not in sources:
                out.append((f"source_arrivals[{i}].source_id", "not a source of the series"))
    return out


Sessions = Callable[[date, date], tuple[frozenset[date], date, date] | None]
"""The sessions of the series' exchange in [start, end] with the first and last day the
calendar covers; None for a series without a calendar."""


def expected_snaps(
    level: ServiceLevel,
    frequency: Frequency,
    zone: ZoneInfo,
    start_us: int,
    end_us: int,
    sessions: Sessions,
) -> Iterator[int]:
    """The expected snaps in [start_us, end_us), ascending. A day outside the calendar's
    coverage expects nothing: what it holds is unknown, so nothing there can be late."""
    if start_us >= end_us:
        return
    step = STEP_SECONDS.get(frequency)
    if step is None and frequency is not Frequency.DAILY:
        return
    first = _local_day(start_us, zone)
    last = _local_day(end_us, zone)
    is_session = _session_test(level, sessions(first, last))
    for day in (first + timedelta(n) for n in range((last - first).days + 1)):
        if not is_session(day):
            continue
        for time_s in _times(level, step):
            snap_us = existing_wall_clock_us(day, _wall(time_s), zone)
            if snap_us is None:
                continue  # skipped by a daylight-saving change: no snap that day
            if snap_us >= end_us:
                return
            if snap_us >= start_us:
                yield snap_us


def expected_among(
    level: ServiceLevel,
    frequency: Frequency,
    zone: ZoneInfo,
    snaps_us: Sequence[int],
    sessions: Sessions,
) -> list[bool]:
    """Whether each of `snaps_us` is one of the `expected_snaps`, each found by its local day
    and time rather than by walking the day's grid (a second series' day has 86,400 steps)."""
    step = STEP_SECONDS.get(frequency)
    if not snaps_us or (step is None and frequency is not Frequency.DAILY):
        return [False] * len(snaps_us)
    moments = [Snap(s).to_datetime().astimezone(zone) for s in snaps_us]
    is_session = _session_test(level, sessions(moments[0].date(), moments[-1].date()))
    times = _times(level, step)
    out = []
    for snap_us, moment in zip(snaps_us, moments, strict=True):
        day = moment.date()
        time_s = moment.hour * 3600 + moment.minute * 60 + moment.second
        # The round trip drops what expected_snaps never makes: a fraction of a second, the
        # second pass of a wall time a daylight-saving change repeats.
        out.append(
            is_session(day)
            and time_s in times
            and wall_clock_us(day, _wall(time_s), zone) == snap_us
        )
    return out


@dataclass(frozen=True, slots=True)
class Arrivals:
    """What the decision of one source's values needs to judge their lateness under one of the
    series' levels: its arrival `deadline` under the level in force from `since_us` (the
    commit time of the event that set it; snaps before belong to history, or to an earlier
    level) until `until_us` (None: still in force; snaps from then on belong to the next
    level), and the calendar's `sessions`. A snap is judged by the level in force at it."""

    level: ServiceLevel
    frequency: Frequency
    zone: ZoneInfo
    since_us: int
    deadline: Deadline
    sessions: Sessions
    until_us: int | None = None

    def late(self, snaps_us: Sequence[int], now_us: int) -> dict[int, int]:
        """The deadline of each of `snaps_us` (ascending) that a value arriving at `now_us`
        misses, by index: expected snaps from `since_us` to `until_us` whose deadline is
        before `now_us`. Backfilled history costs a bisection: a snap before `since_us` is
        never judged here."""
        lo = bisect.bisect_left(snaps_us, self.since_us)
        # a deadline is never before its snap
        end_us = now_us if self.until_us is None else min(now_us, self.until_us)
        hi = bisect.bisect_left(snaps_us, end_us, lo)
        judged = snaps_us[lo:hi]
        expected = expected_among(self.level, self.frequency, self.zone, judged, self.sessions)
        out = {}
        for i, (snap_us, ok) in enumerate(zip(judged, expected, strict=True), start=lo):
            if ok and (deadline_us := self.deadline.at(snap_us, self.zone)) < now_us:
                out[i] = deadline_us
        return out


def _times(level: ServiceLevel, step: int | None) -> range:
    if step is None:
        return range(level.first_snap_s, level.first_snap_s + 1)
    last = DAY_SECONDS - 1 if level.last_snap_s is None else level.last_snap_s
    return range(level.first_snap_s, last + 1, step)


def _session_test(
    level: ServiceLevel, known: tuple[frozenset[date], date, date] | None
) -> Callable[[date], bool]:
    """Whether a day is a session: of the calendar's `known` sessions within its coverage,
    or (no calendar) one of the level's weekdays."""
    if known is None:
        return lambda day: day.isoweekday() in level.weekdays
    days, first, last = known
    return lambda day: day in days and first <= day <= last


def _local_day(utc_us: int, zone: ZoneInfo) -> date:
    return Snap(utc_us).to_datetime().astimezone(zone).date()


def _wall(time_s: int) -> time:
    hours, rest = divmod(time_s, 3600)
    return time(hours, rest // 60, rest % 60)


def wall_clock_us(day: date, wall: time, zone: ZoneInfo) -> int:
    """The instant (UTC µs, exact) of the wall-clock time `wall` on `day` in `zone`. A wall
    time a daylight-saving change skips is taken in the offset before the change (02:30 →
    03:30); one it repeats is its first pass, or its second with `wall.fold` set."""
    delta = datetime.combine(day, wall, tzinfo=zone) - _EPOCH
    return (delta.days * DAY_SECONDS + delta.seconds) * _US + delta.microseconds


def existing_wall_clock_us(day: date, wall: time, zone: ZoneInfo) -> int | None:
    """`wall_clock_us`, None for a wall time a daylight-saving change skips on that day (the
    round trip gives another time of day)."""
    utc_us = wall_clock_us(day, wall, zone)
    back = Snap(utc_us).to_datetime().astimezone(zone)
    return utc_us if (back.date(), back.time()) == (day, wall) else None
