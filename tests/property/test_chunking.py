"""Chunking invariance: how a history is split into commands changes nothing of what the service
decides. Look-back rules cross command and bucket boundaries the same way (docs/architecture.md §5)."""

from __future__ import annotations

import asyncio
import dataclasses

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.property.history import CLOSE_S, Cuts, cuts
from tests.property.service import (
    PROPERTY,
    RICH,
    WHOLE,
    Effect,
    Scenario,
    Service,
    assert_same_effect,
    describe,
    effect_of,
    instant_us,
    scenarios,
)

NOW_US = instant_us(2025)


async def effect(scenario: Scenario) -> Effect:
    service = Service.start(NOW_US)
    results = await service.run(scenario.steps(NOW_US))
    h = scenario.history
    assert sum(r.outcome.accepted for r in results) == len(h.primary) + len(h.secondary)
    return effect_of(await service.log())


@settings(PROPERTY)
@given(scenarios(), st.lists(cuts(), max_size=4))
@example(RICH, [])
@example(RICH.with_band("2.5", "12"), [])  # an asymmetric jump band
@example(RICH.with_window((CLOSE_S, CLOSE_S + 1800, "1.25")), [])
def test_the_same_points_in_other_commands_have_the_same_effect(
    scenario: Scenario, other: list[Cuts]
) -> None:
    first = asyncio.run(effect(scenario))
    second = asyncio.run(effect(dataclasses.replace(scenario, cuts=tuple(other) or (WHOLE,))))
    describe(scenario.history, first)
    assert_same_effect(first, second)


async def log_of(scenario: Scenario, *, columns: bool) -> list[tuple[str, int, str, bytes, bytes]]:
    service = Service.start(NOW_US)
    await service.run(scenario.steps(NOW_US, columns=columns))
    return [(e.stream, e.stream_version, e.type, e.data, e.metadata) for e in await service.log()]


@settings(PROPERTY)
@given(scenarios())
@example(RICH)
def test_the_same_points_in_columns_store_the_same_events(scenario: Scenario) -> None:
    """Prices that came in columns stay in them down to the decision (ScalarPoints): the very
    events the same points as pairs make, byte for byte, in every command of the history."""
    assert asyncio.run(log_of(scenario, columns=True)) == asyncio.run(
        log_of(scenario, columns=False)
    )
