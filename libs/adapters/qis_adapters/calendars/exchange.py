"""Trading sessions from exchange_calendars (maintained holiday and session schedules for
hundreds of exchanges, by ISO 10383 MIC)."""

from __future__ import annotations

import functools
from datetime import date

import exchange_calendars


class UnknownCalendar(ValueError):
    pass


class ExchangeCalendars:
    """The application's TradingCalendar port. Loading a calendar takes a few hundred
    milliseconds, so each is loaded once per process."""

    def sessions(self, code: str, start: date, end: date) -> frozenset[date]:
        """Trading days in [start, end] (inclusive), clipped to the calendar's known range."""
        calendar = _calendar(code)
        first = max(start, calendar.first_session.date())
        last = min(end, calendar.last_session.date())
        if first > last:
            return frozenset()
        return frozenset(
            ts.date() for ts in calendar.sessions_in_range(first.isoformat(), last.isoformat())
        )

    def knows(self, code: str) -> bool:
        return code.upper() in _names()


@functools.cache
def _names() -> frozenset[str]:
    return frozenset(n.upper() for n in exchange_calendars.get_calendar_names(include_aliases=True))


@functools.cache
def _calendar(code: str) -> exchange_calendars.ExchangeCalendar:
    try:
        return exchange_calendars.get_calendar(code.upper())
    except exchange_calendars.errors.InvalidCalendarName:
        raise UnknownCalendar(code) from None
