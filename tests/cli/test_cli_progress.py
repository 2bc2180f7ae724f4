"""The progress line: only on a terminal, and redrawn at most five times a second."""

from __future__ import annotations

import io

from qis_cli.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_redraws_are_throttled_and_the_line_is_erased_at_the_end() -> None:
    terminal, clock = _Terminal(), _Clock()
    progress = Progress(terminal, max_rate=5.0, clock=clock)
    for _ in range(100):  # 100 updates within 0.1 s: one drawing
        clock.now += 0.001
        progress.update(sent=2_000, acknowledged=1_000)
    clock.now += 0.2
    progress.update(sent=3_000, acknowledged=2_000)
    progress.finish()
    drawn = terminal.getvalue().split("\r\033[K")
    assert drawn[1].startswith("2,000 rows sent, 1,000 acknowledged")
    assert drawn[2].startswith("3,000 rows sent, 2,000 acknowledged (6,667 rows/s)")
    assert drawn[3:] == [""], "finish() erases the line"


def test_nothing_is_written_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    progress.update(sent=10, acknowledged=5)
    progress.finish()
    assert stream.getvalue() == ""
