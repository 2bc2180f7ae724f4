"""Fixtures of the CLI tests: one real `qis-command` per module, a fresh series per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.cli.cli_support import (
    BIN,
    CommandService,
    Qis,
    SeriesSetup,
    free_port,
    wait_serving,
)


@pytest.fixture(scope="module")
def command_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandService]:
    data_dir = tmp_path_factory.mktemp("qis-data")
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "QIS_DATA_DIR": str(data_dir),
        "QIS_COMMAND_ADDRESS": address,
        "QIS_EVENT_STORE_URI": "",
    }
    process = subprocess.Popen([str(BIN / "qis-command")], env=env, stderr=subprocess.PIPE)
    try:
        wait_serving(address, process)
        yield CommandService(address, data_dir)
    finally:
        process.kill()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


@pytest.fixture
def qis(command_service: CommandService, capsys: pytest.CaptureFixture[str]) -> Qis:
    return Qis(command_service, capsys)


@pytest.fixture
def price_series(qis: Qis) -> SeriesSetup:
    """A fresh daily USD price series fed by a fresh file source, so tests do not share state."""
    suffix = uuid.uuid4().hex[:8]
    setup = SeriesSetup(f"cli-test-{suffix}", f"file-{suffix}")
    registered = qis("register-source", setup.source_id, "--provider", "file")
    assert registered.code == 0, registered.err
    defined = qis(
        "define-series",
        setup.series_id,
        "--type",
        "price",
        "--frequency",
        "daily",
        "--unit",
        "USD",
        "--source",
        f"{setup.source_id}:1",
        "--require-positive",
    )
    assert defined.code == 0, defined.err
    return setup
