"""The options of `qis define-series` / `qis evolve-series` for the newer checks: the
asymmetric jump band, jump windows, the zero rule, the review of manual values and the
confidence level: what each sends, how `off` clears it, and what a typo is."""

from __future__ import annotations

import argparse

import pytest
from google.protobuf import duration_pb2
from qis.data.v1 import quality_pb2, series_pb2
from qis_cli.definitions import changes, define_request, evolve_request, evolved
from qis_cli.main import build_parser

from tests.cli.test_cli_definitions import _current

DEFINE = ("define-series", "x", "--type", "price", "--frequency", "daily", "--source", "a")
EVOLVE = ("evolve-series", "x", "--reason", "r")


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def window(start: int, end: int, multiplier: str) -> series_pb2.JumpWindow:
    return series_pb2.JumpWindow(
        start=duration_pb2.Duration(seconds=start),
        end=duration_pb2.Duration(seconds=end),
        multiplier=multiplier,
    )


def test_define_series_sends_every_newer_check() -> None:
    args = _args(
        *DEFINE, "--max-rise-percent", "0.35", "--max-fall-percent", "0.25",
        "--jump-windows", "09:30-10:00x3, 15:50-24:00x1.5", "--forbid-zero", "error",
        "--review-manual-values", "--min-agreeing-sources", "2", "--on-low-confidence", "block",
    )  # fmt: skip
    series = define_request("cmd", "x", args).series
    assert series.validation == series_pb2.ValidationRules(
        max_rise_percent="0.35",
        max_fall_percent="0.25",
        jump_windows=[window(34_200, 36_000, "3"), window(57_000, 86_400, "1.5")],
        forbid_zero=quality_pb2.SEVERITY_ERROR,
        review_manual_values=True,
    )
    assert series.reconciliation == series_pb2.ReconciliationPolicy(
        min_agreeing_sources=2, on_low_confidence=series_pb2.BREAK_ACTION_BLOCK
    )


def test_off_clears_the_band_the_windows_and_the_zero_rule() -> None:
    current = _current()
    current.validation.max_rise_percent = "1"
    current.validation.jump_windows.append(window(0, 60, "2"))
    current.validation.forbid_zero = quality_pb2.SEVERITY_WARNING
    current.validation.review_manual_values = True
    args = _args(
        *EVOLVE, "--max-rise-percent", "off", "--jump-windows", "off", "--forbid-zero", "off",
        "--no-review-manual-values",
    )  # fmt: skip
    series = evolved(current, args)
    assert series.validation == _current().validation
    assert changes(current, series) == [
        "validation.max_rise_percent: 1 -> (none)",
        "validation.jump_windows: 00:00:00-00:01:00x2 -> (none)",
        "validation.forbid_zero: warning -> unspecified",
        "validation.review_manual_values: True -> False",
    ]
    assert list(evolve_request("c", current, series, args).update_mask.paths) == ["validation"]


def test_new_windows_replace_the_old_ones() -> None:
    current = _current()
    current.validation.jump_windows.append(window(0, 60, "2"))
    series = evolved(current, _args(*EVOLVE, "--jump-windows", "09:30-10:00x3"))
    assert list(series.validation.jump_windows) == [window(34_200, 36_000, "3")]


def test_the_confidence_options_touch_the_reconciliation_alone() -> None:
    args = _args(*EVOLVE, "--min-agreeing-sources", "3", "--on-low-confidence", "flag")
    series = evolved(_current(), args)
    assert (
        series.reconciliation.min_agreeing_sources,
        series.reconciliation.on_low_confidence,
    ) == (
        3,
        series_pb2.BREAK_ACTION_FLAG,
    )
    paths = evolve_request("c", _current(), series, args).update_mask.paths
    assert list(paths) == ["reconciliation"]


@pytest.mark.parametrize(
    "options",
    [
        ("--jump-windows", "9:30-10x2"),
        ("--jump-windows", "09:30-10:00"),
        ("--jump-windows", "09:30-10:00xwide"),
        ("--forbid-zero", "info"),
        ("--max-fall-percent", "ten"),
        ("--min-agreeing-sources", "-1"),
        ("--on-low-confidence", "hold"),
    ],
)
def test_a_typo_is_a_usage_error_before_anything_is_sent(
    options: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _args(*EVOLVE, *options)
    assert exit_.value.code == 2
    assert options[0] in capsys.readouterr().err
