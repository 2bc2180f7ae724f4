"""The cross-series rules over long histories: a stock of 22 years of closes (jumps, spikes,
stale runs, gaps, an outage beyond the look-back) checked against a benchmark of its own 22
years, as "benchmark_move" (residual beyond k times the median absolute residual of a window),
"flat_while_benchmark_moved" and "underlying_move" (the benchmark standing in as the
underlying). The issues equal a computation of the rules from their definitions alone, with
exact fractions (tests/property/reference.py's conventions: "previous" reaches back at most 3
buckets); how the stock's history is split into commands changes nothing; and restating the
benchmark afterwards appends nothing to the stock's streams (a replay never decides anew)."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_adapters.eventstore.port import RecordedEvent
from qis_command.application.commands import DefineSeries, IngestPoints, RestatePoint
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    BenchmarkCheck,
    SeriesDefinition,
    SeriesSource,
    UnderlyingCheck,
)
from qis_domain.snaps import Frequency
from qis_domain.values import DataType, Price

from tests.property.history import (
    PRIMARY,
    SERIES,
    Cuts,
    History,
    Point,
    Shape,
    cuts,
    history,
    prices,
    shapes,
    snap_of,
)
from tests.property.reference import BUCKET_US, LOOK_BACK_BUCKETS
from tests.property.service import (
    PROPERTY,
    RICH,
    USER,
    Effect,
    Scenario,
    Service,
    describe,
    effect_of,
    instant_us,
    scenarios,
    steps,
)

NOW_US = instant_us(2025)
WHOLE = Cuts((), ())
BENCHMARK = "SPX.INDEX"
RULES = ("benchmark_move", "flat_while_benchmark_moved", "underlying_move")


class Checks:
    """The cross-series parameters an example draws."""

    def __init__(self, beta: str, k: str, window: int, flat: str, tolerance: str) -> None:
        self.beta, self.k, self.window = Fraction(beta), Fraction(k), window
        self.flat, self.tolerance = Fraction(flat), Fraction(tolerance)
        self.benchmark = BenchmarkCheck(
            series_id=BENCHMARK,
            beta=Decimal(beta),
            max_residual_multiple=Decimal(k),
            residual_window=window,
            flat_move_percent=Decimal(flat),
        )
        self.underlying = UnderlyingCheck(series_id=BENCHMARK, tolerance_percent=Decimal(tolerance))


CHECKS = st.builds(
    Checks,
    st.sampled_from(["1", "0.8", "1.5"]),
    st.sampled_from(["3", "5"]),
    st.sampled_from([4, 20, 60]),
    st.sampled_from(["0.5", "1"]),
    st.sampled_from(["0.5", "2", "6"]),
)


def benchmark_definition() -> SeriesDefinition:
    """One source, no rules, no rounding: its official values are the figures it was sent."""
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.DAILY,
        unit="USD",
        time_zone="America/New_York",
        sources=(SeriesSource(source_id=PRIMARY, priority=1),),
    )


def with_checks(definition: SeriesDefinition, checks: Checks) -> SeriesDefinition:
    validation = definition.validation.model_copy(
        update={"benchmark": checks.benchmark, "underlying": checks.underlying}
    )
    return definition.model_copy(update={"validation": validation})


def ctx(command_id: str) -> CommandContext:
    return CommandContext(command_id, USER, NOW_US)


async def effect(
    stock: History,
    definition: SeriesDefinition,
    chunks: tuple[Cuts, ...],
    bench: Sequence[Point],
) -> tuple[Effect, int]:
    """What the stock's commands did, the benchmark loaded first and whole (decided before
    it, the stock's values would have nothing to compare with), and how many events the
    stock's streams gained when the benchmark was then restated on every tenth point."""
    service = Service.start(NOW_US)
    # The stock's source and definition: the steps of a history without points.
    await service.run(steps(History(None, (), (), (), frozenset()), definition, [], NOW_US, []))
    handlers = service.handlers
    await handlers.define_series(DefineSeries(BENCHMARK, benchmark_definition()), ctx("bench"))
    await handlers.ingest(IngestPoints(BENCHMARK, PRIMARY, prices(bench)), ctx("bench-all"))
    for k, (source, points) in enumerate(stock.deliveries):
        for j, chunk in enumerate(chunks[min(k, len(chunks) - 1)].split(points)):
            await handlers.ingest(IngestPoints(SERIES, source, prices(chunk)), ctx(f"i{k}-{j}"))
    before = len(_stock_records(await service.log()))
    got = effect_of(await service.log())
    for snap, text in bench[::10]:
        restated = Price(Decimal(text) * 2, "USD")
        restate = RestatePoint(BENCHMARK, snap_of(snap), restated, "restated")
        await handlers.restate(restate, ctx(f"restate-{snap}"))
    return got, len(_stock_records(await service.log())) - before


def _stock_records(log: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    return [r for r in log if r.stream.startswith(f"series/{SERIES}/")]


def expected(
    points: Sequence[Point], bench: Sequence[Point], c: Checks
) -> tuple[set[tuple[int, str]], set[int]]:
    """(snap, rule) of every issue the rules define, from the stock's points (one source, in
    snap order: each one's previous is the point before it, within 3 buckets) and the
    benchmark's figures; and the snaps whose residual is too close to its limit to call (the
    service divides in 28 digits, this in exact fractions)."""
    figures = {s: Fraction(Decimal(t)) for s, t in bench}
    snaps = [s for s, _ in points]
    x = [Fraction(Decimal(t)) for _, t in points]
    out: set[tuple[int, str]] = set()
    close: set[int] = set()

    def pair(a: int, b: int) -> tuple[Fraction, Fraction] | None:
        if a not in figures or b not in figures or figures[a] == 0:
            return None
        return figures[a], figures[b]

    def residual(j: int) -> Fraction | None:
        """Of the interval from point j - 1 to point j."""
        p = pair(snaps[j - 1], snaps[j])
        if p is None or x[j - 1] == 0:
            return None
        return (x[j] - x[j - 1]) / x[j - 1] - c.beta * (p[1] - p[0]) / p[0]

    # Each residual once (a window reads it again for every later point), and the first point
    # of the look-back by bisection: exact fractions over 22 years are slow enough as it is.
    residuals = [None, *(residual(j) for j in range(1, len(points)))]
    assert snaps == sorted(snaps)
    for i in range(1, len(points)):
        floor = snaps[i] - snaps[i] % BUCKET_US - LOOK_BACK_BUCKETS * BUCKET_US
        if snaps[i - 1] < floor or x[i - 1] == 0:
            continue
        first = max(i - c.window - 1, bisect.bisect_left(snaps, floor))
        p = pair(snaps[i - 1], snaps[i])
        if p is None:
            continue
        b_move = (p[1] - p[0]) / p[0]
        if (r := residuals[i]) is not None:
            earlier = [abs(e) for j in range(first + 1, i) if (e := residuals[j]) is not None]
            if len(earlier) >= math.ceil(c.window / 2):
                usual = sorted(earlier)
                m = len(usual) // 2
                median = usual[m] if len(usual) % 2 else (usual[m - 1] + usual[m]) / 2
                if median != 0:
                    if abs(abs(r) - c.k * median) < Fraction(1, 10**20) * c.k * median:
                        close.add(snaps[i])
                    elif abs(r) > c.k * median:
                        out.add((snaps[i], "benchmark_move"))
        if x[i] == x[i - 1] and abs(b_move) * 100 > c.flat:
            out.add((snaps[i], "flat_while_benchmark_moved"))
        if b_move != 0:
            against = -(1 if b_move > 0 else -1) * (x[i] - x[i - 1]) / x[i - 1] * 100
            if against > c.tolerance:
                out.add((snaps[i], "underlying_move"))
    return out, close


def raised(got: Effect) -> set[tuple[int, str]]:
    out = set()
    for snap, issues in got.issues.items():
        for _, rule, severity, blocking, _ in issues:
            if rule in RULES:
                assert blocking is (rule == "underlying_move")
                assert severity == ("error" if blocking else "warning")
                out.add((snap, rule))
    return out


@settings(PROPERTY)
@given(
    scenarios(one_source=True),
    shapes(second_source=False),
    CHECKS,
    st.lists(cuts(), max_size=4),
)
@example(
    RICH.one_source(),
    dataclasses.replace(RICH.shape, seed=7, second=0.0),
    Checks("1", "3", 20, "0.5", "2"),
    [],
)
def test_cross_series_issues_are_as_defined_however_the_stock_is_chunked(
    scenario: Scenario, bench_shape: Shape, checks: Checks, other: list[Cuts]
) -> None:
    stock = scenario.history
    bench = history(bench_shape).primary
    definition = with_checks(scenario.definition, checks)
    first, appended = asyncio.run(effect(stock, definition, scenario.cuts, bench))
    describe(stock, first)

    want, close = expected(stock.primary, bench, checks)
    got = raised(first)
    assert {k for k in got if k[0] not in close} == {k for k in want if k[0] not in close}
    assert appended == 0  # restating the benchmark re-decided nothing of the stock

    second, _ = asyncio.run(effect(stock, definition, tuple(other) or (WHOLE,), bench))
    assert first.issues == second.issues
    assert first.versions == second.versions
    assert first.statuses == second.statuses
