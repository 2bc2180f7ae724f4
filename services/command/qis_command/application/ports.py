"""What the command side needs from the world besides the event store."""

from __future__ import annotations

from datetime import date
from typing import Protocol


class TradingCalendar(Protocol):
    def sessions(self, code: str, start: date, end: date) -> frozenset[date]:
        """Trading days of exchange `code` in [start, end], within its coverage."""
        ...

    def coverage(self, code: str) -> tuple[date, date]:
        """The first and last day the calendar of `code` knows; independent of today's date."""
        ...

    def knows(self, code: str) -> bool: ...
