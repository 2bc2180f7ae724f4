"""What the test fixtures' throwaway servers (FerretDB, redis-server) have in common: a process
on a free loopback port (tests.support.ports) with a temp directory of its own, stopped
(terminated, killed after a timeout) and removed exactly once, usable as a context manager."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

_LOG_TAIL_CHARS = 4000


@dataclass
class LocalServer:
    port: int
    process: subprocess.Popen[bytes]
    root: Path  # temp dir: the server's files and its log
    _stopped: bool = field(default=False, repr=False)

    log_name: ClassVar[str]
    """The server's log file, in `root`."""
    stop_timeout_s: ClassVar[float]

    @property
    def log_path(self) -> Path:
        return self.root / self.log_name

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError:
            return ""

    def kill(self) -> None:
        """As a crash would: SIGKILL, no shutdown."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(self.stop_timeout_s)

    def stop(self) -> None:
        """Terminate (kill after the timeout), wait, remove the temp dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
