"""`qis up` as a user runs it, for tests of what runs against it (clients in other languages):
the project's three services on free loopback ports and a fresh data directory."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.harness import base_env, free_port

BIN = Path(sys.executable).parent
ADDRESS_VARS = (
    "QIS_COMMAND_ADDRESS",
    "QIS_QUERY_ADDRESS",
    "QIS_PROJECTOR_ADDRESS",
    "QIS_FLIGHT_ADDRESS",  # the query service's Arrow Flight port
)
READY = "Ctrl-C stops everything"


@contextmanager
def qis_up(
    root: Path, settings: Mapping[str, str] | None = None, start_timeout_s: float = 60.0
) -> Iterator[dict[str, str]]:
    """Runs `qis up` with its data in `root/data` (no QIS_* of the caller's shell); yields the addresses (as the QIS_*_ADDRESS
    variables a client reads) once it serves, stops it with SIGTERM. `settings`: more QIS_*
    variables for the services."""
    addresses = {var: f"127.0.0.1:{free_port()}" for var in ADDRESS_VARS}
    out, err = root / "qis-up.out", root / "qis-up.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [str(BIN / "qis"), "up"],
            env=base_env(root / "data", {**addresses, **(settings or {})}),
            stdout=stdout,
            stderr=stderr,
            cwd=root,
        )
    try:
        deadline = time.monotonic() + start_timeout_s
        while READY not in out.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"`qis up` did not start:\n{err.read_text()[-4000:]}")
            time.sleep(0.1)
        yield addresses
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
