"""`qis up` as a person runs it: services up and SERVING, a clean stop on SIGTERM, and a loud one
when a service dies."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.cli_support import BIN, free_port

pytestmark = pytest.mark.e2e

_ADDRESS_VARS = (
    "QIS_COMMAND_ADDRESS",
    "QIS_PROJECTOR_ADDRESS",
    "QIS_QUERY_ADDRESS",
    "QIS_FLIGHT_ADDRESS",
)


@dataclass
class Up:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    env: dict[str, str]

    def wait_for(self, fragment: str, timeout_s: float = 90.0) -> str:
        # A bound that tells a hang, not a speed: `qis up` starts its three services one after
        # another, ~14 s on a quiet 2-core machine and more than 30 s beside other tests'
        # processes (CI failed at 30 s twice).
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if fragment in line:
                return line
        raise AssertionError(f"`qis up` never printed {fragment!r}")

    def children(self) -> list[int]:
        # Linux: the direct children of `qis up`, i.e. the services it started.
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    # Every service gets a port of its own, so a developer's own `qis up` is not disturbed.
    env = {**os.environ, **{var: f"127.0.0.1:{free_port()}" for var in _ADDRESS_VARS}}
    log = (tmp_path / "services.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "qis"), "up", "--data-dir", str(tmp_path / "data")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield Up(process, lines, env)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        log.close()


def test_up_serves_until_sigterm_then_stops_cleanly(up: Up) -> None:
    command = up.env["QIS_COMMAND_ADDRESS"]
    assert up.wait_for("qis-command").split() == ["qis-command", "serving", "on", command]
    up.wait_for("Ctrl-C stops everything")

    second = subprocess.run(
        [str(BIN / "qis"), "up"], env=up.env, capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 2
    assert f"{command} is already in use" in second.stderr

    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(30) == 0
    up.wait_for("qis-command    stopped")
