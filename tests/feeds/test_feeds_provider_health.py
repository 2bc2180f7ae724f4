"""Providers' health figures against real local servers that count what they saw: requests,
failures, 429s, retries and latencies, per interval between two readings, match the servers'
own counts; and the latency histogram keeps its stated accuracy in a fixed size."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from http import HTTPStatus

from pytest_httpserver import HTTPServer
from qis_feeds.adapters.http import RetryPolicy
from qis_feeds.adapters.rest_poll import RestPollProvider, RestPollSettings
from qis_feeds.adapters.ticks import TickFields, TickInstrument, TimeUnit
from qis_feeds.adapters.websocket import WebSocketProvider, WebSocketSettings
from qis_feeds.application.batching import Chunk
from qis_feeds.application.counters import (
    LATENCY_RELATIVE_ERROR,
    Latencies,
    LatencyHistogram,
)
from qis_feeds.application.ports import HealthInterval
from qis_feeds.application.runner import Feed, FeedRunner, health_interval
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from werkzeug import Request, Response

SLOW_S = 0.25
TIMEOUT_S = 0.4
T0_MS = 1_717_200_000_000


def test_percentiles_are_within_the_stated_error_in_a_fixed_size() -> None:
    rng = random.Random(7)
    durations = sorted(10 ** rng.uniform(-1, 4) for _ in range(50_000))  # 0.1 ms to 10 s
    histogram = LatencyHistogram()
    for ms in durations:
        histogram.record(ms)
    reading = histogram.reading()
    assert len(reading.counts) == len(LatencyHistogram().reading().counts)
    for fraction in (0.01, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = durations[max(1, round(fraction * len(durations))) - 1]
        found = reading.percentile(fraction)
        assert found is not None
        assert abs(found - exact) / exact <= LATENCY_RELATIVE_ERROR + 1e-9, fraction
    assert Latencies().percentile(0.5) is None


def test_an_interval_is_the_difference_of_two_readings() -> None:
    histogram = LatencyHistogram()
    for _ in range(99):
        histogram.record(1.0)
    before = histogram.reading()
    histogram.record(500.0)
    histogram.record(500.0)
    interval = histogram.reading().since(before)
    assert interval.calls == 2
    median = interval.percentile(0.5)
    assert median is not None
    assert abs(median - 500) / 500 <= LATENCY_RELATIVE_ERROR
    assert histogram.reading().since(Latencies()).calls == 101


class Vendor:
    """Answers from a script by request number (the last entry for every later one), sleeping
    first where told, and keeps what it answered: the reference the client's counts are held
    to."""

    def __init__(self, script: list[tuple[int, float]]) -> None:
        self.script = script
        self.statuses: list[int] = []

    def __call__(self, request: Request) -> Response:
        status, sleep_s = self.script[min(len(self.statuses), len(self.script) - 1)]
        self.statuses.append(status)
        time.sleep(sleep_s)
        headers = {"Retry-After": "1"} if status == HTTPStatus.TOO_MANY_REQUESTS else {}
        return Response("[]" if status == 200 else "no", status, headers, "application/json")

    def failures(self, first: int, end: int) -> int:
        return sum(1 for s in self.statuses[first:end] if s != 200)

    def rate_limited(self, first: int, end: int) -> int:
        return self.statuses[first:end].count(HTTPStatus.TOO_MANY_REQUESTS)


def poller(server: HTTPServer, vendor: Vendor, poll_s: float = 3_600.0) -> RestPollProvider:
    server.expect_request("/ticks").respond_with_handler(vendor)
    return RestPollProvider(
        [TickInstrument("ACME.LAST", "ACME")],
        RestPollSettings(
            url=server.url_for("/ticks"),
            fields=TickFields("s", "t", TimeUnit.MILLISECONDS, "p"),
            poll_s=poll_s,
            calls_per_minute=60_000,
            retry=RetryPolicy(backoff_first_s=0.01, backoff_cap_s=0.02, timeout_s=TIMEOUT_S),
        ),
    )


async def test_polls_count_what_the_server_saw_per_interval(httpserver: HTTPServer) -> None:
    vendor = Vendor(
        [
            (429, 0.0),  # poll 1: rate limited, retried after Retry-After: 1
            (200, 0.0),
            (503, 0.0),  # poll 2: a 5xx, retried, then a slow answer
            (200, SLOW_S),
            (200, 0.0),  # poll 3
            (200, TIMEOUT_S + 0.1),  # poll 4: slower than the timeout, retried
            (200, 0.0),
            (200, 0.0),  # poll 5
            (200, 0.0),  # poll 6
            (404, 0.0),  # poll 7: not retried; the poll fails
        ]
    )
    feed = poller(httpserver, vendor)
    start = await feed.get_health()
    await feed.poll()
    first, seen_first = await feed.get_health(), len(vendor.statuses)
    for _ in range(6):
        await feed.poll()
    second, seen = await feed.get_health(), len(vendor.statuses)
    await feed.close()

    one = health_interval(start, first, 0, 1)
    assert (one.requests, one.failures, one.rate_limited, one.retries) == (2, 1, 1, 1)
    assert first.requests == seen_first == 2
    assert one.rate_limited == vendor.rate_limited(0, seen_first)
    two = health_interval(first, second, 1, 2)
    assert two.requests == seen - seen_first == 8
    # The timed-out request was answered 200 by the server, yet failed for the client.
    assert two.failures == vendor.failures(seen_first, seen) + 1 == 3
    assert two.rate_limited == vendor.rate_limited(seen_first, seen) == 0
    assert two.retries == two.requests - 6 == 2  # six polls, one call each, the rest retries
    latencies = second.latencies.since(first.latencies)
    assert latencies.calls == 5  # the 200s answered in time
    p50, p99 = latencies.percentile(0.5), latencies.percentile(0.99)
    assert p50 is not None
    assert p50 < SLOW_S * 1000 / 2
    assert p99 is not None
    assert p99 >= SLOW_S * 1000 * (1 - LATENCY_RELATIVE_ERROR)  # no faster than the server slept
    assert second.latency_p99_ms is not None
    assert second.latency_p99_ms >= p99


class Drain:
    async def send_all(self, chunks: asyncio.Queue[Chunk | None]) -> None:
        while await chunks.get() is not None:
            pass


class Reports:
    def __init__(self) -> None:
        self.intervals: list[HealthInterval] = []

    async def report(self, command_id: str, source_id: str, interval: HealthInterval) -> bool:
        self.intervals.append(interval)
        return True


async def test_a_live_feeds_reports_add_up_to_what_the_server_saw(httpserver: HTTPServer) -> None:
    vendor = Vendor([(429, 0.0), (503, 0.0), (200, 0.0)])
    reports = Reports()
    runner = FeedRunner(Drain(), reporter=reports, health_interval_s=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(
        runner.run_live([Feed("poll", poller(httpserver, vendor), "p")], stop)
    )
    for _ in range(100):
        if len(vendor.statuses) == 3 and len(reports.intervals) >= 3:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await running
    assert len(reports.intervals) >= 3
    totals = [sum(getattr(i, name) for i in reports.intervals) for name in ("requests", "failures", "rate_limited", "retries")]  # fmt: skip
    assert totals == [3, vendor.failures(0, 3), vendor.rate_limited(0, 3), 2] == [3, 2, 1, 2]
    ends = [i.end_us for i in reports.intervals]
    assert [i.start_us for i in reports.intervals[1:]] == ends[:-1]  # contiguous intervals


class TickServer:
    """Refuses the first handshake with 429; sends one tick on each connection after it, and
    drops the second connection after its tick. Counts the handshakes it saw."""

    def __init__(self) -> None:
        self.handshakes = 0
        self.refused = 0

    def process_request(self, ws: ServerConnection, request: WsRequest) -> WsResponse | None:
        self.handshakes += 1
        if self.handshakes == 1:
            self.refused += 1
            return WsResponse(429, "Too Many Requests", Headers({"Retry-After": "1"}), b"slow\n")
        return None

    async def __call__(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps([{"s": "BTC", "t": T0_MS + self.handshakes, "p": "1.5"}]))
        if self.handshakes == 2:
            ws.transport.abort()
            return
        await ws.wait_closed()


@contextlib.asynccontextmanager
async def tick_server() -> AsyncIterator[tuple[str, TickServer]]:
    handler = TickServer()
    async with serve(handler, "127.0.0.1", 0, process_request=handler.process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/", handler


async def test_websocket_attempts_refusals_and_reconnects_are_counted() -> None:
    async with tick_server() as (url, server):
        feed = WebSocketProvider(
            [TickInstrument("BTC.USD", "BTC")],
            WebSocketSettings(url=url, reconnect_first_s=0.02),
        )
        await feed.connect()
        ticks = feed.subscribe("BTC.USD")
        try:
            values = [await asyncio.wait_for(anext(ticks), 5) for _ in range(2)]
        finally:
            await feed.close()
        health = await feed.get_health()
    assert [v.time for v in values] == [(T0_MS + 2) * 1000, (T0_MS + 3) * 1000]
    assert health.requests == server.handshakes == 3
    assert (health.errors, health.rate_limited) == (server.refused, server.refused) == (1, 1)
    assert health.retries == 2  # the attempt after the 429, and the reconnect after the drop
    assert health.latencies.calls == 2  # the handshakes that succeeded
