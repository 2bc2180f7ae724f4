"""The versions pyproject.toml declares as minimums really work with the checked-in generated code.

The generated modules in libs/contracts check their runtime when imported: every *_pb2.py refuses a
protobuf older than the protoc that generated it (its "gencode" version), every *_pb2_grpc.py a
grpcio older than the grpcio-tools that generated it. So a minimum below those installs and then
fails at the first import. Fast checks compare the declared minimums with the versions written in
the generated code and in the lock files; one test proves it for real: a throwaway virtual
environment (no system site-packages) with exactly the declared minimums of protobuf, grpcio and
googleapis-common-protos (the packages the generated code imports) loads every generated module.
That one needs the package registry (uv, from the dev lock, installs in a few seconds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "libs" / "contracts"
GENERATED = CONTRACTS / "qis" / "data" / "v1"
LOCKS = ROOT / "requirements"
# What the generated modules import at run time: google.protobuf, grpc, google.api/rpc/type.
RUNTIME_OF_GENERATED_CODE = ("protobuf", "grpcio", "googleapis-common-protos")
GRPC_FAMILY = ("grpcio-health-checking", "grpcio-reflection", "grpcio-status")

GENCODE = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
    r"(\d+),\s*(\d+),\s*(\d+),\s*'([^']*)'"
)
GRPC_GENERATED = re.compile(r"^GRPC_GENERATED_VERSION = '([^']+)'", re.M)
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", re.M)


def declared_requirements() -> list[Requirement]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        dependencies: list[str] = tomllib.load(f)["project"]["dependencies"]
    return [Requirement(text) for text in dependencies]


def declared_minimums() -> dict[str, Version]:
    minimums: dict[str, Version] = {}
    for requirement in declared_requirements():
        for spec in requirement.specifier:
            if spec.operator == ">=":
                minimums[canonicalize_name(requirement.name)] = Version(spec.version)
    return minimums


def generated_modules() -> list[str]:
    files = sorted(GENERATED.glob("*_pb2.py")) + sorted(GENERATED.glob("*_pb2_grpc.py"))
    assert files, f"no generated modules in {GENERATED}"
    return [f"qis.data.v1.{path.stem}" for path in files]


def gencode_versions() -> set[Version]:
    found: set[Version] = set()
    for path in GENERATED.glob("*_pb2.py"):
        match = GENCODE.search(path.read_text(encoding="utf-8"))
        assert match, f"{path.name} has no runtime version check"
        major, minor, patch, suffix = match.groups()
        found.add(Version(f"{major}.{minor}.{patch}{suffix}"))
    return found


def grpc_generated_versions() -> set[Version]:
    found: set[Version] = set()
    for path in GENERATED.glob("*_pb2_grpc.py"):
        match = GRPC_GENERATED.search(path.read_text(encoding="utf-8"))
        assert match, f"{path.name} has no GRPC_GENERATED_VERSION"
        found.add(Version(match.group(1)))
    return found


def pins(lock: str) -> dict[str, list[str]]:
    """Package -> its pinned versions (a universal lock may pin one per Python version)."""
    found: dict[str, list[str]] = {}
    for name, version in PIN.findall((LOCKS / lock).read_text(encoding="utf-8")):
        found.setdefault(canonicalize_name(name), []).append(version)
    return found


def uv_executable() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        pytest.fail(
            "uv is not installed: run scripts/setup-dev.sh (it is in requirements/dev.lock)"
        )
    return found


def clean_env() -> dict[str, str]:
    """This environment without what would leak the project's venv into a child process."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PYTHON")
    }


def test_protobuf_minimum_is_not_older_than_the_gencode() -> None:
    minimum = declared_minimums()["protobuf"]
    gencode = max(gencode_versions())
    assert minimum >= gencode, (
        f"protobuf>={minimum} is declared, but the generated code needs >= {gencode}"
    )
    assert minimum.major == gencode.major


def test_grpcio_minimums_are_not_older_than_the_generated_stubs() -> None:
    minimums = declared_minimums()
    generated = max(grpc_generated_versions())
    assert minimums["grpcio"] >= generated
    for name in GRPC_FAMILY:  # released together, each requires grpcio >= its own version
        assert minimums[name] == minimums["grpcio"], name


def test_the_pinned_generator_made_the_checked_in_code() -> None:
    dev = pins("dev.lock")
    assert {Version(v) for v in dev["grpcio-tools"]} == grpc_generated_versions()
    assert len(dev["mypy-protobuf"]) == 1
    assert len(dev["protobuf"]) == 1
    assert Version(dev["protobuf"][0]) >= max(gencode_versions())


def test_the_dev_lock_has_the_runtime_locks_versions() -> None:
    runtime, dev = pins("runtime.lock"), pins("dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime
    assert pins("bootstrap.lock")["uv"] == dev["uv"]


@pytest.mark.timeout(60)
def test_declared_minimums_resolve_together(tmp_path: Path) -> None:
    """Every direct dependency pinned at its lowest allowed version (its extras kept) resolves:
    none of the minimums conflicts with another one's requirements. Pinned, not asked of the
    resolver's lowest-direct mode: that mode takes the newest of every indirect package first
    and, when one of those wants more than a minimum (an opentelemetry-instrumentation release
    that needs a newer opentelemetry-api), may move a direct dependency up rather than the
    indirect one down, although a resolution at the minimums exists."""
    pinned = []
    for requirement in declared_requirements():
        lowest = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert lowest, f"{requirement.name} declares no minimum"
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pinned.append(f"{requirement.name}{extras}=={lowest[0]}")
    wanted = tmp_path / "minimums.txt"
    wanted.write_text("\n".join(pinned) + "\n", encoding="utf-8")
    out = tmp_path / "lowest.txt"
    command = [uv_executable(), "pip", "compile", "--quiet", "--no-header", "--no-annotate"]
    subprocess.run(
        [*command, "--python-version", "3.11", str(wanted), "-o", str(out)],
        check=True,
        env=clean_env(),
        timeout=50,
    )
    resolved: dict[str, Version] = {
        canonicalize_name(name): Version(version)
        for name, version in PIN.findall(out.read_text(encoding="utf-8"))
    }
    assert {name: resolved[name] for name in declared_minimums()} == declared_minimums()


@pytest.mark.timeout(120)
def test_declared_minimums_install_and_load_the_generated_code(tmp_path: Path) -> None:
    minimums = declared_minimums()
    env_dir = tmp_path / "venv"
    # A venv made from inside a venv is based on the base interpreter, without site-packages.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
        check=True,
        env=clean_env(),
        timeout=60,
    )
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    wanted = [f"{name}=={minimums[name]}" for name in RUNTIME_OF_GENERATED_CODE]
    subprocess.run(
        [uv_executable(), "pip", "install", "--quiet", "--python", str(python), *wanted],
        check=True,
        env=clean_env(),
        timeout=100,
    )
    # -I: isolated (no PYTHONPATH, no user site, not the current directory); warnings are errors,
    # so a runtime that only warns about the generated code fails too.
    script = (
        "import importlib, json, sys\n"
        "from importlib.metadata import version\n"
        f"sys.path.insert(0, {str(CONTRACTS)!r})\n"
        f"for name in {generated_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps({{n: version(n) for n in {list(RUNTIME_OF_GENERATED_CODE)!r}}}))\n"
    )
    loaded = subprocess.run(
        [str(python), "-I", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    versions: dict[str, str] = json.loads(loaded.stdout)
    assert {name: Version(v) for name, v in versions.items()} == {
        name: minimums[name] for name in RUNTIME_OF_GENERATED_CODE
    }
