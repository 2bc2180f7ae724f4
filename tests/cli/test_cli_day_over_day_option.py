"""`--day-over-day` of `qis define-series` / `qis evolve-series`: what a spec sends (bands,
severity), how `off` unsets the check, and what a typo is."""

from __future__ import annotations

import argparse

import pytest
from qis.data.v1 import quality_pb2, series_pb2
from qis_cli.definitions import define_request, evolved
from qis_cli.main import build_parser

from tests.cli.test_cli_definitions import _current

DEFINE = ("define-series", "x", "--type", "price", "--frequency", "daily", "--source", "a")
EVOLVE = ("evolve-series", "x", "--reason", "r")


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_define_series_sends_the_bands_and_the_severity() -> None:
    args = _args(*DEFINE, "--day-over-day", "rise=0.35, fall=0.25, abs=0.05, error")
    assert define_request("c", "x", args).series.validation.day_over_day == (
        series_pb2.DayOverDayCheck(
            max_rise_percent="0.35",
            max_fall_percent="0.25",
            max_abs="0.05",
            severity=quality_pb2.SEVERITY_ERROR,
        )
    )
    plain = _args(*DEFINE, "--day-over-day", "pct=2")
    assert define_request("c", "x", plain).series.validation.day_over_day == (
        series_pb2.DayOverDayCheck(max_percent="2", severity=quality_pb2.SEVERITY_WARNING)
    )


def test_off_unsets_the_check() -> None:
    current = _current()
    current.validation.day_over_day.max_percent = "2"
    series = evolved(current, _args(*EVOLVE, "--day-over-day", "off"))
    assert not series.validation.HasField("day_over_day")


@pytest.mark.parametrize("spec", ["", "error", "pct", "pct=two", "pc=2", "pct=2,error=yes"])
def test_a_typo_is_a_usage_error_before_anything_is_sent(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _args(*EVOLVE, "--day-over-day", spec)
    assert exit_.value.code == 2
    assert "--day-over-day" in capsys.readouterr().err
