"""What the command side needs from the world besides the event store."""

from __future__ import annotations

from datetime import date
from typing import Protocol


class TradingCalendar(Protocol):
    def sessions(self, code: str, start: date, end: date) -> frozenset[date]:
        """Trading days of exchange `code` in [start, end]."""
        ...

    def knows(self, code: str) -> bool: ...
