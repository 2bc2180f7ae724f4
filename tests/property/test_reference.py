"""Reference equality: the issues the service raises on a one-source history, the flags of its
official values and the missing sessions of its metrics equal a computation of the same rules
written independently from their definitions (tests/property/reference.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import example, given, settings

from tests.property.history import CLOSE_S, Rules, local_day
from tests.property.reference import Expected, Limits, expected, missing_sessions
from tests.property.service import (
    PROPERTY,
    RICH,
    Effect,
    Scenario,
    Service,
    describe,
    effect_of,
    instant_us,
    month_window,
    scenarios,
)

NOW_US = instant_us(2025)
MAX_MONTHS = 4


def limits_of(drawn: Rules) -> Limits:
    def optional(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    return Limits(
        Decimal(drawn.jump),
        Decimal(drawn.spike),
        optional(drawn.zscore),
        drawn.zscore_window,
        drawn.stale_after,
        optional(drawn.rise),
        optional(drawn.fall),
        None if drawn.window is None else (*drawn.window[:2], Decimal(drawn.window[2])),
    )


def months_to_measure(scenario: Scenario, want: Expected) -> list[tuple[int, int]]:
    """Months with gaps and months with held points: where sessions go missing."""
    gaps = sorted({(d.year, d.month) for d in scenario.history.missing})[:MAX_MONTHS]
    held = sorted({(d.year, d.month) for d in want.held_days})[:MAX_MONTHS]
    return sorted({(2003, 1), *gaps, *held})


async def effect(scenario: Scenario, months: list[tuple[int, int]]) -> Effect:
    service = Service.start(NOW_US)
    await service.run(scenario.steps(NOW_US, months))
    return effect_of(await service.log())


def differences(got: Effect, want: Expected) -> dict[str, tuple[list[str], list[str]]]:
    """Per point whose rules differ: (raised, expected)."""
    raised = {snap: {issue[1] for issue in issues} for snap, issues in got.issues.items()}
    out = {}
    for snap in sorted(set(raised) | set(want.rules)):
        mine, theirs = raised.get(snap, set()), want.rules.get(snap, set())
        if snap in want.ambiguous:  # too close to the limit for a float to call: either is right
            mine, theirs = mine - {"spike_zscore"}, theirs - {"spike_zscore"}
        if mine != theirs:
            out[f"{local_day(snap)} ({snap})"] = sorted(mine), sorted(theirs)
    return out


@settings(PROPERTY)
@given(scenarios(one_source=True))
@example(RICH.one_source())
@example(RICH.with_band("12", "2.5").one_source())  # an asymmetric jump band
@example(RICH.with_window((CLOSE_S, CLOSE_S + 1800, "1.25")).one_source())
def test_the_service_flags_what_an_independent_computation_flags(scenario: Scenario) -> None:
    points = scenario.history.primary
    want = expected(points, limits_of(scenario.rules))
    months = months_to_measure(scenario, want)
    got = asyncio.run(effect(scenario, months))
    describe(scenario.history, got)

    differ = differences(got, want)
    first = dict(list(differ.items())[:12])
    assert not differ, f"{len(differ)} points differ, (raised, expected), first: {first}"

    assert set(got.officials) == {snap for snap, _ in points} - want.held
    for snap, official in got.officials.items():
        # A spike is seen when the move back arrives, after its point was published.
        assert set(official[2]) == want.rules.get(snap, set()) - {"spike"}, local_day(snap)

    for year, month in months:
        metrics = got.metrics[month_window(year, month)]
        gaps = missing_sessions(points, want.held_days, year, month)
        assert metrics["missing_sessions"] == gaps, (year, month)
