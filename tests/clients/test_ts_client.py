"""The TypeScript client (clients/ts): its npm install, generated code that matches the protos,
a strict type check, and its quickstart run against a real `qis up`.

Needs node and npm (present in CI); without them the test is skipped, saying so."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TS = ROOT / "clients" / "ts"
BIN = Path(sys.executable).parent
_ADDRESS_VARS = ("QIS_COMMAND_ADDRESS", "QIS_PROJECTOR_ADDRESS", "QIS_QUERY_ADDRESS")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=TS, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def installed() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"TYPESCRIPT CLIENT NOT TESTED: {' and '.join(missing)} not installed")
    _run(["./setup.sh"], timeout_s=300)


@dataclass
class Up:
    env: dict[str, str]
    log: Path


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    """`qis up` on free ports and a fresh data directory; a QueryRange call is capped at two
    messages, so that reading three points one per message takes two calls."""
    env = {
        **os.environ,
        **{var: f"127.0.0.1:{_free_port()}" for var in _ADDRESS_VARS},
        "QIS_QUERY_MAX_MESSAGES_PER_CALL": "2",
    }
    log = tmp_path / "services.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [str(BIN / "qis"), "up", "--data-dir", str(tmp_path / "data")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(0.1, left))
            except queue.Empty:
                raise AssertionError(f"`qis up` did not start:\n{log.read_text()}") from None
            if "Ctrl-C stops everything" in line:
                break
        yield Up(env, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


@pytest.mark.usefixtures("installed")
def test_generated_code_matches_the_protos() -> None:
    _run(["./generate.sh", "--check"], timeout_s=60)


@pytest.mark.usefixtures("installed")
def test_typescript_type_checks_strictly() -> None:
    _run(["node_modules/.bin/tsc", "--noEmit", "-p", "."], timeout_s=120)


@pytest.mark.usefixtures("installed")
def test_quickstart_against_qis_up(up: Up) -> None:
    out = _run(
        [
            "node_modules/.bin/tsx",
            "examples/quickstart.ts",
            "--command",
            up.env["QIS_COMMAND_ADDRESS"],
            "--query",
            up.env["QIS_QUERY_ADDRESS"],
            "--user",
            "ts-tester",
            "--page-size",
            "1",
        ],
        timeout_s=60,
    )
    lines = out.splitlines()
    assert lines[0].startswith("registered sources/ts-quickstart-")
    assert lines[1].startswith("defined series/TS.QUICKSTART.")
    assert lines[2].startswith("ingested 3 points at position ")
    assert lines[2].endswith("(published 3)")
    # Three points, one per message, at most two messages per call: the iterator followed
    # next_page_token into a second call.
    assert [line for line in lines if line.startswith("latest ")] == [
        "latest 2024-03-01T21:00:00.000Z 5137.08 (v1)",
        "latest 2024-03-04T21:00:00.000Z 5130.95 (v1)",
        "latest 2024-03-05T21:00:00.000Z 5078.18 (v1)",
    ]
    # Latest is the correction; as known before it, the first version.
    assert "now 2024-03-05T21:00:00.000Z 5078.20 (v2)" in lines
    (as_of,) = [line for line in lines if line.startswith("as of ")]
    assert as_of.endswith(" 2024-03-05T21:00:00.000Z 5078.18 (v1)")
    received = [line.split(" ", 2)[2] for line in lines if line.startswith("subscription series/")]
    assert received[:3] == [
        "2024-03-01T21:00:00.000Z 5137.08 (v1)",
        "2024-03-04T21:00:00.000Z 5130.95 (v1)",
        "2024-03-05T21:00:00.000Z 5078.18 (v1)",
    ]
    assert any(line.startswith("subscription resume token ") and len(line) > 27 for line in lines)
    # The malformed request: INVALID_ARGUMENT with both field violations, decoded from the
    # google.rpc.BadRequest in grpc-status-details-bin.
    assert any(line.startswith("INVALID_ARGUMENT: ") for line in lines)
    assert "  points[0].snap: '2024-03-06T16:00:00' has no UTC offset" in out
    assert "  points[1].value.price.value: '1e400'" in out
