"""The synthetic feed: seeded and deterministic, with each fault where the rules will see it."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from qis_feeds.adapters.synthetic import Faults, SyntheticProvider, Walk
from qis_feeds.application.points import RawValue
from qis_feeds.application.ports import HistoricalRequest

START = datetime(2024, 1, 1, tzinfo=UTC)
STEP_US = 1_000_000


def feed(faults: Faults, seed: int = 11) -> SyntheticProvider:
    walks = [Walk("A", 100.0), Walk("B", 50.0, decimals=2)]
    return SyntheticProvider(walks, random.Random(seed), step=timedelta(seconds=1), faults=faults)


async def history(provider: SyntheticProvider, seconds: int = 2_000) -> list[RawValue]:
    request = HistoricalRequest(("A",), START, START + timedelta(seconds=seconds))
    return [v async for v in provider.request_historical(request)]


async def test_the_same_seed_gives_the_same_values_and_another_seed_others() -> None:
    faults = Faults(gap=0.05, spike=0.01, late=0.01, duplicate=0.01)
    first, again = await history(feed(faults)), await history(feed(faults))
    assert first == again
    assert first != await history(feed(faults, seed=12))
    # Asking again of the same provider gives the same history too (a re-run of a load).
    provider = feed(faults)
    assert await history(provider) == await history(provider)


async def test_without_faults_one_value_per_snap_in_order() -> None:
    values = await history(feed(Faults()), 500)
    start_us = int(START.timestamp()) * STEP_US
    assert [v.time for v in values] == [start_us + i * STEP_US for i in range(500)]
    assert all(
        str(v.value).count(".") == 1 and len(str(v.value).split(".")[1]) == 4 for v in values
    )


async def test_each_fault_shows_in_what_is_sent() -> None:
    faults = Faults(
        gap=0.02,
        spike=0.01,
        stale=0.01,
        late=0.01,
        duplicate=0.01,
        out_of_order=0.01,
        jump=0.01,
        disagree=0.2,
        second_source="other",
        second_bias=0.02,
    )
    provider = feed(faults)
    values = await history(provider, 5_000)
    injected = provider.injected
    assert {k for k, n in injected.items() if n} == {
        "gap", "spike", "stale", "late", "duplicate", "out_of_order", "jump", "disagree"
    }  # fmt: skip
    ours = [v for v in values if v.source_id is None]
    snaps = Counter(v.time for v in ours)
    assert 5_000 - len(snaps) == injected["gap"]
    assert sum(n - 1 for n in snaps.values()) == injected["duplicate"]
    times = [at(v) for v in ours]
    backwards = sum(1 for a, b in itertools.pairwise(times) if b < a)
    assert backwards >= injected["late"] + injected["out_of_order"] - 5  # adjacent holds merge
    # The second source sends every snap, and differs where it disagrees.
    theirs = {v.time: v.value for v in values if v.source_id == "other"}
    assert set(theirs) == set(snaps)
    # A stale run or a duplicate repeats a value without a draw: "at least" the injected ones.
    differ = {v.time for v in ours if theirs[v.time] != v.value}
    assert len(differ) >= injected["disagree"] * 0.9
    by_snap = [str(v.value) for v in sorted(set(ours), key=at)]
    assert max(len(run) for run in _runs(by_snap)) >= faults.stale_run


def at(value: RawValue) -> int:
    assert isinstance(value.time, int)
    return value.time


def _runs(values: Iterable[str]) -> list[list[str]]:
    runs: list[list[str]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1].append(value)
        else:
            runs.append([value])
    return runs
