"""A feed's health reports count the points of their own interval (received from the provider,
acknowledged by the service) and say, per instrument, when its latest value came: the stalest
first, bounded."""

from __future__ import annotations

import asyncio

from qis_feeds.adapters.bulk_ingest import BulkIngestSender
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import MAX_REPORTED_INSTRUMENTS, HealthInterval, ProviderHealth
from qis_feeds.application.runner import Feed, FeedRunner, freshness

from tests.feeds.feeds_support import FEEDER, ListProvider, ScriptedCommands, scripted

ARRIVED_US = 1_717_200_000_000_000


class Recorded:
    """A HealthReporter that keeps the reports."""

    def __init__(self) -> None:
        self.reports: list[HealthInterval] = []

    async def report(self, command_id: str, source_id: str, interval: HealthInterval) -> bool:
        self.reports.append(interval)
        return True


class Timed(ListProvider):
    """Values of series A only; its health says when A's latest one came."""

    async def get_health(self) -> ProviderHealth:
        return ProviderHealth(connected=True, last_value_us={"A": ARRIVED_US})


async def test_reports_count_their_points_and_the_freshness_of_each_instrument() -> None:
    kinds = {"A": ValueKind.PRICE, "B": ValueKind.PRICE}
    values = [RawValue("A", i * 1_000_000, f"{100 + i}") for i in range(25)]
    reporter = Recorded()
    async with scripted(ScriptedCommands(delay_s=0.01)) as stub:
        counters = FeedCounters()
        runner = FeedRunner(
            BulkIngestSender(stub, FEEDER, counters),
            counters=counters,
            reporter=reporter,
            health_interval_s=0.01,
        )
        await runner.run_live([Feed("f", Timed(kinds, values), "src")], asyncio.Event())
    assert len(reporter.reports) >= 1
    # Reports add up: every point once, received and sent, whatever the intervals were.
    assert sum(r.points_received for r in reporter.reports) == 25
    assert sum(r.points_sent for r in reporter.reports) == 25 == counters.sent
    assert reporter.reports[-1].instruments == (("B", None), ("A", ARRIVED_US))


def test_the_stalest_instruments_are_reported_first_and_the_list_is_bounded() -> None:
    series = [f"S{i:05d}" for i in range(MAX_REPORTED_INSTRUMENTS + 5)]
    arrived = {s: 1_000 + i for i, s in enumerate(series) if i % 2}
    listed = freshness(series, arrived)
    assert len(listed) == MAX_REPORTED_INSTRUMENTS
    never = [s for s in series if s not in arrived]
    assert listed[: len(never)] == tuple((s, None) for s in never)  # none yet: stalest of all
    times = [t for _, t in listed[len(never) :]]
    assert times == sorted(t for t in times if t is not None)  # then the oldest first
