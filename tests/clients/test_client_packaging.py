"""clients/python/pyproject.toml declares what the server declares for the same packages: a
client minimum below the server's would install a runtime the generated code refuses, one above
it would refuse what the server runs on. (test_python_client.py installs it for real.)"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"


def project(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        table: dict[str, Any] = tomllib.load(f)["project"]
    return table


def specifiers(requirements: list[str]) -> dict[str, str]:
    parsed = (Requirement(text) for text in requirements)
    return {canonicalize_name(r.name): str(r.specifier) for r in parsed}


def test_runtime_minimums_are_the_servers() -> None:
    client = specifiers(project(CLIENT / "pyproject.toml")["dependencies"])
    server = specifiers(project(ROOT / "pyproject.toml")["dependencies"])
    assert set(client) == {"protobuf", "grpcio", "grpcio-status", "googleapis-common-protos"}
    assert client == {name: server[name] for name in client}


def test_typing_extra_minimums_are_the_servers() -> None:
    client = specifiers(project(CLIENT / "pyproject.toml")["optional-dependencies"]["typing"])
    server = specifiers(project(ROOT / "pyproject.toml")["optional-dependencies"]["dev"])
    assert client == {name: server[name] for name in client}


def test_the_generated_code_comes_from_libs_contracts() -> None:
    with (CLIENT / "pyproject.toml").open("rb") as f:
        setuptools: dict[str, Any] = tomllib.load(f)["tool"]["setuptools"]
    assert (CLIENT / setuptools["package-dir"]["qis"]).resolve() == ROOT / "libs/contracts/qis"
