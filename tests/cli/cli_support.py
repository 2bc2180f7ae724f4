"""Helpers of the CLI tests: `qis` run in-process against real qis processes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from qis_cli.main import main

from tests.support.ports import free_port as free_port  # for the tests that import it from here

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


class Qis:
    """`qis ...` run in this process, as user cli-tester; the services' addresses come from
    QIS_COMMAND_ADDRESS and QIS_QUERY_ADDRESS, as for a person after `qis up`."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *args: str) -> Outcome:
        self._capsys.readouterr()
        code = main([*args, "--user", "cli-tester"])
        captured = self._capsys.readouterr()
        return Outcome(code, captured.out, captured.err)


@dataclass(frozen=True)
class SeriesSetup:
    series_id: str
    source_id: str


DefineSeries = Callable[..., SeriesSetup]
"""The `define_series` fixture: (data type, unit, *define-series options) -> a fresh series."""
