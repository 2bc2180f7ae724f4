"""Projection equality: the read model the projector keeps while commands arrive (small batches,
sometimes restarted from its checkpoint) equals the read model of a rebuild from position 0 in
large batches (docs/architecture.md §3: a rebuild reproduces the same read model)."""

from __future__ import annotations

import asyncio

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_projector.application.projector import Projector, ProjectorLimits

from tests.property.service import (
    PROPERTY,
    RICH,
    Scenario,
    Service,
    describe,
    effect_of,
    instant_us,
    scenarios,
)

NOW_US = instant_us(2025)
TIMEOUT_S = 60.0


async def catch_up(projector: Projector, position: int) -> None:
    """The position a command answers with is the last of its append, one the projector
    follows (a command's record goes first): it must reach it, not wait forever."""
    try:
        await asyncio.wait_for(projector.run(until_position=position), TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"the projector never reached position {position}") from None


async def live_and_rebuilt(
    scenario: Scenario, batch: int, restarts: bool
) -> tuple[dict[str, object], dict[str, object]]:
    service = Service.start(NOW_US)
    live_store = InMemoryReadStore(generation="live")
    small = ProjectorLimits(max_batch_events=batch, max_batch_points=batch * 500)
    live = Projector(service.store, live_store, limits=small)
    for step in scenario.steps(NOW_US):
        (answer,) = await service.run([step])
        if restarts:
            # A new process resumes from the checkpoint the store kept.
            live = Projector(service.store, live_store, limits=small)
        await catch_up(live, answer.outcome.position)
    describe(scenario.history, effect_of(await service.log()))

    rebuilt_store = InMemoryReadStore(generation="rebuilt")
    await catch_up(Projector(service.store, rebuilt_store), await service.store.head_position())
    return await live_store.dump_all(), await rebuilt_store.dump_all()


@settings(PROPERTY)
@given(scenarios(), st.integers(1, 8), st.booleans())
@example(RICH, 3, False)
def test_the_live_read_model_equals_a_rebuild(
    scenario: Scenario, batch: int, restarts: bool
) -> None:
    live, rebuilt = asyncio.run(live_and_rebuilt(scenario, batch, restarts))
    assert live.keys() == rebuilt.keys()
    for kind in live:
        assert live[kind] == rebuilt[kind], kind
