"""The "zero_value" rule over long histories: 22 years of closes with some prints of exactly 0
("0", "0.00", "0.0000": what a feed fills in for a missing price), every other rule of the
series on. The issues equal a computation of the rule from its definition alone (each value a
source sent that is exactly 0, with the configured severity), and how the history is split into
commands changes nothing the service decides."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_domain.definitions import SeriesDefinition, ZeroSeverity

from tests.property.history import Cuts, History, cuts
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
ZERO_TEXTS = ("0", "0.00", "0.0000")


def with_zeros(history: History, seed: int, count: int) -> History:
    """`count` values of the deliveries (either source's) replaced by a zero, in one of its
    notations; the rest as they were."""
    rng = random.Random(seed)
    sent = [(k, i) for k, (_, points) in enumerate(history.deliveries) for i in range(len(points))]
    zeros = {place: rng.choice(ZERO_TEXTS) for place in rng.sample(sent, min(count, len(sent)))}
    deliveries = tuple(
        (source, tuple((snap, zeros.get((k, i), text)) for i, (snap, text) in enumerate(points)))
        for k, (source, points) in enumerate(history.deliveries)
    )
    return dataclasses.replace(history, deliveries=deliveries)


def forbidding(definition: SeriesDefinition, severity: ZeroSeverity) -> SeriesDefinition:
    validation = definition.validation.model_copy(update={"forbid_zero": severity})
    return definition.model_copy(update={"validation": validation})


async def effect(
    history: History, definition: SeriesDefinition, chunks: tuple[Cuts, ...]
) -> Effect:
    service = Service.start(NOW_US)
    await service.run(steps(history, definition, chunks, NOW_US, []))
    return effect_of(await service.log())


def expected_zeros(history: History, severity: ZeroSeverity) -> set[tuple[int, str, str]]:
    """(snap, source, severity) of every value sent that is exactly 0, written from the rule's
    definition: the figure compares equal to zero, whatever its notation."""
    return {
        (snap, source, severity)
        for source, points in history.deliveries
        for snap, text in points
        if Decimal(text) == 0
    }


def raised_zeros(got: Effect) -> set[tuple[int, str, str]]:
    out = set()
    for snap, issues in got.issues.items():
        for source, rule, severity, blocking, evidence in issues:
            if rule == "zero_value":
                assert blocking is (severity == "error")
                assert evidence == '{"fields": ["value"]}'
                out.add((snap, source, severity))
    return out


@settings(PROPERTY)
@given(
    scenarios(),
    st.integers(0, 2**32 - 1),
    st.integers(1, 40),
    st.sampled_from(["warning", "error"]),
    st.lists(cuts(), max_size=4),
)
@example(RICH, 8, 30, "error", [])
@example(RICH.one_source(), 9, 12, "warning", [])
def test_zeros_are_flagged_as_defined_however_the_history_is_chunked(
    scenario: Scenario,
    seed: int,
    count: int,
    severity: ZeroSeverity,
    other: list[Cuts],
) -> None:
    history = with_zeros(scenario.history, seed, count)
    definition = forbidding(scenario.definition, severity)
    first = asyncio.run(effect(history, definition, scenario.cuts))
    describe(history, first)

    want = expected_zeros(history, severity)
    assert raised_zeros(first) == want
    # A zero is also not positive (the histories' series require positive values): both
    # rules, each its own issue.
    positive = {
        (s, src) for s, issues in first.issues.items() for src, r, *_ in issues if r == "positive"
    }
    assert positive == {(snap, source) for snap, source, _ in want}

    second = asyncio.run(effect(history, definition, tuple(other) or (WHOLE,)))
    assert first.issues == second.issues
    assert first.versions == second.versions
    assert first.reconciled == second.reconciled
    assert first.statuses == second.statuses
