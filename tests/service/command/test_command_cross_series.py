"""The cross-series rules through the command application: "benchmark_move",
"flat_while_benchmark_moved" and "underlying_move" read the other series' official values
from its write-side buckets as known when a value is decided, put every figure they used (with
its version) in the issue's evidence, and a replay never decides anew."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_command.application.commands import RestatePoint
from qis_domain.definitions import BenchmarkCheck, UnderlyingCheck, ValidationRules
from qis_domain.quality import PointStatus
from qis_domain.series_bucket import SeriesBucket
from qis_domain.snaps import Frequency, bucket_of, format_snap
from qis_domain.values import Price

from tests.service.command.command_support import (
    NOW_US,
    App,
    close,
    daily_series,
    issues,
)

D = Decimal
SESSIONS = [d for d in (date(2025, 3, 3) + timedelta(n) for n in range(30)) if d.weekday() < 5]


def closes(start: str, moves: list[str]) -> list[tuple[date, str]]:
    """Closes from `start` by relative moves (percent), one per session, at 6 places."""
    out, figure = [(SESSIONS[0], start)], D(start)
    for day, move in zip(SESSIONS[1:], moves, strict=False):
        figure = (figure * (1 + D(move) / 100)).quantize(D("0.000001"))
        out.append((day, str(figure)))
    return out


INDEX_MOVES = ["0.5", "-0.3", "0.2", "0.4", "-0.6", "0.1", "0.3", "-0.2", "0.2", "2.5"]
# The stock follows the index with a residual of ±0.1 % a day, then jumps on a quiet day.
STOCK_MOVES = ["0.6", "-0.4", "0.3", "0.3", "-0.5", "0.0", "0.4", "-0.3", "5.2", "2.5"]


async def two_series(
    store: InMemoryEventStore, rules: ValidationRules, name: str = "AAPL"
) -> tuple[App, App]:
    index = App.on(store)
    await index.define(daily_series("idx", rules=ValidationRules()))
    stock = App(store, index.handlers, series_id=name)
    await stock.define(daily_series("feed", rules=rules))
    return index, stock


def stock_rules(**benchmark: object) -> ValidationRules:
    settings = {"series_id": "SPX", "max_residual_multiple": D(3), "residual_window": 6}
    return ValidationRules(benchmark=BenchmarkCheck.model_validate({**settings, **benchmark}))


async def stock_issues(stock: App, rule: str) -> list[tuple[date, dict[str, object]]]:
    events = await stock.events(SESSIONS)
    by_snap = {close(d).utc_us: d for d in SESSIONS}
    return [(by_snap[i.snap_us], i.evidence) for i in issues(events, rule)]


async def test_a_move_beyond_k_times_the_usual_residual_is_flagged_with_every_figure_used() -> None:
    index, stock = await two_series(InMemoryEventStore(clock=lambda: NOW_US), stock_rules())
    await index.ingest("idx", closes("5000", INDEX_MOVES))
    stock_closes = closes("200", STOCK_MOVES)
    await stock.ingest("feed", stock_closes)

    [(day, evidence)] = await stock_issues(stock, "benchmark_move")
    assert day == SESSIONS[9]  # the +5.2 % on a +0.2 % day; not the +2.5 % with the index
    index_closes = dict(closes("5000", INDEX_MOVES))
    assert evidence["benchmark"] == "SPX"
    assert evidence["previous"] == dict(stock_closes)[SESSIONS[8]]
    assert evidence["value"] == dict(stock_closes)[SESSIONS[9]]
    assert evidence["benchmark_previous"] == index_closes[SESSIONS[8]]
    assert evidence["benchmark_value"] == index_closes[SESSIONS[9]]
    assert (evidence["benchmark_previous_version"], evidence["benchmark_version"]) == (1, 1)
    assert D(str(evidence["residual_percent"])) == pytest.approx(D("5.0"), abs=D("0.01"))
    assert D(str(evidence["usual_residual_percent"])) == pytest.approx(D("0.1"), abs=D("0.01"))
    assert evidence["residuals"] == 6
    # The window's benchmark figures: the 7 closes before the value's previous one included.
    window = evidence["benchmark_window"]
    assert isinstance(window, list)
    assert window == [[format_snap(close(d).utc_us), index_closes[d], 1] for d in SESSIONS[2:9]]


async def test_a_beta_scales_the_benchmark_move() -> None:
    # With beta 2 the +2.5 % day expected +5 %: the stock's +2.5 % is a residual of -2.5 %.
    index, stock = await two_series(
        InMemoryEventStore(clock=lambda: NOW_US), stock_rules(beta=D(2))
    )
    await index.ingest("idx", closes("5000", INDEX_MOVES))
    await stock.ingest("feed", closes("200", [str(D(m) * 2) for m in INDEX_MOVES[:9]] + ["2.5"]))
    [(day, evidence)] = await stock_issues(stock, "benchmark_move")
    assert day == SESSIONS[10]
    assert evidence["beta"] == "2"
    assert D(str(evidence["residual_percent"])) < 0


async def test_without_a_benchmark_value_at_either_end_there_is_no_check() -> None:
    index, stock = await two_series(InMemoryEventStore(clock=lambda: NOW_US), stock_rules())
    index_closes = closes("5000", INDEX_MOVES)
    await index.ingest("idx", [c for c in index_closes if c[0] != SESSIONS[8]])
    await stock.ingest("feed", closes("200", STOCK_MOVES))
    assert await stock_issues(stock, "benchmark_move") == []


async def test_a_benchmark_that_arrives_later_does_not_re_decide_the_stock() -> None:
    index, stock = await two_series(InMemoryEventStore(clock=lambda: NOW_US), stock_rules())
    await stock.ingest("feed", closes("200", STOCK_MOVES))
    await index.ingest("idx", closes("5000", INDEX_MOVES))
    assert await stock_issues(stock, "benchmark_move") == []


async def test_a_restated_benchmark_changes_no_decision_already_made_and_replays_the_same() -> None:
    store = InMemoryEventStore(clock=lambda: NOW_US)
    index, stock = await two_series(store, stock_rules())
    await index.ingest("idx", closes("5000", INDEX_MOVES))
    await stock.ingest("feed", closes("200", STOCK_MOVES))
    before = await stock_issues(stock, "benchmark_move")
    assert len(before) == 1
    # The index's close of that day restated to the stock's move: had the check run now, no
    # residual would be left.
    restated = dict(closes("200", STOCK_MOVES))[SESSIONS[9]]
    moved = D(dict(closes("5000", INDEX_MOVES))[SESSIONS[8]]) * D(restated)
    moved /= D(dict(closes("200", STOCK_MOVES))[SESSIONS[8]])
    await index.handlers.restate(
        RestatePoint("SPX", close(SESSIONS[9]), Price(moved.quantize(D("0.000001")), ""), "fix"),
        index.ctx(user="ops"),
    )
    assert await stock_issues(stock, "benchmark_move") == before
    # A bucket rebuilt from its events by another process (cold cache) holds the same issue,
    # the evidence still naming version 1 of the benchmark.
    cold = App.on(store)
    bucket = await cold.handlers._bucket("AAPL", _bucket_of(SESSIONS[9]))
    assert [s.rule for s in bucket.issues.values()] == ["benchmark_move"]
    [(_, evidence)] = before
    assert evidence["benchmark_version"] == 1
    # A value decided from now on compares with the official version now known: the same
    # close sent again by a second command is clean against the restated index.
    again = App(store, index.handlers, series_id="AAPL")
    again.definition = stock.definition
    await again.ingest("feed", [(SESSIONS[9], restated)], command_id="resend")
    assert len(await stock_issues(stock, "benchmark_move")) == 1


def _bucket_of(day: date) -> int:
    return bucket_of(close(day).utc_us, Frequency.DAILY)


async def test_an_unchanged_value_while_the_benchmark_moved_is_flagged() -> None:
    rules = ValidationRules(
        benchmark=BenchmarkCheck(series_id="SPX", flat_move_percent=D(1)),
    )
    index, stock = await two_series(InMemoryEventStore(clock=lambda: NOW_US), rules)
    await index.ingest("idx", closes("5000", INDEX_MOVES))
    # Unchanged on a -0.6 % day (within the limit) and on the +2.5 % day (beyond it).
    flat = [(d, "100") for d in SESSIONS[:11]]
    await stock.ingest("feed", flat)
    [(day, evidence)] = await stock_issues(stock, "flat_while_benchmark_moved")
    assert day == SESSIONS[10]
    assert evidence["value"] == evidence["previous"] == "100"
    assert D(str(evidence["benchmark_move_percent"])) == pytest.approx(D("2.5"), abs=D("0.0001"))
    assert evidence["limit_percent"] == "1"
    events = await stock.events(SESSIONS)
    assert all(not i.blocking for i in issues(events, "flat_while_benchmark_moved"))


async def test_a_derivative_moving_against_its_underlying_is_held() -> None:
    store = InMemoryEventStore(clock=lambda: NOW_US)
    future_rules = ValidationRules(
        underlying=UnderlyingCheck(series_id="SPX", tolerance_percent=D("0.5"))
    )
    index, future = await two_series(store, future_rules, name="ES")
    put = App(store, index.handlers, series_id="SPXP")
    put_rules = ValidationRules(underlying=UnderlyingCheck(series_id="SPX", inverse=True))
    await put.define(daily_series("feed", rules=put_rules))
    await index.ingest("idx", closes("5000", INDEX_MOVES[:3]))  # +0.5, -0.3, +0.2
    # The future: with the index, then -1 % while the index rose 0.2 %.
    await future.ingest("feed", closes("5010", ["0.5", "-0.3", "-1"]))
    [(day, evidence)] = await stock_issues(future, "underlying_move")
    assert day == SESSIONS[3]
    assert evidence["underlying"] == "SPX"
    assert D(str(evidence["against_percent"])) == pytest.approx(D(1), abs=D("0.0001"))
    assert evidence["tolerance_percent"] == "0.5"
    events = await future.events(SESSIONS)
    [issue] = issues(events, "underlying_move")
    assert (issue.blocking, issue.severity) == (True, "error")
    bucket: SeriesBucket = await future.handlers._bucket("ES", _bucket_of(SESSIONS[3]))
    assert bucket.candidates[close(SESSIONS[3]).utc_us].status is PointStatus.HELD
    # The put moves opposite to the index: falling as it rises is expected, rising is not.
    await put.ingest("feed", closes("50", ["-3", "4", "1"]))
    flagged = await stock_issues(put, "underlying_move")
    assert [d for d, _ in flagged] == [SESSIONS[3]]
