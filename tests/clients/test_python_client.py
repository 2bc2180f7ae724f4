"""clients/python is a package a Python team installs alone: `pip install clients/python` into a
fresh virtual environment (no system site-packages) brings the contract's generated modules and
qis_client with protobuf and gRPC only, none of the server's dependencies, the generated code
exactly as in libs/contracts, and the quickstart example runs with it against a real `qis up`.

The environment is built once per session (pip resolves from the index this machine has, held to
the versions of requirements/runtime.lock by a constraints file, so the client runs on what the
server is tested with).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.support.qis_up import qis_up

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
QUICKSTART = CLIENT / "examples" / "quickstart.py"
GENERATED = ROOT / "libs" / "contracts" / "qis"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
# What the server needs and a client must not drag along (import names; pandas comes with
# exchange_calendars).
SERVER_ONLY = ("pydantic", "pyarrow", "pymongo", "kurrentdbclient", "exchange_calendars", "pandas")
CLIENT_DEPENDENCIES = {"protobuf", "grpcio", "grpcio-status", "googleapis-common-protos"}
# name==version and its marker, without extras (a constraint may not have any) or hashes.
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?(==[^\s;\\]+(?:\s*;[^\\\n]*)?)", re.M)


def isolated_env() -> dict[str, str]:
    """This environment without what would leak the project's .venv into the client's."""
    hidden = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PYTHON")
    return {k: v for k, v in os.environ.items() if k not in hidden and not k.startswith("QIS_")}


def run(command: Sequence[str | Path], timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=isolated_env() if env is None else env,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtual environment with `pip install clients/python` done."""
    root = tmp_path_factory.mktemp("python-client")
    constraints = root / "constraints.txt"
    pins = (name + pin.strip() for name, pin in PIN.findall(RUNTIME_LOCK.read_text()))
    constraints.write_text("\n".join(pins) + "\n")
    # From the project's venv, `venv` bases the new one on the base interpreter, and without
    # --system-site-packages nothing installed there is visible.
    run([sys.executable, "-m", "venv", root / "venv"], timeout=120)
    python = root / "venv" / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--constraint", constraints, CLIENT], timeout=240)
    return python


@pytest.fixture(scope="session")
def installed(client_python: Path) -> dict[str, Any]:
    """What the client's environment holds, as seen from its own python."""
    script = (
        "import importlib.metadata as m, importlib.util as u, json, pathlib\n"
        "import qis.data.v1.query_service_pb2_grpc, qis_client\n"
        "print(json.dumps({\n"
        "  'requires': m.requires('qis-data-client'),\n"
        "  'distributions': sorted(d.metadata['Name'].lower() for d in m.distributions()),\n"
        f"  'server_only': [n for n in {SERVER_ONLY!r} if u.find_spec(n)],\n"
        "  'qis': str(pathlib.Path(qis.__file__).parent),\n"
        "}))\n"
    )
    # -I: no PYTHONPATH, no user site, not the current directory (the repository).
    found: dict[str, Any] = json.loads(run([client_python, "-I", "-c", script], timeout=60))
    return found


def test_the_client_installs_alone(installed: dict[str, Any], client_python: Path) -> None:
    assert installed["server_only"] == []
    assert "qis-data" not in installed["distributions"]
    requires = [Requirement(text) for text in installed["requires"]]
    # Without a marker: what every install gets (the `typing` extra's stubs have one).
    assert {r.name for r in requires if r.marker is None} == CLIENT_DEPENDENCIES
    assert Path(installed["qis"]).is_relative_to(client_python.parent.parent)


def files_below(root: Path) -> dict[Path, bytes]:
    return {
        path.relative_to(root): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_installed_contract_is_the_generated_one(installed: dict[str, Any]) -> None:
    shipped, generated = files_below(Path(installed["qis"])), files_below(GENERATED)
    assert shipped.keys() == generated.keys()
    assert [path for path, text in generated.items() if shipped[path] != text] == []


def in_order(lines: list[str], patterns: list[str]) -> str | None:
    """The first pattern no line matches after the line the previous pattern matched."""
    remaining = iter(lines)
    for pattern in patterns:
        if not any(re.fullmatch(pattern, line) for line in remaining):
            return pattern
    return None


def test_the_quickstart_runs_against_qis_up(client_python: Path, tmp_path: Path) -> None:
    with qis_up(tmp_path) as addresses:
        out = run(
            [client_python, "-I", QUICKSTART, "--user", "quickstart-test"],
            timeout=90,
            env={**isolated_env(), **addresses},
        )
    lines = out.splitlines()
    snap_4 = r"2024-03-04T21:00:00Z"
    expected = [
        r"defined series/QUICKSTART\.\w+ fed by sources/quickstart-\w+",
        r"ingested 3 points, 3 published, at position \d+",
        r"latest 2024-03-01T21:00:00Z 5137\.08 v1",
        rf"latest {snap_4} 5130\.95 v1",
        r"latest 2024-03-05T21:00:00Z 5078\.65 v1",
        r"received 2024-03-01T21:00:00Z 5137\.08 v1",
        rf"received {snap_4} 5130\.95 v1",
        r"received 2024-03-05T21:00:00Z 5078\.65 v1",
        rf"restated: latest {snap_4} 5130\.96 v2",
        rf"as of position \d+: {snap_4} 5130\.95 v1",
        rf"resumed subscription received {snap_4} 5130\.96 v2",
        rf"history of {snap_4}: versions 1, 2;"
        r" sources/quickstart-\w+ sent 5130\.95 at 2024-03-04T16:00:00-05:00",
        r"audit trail: \d+ entries: SeriesDefined, DataIngested, .*DataRestated.*",
        r"the same closes in columns: duplicate True",
        r"ingested 3 points in columns, 3 published",
        r"columns 2024-03-01T21:00:00Z 5137\.08 USD v1 flags -",
        rf"columns {snap_4} 5130\.96 USD v2 flags -",
        r"columns 2024-03-13T21:00:00Z 5165\.31 USD v1 flags -",
        r"columnar read = per-point read: 6 values",
        r"rejected: INVALID_ARGUMENT with 2 field violations",
        r"  points\[1\]\.value\.price\.value: .+",
        r"  points\[2\]\.value\.price\.currency: .+",
        r"quickstart: ok",
    ]
    assert in_order(lines, expected) is None, f"{in_order(lines, expected)!r} not in:\n{out}"
