"""Quality metrics of a series over a window: accuracy, completeness, timeliness, consistency."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

from qis_domain.decisions import Decider
from qis_domain.definitions import SeriesDefinition
from qis_domain.events import QualityMetricsCalculated
from qis_domain.reconciliation import figures_close
from qis_domain.rules import CalendarView
from qis_domain.series_bucket import PointSummary
from qis_domain.snaps import BUCKET_SPAN_US, Frequency

_STEP_US = {
    Frequency.SECOND: 1_000_000,
    Frequency.MINUTE: 60_000_000,
    Frequency.HOURLY: 3_600_000_000,
    Frequency.DAILY: 86_400_000_000,
}
MAX_WINDOW_BUCKETS = 40
_DAY_US = 86_400_000_000


def window_limit_us(definition: SeriesDefinition) -> int:
    """Metrics read every bucket of their window: keep that bounded, yet never below the one
    UTC day the scheduler measures an intraday series over (a tick series' 40 buckets are ten
    hours: every scheduled calculation of it was refused)."""
    return max(BUCKET_SPAN_US[definition.frequency] * MAX_WINDOW_BUCKETS, _DAY_US)


def calculate(
    definition: SeriesDefinition,
    series_id: str,
    start_us: int,
    end_us: int,
    points: Sequence[PointSummary],
    calendar: CalendarView | None,
    decider: Decider,
) -> QualityMetricsCalculated:
    """`calendar`: the exchange's trading days around the window, when the series has one.

    Completeness counts expected snaps that have an official value: one per session for a
    daily series with a calendar, one per step for other fixed-frequency series, and the points
    seen otherwise (ticks, weeks, months: no fixed grid to count against). A window with days
    the calendar does not cover has an unknown completeness (""), never a perfect one; its
    counts then speak of the covered days only.
    """
    published = [p for p in points if p.official is not None]
    missing: list[date] = []
    uncovered = 0
    if calendar is not None and definition.frequency is Frequency.DAILY:
        # A day belongs to the window when it starts inside it: for windows at local
        # midnights (the scheduler's) that is exactly the window's days, and a window at UTC
        # midnights does not count the evening before as expected.
        window_days = _days_starting_in(start_us, end_us, decider)
        covered = [d for d in window_days if calendar.first <= d <= calendar.last]
        uncovered = len(window_days) - len(covered)
        expected_days = calendar.sessions.intersection(covered)
        days = {decider.local_day(p.snap_us) for p in published}
        missing = sorted(expected_days - days)
        expected = len(expected_days)
        received = expected - len(missing)
    elif (step := _STEP_US.get(definition.frequency)) is not None:
        expected = max(1, (end_us - start_us) // step)
        received = min(expected, len(published))
    else:
        expected = len(points)
        received = len(published)
    compared = agreeing = 0
    for p in published:
        figures = [f for f in p.figures.values() if f is not None]
        if len(figures) < 2 or p.official is None or p.official.number is None:
            continue
        compared += 1
        reference = p.official.number
        if all(figures_close(f, reference, definition.reconciliation) for f in figures):
            agreeing += 1
    sla_us = definition.publication.timeliness_sla_seconds * 1_000_000
    on_time = sum(1 for p in published if not sla_us or p.published_at_us - p.snap_us <= sla_us)
    checked = sum(p.checked for p in points)
    clean = sum(p.clean for p in points)
    return QualityMetricsCalculated(
        series_id=series_id,
        window_start_us=start_us,
        window_end_us=end_us,
        accuracy=_ratio(agreeing, compared),
        completeness="" if uncovered else _ratio(received, expected),
        timeliness=_ratio(on_time, len(published)),
        consistency=_ratio(clean, checked),
        expected_snaps=expected,
        received_snaps=received,
        compared_points=compared,
        agreeing_points=agreeing,
        publications=len(published),
        on_time=on_time,
        checked_values=checked,
        clean_values=clean,
        missing_sessions=[d.isoformat() for d in missing],
        uncovered_days=uncovered,
    )


def _days_starting_in(start_us: int, end_us: int, decider: Decider) -> list[date]:
    day = decider.local_day(start_us)
    if decider.local_midnight_us(day) < start_us:
        day += timedelta(days=1)
    out = []
    while decider.local_midnight_us(day) < end_us:
        out.append(day)
        if day == date.max:
            break
        day += timedelta(days=1)
    return out


def _ratio(part: int, whole: int) -> str:
    """Nothing to measure counts as perfect: an empty window has no failures."""
    if whole == 0:
        return "1"
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.000001")).normalize())
