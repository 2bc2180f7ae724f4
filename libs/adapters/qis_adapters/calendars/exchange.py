"""Trading sessions from exchange_calendars (maintained holiday and session schedules for
hundreds of exchanges, by ISO 10383 MIC).

Each calendar is loaded over a fixed range that never depends on today's date:
`exchange_calendars.get_calendar(code)` without bounds covers only about the last twenty years
and the next one, relative to the machine's clock, and `sessions_in_range` silently clips to
that, so older real sessions looked like closed days and the same data gave other answers on
another date. The range is the calendar's own supported bounds (`bound_min` / `bound_max`)
within [COVERAGE_FLOOR, COVERAGE_CEILING]: most calendars' holiday rules start in 1970 (before
that, Christmas is a "session" of the NYSE calendar), so earlier days are of unknown coverage
rather than wrongly known.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import date

import exchange_calendars
import pandas as pd

COVERAGE_FLOOR = date(1970, 1, 1)
COVERAGE_CEILING = date(2099, 12, 31)


class UnknownCalendar(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Loaded:
    sessions: tuple[date, ...]  # ascending
    first: date
    last: date


class ExchangeCalendars:
    """The application's TradingCalendar port. Loading a calendar over its whole range takes
    a few hundred milliseconds, so each is loaded once per process."""

    def sessions(self, code: str, start: date, end: date) -> frozenset[date]:
        """Trading days in [start, end] (inclusive) that the calendar covers."""
        loaded = _calendar(code.upper())
        lo = bisect.bisect_left(loaded.sessions, start)
        hi = bisect.bisect_right(loaded.sessions, end)
        return frozenset(loaded.sessions[lo:hi])

    def coverage(self, code: str) -> tuple[date, date]:
        """The first and last day the calendar knows: outside them nothing is known."""
        loaded = _calendar(code.upper())
        return loaded.first, loaded.last

    def knows(self, code: str) -> bool:
        return code.upper() in _names()


@functools.cache
def _names() -> frozenset[str]:
    return frozenset(n.upper() for n in exchange_calendars.get_calendar_names(include_aliases=True))


@functools.cache
def _calendar(code: str) -> _Loaded:
    try:
        kind = type(exchange_calendars.get_calendar(code))
    except exchange_calendars.errors.InvalidCalendarName:
        raise UnknownCalendar(code) from None
    first = max(COVERAGE_FLOOR, _day(kind.bound_min(), COVERAGE_FLOOR))
    last = min(COVERAGE_CEILING, _day(kind.bound_max(), COVERAGE_CEILING))
    calendar = exchange_calendars.get_calendar(code, start=first, end=last)
    sessions = tuple(ts.date() for ts in calendar.sessions)
    return _Loaded(sessions, first, last)


def _day(bound: pd.Timestamp | None, default: date) -> date:
    return default if bound is None else bound.date()
