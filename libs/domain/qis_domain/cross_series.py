"""Checks of a series' moves against another series' official values: a stock against its
benchmark ("benchmark_move", "flat_while_benchmark_moved"), a future or an option against its
underlying ("underlying_move").

How the other series is read, and why a replay stays deterministic:

- The command side reads the other series' OFFICIAL values as its write side knows them when
  the command is decided: the other series' point buckets, loaded like any aggregate (never the
  read model, which lags and may be rebuilt), at exactly the snaps a check needs (the value's
  snap and the snaps of the points it looks back to). It hands them to the domain as a
  `CrossSeriesView`: each figure with the official version it came from. Nothing here reads
  anything itself.
- A check that fails raises a QualityIssueDetected whose evidence carries every figure of the
  other series it used (series, snaps, values, versions), beside this series' own figures. The
  issue event is the decision: replaying the stream applies it and never runs a rule again, so
  rebuilding a bucket after the other series was restated yields the same issues, and the
  evidence still says what the decision saw. A check that passed leaves nothing to replay (a
  value is clean unless an event says otherwise).
- Order of ingestion matters, and only this way: a value is checked against the other series'
  official values known when it is decided. A benchmark value that arrives (or is restated)
  after the stock's value was decided does not re-decide the stock; the stock's later values
  compare with it. A missing official value of the other series at either end of the interval
  means no check for that value (not an issue: the other series' completeness is its own
  rule). Loading the other series before this one makes the checks independent of how this
  series' history is split into commands (tests/property/test_property_cross_series.py).

Every move is between a value and the received figure of the point before it (the same
"previous" as the jump rule: whatever its status, across buckets and commands), and the other
series' official values at those two snaps (exactly the same instants).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from qis_domain.definitions import BenchmarkCheck, UnderlyingCheck, ValidationRules
from qis_domain.rules import Received, RuleFailure, Severity, fixed
from qis_domain.snaps import format_snap


class OfficialFigure(NamedTuple):
    """Another series' official figure at a snap, and the version it is."""

    figure: Decimal
    version: int


class Residual(NamedTuple):
    """A move less beta times the benchmark's, and the benchmark figures it was made of."""

    move: Decimal
    pair: tuple[OfficialFigure, OfficialFigure]


@dataclass(frozen=True, slots=True)
class ReferenceSeries:
    """The official figures of another series at the snaps a command's checks need, as its
    buckets stood when the command was decided (by snap, UTC µs)."""

    series_id: str
    figures: Mapping[int, OfficialFigure] = field(default_factory=dict)
    # Residuals by interval and figures: the windows of consecutive values overlap, so a
    # command computes each interval's once (the view lives for one bucket's decision).
    residuals: dict[tuple[int, Decimal, int, Decimal, Decimal], Residual | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def pair(self, before_us: int, at_us: int) -> tuple[OfficialFigure, OfficialFigure] | None:
        """Its figures at both ends of an interval, None unless both exist and the first is
        not 0 (a move from 0 has no percent)."""
        start, end = self.figures.get(before_us), self.figures.get(at_us)
        if start is None or end is None or start.figure == 0:
            return None
        return start, end


@dataclass(frozen=True, slots=True)
class CrossSeriesView:
    """What the cross-series checks compare with (None: that check does not run)."""

    benchmark: ReferenceSeries | None = None
    underlying: ReferenceSeries | None = None


def reach(rules: ValidationRules) -> int:
    """How many earlier received values the cross-series checks look at (0: none)."""
    n = 0
    if rules.underlying is not None or rules.benchmark is not None:
        n = 1
    if rules.benchmark is not None and rules.benchmark.max_residual_multiple is not None:
        n = rules.benchmark.residual_window + 1
    return n


def check_cross_series(
    figure: Decimal,
    snap_us: int,
    previous: Sequence[Received],
    rules: ValidationRules,
    view: CrossSeriesView,
) -> list[RuleFailure]:
    """The cross-series rules of a value at `snap_us` against the received figures before it
    (oldest first, at least `reach(rules)` of them when known)."""
    if not previous or previous[-1].figure == 0:
        return []
    failures = []
    if (check := rules.benchmark) is not None and view.benchmark is not None:
        if check.max_residual_multiple is not None:
            failures.extend(_benchmark_move(figure, snap_us, previous, check, view.benchmark))
        if check.flat_move_percent is not None:
            failures.extend(_flat(figure, snap_us, previous[-1], check, view.benchmark))
    if (against := rules.underlying) is not None and view.underlying is not None:
        failures.extend(_underlying_move(figure, snap_us, previous[-1], against, view.underlying))
    return failures


def _move(start: Decimal, end: Decimal) -> Decimal:
    return (end - start) / start


def _residual(
    start: Received, end_figure: Decimal, end_us: int, beta: Decimal, bench: ReferenceSeries
) -> Residual | None:
    key = (start.snap_us, start.figure, end_us, end_figure, beta)
    if key in bench.residuals:
        return bench.residuals[key]
    made = None
    if start.figure != 0 and (pair := bench.pair(start.snap_us, end_us)) is not None:
        move = _move(start.figure, end_figure) - beta * _move(pair[0].figure, pair[1].figure)
        made = Residual(move, pair)
    bench.residuals[key] = made
    return made


def _benchmark_move(
    figure: Decimal,
    snap_us: int,
    previous: Sequence[Received],
    check: BenchmarkCheck,
    bench: ReferenceSeries,
) -> list[RuleFailure]:
    """The residual move (this series' move less beta times the benchmark's) beyond
    `max_residual_multiple` times its usual size: the median absolute residual of the previous
    `residual_window` intervals both series have figures for (at least half of them, and not
    all 0: a history that says nothing of the usual size raises nothing)."""
    assert check.max_residual_multiple is not None
    last = previous[-1]
    made = _residual(last, figure, snap_us, check.beta, bench)
    if made is None:
        return []
    residual, (start, end) = made
    window = previous[-(check.residual_window + 1) :]
    earlier = []
    used: dict[int, OfficialFigure] = {}
    for a, b in itertools.pairwise(window):
        if (r := _residual(a, b.figure, b.snap_us, check.beta, bench)) is not None:
            earlier.append(abs(r.move))
            used[a.snap_us], used[b.snap_us] = r.pair
    if len(earlier) < math.ceil(check.residual_window / 2):
        return []
    usual = _median(earlier)
    if usual == 0 or abs(residual) <= check.max_residual_multiple * usual:
        return []
    evidence: dict[str, Any] = {
        **_interval(last, figure, snap_us, bench.series_id, start, end),
        "beta": str(check.beta),
        "residual_percent": fixed(residual * 100, 6),
        "usual_residual_percent": fixed(usual * 100, 6),
        "multiple": str(check.max_residual_multiple),
        "residuals": len(earlier),
        # Every benchmark figure the usual size was made of: with this series' own received
        # figures (its stream) they give the scale again, whatever the benchmark became since.
        "benchmark_window": [
            [format_snap(s), str(f.figure), f.version] for s, f in sorted(used.items())
        ],
    }
    return [RuleFailure("benchmark_move", Severity.WARNING, evidence)]


def _flat(
    figure: Decimal,
    snap_us: int,
    last: Received,
    check: BenchmarkCheck,
    bench: ReferenceSeries,
) -> list[RuleFailure]:
    """Unchanged (the same figure exactly) while the benchmark moved beyond
    `flat_move_percent`: a feed that stopped updating on a day the market moved."""
    assert check.flat_move_percent is not None
    if figure != last.figure or (pair := bench.pair(last.snap_us, snap_us)) is None:
        return []
    moved = abs(_move(pair[0].figure, pair[1].figure)) * 100
    if moved <= check.flat_move_percent:
        return []
    evidence = {
        **_interval(last, figure, snap_us, bench.series_id, *pair),
        "benchmark_move_percent": fixed(moved, 6),
        "limit_percent": str(check.flat_move_percent),
    }
    return [RuleFailure("flat_while_benchmark_moved", Severity.WARNING, evidence)]


def _underlying_move(
    figure: Decimal,
    snap_us: int,
    last: Received,
    check: UnderlyingCheck,
    under: ReferenceSeries,
) -> list[RuleFailure]:
    """A move against the direction of the underlying's move (the same direction; the
    opposite one for an `inverse` derivative such as a put) beyond `tolerance_percent` of the
    previous value. An unchanged underlying expects nothing: decay and volatility move an
    option on a quiet day."""
    if (pair := under.pair(last.snap_us, snap_us)) is None or pair[0].figure == pair[1].figure:
        return []
    expected = 1 if (pair[1].figure > pair[0].figure) != check.inverse else -1
    against = -expected * _move(last.figure, figure) * 100
    if against <= check.tolerance_percent:
        return []
    evidence = {
        **_interval(last, figure, snap_us, under.series_id, *pair, prefix="underlying"),
        "inverse": check.inverse,
        "against_percent": fixed(against, 6),
        "tolerance_percent": str(check.tolerance_percent),
    }
    return [RuleFailure("underlying_move", Severity.ERROR, evidence)]


def _interval(
    last: Received,
    figure: Decimal,
    snap_us: int,
    other_id: str,
    start: OfficialFigure,
    end: OfficialFigure,
    prefix: str = "benchmark",
) -> dict[str, Any]:
    """The figures of both series over the interval a check compared."""
    return {
        "previous_snap": format_snap(last.snap_us),
        "previous": str(last.figure),
        "snap": format_snap(snap_us),
        "value": str(figure),
        prefix: other_id,
        f"{prefix}_previous": str(start.figure),
        f"{prefix}_previous_version": start.version,
        f"{prefix}_value": str(end.figure),
        f"{prefix}_version": end.version,
    }


def _median(figures: Sequence[Decimal]) -> Decimal:
    ordered = sorted(figures)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
