"""Clock invariance: the same commands decided at another time (the commands' clock and the event
store's alike) store the same events, but for the decision and commit times themselves. Nothing
the service decides about a history may depend on today's date (docs/architecture.md §5)."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from hypothesis import example, given, settings
from qis_adapters.eventstore.port import RecordedEvent
from qis_command.application.commands import CommandResult

from tests.property.service import (
    PROPERTY,
    RICH,
    Scenario,
    Service,
    describe,
    effect_of,
    instant_us,
    payload_without_decision_time,
    scenarios,
)

YEARS = (2020, 2030, 2045)


class Decided(NamedTuple):
    results: list[CommandResult]
    events: list[tuple[Any, ...]]  # every stored event but its commit and decision times


async def decided_in(year: int, scenario: Scenario) -> Decided:
    """What the commands answer and store when every clock reads `year` (each commit 1 ms
    later)."""
    now_us = instant_us(year)
    service = Service.start(now_us)
    results = await service.run(scenario.steps(now_us))
    log = await service.log()
    if year == YEARS[0]:
        describe(scenario.history, effect_of(log))
    return Decided(results, [_without_times(r) for r in log])


def _without_times(r: RecordedEvent) -> tuple[Any, ...]:
    where = (r.stream, r.stream_version, r.position, r.event_id)
    return (*where, r.type, r.metadata, payload_without_decision_time(r))


@settings(PROPERTY)
@given(scenarios())
@example(RICH)
def test_the_same_commands_at_another_time_decide_the_same(scenario: Scenario) -> None:
    first, *others = (asyncio.run(decided_in(y, scenario)) for y in YEARS)
    for year, other in zip(YEARS[1:], others, strict=True):
        assert other.results == first.results, year
        for mine, theirs in zip(other.events, first.events, strict=False):
            # The first event that differs, named by its stream and type.
            assert mine == theirs, (year, mine[0], mine[4])
        assert len(other.events) == len(first.events), year
