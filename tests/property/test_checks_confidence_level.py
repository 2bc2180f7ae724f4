"""The "confidence_level" rule over long two-source histories (`min_agreeing_sources: 2`): a
point whose two sources disagree beyond tolerance has one issue with the counts, a point with
one source has none, equal to a computation of the rule from its definition alone, and how
the deliveries are split into commands changes nothing the service decides."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_domain.definitions import BreakAction, SeriesDefinition

from tests.property.history import PRIMARY, SECONDARY, Cuts, History, cuts
from tests.property.service import (
    PROPERTY,
    RICH,
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


def confident(definition: SeriesDefinition, on_low: BreakAction) -> SeriesDefinition:
    policy = definition.reconciliation.model_copy(
        update={"min_agreeing_sources": 2, "on_low_confidence": on_low}
    )
    return definition.model_copy(update={"reconciliation": policy})


async def effect(
    history: History, definition: SeriesDefinition, chunks: tuple[Cuts, ...]
) -> Effect:
    service = Service.start(NOW_US)
    await service.run(steps(history, definition, chunks, NOW_US, []))
    return effect_of(await service.log())


def expected_low(history: History, tolerance_bps: Decimal) -> set[int]:
    """Snaps both sources sent that are apart by more than the tolerance, in basis points of
    the primary's value: of two sources, the most trusted one's value is chosen by every method
    (a median of two is a tie, which goes to it), so only the other can disagree."""
    primary = {snap: Decimal(text) for snap, text in history.primary}
    return {
        snap
        for snap, text in history.secondary
        if snap in primary
        and abs(Decimal(text) - primary[snap]) * 10_000 > abs(primary[snap]) * tolerance_bps
    }


def raised_low(got: Effect, blocking: bool) -> set[int]:
    out = set()
    for snap, issues in got.issues.items():
        found = [i for i in issues if i[1] == "confidence_level"]
        assert len(found) <= 1, snap  # once per point while it is open
        for source, _, severity, holds, evidence in found:
            assert (source, holds, severity) == ("", blocking, "error" if blocking else "warning")
            assert '"agreeing": 1' in evidence
            assert '"total": 2' in evidence
            assert f'"agreeing_sources": ["{PRIMARY}"]' in evidence
            out.add(snap)
    return out


@settings(PROPERTY)
@given(
    scenarios().filter(lambda s: bool(s.history.secondary)),
    st.sampled_from(list(BreakAction)),
    st.lists(cuts(), max_size=4),
)
@example(RICH, BreakAction.FLAG, [])
@example(RICH, BreakAction.BLOCK, [WHOLE])
def test_disagreeing_points_lose_confidence_however_the_history_is_chunked(
    scenario: Scenario, on_low: BreakAction, other: list[Cuts]
) -> None:
    history = scenario.history
    assert history.sources == (PRIMARY, SECONDARY)
    definition = confident(scenario.definition, on_low)
    first = asyncio.run(effect(history, definition, scenario.cuts))
    describe(history, first)

    want = expected_low(history, definition.reconciliation.tolerance_bps)
    assert raised_low(first, on_low is BreakAction.BLOCK) == want

    second = asyncio.run(effect(history, definition, tuple(other) or (WHOLE,)))
    assert first.issues == second.issues
    assert first.versions == second.versions
    assert first.reconciled == second.reconciled
    assert first.statuses == second.statuses


def test_the_rich_history_has_points_of_both_kinds() -> None:
    """The explicit examples exercise the rule: some points disagree, most agree."""
    history = RICH.history
    low = expected_low(history, Decimal(2))
    both = {snap for snap, _ in history.secondary} & {snap for snap, _ in history.primary}
    assert 0 < len(low) < len(both)
