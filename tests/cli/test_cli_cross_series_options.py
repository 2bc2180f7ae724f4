"""`--benchmark` and `--underlying` of `qis define-series` / `qis evolve-series`: what each
spec sends, how `off` unsets the check (not an empty one), and what a typo is."""

from __future__ import annotations

import argparse

import pytest
from qis.data.v1 import series_pb2
from qis_cli.definitions import changes, define_request, evolve_request, evolved
from qis_cli.main import build_parser

from tests.cli.test_cli_definitions import _current

DEFINE = ("define-series", "x", "--type", "price", "--frequency", "daily", "--source", "a")
EVOLVE = ("evolve-series", "x", "--reason", "r")


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_define_series_sends_both_checks() -> None:
    args = _args(
        *DEFINE, "--benchmark", "SPX, k=3, window=60, beta=1.2, flat=1",
        "--underlying", "series/SPX,tolerance=2,inverse",
    )  # fmt: skip
    validation = define_request("cmd", "x", args).series.validation
    assert validation.benchmark == series_pb2.BenchmarkCheck(
        series="series/SPX",
        beta="1.2",
        max_residual_multiple="3",
        residual_window=60,
        flat_move_percent="1",
    )
    assert validation.underlying == series_pb2.UnderlyingCheck(
        series="series/SPX", inverse=True, tolerance_percent="2"
    )


def test_a_spec_leaves_what_it_does_not_name_to_the_server_defaults() -> None:
    validation = define_request("c", "x", _args(*DEFINE, "--benchmark", "SPX,flat=0.5")).series
    assert validation.validation.benchmark == series_pb2.BenchmarkCheck(
        series="series/SPX", flat_move_percent="0.5"
    )


def test_off_unsets_a_check() -> None:
    current = _current()
    current.validation.benchmark.CopyFrom(
        series_pb2.BenchmarkCheck(series="series/SPX", max_residual_multiple="3")
    )
    current.validation.underlying.series = "series/SPX"
    args = _args(*EVOLVE, "--benchmark", "off", "--underlying", "off")
    series = evolved(current, args)
    assert not series.validation.HasField("benchmark")
    assert not series.validation.HasField("underlying")
    assert "validation.benchmark.series: series/SPX -> (none)" in changes(current, series)
    assert list(evolve_request("c", current, series, args).update_mask.paths) == ["validation"]


@pytest.mark.parametrize(
    "options",
    [
        ("--benchmark", ""),
        ("--benchmark", "k=3"),
        ("--benchmark", "SPX,k=three"),
        ("--benchmark", "SPX,kk=3"),
        ("--benchmark", "SPX,window=-1"),
        ("--underlying", "SPX,inverse=yes"),
        ("--underlying", "SPX,tolerance"),
    ],
)
def test_a_typo_is_a_usage_error_before_anything_is_sent(
    options: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _args(*EVOLVE, *options)
    assert exit_.value.code == 2
    assert options[0] in capsys.readouterr().err
