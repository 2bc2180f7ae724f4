"""The progress of an import on stderr, for people watching a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.text import Text


class _Rows(ProgressColumn):
    def render(self, task: Task) -> Text:
        done = f"{task.completed:,.0f}"
        if task.total is None:
            return Text(f"{done} rows")
        return Text(f"{done}/{task.total:,.0f} rows")


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("? rows/s" if speed is None else f"{speed:,.0f} rows/s")


class Progress:
    """Rows acknowledged out of about how many, the rate and the time left, as a bar redrawn in
    place at most `max_rate` times a second, and only on a terminal: in a pipe or a log file,
    redraws would be thousands of lines of noise, so nothing is written there."""

    def __init__(
        self,
        stream: TextIO,
        total: int | None = None,
        max_rate: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = 1.0 / max_rate
        self._clock = clock
        self._last_draw = float("-inf")
        self._bar: Bar | None = None
        if not stream.isatty():
            return
        self._bar = Bar(
            BarColumn(),
            _Rows(),
            TextColumn("({task.fields[sent]:,} sent)"),
            _Rate(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            # Redrawn from update() only: a refresh thread would draw between two updates
            # from gRPC's thread, and the summary must start on a clean line.
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            get_time=clock,
        )
        self._task = self._bar.add_task("import", total=total, sent=0)
        self._bar.start()

    def update(self, sent: int, acknowledged: int) -> None:
        if self._bar is None:
            return
        self._bar.update(self._task, completed=acknowledged, sent=sent)
        now = self._clock()
        if now - self._last_draw >= self._interval:
            self._last_draw = now
            self._bar.refresh()

    def finish(self) -> None:
        """Erase the bar so the summary that follows starts on a clean line."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
