"""The ports of the feed runner: a DataProvider on one side (the architecture document's
interface: connect, subscribe, request_historical, get_health), a ChunkSender (the command
API's BulkIngest) on the other.

request_historical yields raw values as the vendor's pages come, rather than returning one list
as the architecture document's sketch does: a long history then never sits in memory whole, and
a slow command service slows the paging (the runner's queue is bounded).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qis_feeds.application.batching import Chunk
from qis_feeds.application.counters import Latencies
from qis_feeds.application.points import RawValue, ValueKind


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    series_ids: tuple[str, ...]
    """Series of the provider's instruments to load; empty: all of them."""
    start: datetime
    end: datetime
    """Values with start <= time < end."""


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """Every count is of the provider's whole life and only grows: an interval's counts are the
    difference of two readings, so any number of readers (the health reports, the health
    endpoint) may read without disturbing one another."""

    connected: bool
    requests: int = 0
    """Calls made to the vendor (HTTP requests, connection attempts), for cost and rate
    accounting; retries included."""
    errors: int = 0
    """Of `requests`, calls that failed."""
    last_success_us: int | None = None
    last_error: str = ""
    latency_ms: float | None = None
    """Of the latest successful call."""
    rate_limited: int = 0
    """Of `errors`, "too many requests" answers (HTTP 429)."""
    retries: int = 0
    """Of `requests`, calls that repeated an earlier one (attempts beyond the first, reconnects)."""
    latencies: Latencies = field(default_factory=Latencies)
    """Durations of the successful calls so far; an interval's are
    `now.latencies.since(before.latencies)`."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    """Over every successful call so far (from `latencies`); None when there was none, or the
    provider makes no calls to time."""
    last_value_us: dict[str, int] = field(default_factory=dict)
    """Per series, when the latest value arrived (wall clock, µs since the epoch): staleness."""


class DataProvider(Protocol):
    name: str
    """The provider's kind, e.g. "coingecko"."""
    kinds: Mapping[str, ValueKind]
    """Series id -> what it holds, for every instrument configured."""

    async def connect(self) -> None: ...

    def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        """New values of one series as they come, until cancelled."""
        ...

    def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]: ...

    async def get_health(self) -> ProviderHealth: ...

    async def close(self) -> None: ...


class SourceStatus(enum.StrEnum):
    """As qis.data.v1.DataSourceStatus (docs/data-sources.md)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HealthInterval:
    """What a feed's provider did over [start_us, end_us), wall clock: counts of that interval
    alone (see FeedRunner's health reports)."""

    status: SourceStatus
    start_us: int
    end_us: int
    requests: int
    failures: int
    rate_limited: int
    retries: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    last_success_us: int | None
    last_error: str
    points_received: int = 0
    """Values the feed's provider handed over in the interval, for the feed's series."""
    points_sent: int = 0
    """Points of those series the command service acknowledged in the interval."""
    instruments: tuple[tuple[str, int | None], ...] = ()
    """(series id, when its latest value arrived or None), the stalest first, at most
    MAX_REPORTED_INSTRUMENTS."""


MAX_REPORTED_INSTRUMENTS = 1_000
"""As the service bounds a report (qis.data.v1.DataSourceHealth.instruments)."""


class HealthReporter(Protocol):
    async def report(self, command_id: str, source_id: str, interval: HealthInterval) -> bool:
        """Sends the report (CommandService.ReportDataSourceHealth); False when it could not
        be recorded. Never raises: a feed goes on whatever happens to its reports."""
        ...


class ChunkSender(Protocol):
    async def send_all(self, chunks: asyncio.Queue[Chunk | None]) -> None:
        """Sends chunks from the queue until None, and returns once every chunk is answered."""
        ...
