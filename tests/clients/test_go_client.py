"""The Go client (clients/go): its generated code is what the protos give, it is gofmt- and
vet-clean, builds and passes its unit tests, and its quickstart example runs against `qis up`
(per-point and columnar ingest and reads, the columnar read checked against the per-point one).

Needs `go` on PATH (it is in CI: scripts/setup-dev.sh needs Go already); without it the tests
skip, saying so. The first run downloads the Go modules and builds the two generator plugins
(about 30 s); with warm caches the whole file takes about 15 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.qis_up import qis_up

ROOT = Path(__file__).resolve().parents[2]
GO_CLIENT = ROOT / "clients" / "go"


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # No VCS stamping: a CI checkout owned by another user makes `git status` fail in go build.
    env["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -buildvcs=false".strip()
    return env


def _run(
    args: list[str], *, timeout_s: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=GO_CLIENT,
        env=env or _go_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}\n--- stdout\n{done.stdout}\n"
        f"--- stderr\n{done.stderr}"
    )
    return done


@pytest.fixture(scope="module")
def go_client() -> Path:
    """clients/go/setup.sh run once: module dependencies downloaded, pinned plugins installed."""
    if shutil.which("go") is None:
        pytest.skip(
            "SKIPPED LOUDLY: `go` is not on PATH, so the Go client (clients/go) is NOT tested; "
            "install Go >= 1.24 (scripts/setup-dev.sh needs it too)"
        )
    _run(["./setup.sh"], timeout_s=300)
    return GO_CLIENT


def test_generated_code_matches_the_protos(go_client: Path) -> None:
    done = _run(["./generate.sh", "--check"], timeout_s=120)
    assert "clients/go/gen is current" in done.stdout


def test_gofmt_vet_build_and_unit_tests(go_client: Path) -> None:
    unformatted = _run(["gofmt", "-l", "."], timeout_s=60).stdout.split()
    assert unformatted == [], f"not gofmt-formatted (run gofmt -w clients/go): {unformatted}"
    _run(["go", "mod", "verify"], timeout_s=60)
    _run(["go", "mod", "tidy", "-diff"], timeout_s=120)  # go.mod and go.sum are complete
    _run(["go", "vet", "./..."], timeout_s=180)
    _run(["go", "build", "./..."], timeout_s=180)
    _run(["go", "test", "-count=1", "./..."], timeout_s=180)


@pytest.fixture
def addresses(tmp_path: Path) -> Iterator[dict[str, str]]:
    with qis_up(tmp_path) as running:
        yield running


@pytest.mark.e2e
def test_quickstart_runs_against_qis_up(go_client: Path, addresses: dict[str, str]) -> None:
    env = {**_go_env(), **addresses}
    args = ["go", "run", "./examples/quickstart", "-user", "go-ci", "-timeout", "60s"]
    out = _run(args, timeout_s=180, env=env).stdout
    lines = out.splitlines()

    assert "registered source sources/go-quickstart at position" in out
    assert "defined series/GO.QUICKSTART at position" in out
    assert "ingested 3 points, 3 published" in out
    # Latest (read through the paging iterator over [start_time, end_time), two points per
    # message), then as of the ingestion's position: the restated last close is v2 (made by
    # hand: MANUAL) now and v1 (the priority source's) then. Snaps come back as snap_time
    # instants, printed at the market's offset; methods and flags are enums, printed by name.
    latest = lines[lines.index("latest:") + 1 : lines.index("latest:") + 4]
    assert [line.split()[:6] for line in latest] == [
        ["2024-03-13T16:00:00-04:00", "5150.48", "v1", "PRIORITY", "flags", "-"],
        ["2024-03-14T16:00:00-04:00", "5165.31", "v1", "PRIORITY", "flags", "-"],
        ["2024-03-15T16:00:00-04:00", "5117.10", "v2", "MANUAL", "flags", "-"],
    ]
    as_of = next(i for i, line in enumerate(lines) if line.startswith("as of position"))
    assert [line.split()[:4] for line in lines[as_of + 1 : as_of + 4]] == [
        ["2024-03-13T16:00:00-04:00", "5150.48", "v1", "PRIORITY"],
        ["2024-03-14T16:00:00-04:00", "5165.31", "v1", "PRIORITY"],
        ["2024-03-15T16:00:00-04:00", "5117.09", "v1", "PRIORITY"],
    ]
    # The restated point's history, read one item per page: both versions, and the source's
    # observation at the offset it stated (utc_offset -04:00).
    history = lines.index("history of 2024-03-15T16:00:00-04:00:")
    versions = [line.split()[:4] for line in lines[history + 1 :] if line.startswith("  version ")]
    assert versions == [
        ["version", "v1", "5117.09", "PRIORITY"],
        ["version", "v2", "5117.10", "MANUAL"],
    ]
    observed = [line.split()[:5] for line in lines if line.startswith("  observed ")]
    assert observed == [
        ["observed", "2024-03-15T16:00:00-04:00", "5117.09", "from", "sources/go-quickstart"]
    ]
    received = [line.split()[2:5] for line in lines if line.startswith("subscription received:")]
    assert ["2024-03-15T16:00:00-04:00", "5117.09", "v1"] in received
    assert ["2024-03-15T16:00:00-04:00", "5117.10", "v2"] in received
    # The audit trail, filtered on action and user: the one restatement.
    audit = [line.split()[:6] for line in lines if line.startswith("audit: ")]
    assert audit == [
        [
            "audit:",
            "DataRestated",
            "series/GO.QUICKSTART",
            "2024-03-15T16:00:00-04:00",
            "by",
            "go-ci",
        ]
    ]
    # More closes in columns (integers at a scale of 2), one BulkIngest chunk; the whole range
    # read back in the columnar view (two values a message) equals the per-point view, field for
    # field (the example checks it and exits 1 otherwise).
    assert (
        "chunk go-quickstart:GO.QUICKSTART:ingest-columns:0: ingested 3 points in columns,"
        " 3 published (duplicate: false)"
    ) in out
    columns = lines[lines.index("columns:") + 1 : lines.index("columns:") + 7]
    assert [line.split() for line in columns] == [
        ["2024-03-13T16:00:00-04:00", "5150.48", "USD", "v1", "PRIORITY", "flags", "-"],
        ["2024-03-14T16:00:00-04:00", "5165.31", "USD", "v1", "PRIORITY", "flags", "-"],
        ["2024-03-15T16:00:00-04:00", "5117.10", "USD", "v2", "MANUAL", "flags", "-"],
        ["2024-03-25T16:00:00-04:00", "5218.19", "USD", "v1", "PRIORITY", "flags", "-"],
        ["2024-03-26T16:00:00-04:00", "5203.58", "USD", "v1", "PRIORITY", "flags", "-"],
        ["2024-03-27T16:00:00-04:00", "5248.49", "USD", "v1", "PRIORITY", "flags", "-"],
    ]
    assert "columnar read = per-point read: 6 values" in out
    # Optimistic concurrency: the evolution from schema version 1 is applied once; the same
    # from a stale version is ABORTED with ErrorInfo SCHEMA_VERSION_MISMATCH and no RetryInfo.
    assert "evolved series/GO.QUICKSTART at position" in out
    assert (
        "stale evolution refused: Aborted, reason SCHEMA_VERSION_MISMATCH (retry as is: false)"
        in out
    )
    assert any(
        line.startswith("refused before sending: qis: snap finer than a microsecond")
        for line in lines
    )
    assert (
        "malformed batch refused: INVALID_ARGUMENT (reason BAD_REQUEST), 3 field violations:" in out
    )
    assert any(line.strip().startswith("points[0].snap_time:") for line in lines)
    assert any(line.strip().startswith("points[1].value.price.value:") for line in lines)
    assert any(line.strip().startswith("points[2].utc_offset:") for line in lines)

    # Run again: every command has a fixed id, so each is answered as a duplicate (the chunk
    # of columns too).
    again = _run(args, timeout_s=120, env=env).stdout
    assert again.count("(duplicate: true)") == 6, again
