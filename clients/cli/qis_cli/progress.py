"""A one-line progress display on stderr, for people watching a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_CLEAR_LINE = "\r\033[K"


class Progress:
    """Redrawn at most `max_rate` times a second, and only on a terminal: in a pipe or a log
    file, carriage-return redraws would be thousands of lines of noise."""

    def __init__(
        self,
        stream: TextIO,
        max_rate: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._interval = 1.0 / max_rate
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._drawn = False

    def update(self, sent: int, acknowledged: int) -> None:
        if not self._enabled:
            return
        now = self._clock()
        if now - self._last_draw < self._interval:
            return
        self._last_draw = now
        elapsed = now - self._started
        rate = acknowledged / elapsed if elapsed > 0 else 0.0
        self._stream.write(
            f"{_CLEAR_LINE}{sent:,} rows sent, {acknowledged:,} acknowledged ({rate:,.0f} rows/s)"
        )
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """Erase the line so the summary that follows starts on a clean one."""
        if self._drawn:
            self._stream.write(_CLEAR_LINE)
            self._stream.flush()
            self._drawn = False
