"""The progress of an import: a bar with the rate and the time left on a terminal, redrawn at
most five times a second and erased at the end; nothing in a pipe or a file."""

from __future__ import annotations

import io
import re

from qis_cli.progress import Progress

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _drawings(terminal: _Terminal) -> list[str]:
    text = _ESCAPES.sub("", terminal.getvalue())
    return [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]


def test_a_bar_with_rate_and_time_left_on_a_terminal() -> None:
    terminal, clock = _Terminal(), _Clock()
    progress = Progress(terminal, total=10_000, max_rate=5.0, clock=clock)
    for step in range(1, 5):  # 2,000 rows acknowledged a second
        clock.now += 1.0
        progress.update(sent=step * 2_000 + 1_000, acknowledged=step * 2_000)
    last = _drawings(terminal)[-1]
    assert "8,000/10,000 rows (9,000 sent) 2,000 rows/s ETA 0:00:01" in last
    assert last.startswith("━")
    progress.finish()
    assert terminal.getvalue().endswith("\x1b[2K"), "finish() erases the bar"


def test_redraws_are_throttled() -> None:
    terminal, clock = _Terminal(), _Clock()
    progress = Progress(terminal, total=None, max_rate=5.0, clock=clock)
    for acknowledged in range(100):  # 100 updates within 0.1 s: one drawing
        clock.now += 0.001
        progress.update(sent=acknowledged, acknowledged=acknowledged)
    drawn = _drawings(terminal)
    assert " 0 rows (0 sent) ? rows/s" in drawn[-1], "an unknown total: the count alone"
    assert len(drawn) == 2, "the first drawing at start, then one of the 100 updates"


def test_nothing_is_written_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    progress.update(sent=10, acknowledged=5)
    progress.finish()
    assert stream.getvalue() == ""
