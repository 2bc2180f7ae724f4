"""Idempotency: a command sent again with its id changes nothing and is answered with its first
outcome, whichever buckets it touched and whatever came after it; the same id with other
arguments is refused (docs/architecture.md §2: idempotency lives in the domain)."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_command.application.commands import (
    CalculateQualityMetrics,
    DefineSeries,
    IngestPoints,
    RegisterSource,
)
from qis_domain.command_log import COMMAND_REUSED
from qis_domain.errors import AlreadyExists
from qis_domain.values import Price

from tests.property.history import PRIMARY, Cuts, History, close_us
from tests.property.service import (
    PROPERTY,
    RICH,
    Command,
    Scenario,
    Service,
    Step,
    describe,
    effect_of,
    instant_us,
    metric_months,
    metrics_before_1970,
    scenarios,
    send,
    steps,
)

NOW_US = instant_us(2025)


def reused(command: Command, index: int) -> Command:
    """The same kind of command asking for something else: `index` picks what changes."""
    if isinstance(command, IngestPoints):
        points = list(command.points)
        i = index % len(points)
        snap, price = points[i]
        assert isinstance(price, Price)
        if index % 2 and len(points) > 1:
            del points[i]
        else:
            points[i] = (snap, Price(price.value + Decimal("0.01"), price.currency))
        return dataclasses.replace(command, points=points)
    if isinstance(command, CalculateQualityMetrics):
        return dataclasses.replace(command, end_us=command.end_us - 86_400_000_000)
    if isinstance(command, DefineSeries):
        changed = command.definition.model_copy(update={"description": "another"})
        return dataclasses.replace(command, definition=changed)
    assert isinstance(command, RegisterSource)
    return dataclasses.replace(command, config=command.config.model_copy(update={"provider": "x"}))


@dataclass(frozen=True, slots=True)
class Repeat:
    """Which commands are sent again and by whom: the first `share` of them, by a process with
    a cold cache or by the one that handled them (every aggregate warm); then the command at
    `reused` of the list with its id and other arguments."""

    cold: bool
    share: float
    reused: float
    change: int


repeats = st.builds(Repeat, st.booleans(), st.floats(0, 1), st.floats(0, 1), st.integers(0, 999))


async def replay(scenario: Scenario, repeat: Repeat) -> None:
    service = Service.start(NOW_US)
    plan = scenario.steps(NOW_US, metric_months(scenario.history))
    first = await service.run(plan)
    describe(scenario.history, effect_of(await service.log()))
    head = await service.store.head_position()
    handlers = Service.handlers_on(service.store) if repeat.cold else service.handlers
    prefix = max(1, round(repeat.share * len(plan)))
    for step, answer in zip(plan[:prefix], first, strict=False):
        again = await send(handlers, step)
        assert again.duplicate, step.ctx.command_id
        assert again.outcome == answer.outcome, step.ctx.command_id
    assert await service.store.head_position() == head

    step = plan[min(int(repeat.reused * len(plan)), len(plan) - 1)]
    with pytest.raises(AlreadyExists) as refused:
        await send(handlers, Step(reused(step.command, repeat.change), step.ctx))
    assert refused.value.reason == COMMAND_REUSED
    assert await service.store.head_position() == head


@settings(PROPERTY)
@given(scenarios(), repeats)
@example(RICH, Repeat(cold=True, share=1.0, reused=0.5, change=1))
def test_a_command_sent_again_changes_nothing(scenario: Scenario, repeat: Repeat) -> None:
    asyncio.run(replay(scenario, repeat))


async def test_a_metrics_command_before_1970_sent_again_to_another_process() -> None:
    """A window starting before 1970 (a negative instant in its stream name) once could not be
    loaded by a process that did not have it cached."""
    service = Service.start(NOW_US)
    plan = metrics_before_1970(RICH.rules, NOW_US)
    first = await service.run(plan)
    again = await send(Service.handlers_on(service.store), plan[-1])
    assert again.duplicate
    assert again.outcome == first[-1].outcome


async def test_a_repeat_answers_the_first_position_in_another_process() -> None:
    """A repeat answered from the stored streams once reported a lower position than the first
    answer when the command's last event was a candidate or a cut-off: a client waiting for it
    could read too early."""
    point = (close_us(date(2024, 1, 2)), "100.00")
    # Two sources configured, one has sent: the point waits (DataReconciled last, unpublished).
    pending = History(None, (point,), (point,), ((PRIMARY, (point,)),), frozenset())
    waits = dataclasses.replace(RICH.rules, min_sources=2, cutoff_seconds=0)
    plan = steps(pending, waits.definition(pending), [Cuts((), ())], NOW_US, [])
    service = Service.start(NOW_US)
    first = await service.run(plan)
    again = await send(Service.handlers_on(service.store), plan[-1])
    assert again.duplicate
    assert again.outcome == first[-1].outcome
