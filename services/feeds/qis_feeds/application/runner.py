"""The feed runner: providers -> bounded queue of points -> batcher -> ChunkSender.

Three kinds of task share one event loop: a pump per provider stream (it normalises each raw
value and puts the point on a bounded queue), one collector (it batches points into chunks and
puts closed chunks on a second, small bounded queue), and the sender (BulkIngest, a bounded
window of unacknowledged chunks). Every queue is bounded, so a slow command service fills the
window, then the chunk queue, then the point queue, and then a pump waits on `put`: the provider
is slowed (a WebSocket stops being read, a REST provider fetches no further page) and memory
stays within queue_points + (chunk_queue + window + open chunks) x batch_points points.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from qis_feeds.application.batching import Batcher, Chunk
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import Malformed, Point, RawValue, normalise
from qis_feeds.application.ports import (
    MAX_REPORTED_INSTRUMENTS,
    ChunkSender,
    DataProvider,
    HealthInterval,
    HealthReporter,
    HistoricalRequest,
    ProviderHealth,
    SourceStatus,
)

log = logging.getLogger("qis.feeds")
_RESUBSCRIBE_FIRST_S = 1.0
_RESUBSCRIBE_CAP_S = 60.0
HEALTH_INTERVAL_S = 30.0
"""How often a live feed reports its source's health, by default (QIS_FEEDS_HEALTH_REPORT_S)."""
_HEALTH_IDS = uuid.UUID("5f0c1d8e-8a43-4c1b-9d62-3b7e2f1a9c04")
"""Namespace of the health reports' command ids (uuid5 of feed, source and interval)."""


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    batch_points: int = 1_000
    """A chunk closes at this many points (QIS_FEEDS_BATCH_POINTS)."""
    batch_delay_s: float = 0.1
    """... or when its first point waited this long, in live feeds (QIS_FEEDS_BATCH_DELAY_S)."""
    queue_points: int = 10_000
    """Points normalised and waiting for the collector (QIS_FEEDS_QUEUE_POINTS)."""
    chunk_queue: int = 2
    """Closed chunks waiting for a place in the sender's window."""


@dataclass(frozen=True, slots=True)
class Feed:
    name: str
    provider: DataProvider
    source_id: str


PointQueue = asyncio.Queue[Point | None]
Pump = Callable[[PointQueue], Awaitable[None]]
"""Reads one provider stream into the point queue."""


class ProviderFailed(Exception):
    """A history load stopped on a provider error; what was sent before is committed."""


def wall_clock_us() -> int:
    return time.time_ns() // 1_000


@dataclass
class _Watched:
    """A live feed whose source's health is reported: its provider's counts when its current
    interval began."""

    feed: Feed
    start_us: int
    before: ProviderHealth
    points_before: tuple[int, int] = (0, 0)
    """(received, sent) of the feed's series when the interval began."""


def health_interval(
    before: ProviderHealth, now: ProviderHealth, start_us: int, end_us: int
) -> HealthInterval:
    """The interval between two readings of a provider's cumulative counts. Each count is kept
    within the one it is part of (a connection error may be counted without a request)."""
    requests = max(0, now.requests - before.requests)
    failures = min(requests, max(0, now.errors - before.errors))
    rate_limited = min(failures, max(0, now.rate_limited - before.rate_limited))
    retries = min(requests, max(0, now.retries - before.retries))
    latencies = now.latencies.since(before.latencies)  # the interval's calls, not since start
    if not now.connected or (requests and failures == requests):
        status = SourceStatus.DOWN
    elif failures or retries:
        status = SourceStatus.DEGRADED
    else:
        status = SourceStatus.HEALTHY
    return HealthInterval(
        status=status,
        start_us=start_us,
        end_us=end_us,
        requests=requests,
        failures=failures,
        rate_limited=rate_limited,
        retries=retries,
        latency_p50_ms=latencies.percentile(0.5),
        latency_p99_ms=latencies.percentile(0.99),
        last_success_us=now.last_success_us,
        last_error=now.last_error,
    )


def freshness(
    series_ids: Iterable[str], last_value_us: Mapping[str, int]
) -> tuple[tuple[str, int | None], ...]:
    """Each series with when its latest value came, the stalest first (none yet: first of
    all), at most MAX_REPORTED_INSTRUMENTS: those a reader most needs to see."""
    found = [(s, last_value_us.get(s)) for s in series_ids]
    found.sort(key=lambda item: (item[1] is not None, item[1] or 0, item[0]))
    return tuple(found[:MAX_REPORTED_INSTRUMENTS])


class FeedRunner:
    def __init__(
        self,
        sender: ChunkSender,
        settings: RunnerSettings | None = None,
        counters: FeedCounters | None = None,
        *,
        reporter: HealthReporter | None = None,
        health_interval_s: float = HEALTH_INTERVAL_S,
        clock_us: Callable[[], int] = wall_clock_us,
    ) -> None:
        """`reporter`: where live feeds report their sources' health every
        `health_interval_s` (and once more when they stop); None: they do not."""
        self._sender = sender
        self._settings = settings or RunnerSettings()
        self.counters = counters or FeedCounters()
        self._reporter = reporter
        self._health_interval_s = health_interval_s
        self._clock_us = clock_us
        self._stranded: list[Point] = []
        self._hold_back = False

    async def load_history(self, feed: Feed, request: HistoricalRequest) -> FeedCounters:
        """One history load, chunked on size only: the same load makes the same chunks, so a
        re-run (after a failure, or by mistake) is answered with duplicates."""
        await feed.provider.connect()
        failure: list[BaseException] = []

        async def pump(points: PointQueue) -> None:
            try:
                await self._pump(feed, feed.provider.request_historical(request), points)
            except Exception as error:
                # The full chunks fetched before still go out, the partial ones do not: the
                # re-run then makes the same chunks, and finds the first ones stored.
                failure.append(error)
                self._hold_back = True

        try:
            await self._run([pump], max_delay_s=None, stop=None)
        finally:
            await feed.provider.close()
        if failure:
            raise ProviderFailed(f"{feed.name}: {failure[0]}") from failure[0]
        return self.counters

    async def run_live(self, feeds: Sequence[Feed], stop: asyncio.Event) -> FeedCounters:
        """Every series of every feed, until `stop` is set; then what was received is sent."""
        pumps: list[Pump] = []
        for feed in feeds:
            await feed.provider.connect()
            pumps.extend(self._follower(feed, series_id) for series_id in feed.provider.kinds)
        watched = [await self._watch(feed) for feed in feeds] if self._reporter else []
        stopping = asyncio.Event()
        reporting = asyncio.create_task(self._report_every(watched, stopping), name="health")
        try:
            await self._run(pumps, self._settings.batch_delay_s, stop)
            stopping.set()
            await reporting  # its last report, of the shorter interval up to now
        finally:
            await _cancel(reporting)
            for feed in feeds:
                await feed.provider.close()
        return self.counters

    async def _watch(self, feed: Feed) -> _Watched:
        """The feed's baseline: its provider's counts now (none readable: zero)."""
        try:
            before = await feed.provider.get_health()
        except Exception:
            before = ProviderHealth(connected=False)
        return _Watched(feed, self._clock_us(), before, self._points(feed))

    def _points(self, feed: Feed) -> tuple[int, int]:
        """(received, sent) so far of the feed's series from its source."""
        keys = [(feed.source_id, series_id) for series_id in feed.provider.kinds]
        counters = self.counters
        return (
            sum(counters.received_by[k] for k in keys),
            sum(counters.sent_by[k] for k in keys),
        )

    async def _report_every(self, watched: Sequence[_Watched], stopping: asyncio.Event) -> None:
        """A report every interval, and one more once `stopping` is set. Never cancelled
        while a report is on its way (in the normal course): a report the service recorded
        but this side did not see through would be sent again for an overlapping interval."""
        while watched and not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._health_interval_s):
                    await stopping.wait()
            await self._report(watched)

    async def _report(self, watched: Sequence[_Watched]) -> None:
        """One report per feed, of the interval since its last one; a provider whose health
        cannot be read is down. A report the service does not record is not sent again: the
        next one covers its own interval only (what it missed is counted here)."""
        reporter = self._reporter
        if reporter is None:
            return
        for w in watched:
            end_us = max(self._clock_us(), w.start_us + 1)
            reading: ProviderHealth | None
            try:
                now = reading = await w.feed.provider.get_health()
            except Exception as error:
                now, reading = ProviderHealth(connected=False, last_error=f"{error}"), None
            points = self._points(w.feed)
            interval = replace(
                health_interval(w.before, now, w.start_us, end_us),
                points_received=points[0] - w.points_before[0],
                points_sent=points[1] - w.points_before[1],
                instruments=freshness(w.feed.provider.kinds, now.last_value_us),
            )
            key = f"{w.feed.name}/{w.feed.source_id}/{w.start_us}/{end_us}"
            if await reporter.report(str(uuid.uuid5(_HEALTH_IDS, key)), w.feed.source_id, interval):
                self.counters.health_reports += 1
            else:
                self.counters.health_reports_failed += 1
            if reading is not None:
                w.before = reading
            w.start_us = end_us
            w.points_before = points

    def _follower(self, feed: Feed, series_id: str) -> Pump:
        async def follow(points: PointQueue) -> None:
            failures = 0
            while True:
                started = time.monotonic()
                try:
                    await self._pump(feed, feed.provider.subscribe(series_id), points)
                    return
                except Exception as error:
                    # A provider reconnects by itself where its protocol lets it resume; an
                    # error that reaches here ends its stream, which is opened again later.
                    if time.monotonic() - started > _RESUBSCRIBE_CAP_S:
                        failures = 0
                    failures += 1
                    delay = min(_RESUBSCRIBE_CAP_S, _RESUBSCRIBE_FIRST_S * 2 ** (failures - 1))
                    self.counters.last_error = f"{feed.name} {series_id}: {error}"
                    log.warning("%s; subscribing again in %.0f s", self.counters.last_error, delay)
                    await asyncio.sleep(delay)

        return follow

    async def _pump(self, feed: Feed, values: AsyncIterator[RawValue], points: PointQueue) -> None:
        kinds = feed.provider.kinds
        counters = self.counters
        async for raw in values:
            counters.received += 1
            counters.received_by[feed.source_id, raw.series_id] += 1
            kind = kinds.get(raw.series_id)
            try:
                if kind is None:
                    raise Malformed(f"{raw.series_id} is not a series of feed {feed.name}")
                point = normalise(raw, feed.source_id, kind)
            except Malformed as error:
                counters.malformed += 1
                counters.last_error = f"{feed.name}: {error}"
                log.debug("dropped: %s", counters.last_error)
                continue
            try:
                await points.put(point)
            except asyncio.CancelledError:
                # Stopped while the queue was full: the point was received, so it is sent.
                self._stranded.append(point)
                raise

    async def _run(
        self,
        pumps: Sequence[Pump],
        max_delay_s: float | None,
        stop: asyncio.Event | None,
    ) -> None:
        settings = self._settings
        self._stranded.clear()
        self._hold_back = False
        points: PointQueue = asyncio.Queue(settings.queue_points)
        chunks: asyncio.Queue[Chunk | None] = asyncio.Queue(settings.chunk_queue)
        batcher = Batcher(settings.batch_points, max_delay_s, self.counters)
        sender = asyncio.create_task(self._sender.send_all(chunks), name="sender")
        collector = asyncio.create_task(self._collect(points, chunks, batcher), name="collector")
        pumping = asyncio.create_task(_all(p(points) for p in pumps), name="pumps")
        waiters: set[asyncio.Future[Any]] = {sender, collector, pumping}
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if stopping is not None:
            waiters.add(stopping)
        try:
            # The pumps end (a history is read) or are stopped; the sender or the collector
            # ending first can only be a failure, which must not leave a pump blocked.
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in (sender, collector):
                if task in done:
                    task.result()
                    raise RuntimeError(f"the {task.get_name()} stopped before the feed")
            if pumping in done:
                pumping.result()
            await _cancel(pumping)
            for point in self._stranded:
                await points.put(point)
            self._stranded.clear()
            await points.put(None)
            await collector
            await sender
        finally:
            for pending in (pumping, collector, sender, stopping):
                if pending is not None:
                    await _cancel(pending)

    async def _collect(
        self,
        points: PointQueue,
        chunks: asyncio.Queue[Chunk | None],
        batcher: Batcher,
    ) -> None:
        while True:
            due = batcher.next_due()
            if not points.empty():
                point = points.get_nowait()  # the common case under load: no timer to set
            elif due is None:
                point = await points.get()
            else:
                try:
                    async with asyncio.timeout(max(0.0, due - time.monotonic())):
                        point = await points.get()
                except TimeoutError:
                    for chunk in batcher.due():
                        await chunks.put(chunk)
                    continue
            if point is None:
                break
            for chunk in batcher.add(point):
                await chunks.put(chunk)
            if due is not None and time.monotonic() >= due:
                # Under a steady flow the wait above never times out: the age bound is kept here.
                for chunk in batcher.due():
                    await chunks.put(chunk)
        for chunk in batcher.drain():
            if self._hold_back:
                self.counters.held_back += len(chunk.points)
            else:
                await chunks.put(chunk)
        await chunks.put(None)


async def _all(coroutines: Iterable[Awaitable[None]]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            await _cancel(task)


async def _cancel(task: asyncio.Future[Any]) -> None:
    if task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
