"""Rule "day_over_day": a value against the series' own official value of the same snap-of-day
in the previous session (the "prior-day gold copy").

What "the previous session" and "the same snap-of-day" are: the session of the series'
calendar before the value's local day (a day the calendar does not cover yet has none; a series
without a calendar: the day before on one of its service level's weekdays, a Monday's is the
Friday before), at the same local wall-clock time in the series' time zone (a daily close at
16:00 New York compares with the previous session's 16:00 close, across holidays and
daylight-saving changes alike). A series with neither is refused the rule
(qis_domain.reference_data); one defined before that compares with the previous calendar day.

What "official" is, and why the result does not depend on how a history is split into
commands: the official version of that snap as a point-by-point ingest, one command after the
other, would have left it when the value is decided. The command side hands the decision a
`PriorOfficials`: the officials recorded in the buckets before the command (the buckets a
command reads for it include the one of the session before its first point), and the decision
adds each official version it makes itself as it settles its points in snap order, so that a
value whose previous session is decided by the same command (or the same bucket) sees exactly
what it would have seen had that session come in a command of its own. No official value of the
prior snap (none published yet, held, or no value at all): no issue. A later restatement of the
prior day does not re-decide the values already checked against it (as the jump rule, the
issue's evidence says what the decision saw).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from qis_domain.cross_series import OfficialFigure
from qis_domain.definitions import EXACT, DayOverDayCheck
from qis_domain.events import RawValue
from qis_domain.rules import RuleFailure, Severity, fixed
from qis_domain.service_levels import existing_wall_clock_us
from qis_domain.snaps import Snap, format_snap
from qis_domain.values import DataValue

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SessionDays:
    """An exchange's sessions from one before the earliest day a command asks about (when the
    calendar has one) to its latest, ascending, and the last day the calendar knows."""

    days: tuple[date, ...]
    last: date

    def before(self, day: date) -> date | None:
        """The session before `day`; None beyond the calendar or before its first session."""
        if day > self.last:
            return None
        i = bisect.bisect_left(self.days, day)
        return self.days[i - 1] if i else None


@dataclass(frozen=True, slots=True)
class Weekdays:
    """The sessions of a series without a calendar: the ISO weekdays of its service level."""

    days: tuple[int, ...]

    def before(self, day: date) -> date | None:
        """The last of the weekdays before `day`."""
        for back in range(1, 8):
            if (prior := day - timedelta(back)).isoweekday() in self.days:
                return prior
        return None  # no weekday at all: a service level has one at least


@dataclass(slots=True)
class PriorOfficials:
    """What the day_over_day rule of one command compares with: the official figures of the
    prior snaps as recorded before the command (by snap, UTC µs), and those the command's own
    decisions have made so far (they win: they are newer). `rule`: the series' parameters;
    `sessions`: the calendar's, or the service level's weekdays (None: every day is a session,
    for a series that has neither, defined before that was refused)."""

    rule: DayOverDayCheck
    zone: ZoneInfo
    sessions: SessionDays | Weekdays | None
    recorded: dict[int, OfficialFigure] = field(default_factory=dict)
    made: dict[int, OfficialFigure] = field(default_factory=dict)

    def prior_snap(self, snap_us: int) -> int | None:
        """The same local time of day in the previous session (None: no previous session, or
        that wall time does not exist on its day: a change to summer time skips it)."""
        try:
            local = Snap(snap_us).to_datetime().astimezone(self.zone)
            day = (
                local.date() - _DAY if self.sessions is None else self.sessions.before(local.date())
            )
            if day is None:
                return None
            # time() keeps `fold`: both passes of an hour a change to winter time repeats
            # compare with the prior day's one time (its second pass, were it repeated too);
            # the day after compares with the first pass.
            return existing_wall_clock_us(day, local.time(), self.zone)
        except (OverflowError, ValueError):  # beyond year 1 or 9999
            return None

    def official(self, snap_us: int) -> OfficialFigure | None:
        made = self.made.get(snap_us)
        return made if made is not None else self.recorded.get(snap_us)

    def check(self, snap_us: int, value: DataValue) -> RuleFailure | None:
        """The rule of a value at `snap_us`, against the prior snap's official as it stands."""
        if (figure := value.number) is None or (at := self.prior_snap(snap_us)) is None:
            return None
        if (official := self.official(at)) is None:
            return None
        return check_day_over_day(figure, at, official, self.rule)

    def settled(
        self,
        snap_us: int,
        made: tuple[int, RawValue] | None,
        figure_of: Callable[[RawValue], Decimal | None],
    ) -> None:
        """A decision settled the point at `snap_us`: `made`, the official version it made
        (None: none, the point's official stays what it was)."""
        if made is not None and (figure := figure_of(made[1])) is not None:
            self.made[snap_us] = OfficialFigure(figure, made[0])


def check_day_over_day(
    figure: Decimal, prior_snap_us: int, prior: OfficialFigure, check: DayOverDayCheck
) -> RuleFailure | None:
    """The change from the prior official figure beyond every band set for its side (a rise
    or a fall): the percent band and the absolute one. From a prior of 0 a change has no
    percent: the percent band cannot pass it, the absolute band decides; with no absolute
    band such a change is not checked. Exact: no float, no rounding before the comparison."""
    change = figure - prior.figure
    if change == 0:
        return None
    rise, fall = check.limits()
    limit = rise if change > 0 else fall
    if limit is None and check.max_abs is None:
        return None  # that side is not checked
    size = abs(change)
    evidence: dict[str, Any] = {
        "prior_snap": format_snap(prior_snap_us),
        "prior": str(prior.figure),
        "prior_version": prior.version,
        "value": str(figure),
        "change": format(change, "f"),  # a difference of plain figures prints plain too
    }
    if limit is not None and prior.figure != 0:
        if EXACT.multiply(size, 100) <= EXACT.multiply(limit, abs(prior.figure)):
            return None
        # Quantized in the exact context: the default one (28 digits) refuses a percent of
        # 1e24 or more, which would fail the whole command on every retry.
        percent = EXACT.divide(EXACT.multiply(size, 100), abs(prior.figure))
        evidence["change_percent"] = fixed(percent, 4)
        evidence["limit_percent"] = str(limit)
        if check.max_rise_percent is not None or check.max_fall_percent is not None:
            evidence["direction"] = "rise" if change > 0 else "fall"
    elif check.max_abs is None:
        return None  # a percent band alone, and a change from 0 has no percent
    if check.max_abs is not None:
        if size <= check.max_abs:
            return None
        evidence["limit_abs"] = str(check.max_abs)
    return RuleFailure("day_over_day", Severity(check.severity), evidence)
