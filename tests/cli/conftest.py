"""Fixtures of the CLI tests: the three real qis processes of the session (those the end-to-end
tests share, tests/conftest.py), a fresh series per test."""

from __future__ import annotations

import uuid

import pytest

from tests.cli.cli_support import DefineSeries, Qis, SeriesSetup
from tests.e2e.harness import Cluster


@pytest.fixture(scope="session")
def services(shared_cluster: Cluster) -> Cluster:
    return shared_cluster


@pytest.fixture
def qis(
    services: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Qis:
    monkeypatch.setenv("QIS_COMMAND_ADDRESS", services.address("command"))
    monkeypatch.setenv("QIS_QUERY_ADDRESS", services.address("query"))
    return Qis(capsys)


@pytest.fixture
def define_series(qis: Qis) -> DefineSeries:
    """A fresh series fed by a fresh file source, so tests do not share state."""

    def define(data_type: str, unit: str, *options: str) -> SeriesSetup:
        suffix = uuid.uuid4().hex[:8]
        setup = SeriesSetup(f"cli-test-{suffix}", f"file-{suffix}")
        registered = qis("register-source", setup.source_id, "--provider", "file")
        assert registered.code == 0, registered.err
        defined = qis(
            "define-series", setup.series_id, "--type", data_type, "--frequency", "daily",
            "--unit", unit, "--source", f"{setup.source_id}:1", *options,
        )  # fmt: skip
        assert defined.code == 0, defined.err
        return setup

    return define


@pytest.fixture
def price_series(define_series: DefineSeries) -> SeriesSetup:
    return define_series("price", "USD", "--require-positive")
