"""Calendar checks over an old history, whatever the date: 2003-2005 closes are real sessions,
not closed days, and a session left out of 2004 is the one missing session of its month.

Regression of "the calendar window follows today's date": exchange_calendars without explicit
bounds covers about the last twenty years, so from 2026 on every session of this history looked
like a closed day, and no month of it could count its sessions.
"""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_domain.definitions import ValidationRules

from tests.property.history import (
    BOUNDARY_CUTS,
    FIRST_DAY,
    PRIMARY,
    Cuts,
    History,
    close_us,
    cuts,
    sessions,
)
from tests.property.service import (
    PROPERTY,
    RICH,
    Effect,
    Service,
    effect_of,
    instant_us,
    month_window,
    steps,
)

DAYS = [d for d in sessions() if d.year <= 2005]
_OPEN = set(DAYS)
SESSIONS_2004 = [d for d in DAYS if d.year == 2004]
MONTHS_2004 = [(2004, month) for month in range(1, 13)]
# Weekdays the NYSE was closed: holidays, and the day of mourning for President Reagan in 2004.
CLOSED = [
    day
    for day in (FIRST_DAY + timedelta(days=i) for i in range(3 * 365))
    if day.weekday() < 5 and day.year <= 2005 and day not in _OPEN
]


def old_history(seed: int, removed: list[date], closed: list[date]) -> History:
    """Every 2003-2005 session but `removed`, and prints on the `closed` days: a calm walk that
    no rule but the calendar's would flag."""
    rng = random.Random(seed)
    level, points = 100.0, []
    for day in sorted((set(DAYS) - set(removed)) | set(closed)):
        level *= 1 + rng.gauss(0, 0.002)
        points.append((close_us(day), f"{level:.2f}"))
    primary = tuple(points)
    return History(None, primary, (), ((PRIMARY, primary),), frozenset(removed))


async def decided_in(year: int, history: History, split: Cuts) -> Effect:
    calendar_only = ValidationRules(check_calendar=True)
    definition = RICH.rules.definition(history).model_copy(update={"validation": calendar_only})
    now_us = instant_us(year)
    service = Service.start(now_us)
    await service.run(steps(history, definition, [split], now_us, MONTHS_2004))
    return effect_of(await service.log())


@settings(PROPERTY)
@given(
    st.integers(0, 2**32 - 1),
    st.lists(st.sampled_from(SESSIONS_2004), min_size=1, max_size=3, unique=True),
    st.lists(st.sampled_from(CLOSED), max_size=3, unique=True),
    cuts(),
)
# President Reagan's day of mourning, a closure only a calendar that knows 2004 has.
@example(1, [date(2004, 3, 15)], [date(2004, 6, 11), date(2003, 7, 4)], BOUNDARY_CUTS)
def test_old_sessions_are_sessions_and_a_missing_one_is_missing(
    seed: int, removed: list[date], closed: list[date], split: Cuts
) -> None:
    history = old_history(seed, removed, closed)
    # The same history decided by commands dated before it ended and decades after.
    early, late = (asyncio.run(decided_in(y, history, split)) for y in (2005, 2045))
    assert late == early
    assert early.rules_by_day() == {day: {"calendar"} for day in closed}
    for year, month in MONTHS_2004:
        metrics = early.metrics[month_window(year, month)]
        expected = [d for d in SESSIONS_2004 if d.month == month]
        gaps = sorted(d.isoformat() for d in removed if d.month == month)
        assert metrics["missing_sessions"] == gaps, (year, month)
        assert metrics["uncovered_days"] == 0
        assert metrics["expected_snaps"] == len(expected)
        share = Decimal(len(expected) - len(gaps)) / len(expected)
        assert abs(Decimal(metrics["completeness"]) - share) < Decimal("1e-6")
