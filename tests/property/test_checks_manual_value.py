"""The "manual_value" review over long histories: after 22 years of closes are loaded (split
into commands any way), people restate some published points by hand. Each restatement raises
exactly one open warning on its point, with who, why and the version it made, and flags that
version; nothing the feeds sent raised one; and the issues are the same however the history
was chunked."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_command.application.commands import RestatePoint
from qis_domain.commands import CommandContext
from qis_domain.definitions import SeriesDefinition
from qis_domain.values import Price

from tests.property.history import SERIES, Cuts, cuts, snap_of
from tests.property.service import (
    PROPERTY,
    RICH,
    Effect,
    Scenario,
    Service,
    effect_of,
    instant_us,
    scenarios,
    steps,
)

NOW_US = instant_us(2025)
WHOLE = Cuts((), ())
PEOPLE = ("alice", "bob", "carol")


def reviewing(definition: SeriesDefinition) -> SeriesDefinition:
    validation = definition.validation.model_copy(update={"review_manual_values": True})
    return definition.model_copy(update={"validation": validation})


def restatements(published: list[int], seed: int, count: int) -> list[tuple[int, str, str]]:
    """(snap, person, figure) of `count` restatements of published points, some twice."""
    rng = random.Random(seed)
    return [
        (rng.choice(published), rng.choice(PEOPLE), f"{rng.uniform(10, 5000):.2f}")
        for _ in range(count)
    ]


async def effect(
    scenario: Scenario, chunks: tuple[Cuts, ...], seed: int, count: int
) -> tuple[Effect, list[tuple[int, str, str]]]:
    """Load the history, then restate some of the points it published."""
    service = Service.start(NOW_US)
    definition = reviewing(scenario.definition)
    await service.run(steps(scenario.history, definition, chunks, NOW_US, []))
    published = sorted(effect_of(await service.log()).officials)
    made = restatements(published, seed, count)
    for k, (snap, person, figure) in enumerate(made):
        restate = RestatePoint(SERIES, snap_of(snap), Price(Decimal(figure), "USD"), f"fix {k}")
        await service.handlers.restate(restate, CommandContext(f"restate-{k}", person, NOW_US))
    return effect_of(await service.log()), made


@settings(PROPERTY)
@given(
    scenarios(),
    st.integers(0, 2**32 - 1),
    st.integers(1, 12),
    st.lists(cuts(), max_size=4),
)
@example(RICH, 3, 8, [])
def test_every_manual_value_is_raised_for_review_and_nothing_else_is(
    scenario: Scenario, seed: int, count: int, other: list[Cuts]
) -> None:
    got, made = asyncio.run(effect(scenario, scenario.cuts, seed, count))

    # What each restatement must have raised, from the commands alone: one issue per
    # restatement, by its author, with its reason, on its point.
    want: dict[int, list[tuple[str, str]]] = {}
    for k, (snap, person, _) in enumerate(made):
        want.setdefault(snap, []).append((person, f"fix {k}"))
    raised: dict[int, list[tuple[str, str]]] = {}
    for snap, issues in got.issues.items():
        for source, rule, severity, blocking, evidence in issues:
            if rule != "manual_value":
                continue
            assert (source, severity, blocking) == ("", "warning", False)
            found = json.loads(evidence)
            raised.setdefault(snap, []).append((found["by"], found["reason"]))
            # The version it made is the one the point's versions end with or passed through.
            assert found["version"] in {row[0] for row in got.versions[snap]}
    assert {s: sorted(r) for s, r in raised.items()} == {s: sorted(w) for s, w in want.items()}

    # Each manual version is flagged; the last one is the point's official value.
    for snap, rows in got.versions.items():
        for version, _, flags, *_, cause in rows:
            assert ("manual_value" in flags) is (cause == "manual_correction"), (snap, version)
    for k, (snap, _, figure) in enumerate(made):
        if all(later[0] != snap for later in made[k + 1 :]):
            # At the series' precision: 12.30 may be 12.3000.
            assert Decimal(json.loads(got.officials[snap][1])) == Decimal(figure)

    again, _ = asyncio.run(effect(scenario, tuple(other) or (WHOLE,), seed, count))
    assert again.issues == got.issues
    assert again.versions == got.versions
