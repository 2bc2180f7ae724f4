"""The command side on a store written before columns were written once ({"all": entry}).

tests/property/test_stored_before.py rebuilds the read model of a log stored with every column
in full; here the commands themselves decide on such a store, each on a cold aggregate cache
(as another command process would), so that every decision is made on buckets read back from
the payloads: full lists throughout, or full lists up to an upgrade half way and columns
written once after it. Every command must answer, and every event decided must read, as on a
store written compact from the start."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from hypothesis import example, given, settings
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import AppendResult, StreamAppend
from qis_command.application.commands import IngestPoints

from tests.property.service import (
    CODEC,
    PROPERTY,
    RICH,
    Clock,
    Scenario,
    Service,
    instant_us,
    scenarios,
    send,
)
from tests.property.test_stored_before import written_out

NOW_US = instant_us(2025)


class Before(InMemoryEventStore):
    """A store whose appends are written as the code of before wrote them (every column in
    full) while `before` holds."""

    def __init__(self) -> None:
        super().__init__(clock=Clock(NOW_US))
        self.before = True

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        if self.before:
            appends = [
                dataclasses.replace(
                    a,
                    events=[dataclasses.replace(e, data=written_out(e.data)) for e in a.events],
                )
                for a in appends
            ]
        return await super().append(appends)


async def decided(scenario: Scenario, store: InMemoryEventStore, upgrade_at: int) -> list[Any]:
    """What each command answered, then the store's log read back, each command handled on a
    cold cache; a `Before` store writes compact from step `upgrade_at` on."""
    answers: list[Any] = []
    for i, step in enumerate(scenario.steps(NOW_US)):
        if isinstance(store, Before):
            store.before = i < upgrade_at
        answers.append(await send(Service.handlers_on(store), step))
    service = Service(store, Service.handlers_on(store))
    log = [
        (r.position, r.stream, r.stream_version, r.type, r.metadata, CODEC.decode(r).event)
        for r in await service.log()
    ]
    return [answers, log]


async def compare(scenario: Scenario) -> None:
    compact = await decided(scenario, InMemoryEventStore(clock=Clock(NOW_US)), 0)
    steps = scenario.steps(NOW_US)
    ingests = [i for i, step in enumerate(steps) if isinstance(step.command, IngestPoints)]
    # Before throughout; then, if there are two ingests or more, upgraded half way through them.
    upgrades = [len(steps), *ingests[max(1, len(ingests) // 2) :][:1]]
    for upgrade_at in upgrades:
        store = Before()
        assert await decided(scenario, store, upgrade_at) == compact, upgrade_at
        log = await Service(store, Service.handlers_on(store)).log()
        assert any(b'{"all":' in r.data for r in log) == (upgrade_at < len(steps))


@settings(PROPERTY, max_examples=2)
@given(scenarios())
@example(RICH)
def test_commands_decide_the_same_on_a_store_written_before(scenario: Scenario) -> None:
    asyncio.run(compare(scenario))
