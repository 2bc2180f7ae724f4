"""What a command process holds changes nothing it decides: the same commands, sent to processes
whose aggregate cache is bounded to a few points (buckets evicted and read back mid-history), that
restart between commands (every cache cold), and that are sent some commands twice, store the
very events, byte for byte, that one process with the default cache stores; and the repeats are
answered with their first outcomes and store nothing.

And the order two sources arrive in changes nothing that is decided: each source's issues (its
values are compared with its own earlier figures, never with another source's) and each point's
final reconciliation are the same whichever source comes first, or when they take turns. The
official values follow the documented restatement policy (docs/data-quality.md, Publication): a
later candidate within tolerance of the official version does not restate it, so the official
keeps the figure, score and flags of what was published first, which is within tolerance of the
final candidate in every order; that the official itself differs with the order is kept as a
strict xfail (docs/architecture.md §5).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import RecordedEvent
from qis_command.application.commands import CalculateQualityMetrics, CommandResult
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_domain.definitions import ReconciliationMethod

from tests.property.history import (
    CLOSE_S,
    PRIMARY,
    SECONDARY,
    History,
    Point,
    Rules,
    Shape,
)
from tests.property.service import (
    PROPERTY,
    RICH,
    WHOLE,
    Effect,
    Scenario,
    Service,
    delivered,
    effect_of,
    instant_us,
    scenarios,
    send,
)

NOW_US = instant_us(2025)

Stored = list[tuple[str, int, str, bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Process:
    """The command processes a plan goes through: each with a cache of `cache_points`, a new
    (cold) one every `restart_every` commands (0: never), and every `repeat_every`-th command
    sent again right after its first answer (0: none)."""

    cache_points: int
    restart_every: int
    repeat_every: int


processes = st.builds(
    Process,
    st.sampled_from([1, 60, 300, 2_000]),
    st.sampled_from([0, 1, 3, 7]),
    st.sampled_from([0, 1, 2, 5]),
)


def stored(log: list[RecordedEvent]) -> Stored:
    return [(e.stream, e.stream_version, e.type, e.data, e.metadata) for e in log]


async def run_default(scenario: Scenario) -> tuple[Stored, list[CommandResult]]:
    service = Service.start(NOW_US)
    results = await service.run(scenario.steps(NOW_US))
    return stored(await service.log()), results


async def run_through(scenario: Scenario, process: Process) -> tuple[Stored, list[CommandResult]]:
    service = Service.start(NOW_US)

    def handlers() -> CommandHandlers:
        repository = Repository(service.store, EventCodec(), cache_points=process.cache_points)
        return CommandHandlers(repository, ExchangeCalendars())

    current = handlers()
    results: list[CommandResult] = []
    for i, step in enumerate(scenario.steps(NOW_US)):
        if process.restart_every and i % process.restart_every == 0:
            current = handlers()
        result = await send(current, step)
        results.append(result)
        if process.repeat_every and i % process.repeat_every == 0:
            head = await service.store.head_position()
            again = await send(current, step)
            assert again.duplicate, step.ctx.command_id
            assert again.outcome == result.outcome, step.ctx.command_id
            assert await service.store.head_position() == head
    return stored(await service.log()), results


@settings(PROPERTY)
@given(scenarios(), processes)
@example(RICH, Process(cache_points=1, restart_every=0, repeat_every=0))
@example(RICH, Process(cache_points=60, restart_every=3, repeat_every=2))
@example(RICH, Process(cache_points=200_000, restart_every=1, repeat_every=1))
def test_a_small_cache_restarts_and_repeats_store_the_same_events(
    scenario: Scenario, process: Process
) -> None:
    expected, answers = asyncio.run(run_default(scenario))
    got, results = asyncio.run(run_through(scenario, process))
    assert [r.outcome for r in results] == [a.outcome for a in answers]
    for mine, theirs in zip(got, expected, strict=False):
        assert mine == theirs, (mine[0], mine[1], mine[2])
    assert len(got) == len(expected)


# --- the order the sources arrive in ----------------------------------------------------------


def interleaved(h: History, order: str) -> History:
    """`h` with its two sources' points delivered in another order: "primary" all of the
    primary then all of the secondary, "secondary" the other way, "points" taking turns one
    point each (by snap), "years" taking turns a year each."""
    if order == "primary":
        deliveries = ((PRIMARY, h.primary), (SECONDARY, h.secondary))
    elif order == "secondary":
        deliveries = ((SECONDARY, h.secondary), (PRIMARY, h.primary))
    else:
        tagged = sorted([(p[0], 0, p) for p in h.primary] + [(p[0], 1, p) for p in h.secondary])
        width = 1 if order == "points" else 365 * 86_400 * 1_000_000
        runs: list[tuple[str, list[Point]]] = []
        for snap, rank, point in tagged:
            source = (PRIMARY, SECONDARY)[rank]
            key = snap // width
            if (
                runs
                and runs[-1][0] == source
                and (order == "points" or runs[-1][1][-1][0] // width == key)
            ):
                runs[-1][1].append(point)
            else:
                runs.append((source, [point]))
        deliveries = tuple((s, tuple(p)) for s, p in runs)  # type: ignore[assignment]
    return History(h.shape, h.primary, h.secondary, deliveries, h.missing)


async def settled(scenario: Scenario) -> Effect:
    service = Service.start(NOW_US)
    # Metrics aside: timeliness measures when each point arrived, which is the variable here.
    plan = [s for s in scenario.steps(NOW_US) if not isinstance(s.command, CalculateQualityMetrics)]
    await service.run(plan)
    return effect_of(await service.log())


def final(effect: Effect) -> tuple[dict[int, Any], dict[int, Any]]:
    """Each point's last reconciliation, and its latest published (value, flags, score): the
    version numbers count the restatements an order makes on the way."""
    reconciled = {s: rows[-1] for s, rows in effect.reconciled.items()}
    return reconciled, {s: v[1:4] for s, v in effect.officials.items()}


def assert_decided_alike(scenario: Scenario, order: str) -> tuple[Effect, Effect]:
    """The history delivered in `order` raises the same issues, per source, and reconciles each
    point to the same final candidate as with the primary source first, whole; and in both, a
    point whose final candidate is published has an official value within tolerance of it.
    Returns both effects (primary first, then `order`)."""
    h = scenario.history
    first = asyncio.run(settled(delivered(scenario, interleaved(h, "primary"), WHOLE)))
    other = asyncio.run(settled(delivered(scenario, interleaved(h, order), WHOLE)))
    assert first.observed.keys() == other.observed.keys()
    assert {s: sorted(set(i)) for s, i in first.issues.items()} == {
        s: sorted(set(i)) for s, i in other.issues.items()
    }
    assert final(first)[0] == final(other)[0]
    bps = Decimal(scenario.rules.tolerance_bps)
    for effect in (first, other):
        officials = final(effect)[1]
        for snap, row in final(effect)[0].items():
            if row[-1] == "published":
                candidate, official = Decimal(json.loads(row[0])), officials[snap][0]
                official = Decimal(json.loads(official))
                assert abs(candidate - official) <= abs(official) * bps / 10_000, snap
    return first, other


def assert_settles_alike(scenario: Scenario, order: str) -> None:
    """As `assert_decided_alike`, and each point's published value, flags and score too."""
    first, other = assert_decided_alike(scenario, order)
    assert final(first) == final(other)


# Found by the order test: feed1's 2013-09-03 close rises 2.66 % over its own 2013-08-29 close
# (it has no 08-30), beyond the 2.5 % rise limit, and was held when all of feed1 came first;
# when the sources took turns point by point, feed2's 08-30 was in the timeline already and the
# same close rose 0.78 % over it: not flagged, published. Held in both orders now.
ORDER_DEPENDENT = Scenario(
    Shape(1_317_591, 282, 0.012, 0, 3, 2, 0, 0, True, False, 0.3, 2),
    Rules(
        "8",
        "5",
        "6",
        5,
        0,
        4,
        ReconciliationMethod.MEDIAN,
        "2",
        2,
        7200,
        rise="2.5",
        fall="2.5",
        window=(0, CLOSE_S, "3"),
    ),
    (WHOLE,),
)


@settings(PROPERTY)
@given(scenarios(), st.sampled_from(["secondary", "points", "years"]))
@example(RICH, "secondary")
@example(ORDER_DEPENDENT, "points")
def test_the_sources_in_any_order_raise_the_same_issues_and_reconcile_alike(
    scenario: Scenario, order: str
) -> None:
    """Each source's issues and each point's final reconciliation, whichever source comes
    first or when they take turns a point or a year at a time. ORDER_DEPENDENT (found by this
    test) raised a rise on feed1's 2013-09-03 close when feed1 came first and none when feed2's
    08-30 had come before it: each source is now compared with its own figures."""
    assert_decided_alike(scenario, order)


@pytest.mark.parametrize(
    ("scenario", "order"),
    [(ORDER_DEPENDENT, "points"), (RICH, "points"), (RICH, "years")],
    ids=["gap-filled-point-by-point", "rich-points", "rich-years"],
)
def test_these_histories_settle_the_same_official_values_in_another_order(
    scenario: Scenario, order: str
) -> None:
    """Official values, flags and scores too, where no point is published by a source before
    another within tolerance of it changes its candidate."""
    assert_settles_alike(scenario, order)


@pytest.mark.xfail(
    strict=True,
    reason="a candidate within tolerance of the official version does not restate it"
    " (docs/data-quality.md, Publication): the official keeps the figure, score and flags of"
    " the source that published first",
)
def test_the_secondary_first_settles_the_same_official_values() -> None:
    """RICH with its secondary source first: feed2's 823.6090 is published, then feed1's
    823.5932 (the primary) is within the 2 bps tolerance and does not restate it; and a point
    published clean before a break arrives keeps its score of 1 when it comes in the other
    order, where the break's score (0.8) is restated."""
    assert_settles_alike(RICH, "secondary")
