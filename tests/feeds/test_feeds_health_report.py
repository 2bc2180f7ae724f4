"""A live feed reports its source's health to the real command service (in-memory events) every
interval and once more when it stops: each report counts its interval alone, its status follows
what the provider did, and the service records the status changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal

import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import command_service_pb2_grpc as cmd_grpc
from qis.data.v1 import series_pb2
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_domain.data_source import health_stream, source_stream
from qis_domain.definitions import SourceStatus
from qis_domain.events import DataSourceHealthReported, DataSourceStatusChanged, DomainEvent
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, CommandHealthReporter
from qis_feeds.application.counters import FeedCounters, LatencyHistogram
from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import HealthInterval, HistoricalRequest, ProviderHealth
from qis_feeds.application.ports import SourceStatus as FeedStatus
from qis_feeds.application.runner import Feed, FeedRunner, RunnerSettings, health_interval

from tests.feeds.feeds_support import FEEDER

DAY_US = 86_400_000_000
T0_US = 20_454 * DAY_US + 3_600_000_000  # 2026-01-01T01:00:00Z
CODEC = EventCodec()


class FlakyVendor:
    """No values; its health as scripted, one reading per get_health call (the last repeats):
    (connected, requests, errors, rate limited) so far."""

    name = "flaky"

    def __init__(self, readings: list[tuple[bool, int, int, int]], wanted: int) -> None:
        self.kinds: Mapping[str, ValueKind] = {"CG.BTC": ValueKind.PRICE}  # never sends one
        self._readings = readings
        self.reads = 0
        self._wanted = wanted
        self.read_enough = asyncio.Event()
        self._latencies = LatencyHistogram()

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get_health(self) -> ProviderHealth:
        connected, requests, errors, limited = self._readings[
            min(self.reads, len(self._readings) - 1)
        ]
        self.reads += 1
        if self.reads >= self._wanted:
            self.read_enough.set()
        while self._latencies.reading().calls < requests - errors:
            self._latencies.record(12.5)  # every successful call took 12.5 ms
        return ProviderHealth(
            connected=connected,
            requests=requests,
            errors=errors,
            rate_limited=limited,
            latencies=self._latencies.reading(),
            last_error="HTTP 429 Too Many Requests" if limited else "",
        )

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        await asyncio.Event().wait()
        yield RawValue(series_id, "", "0")  # never reached: no series

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        return
        yield


async def decoded(events: InMemoryEventStore, stream: str) -> list[DomainEvent]:
    return [CODEC.decode(r).event for r in await events.read_stream(stream)]


@contextlib.asynccontextmanager
async def service(events: InMemoryEventStore) -> AsyncIterator[cmd_grpc.CommandServiceAsyncStub]:
    settings = CommandSettings(command_address="127.0.0.1:0", scheduler_enabled=False, auth="dev")
    app = await build(settings, events)
    port = await app.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield cmd_grpc.CommandServiceStub(channel)
    finally:
        await app.server.stop(0)
        await app.close()


async def test_a_live_feed_reports_each_interval_and_the_status_changes() -> None:
    events = InMemoryEventStore()
    clock = iter(range(T0_US, T0_US + 10**9, 30_000_000))  # 30 s later at every reading
    vendor = FlakyVendor(
        [
            (True, 0, 0, 0),  # the baseline at start
            (True, 10, 0, 0),  # healthy
            (True, 14, 3, 2),  # degraded: 3 of 4 failed, 2 of them rate limited
            (False, 14, 3, 2),  # down: disconnected
        ],
        wanted=4,
    )
    async with service(events) as stub:
        await stub.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id="reg",
                source_id="cg",
                source=series_pb2.DataSource(provider="coingecko", cost_per_request="0.5"),
            ),
            metadata=FEEDER,
        )
        counters = FeedCounters()
        runner = FeedRunner(
            BulkIngestSender(stub, FEEDER, counters),
            RunnerSettings(),
            counters,
            reporter=CommandHealthReporter(stub, FEEDER),
            health_interval_s=0.05,
            clock_us=lambda: next(clock),
        )
        stop = asyncio.Event()
        running = asyncio.create_task(runner.run_live([Feed("cg-live", vendor, "cg")], stop))
        async with asyncio.timeout(10):
            await vendor.read_enough.wait()
        stop.set()
        await running
        reports = await decoded(events, health_stream("cg", T0_US - T0_US % DAY_US))
        changes = (await decoded(events, source_stream("cg")))[1:]  # after the registration
    assert all(isinstance(r, DataSourceHealthReported) for r in reports)
    got = [
        (r.report.status, r.report.requests, r.report.failures, r.report.rate_limited, r.cost)
        for r in reports
        if isinstance(r, DataSourceHealthReported)
    ]
    assert got[:3] == [
        (SourceStatus.HEALTHY, 10, 0, 0, Decimal("5.0")),
        (SourceStatus.DEGRADED, 4, 3, 2, Decimal("2.0")),
        (SourceStatus.DOWN, 0, 0, 0, Decimal("0.0")),
    ]
    assert counters.health_reports == len(reports) >= 3  # the last one at stop included
    assert counters.health_reports_failed == 0
    first = reports[0]
    assert isinstance(first, DataSourceHealthReported)
    assert (first.report.start_us, first.report.end_us) == (T0_US, T0_US + 30_000_000)
    # Within the histogram's 4.4 % (docs/data-sources.md).
    assert first.report.latency_p50_us == pytest.approx(12_500, rel=0.045)
    assert [(c.previous, c.status) for c in changes if isinstance(c, DataSourceStatusChanged)] == [
        (None, SourceStatus.HEALTHY),
        (SourceStatus.HEALTHY, SourceStatus.DEGRADED),
        (SourceStatus.DEGRADED, SourceStatus.DOWN),
    ]


async def test_a_report_the_service_refuses_is_counted_and_the_feed_goes_on() -> None:
    events = InMemoryEventStore()
    vendor = FlakyVendor([(True, 1, 0, 0)], wanted=3)
    async with service(events) as stub:  # no source registered: every report is NOT_FOUND
        counters = FeedCounters()
        runner = FeedRunner(
            BulkIngestSender(stub, FEEDER, counters),
            counters=counters,
            reporter=CommandHealthReporter(stub, FEEDER),
            health_interval_s=0.02,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(runner.run_live([Feed("x", vendor, "unknown")], stop))
        async with asyncio.timeout(10):
            await vendor.read_enough.wait()
        stop.set()
        await running
        assert await events.head_position() == 0  # nothing recorded
    assert counters.health_reports == 0
    assert counters.health_reports_failed >= 2


def test_an_interval_keeps_each_count_within_the_one_it_is_part_of() -> None:
    before = ProviderHealth(connected=True, requests=10, errors=1, rate_limited=0, retries=2)

    def interval(**now: int | bool) -> tuple[FeedStatus, int, int, int, int]:
        reading = ProviderHealth(**{"connected": True, **now})  # type: ignore[arg-type]
        i = health_interval(before, reading, 0, 1)
        return i.status, i.requests, i.failures, i.rate_limited, i.retries

    # Connection errors counted without requests: at most every request failed.
    assert interval(requests=12, errors=6, rate_limited=9, retries=2) == (
        FeedStatus.DOWN, 2, 2, 2, 0
    )  # fmt: skip
    assert interval(requests=15, errors=1, rate_limited=0, retries=3) == (
        FeedStatus.DEGRADED, 5, 0, 0, 1
    )  # fmt: skip
    assert interval(requests=15, errors=1, retries=2) == (FeedStatus.HEALTHY, 5, 0, 0, 0)
    # A provider restarted (its counts went back): nothing negative is reported.
    assert interval(requests=3, errors=0, retries=0) == (FeedStatus.HEALTHY, 0, 0, 0, 0)
    assert interval(connected=False, requests=10, errors=1, retries=2)[0] is FeedStatus.DOWN


def test_an_interval_reports_the_latency_of_its_own_calls() -> None:
    """The histogram grows for the provider's life; a report is of its interval: a slow first
    interval must not make every later report slow (the figures since start did)."""
    histogram = LatencyHistogram()
    for _ in range(100):
        histogram.record(800.0)  # a slow first interval
    start = ProviderHealth(connected=True)
    first = ProviderHealth(connected=True, requests=100, latencies=histogram.reading())
    for _ in range(100):
        histogram.record(5.0)  # then quick calls only
    second = ProviderHealth(connected=True, requests=200, latencies=histogram.reading())
    slow = health_interval(start, first, 0, 1)
    quick = health_interval(first, second, 1, 2)
    assert (slow.latency_p50_ms or 0) > 700
    assert (quick.latency_p50_ms or 1000) < 6
    assert (quick.latency_p99_ms or 1000) < 6
    # No successful call in an interval: no latency, rather than an old figure.
    idle = health_interval(second, second, 2, 3)
    assert (idle.latency_p50_ms, idle.latency_p99_ms) == (None, None)


async def test_a_report_carries_its_points_and_instruments_to_the_stored_event() -> None:
    """Through the command API: the points and each instrument's latest value reach the
    DataSourceHealthReported event (points sent may exceed those received in one interval: a
    value received just before a report is sent in the next)."""
    events = InMemoryEventStore()
    async with service(events) as stub:
        await stub.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id="reg", source_id="cg", source=series_pb2.DataSource(provider="p")
            ),
            metadata=FEEDER,
        )
        interval = HealthInterval(
            status=FeedStatus.HEALTHY,
            start_us=T0_US,
            end_us=T0_US + 30_000_000,
            requests=2,
            failures=0,
            rate_limited=0,
            retries=0,
            latency_p50_ms=None,
            latency_p99_ms=None,
            last_success_us=None,
            last_error="",
            points_received=3,
            points_sent=5,
            instruments=(("CG.ETH", None), ("CG.BTC", T0_US + 1_000_000)),
        )
        assert await CommandHealthReporter(stub, FEEDER).report("h-1", "cg", interval)
        [event] = await decoded(events, health_stream("cg", T0_US - T0_US % DAY_US))
    assert isinstance(event, DataSourceHealthReported)
    assert (event.report.points_received, event.report.points_sent) == (3, 5)
    assert [(i.series_id, i.latest_value_us) for i in event.report.instruments] == [
        ("CG.ETH", None),
        ("CG.BTC", T0_US + 1_000_000),
    ]
