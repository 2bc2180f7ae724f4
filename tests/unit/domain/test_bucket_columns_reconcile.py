"""Two sources reconciled in columns (`SeriesBucket._pairs`, `_Rows.pairs`): over generated
two-source histories (rules, breaks, corrections, manual values, rejections, cut-offs, every
reconciliation method, either source first), ingest stores exactly the events, byte for byte,
that the per-point decisions store; and the float screen and the exactness test it relies on
prove only what the exact computations decide."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any
from unittest.mock import patch

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    BreakAction,
    PublicationMode,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.errors import DomainError
from qis_domain.events import default_registry
from qis_domain.reconciliation import close_proven, figures_close, midpoints_exact, reconcile
from qis_domain.series_bucket import Recorded, SeriesBucket
from qis_domain.snaps import Frequency, Snap, bucket_of
from qis_domain.values import DataType, Price

START_US = 1_700_000_000 // 3600 * 3600 * 1_000_000  # a bucket's first snap
NOW_US = START_US + 7_200_000_000
REGISTRY = default_registry()


@dataclass(frozen=True, slots=True)
class Case:
    """What hypothesis draws: the series' policies and a seed the history is made from."""

    seed: int
    points: int
    method: ReconciliationMethod
    tolerance_bps: str
    tolerance_abs: str
    on_break: BreakAction
    mode: PublicationMode
    min_sources: int  # 3: two sources never suffice, only a cut-off publishes
    cutoff_seconds: int
    precision: int
    b_first: bool  # source b has the higher priority
    jump: str | None
    zscore: str | None
    stale: int
    digits: int  # 0: prices of 2-4 places; else up to this many places, large magnitudes too

    def but(self, **changes: Any) -> Case:
        return dataclasses.replace(self, **changes)

    def definition(self) -> SeriesDefinition:
        order = ("b", "a") if self.b_first else ("a", "b")
        return SeriesDefinition(
            data_type=DataType.PRICE,
            frequency=Frequency.SECOND,
            unit="USD",
            precision=self.precision,
            sources=tuple(SeriesSource(source_id=s, priority=i + 1) for i, s in enumerate(order)),
            validation=ValidationRules(
                require_positive=True,
                max_jump_percent=None if self.jump is None else Decimal(self.jump),
                max_zscore=None if self.zscore is None else Decimal(self.zscore),
                zscore_window=5,
                stale_after_snaps=self.stale,
            ),
            reconciliation=ReconciliationPolicy(
                method=self.method,
                tolerance_bps=Decimal(self.tolerance_bps),
                tolerance_abs=Decimal(self.tolerance_abs),
                on_break=self.on_break,
            ),
            publication=PublicationPolicy(
                mode=self.mode, min_sources=self.min_sources, cutoff_seconds=self.cutoff_seconds
            ),
        )


cases = st.builds(
    Case,
    seed=st.integers(0, 2**32 - 1),
    points=st.integers(1, 80),
    method=st.sampled_from(list(ReconciliationMethod)),
    tolerance_bps=st.sampled_from(["0", "1", "5", "50"]),
    tolerance_abs=st.sampled_from(["0", "0.01"]),
    on_break=st.sampled_from(list(BreakAction)),
    mode=st.sampled_from([PublicationMode.AUTOMATIC] * 3 + [PublicationMode.MANUAL]),
    min_sources=st.integers(1, 3),
    cutoff_seconds=st.sampled_from([0, 60]),
    precision=st.sampled_from([0, 0, 0, 2]),
    b_first=st.booleans(),
    jump=st.sampled_from([None, "5"]),
    zscore=st.sampled_from([None, "4"]),
    stale=st.sampled_from([0, 3]),
    digits=st.sampled_from([0, 0, 12, 18]),
)

Action = tuple[str, str, list[tuple[int, str]]]
"""(kind, source, points): kind "ingest", "restate" (one point, a manual value), "reject" or
"approve" (the open issues of the point), "publish" (the point, by a person) or "cutoff" (the
publication of every point due)."""


def _text(rng: random.Random, value: float, digits: int) -> str:
    if digits and rng.random() < 0.3:
        # Many places, sometimes a large magnitude or exponent notation: what the exactness
        # test of midpoints must catch.
        text = f"{value * 10 ** rng.randint(0, 8):.{rng.randint(0, digits)}f}"
        return text if rng.random() < 0.8 else f"{Decimal(text):E}"
    return f"{value:.{rng.randint(2, 4)}f}"


def actions(case: Case) -> list[Action]:
    """Source a's walk, b's prices close to a's (equal, a basis point or two off, beyond
    tolerance, negative now and then), delivered in chunks in either order, with corrections,
    manual values and resolutions in between."""
    rng = random.Random(case.seed)
    level, a, b = 100.0, {}, {}
    for s in range(case.points):
        level = max(1.0, level * (1 + rng.gauss(0, 0.01)))
        if rng.random() < 0.05:
            level *= rng.choice((0.9, 1.12))  # a jump
        if rng.random() < 0.9:
            a[s] = _text(rng, level, case.digits)
        if rng.random() < 0.85:
            off = rng.choice((0.0, 0.0, 1e-4, -1e-4, 2e-4, 3e-3, -5e-2))
            price = level * (1 + off)
            b[s] = _text(rng, -price if rng.random() < 0.02 else price, case.digits)
    out: list[Action] = []
    deliveries = [("a", sorted(a.items())), ("b", sorted(b.items()))]
    if rng.random() < 0.5:
        deliveries.reverse()
    for source, points in deliveries:
        while points:
            cut = rng.randint(1, max(1, len(points)))
            out.append(("ingest", source, points[:cut]))
            points = points[cut:]
            if rng.random() < 0.3 and a:
                s = rng.choice(list(a))
                kind = rng.choice(("reject", "approve", "restate", "publish", "cutoff"))
                out.append((kind, "", [(s, a[s])]))
    # Corrections of a few values of each source, within and beyond tolerance.
    for source, known in (("a", a), ("b", b)):
        fixed = [
            (s, _text(rng, float(v) * rng.choice((1, 1.0001, 1.03)), 0)) for s, v in known.items()
        ]
        if corrected := [p for p in fixed if rng.random() < 0.2]:
            out.append(("ingest", source, corrected))
    return out


def stored(definition: SeriesDefinition, history: list[Action]) -> list[tuple[str, bytes]]:
    """The events `history` stores, encoded as the event store holds them."""
    bucket = SeriesBucket("PX", bucket_of(START_US, Frequency.SECOND))
    out: list[tuple[str, bytes]] = []
    position = 0
    for k, (kind, source, points) in enumerate(history):
        user = "feed" if kind == "ingest" else f"person-{k % 2}"
        ctx = CommandContext(f"cmd-{k}", user, NOW_US + k)
        snaps = [START_US + s * 1_000_000 for s, _ in points]
        try:
            if kind == "ingest":
                values = [Price(Decimal(t), "USD") for _, t in points]
                events = bucket.ingest(
                    definition, source, list(zip(map(Snap, snaps), values, strict=True)), ctx
                )
            elif kind == "restate":
                value = Price(Decimal(points[0][1]) + 1, "USD")
                events = bucket.restate(definition, snaps[0], value, "fix", ctx)
            elif kind == "publish":
                events = bucket.publish(definition, [("snaps[0]", snaps[0])], "ok", ctx)
            elif kind == "cutoff":
                events = bucket.publish_due(definition, ctx)
            else:
                issues = [(f"issue_ids[{i}]", i) for i in bucket._open_issues(snaps[0])]
                if not issues:
                    continue
                events = bucket.resolve(definition, issues, kind, "checked", ctx)
        except DomainError:
            continue
        position += 10
        first = 0 if bucket.version is None else bucket.version + 1
        for offset, event in enumerate(events):
            bucket.apply(event, Recorded(ctx.command_id, user, position, first + offset))
            out.append((event.event_type, REGISTRY.encode(event)))
    return out


@contextmanager
def counting_pairs() -> Iterator[list[int]]:
    """Counts the points `_pairs` hands to the columns."""
    counted: list[int] = []
    decide = SeriesBucket._pairs

    def spy(self: SeriesBucket, *args: object) -> object:
        made = decide(self, *args)  # type: ignore[arg-type]
        counted.append(0 if made is None else len(made.at))
        return made

    with patch.object(SeriesBucket, "_pairs", spy):
        yield counted


def per_point(definition: SeriesDefinition, history: list[Action]) -> list[tuple[str, bytes]]:
    """The same history decided point by point: no pair goes to the columns."""
    with patch.object(SeriesBucket, "_pairs", lambda *_: None):
        return stored(definition, history)


RICH = Case(
    seed=7,
    points=80,
    method=ReconciliationMethod.MEDIAN,
    tolerance_bps="5",
    tolerance_abs="0",
    on_break=BreakAction.FLAG,
    mode=PublicationMode.AUTOMATIC,
    min_sources=1,
    cutoff_seconds=60,
    precision=0,
    b_first=False,
    jump="5",
    zscore="4",
    stale=3,
    digits=0,
)


@settings(max_examples=150, deadline=None)
@given(cases)
@example(RICH)
@example(RICH.but(method=ReconciliationMethod.CONSENSUS, on_break=BreakAction.BLOCK, digits=18))
@example(RICH.but(method=ReconciliationMethod.PRIORITY, b_first=True, precision=2, digits=12))
@example(RICH.but(mode=PublicationMode.MANUAL))
@example(RICH.but(min_sources=3, seed=8))
def test_columns_store_the_events_the_per_point_decisions_store(case: Case) -> None:
    definition, history = case.definition(), actions(case)
    assert stored(definition, history) == per_point(definition, history)


def test_most_second_values_of_a_clean_history_are_decided_in_columns() -> None:
    """Else the property above would hold trivially."""
    definition, history = RICH.definition(), actions(RICH)
    with counting_pairs() as counted:
        columns = stored(definition, history)
    assert sum(counted) > 40, counted
    assert columns == per_point(definition, history)


# --- the proofs the columns rely on ---


figures = st.decimals(
    min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=6, allow_nan=False
) | st.sampled_from([Decimal(0), Decimal("100"), Decimal("100.05"), Decimal("99.95")])


@given(
    st.lists(st.tuples(figures, figures), min_size=1, max_size=20),
    st.sampled_from(["0", "1", "5", "10"]),
    st.sampled_from(["0", "0.01", "0.05"]),
)
@example([(Decimal("100.05"), Decimal(100))], "5", "0")  # exactly at the tolerance
@example([(Decimal("100.0500000000000001"), Decimal(100))], "5", "0")  # a hair beyond
@example([(Decimal("100.0499999999999999"), Decimal(100))], "5", "0")  # a hair within
def test_what_the_tolerance_screen_proves_holds_exactly(
    pairs: list[tuple[Decimal, Decimal]], bps: str, absolute: str
) -> None:
    policy = ReconciliationPolicy(tolerance_bps=Decimal(bps), tolerance_abs=Decimal(absolute))
    x = np.array([float(a) for a, _ in pairs])
    y = np.array([float(b) for _, b in pairs])
    for (a, b), proven in zip(pairs, close_proven(x, y, policy).tolist(), strict=True):
        assert not proven or figures_close(a, b, policy), (a, b)


def test_the_screen_proves_the_common_case() -> None:
    policy = ReconciliationPolicy(tolerance_bps=Decimal(5))
    a = np.array([100 + i / 100 for i in range(100)])
    assert close_proven(a + 1e-4, a, policy).all()
    assert not close_proven(a + 1, a, policy).any()


def test_a_midpoint_the_context_rounds_is_not_called_exact() -> None:
    """Two figures of 28 digits: their sum rounds at the default precision of 28, and the
    median of two then picks the second source's value (`reconcile` itself says so). The
    columns would have picked the first: the exactness test must refuse them."""
    x, y = "10000000000.00000000000000087", "10000000000.00000000000000082"
    definition = median_of("x", "y")
    with localcontext() as context:
        context.prec = 28
        made = reconcile({"x": Price(Decimal(x), "USD"), "y": Price(Decimal(y), "USD")}, definition)
        assert made.value == Price(Decimal(y), "USD")
        assert not midpoints_exact([x, y], 1e10)
        assert midpoints_exact(["100.25", "100.5"], 100.5)
        assert not midpoints_exact(["1E+2", "100"], 100.0)
        # ...and an ingest of the two decides as `reconcile` does.
        history: list[Action] = [("ingest", "x", [(0, x)]), ("ingest", "y", [(0, y)])]
        columns = stored(definition, history)
        assert columns == per_point(definition, history)
        reconciled_type, reconciled = columns[-1]
        assert reconciled_type == "DataReconciled"
        assert f'"values":["{y}"]'.encode() in reconciled, reconciled


def median_of(*sources: str) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.SECOND,
        unit="USD",
        sources=tuple(SeriesSource(source_id=s, priority=i + 1) for i, s in enumerate(sources)),
        reconciliation=ReconciliationPolicy(
            method=ReconciliationMethod.MEDIAN, tolerance_bps=Decimal(5)
        ),
    )
