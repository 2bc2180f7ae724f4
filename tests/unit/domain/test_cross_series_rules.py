"""The cross-series rules as pure functions (qis_domain.cross_series): what each catches and
leaves alone, when it cannot run (a missing figure of the other series, a move from 0, too few
residuals, a usual residual of 0, an unchanged underlying), and that the evidence carries every
figure of the other series used, with its version."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError
from qis_domain.cross_series import (
    CrossSeriesView,
    OfficialFigure,
    ReferenceSeries,
    check_cross_series,
    reach,
)
from qis_domain.definitions import BenchmarkCheck, UnderlyingCheck, ValidationRules
from qis_domain.rules import Received
from qis_domain.series_bucket import look_back
from qis_domain.snaps import format_snap

from tests.unit.domain.test_domain_quality_workflow import series

D = Decimal
DAY = 86_400_000_000


def received(*figures: str) -> list[Received]:
    return [Received(i * DAY, D(f), ("feed",)) for i, f in enumerate(figures)]


def reference(*figures: str | None, version: int = 1) -> ReferenceSeries:
    return ReferenceSeries(
        "SPX",
        {i * DAY: OfficialFigure(D(f), version) for i, f in enumerate(figures) if f is not None},
    )


BENCH = ValidationRules(
    benchmark=BenchmarkCheck(series_id="SPX", max_residual_multiple=D(3), residual_window=4)
)
# A stock that moved 1 % more than its index on each of four days (the usual residual), then
# +10 % on a flat day.
STOCK = received("100", "102", "104.04", "106.1208", "108.243216")
INDEX = reference("50", "50.5", "51.005", "51.51505", "52.0302005", "52.0302005")


def rules_fired(
    figure: str, previous: list[Received], rules: ValidationRules, view: CrossSeriesView
) -> list[str]:
    snap = len(previous) * DAY
    return [f.rule for f in check_cross_series(D(figure), snap, previous, rules, view)]


def test_a_residual_beyond_k_times_its_usual_size_is_a_warning_with_its_figures() -> None:
    [failure] = check_cross_series(
        D("119.0675376"), 5 * DAY, STOCK, BENCH, CrossSeriesView(benchmark=INDEX)
    )
    assert (failure.rule, failure.blocking) == ("benchmark_move", False)
    e = failure.evidence
    assert (e["previous"], e["value"], e["benchmark"]) == ("108.243216", "119.0675376", "SPX")
    assert (e["benchmark_previous"], e["benchmark_value"]) == ("52.0302005", "52.0302005")
    assert D(e["residual_percent"]) == D(10)
    assert D(e["usual_residual_percent"]) == D(1)
    assert e["residuals"] == 4
    assert e["benchmark_window"] == [
        [format_snap(i * DAY), str(INDEX.figures[i * DAY].figure), 1] for i in range(5)
    ]


def test_a_residual_within_k_times_its_usual_size_passes() -> None:
    # +3 % on a flat index: three times the usual 1 %, not beyond.
    assert rules_fired("111.49051248", STOCK, BENCH, CrossSeriesView(benchmark=INDEX)) == []


@pytest.mark.parametrize(
    "index",
    [
        reference("50", "50.5", "51.005", "51.51505", None, "52.0302005"),  # no previous
        reference("50", "50.5", "51.005", "51.51505", "52.0302005", None),  # no current
        reference("50", "50.5", None, None, "52.0302005", "52.0302005"),  # 1 of 4 residuals
        reference("50", "50.5", "51.005", "51.51505", "0", "1"),  # a move from 0
    ],
)
def test_without_the_figures_it_needs_the_benchmark_rule_does_not_run(
    index: ReferenceSeries,
) -> None:
    assert rules_fired("119.0675376", STOCK, BENCH, CrossSeriesView(benchmark=index)) == []


def test_a_usual_residual_of_zero_says_nothing() -> None:
    # The stock moved exactly as its index every day: no usual size to compare with.
    same = received("50", "50.5", "51.005", "51.51505", "52.0302005")
    assert rules_fired("60", same, BENCH, CrossSeriesView(benchmark=INDEX)) == []


def test_unchanged_while_the_benchmark_moved_beyond_the_limit_is_a_warning() -> None:
    rules = ValidationRules(benchmark=BenchmarkCheck(series_id="SPX", flat_move_percent=D(1)))
    index = reference("100", "100.9", "102.1")
    view = CrossSeriesView(benchmark=index)
    assert rules_fired("10.00", received("10"), rules, view) == []  # index +0.9 %
    [failure] = check_cross_series(D("10"), 2 * DAY, received("10", "10.00"), rules, view)
    assert failure.rule == "flat_while_benchmark_moved"
    assert not failure.blocking
    assert failure.evidence["limit_percent"] == "1"
    assert failure.evidence["benchmark_previous_version"] == 1
    assert rules_fired("10.01", received("10", "10.00"), rules, view) == []  # it moved (+1.19 %)


@pytest.mark.parametrize(
    ("inverse", "move", "fired"),
    [
        (False, "-0.6", ["underlying_move"]),
        (False, "-0.4", []),  # within the tolerance
        (False, "3", []),
        (True, "0.6", ["underlying_move"]),
        (True, "-3", []),
    ],
)
def test_a_derivative_against_its_underlying_beyond_the_tolerance_is_an_error(
    inverse: bool, move: str, fired: list[str]
) -> None:
    rules = ValidationRules(
        underlying=UnderlyingCheck(series_id="SPX", inverse=inverse, tolerance_percent=D("0.5"))
    )
    view = CrossSeriesView(underlying=reference("100", "101", version=3))
    failures = check_cross_series(D(100) + D(move), DAY, received("100"), rules, view)
    assert [f.rule for f in failures] == fired
    assert all(f.blocking and f.evidence["underlying_version"] == 3 for f in failures)


def test_an_unchanged_underlying_expects_nothing() -> None:
    rules = ValidationRules(underlying=UnderlyingCheck(series_id="SPX"))
    view = CrossSeriesView(underlying=reference("100", "100.0"))
    assert rules_fired("50", received("100"), rules, view) == []


def test_the_checks_look_back_as_far_as_their_window() -> None:
    assert reach(ValidationRules()) == 0
    assert reach(ValidationRules(underlying=UnderlyingCheck(series_id="SPX"))) == 1
    assert reach(BENCH) == 5
    definition = series().model_copy(update={"validation": BENCH})
    assert look_back(definition) >= 5


def test_a_benchmark_without_a_rule_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_residual_multiple or flat_move_percent"):
        BenchmarkCheck(series_id="SPX")
