"""The floats of the look-back screen (rules.history_suspects): read from a column of texts as
from the figures, made once with each received point (Received.approx) whichever way its
figure was made, and a figure no float stands for in a row's window leaves that row, and only
that row, to the exact rules."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from qis_domain.commands import CommandContext
from qis_domain.decisions import Decider, SeriesView, Timeline
from qis_domain.definitions import ReconciliationMethod, ValidationRules
from qis_domain.rules import approx, figure_floats, history_suspects, text_floats
from qis_domain.snaps import Snap

from tests.unit.domain.test_domain_series_bucket import SNAP, Harness, series, usd

texts = st.decimals(allow_nan=False, allow_infinity=False).map(str) | st.sampled_from(
    ["0", "-0", "0E-8", "1E+400", "-1E+400", "1E-400", "2.5E-320", "123.4567", "-0.0001"]
)


@given(st.lists(texts, max_size=80))
def test_texts_read_as_floats_are_the_floats_of_their_figures(column: list[str]) -> None:
    """On both sides of the size from which Arrow parses the column."""
    expected = figure_floats([Decimal(t) for t in column])
    np.testing.assert_array_equal(text_floats(column), expected)


def _smooth(n: int) -> list[float]:
    return [100 + (i % 7) / 10 + (i % 3) / 100 for i in range(n)]


@given(st.integers(0, 59), st.sampled_from([1, 2, 5, 21]))
def test_a_figure_no_float_stands_for_makes_suspects_of_the_rows_that_look_at_it(
    at: int, back: int
) -> None:
    rules = ValidationRules(
        max_jump_percent=Decimal(8),
        max_spike_percent=Decimal(5) if back >= 2 else None,
        max_zscore=Decimal(3) if back >= 21 else None,
        stale_after_snaps=min(back + 1, 3),
    )
    seq = np.array(_smooth(60))
    ends = list(range(60))
    clean = history_suspects(seq, seq, ends, back, rules)
    holed = seq.copy()
    holed[at] = math.nan
    looking = np.array([e - back <= at < e for e in ends])
    suspects = history_suspects(seq, holed, ends, back, rules)
    np.testing.assert_array_equal(suspects, clean | looking)


def test_received_points_carry_the_floats_of_their_figures() -> None:
    """A value alone, a pair of sources, a point the bucket knew with a flagged value, all
    rounded to the series' precision: each point the timeline holds (the second source's
    own figures) has its figure's float, and each source's recorded points (what a later
    command of it looks back at) too."""
    definition = series("a", "b", method=ReconciliationMethod.MEDIAN, precision=2)
    definition = definition.model_copy(
        update={"validation": ValidationRules(require_positive=True, max_zscore=Decimal(3))}
    )
    h = Harness(definition)
    day_us = 86_400_000_000
    snaps = [Snap(SNAP.utc_us + i * day_us, SNAP.offset_s) for i in range(40)]
    a = [usd(f"{100 + i % 5 / 3:.4f}") if i != 7 else usd("-1") for i in range(40)]
    b = [usd(f"{100 + i % 5 / 3 + 0.0001:.4f}") for i in range(40)]
    h.ingest("a", list(zip(snaps[:30], a[:30], strict=True)))
    timeline = Timeline()
    ctx = CommandContext("b-1", "feed", 0)
    events = h.bucket.ingest(
        definition, "b", list(zip(snaps, b, strict=True)), ctx, SeriesView(timeline=timeline)
    )
    h.commit(events, ctx)
    assert len(timeline.points) == 40
    assert {p.sources for p in timeline.points} == {("b",)}
    decider = Decider(definition, ctx)
    recorded = [*h.bucket.received(decider, "a"), *h.bucket.received(decider, "b")]
    assert len(recorded) == 70
    for p in [*timeline.points, *recorded]:
        assert p.approx == float(p.figure), p


@given(st.sampled_from(["5E-324", "7E-324", "2.5E-320", "-1E-310", "2E-308"]))
def test_subnormal_figures_are_left_to_the_exact_rules(text: str) -> None:
    """A subnormal float can be 100 % off its figure (5E-324 and 7E-324 are one float): the
    screen must not clear a jump between two of them, which the exact rule flags."""
    assert math.isnan(approx(Decimal(text)))
    assert math.isnan(text_floats([text])[0])
    assert math.isnan(figure_floats([Decimal(text)])[0])
    rules = ValidationRules(max_jump_percent=Decimal(8))
    previous, incoming = text_floats(["5E-324"]), text_floats([text])
    assert history_suspects(incoming, previous, [1], 1, rules)[0]
