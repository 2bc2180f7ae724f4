"""The TypeScript client (clients/ts): its npm install, generated code that matches the protos,
a strict type check, its unit tests, and its quickstart run against a real `qis up` (per-point
and columnar ingest and reads, the columnar read checked against the per-point one).

Needs node and npm (present in CI); without them the test is skipped, saying so."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.qis_up import qis_up

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TS = ROOT / "clients" / "ts"


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


@pytest.fixture
def addresses(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`qis up` where a QueryRange call is capped at two messages, so that reading three points
    one per message takes two calls."""
    with qis_up(tmp_path, {"QIS_QUERY_MAX_MESSAGES_PER_CALL": "2"}) as running:
        yield running


@pytest.mark.usefixtures("installed")
def test_generated_code_matches_the_protos() -> None:
    _run(["./generate.sh", "--check"], timeout_s=60)


@pytest.mark.usefixtures("installed")
def test_typescript_type_checks_strictly() -> None:
    _run(["node_modules/.bin/tsc", "--noEmit", "-p", "."], timeout_s=120)


@pytest.mark.usefixtures("installed")
def test_unit_tests() -> None:
    out = _run(["node_modules/.bin/tsx", "--test", "test/qis.test.ts"], timeout_s=120)
    assert "# fail 0" in out, out


@pytest.mark.usefixtures("installed")
def test_quickstart_against_qis_up(addresses: dict[str, str]) -> None:
    out = _run(
        [
            "node_modules/.bin/tsx",
            "examples/quickstart.ts",
            "--command",
            addresses["QIS_COMMAND_ADDRESS"],
            "--query",
            addresses["QIS_QUERY_ADDRESS"],
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
    # next_page_token into a second call. Snaps come back as snap_time instants; the method and
    # flags are enums, printed by name.
    assert [line for line in lines if line.startswith("latest ")] == [
        "latest 2024-03-01T21:00:00.000Z 5137.08 v1 PRIORITY flags -",
        "latest 2024-03-04T21:00:00.000Z 5130.95 v1 PRIORITY flags -",
        "latest 2024-03-05T21:00:00.000Z 5078.18 v1 PRIORITY flags -",
    ]
    # Latest is the correction; as known before it, the first version.
    assert "now 2024-03-05T21:00:00.000Z 5078.20 v2 PRIORITY flags -" in lines
    (as_of,) = [line for line in lines if line.startswith("as of ")]
    assert as_of.endswith(" 2024-03-05T21:00:00.000Z 5078.18 v1 PRIORITY flags -")
    # The point's history, one item per page: both versions, and both observations at the
    # offset the source stated (utc_offset -05:00).
    assert [line for line in lines if line.startswith("history ")] == [
        "history 2024-03-05T21:00:00.000Z 5078.18 v1 PRIORITY flags -",
        "history 2024-03-05T21:00:00.000Z 5078.20 v2 PRIORITY flags -",
    ]
    observed = [line.split()[:4] for line in lines if line.startswith("observed ")]
    assert [o[:3] for o in observed] == [
        ["observed", "2024-03-05T16:00:00-05:00", "5078.18"],
        ["observed", "2024-03-05T16:00:00-05:00", "5078.20"],
    ]
    assert all(o[3] == "from" for o in observed)
    received = [line.split(" ", 2)[2] for line in lines if line.startswith("subscription series/")]
    assert received[:3] == [
        "2024-03-01T21:00:00.000Z 5137.08 v1 PRIORITY flags -",
        "2024-03-04T21:00:00.000Z 5130.95 v1 PRIORITY flags -",
        "2024-03-05T21:00:00.000Z 5078.18 v1 PRIORITY flags -",
    ]
    assert any(line.startswith("subscription resume token ") and len(line) > 27 for line in lines)
    # The exception queue, by parent and filter: clean closes raise no issue.
    assert "quality issues (status = OPEN): 0" in lines
    # More closes in columns, over BulkIngest; the whole range read back in the columnar view
    # (one value a message here: across calls too) equals the per-point view field for field
    # (the example throws otherwise).
    assert "ingested 3 points in columns (published 3)" in lines
    assert [line for line in lines if line.startswith("columns ")] == [
        "columns 2024-03-01T21:00:00.000Z 5137.08 USD v1 PRIORITY flags -",
        "columns 2024-03-04T21:00:00.000Z 5130.95 USD v1 PRIORITY flags -",
        "columns 2024-03-05T21:00:00.000Z 5078.20 USD v2 PRIORITY flags -",
        "columns 2024-03-11T21:00:00.000Z 5117.94 USD v1 PRIORITY flags -",
        "columns 2024-03-12T21:00:00.000Z 5175.27 USD v1 PRIORITY flags -",
        "columns 2024-03-13T21:00:00.000Z 5165.31 USD v1 PRIORITY flags -",
    ]
    assert "columnar read = per-point read: 6 values" in lines
    # The malformed request: INVALID_ARGUMENT (ErrorInfo BAD_REQUEST) with both field
    # violations, decoded from the google.rpc.BadRequest in grpc-status-details-bin.
    assert any(line.startswith("INVALID_ARGUMENT (BAD_REQUEST): ") for line in lines)
    assert any(line.startswith("  points[0].utc_offset: ") for line in lines)
    assert any(line.startswith("  points[1].value.price.value: '1e400'") for line in lines)
