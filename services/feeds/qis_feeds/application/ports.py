"""The ports of the feed runner: a DataProvider on one side (the architecture document's
interface: connect, subscribe, request_historical, get_health), a ChunkSender (the command
API's BulkIngest) on the other.

request_historical yields raw values as the vendor's pages come, rather than returning one list
as the architecture document's sketch does: a long history then never sits in memory whole, and
a slow command service slows the paging (the runner's queue is bounded).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qis_feeds.application.batching import Chunk
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
    connected: bool
    requests: int = 0
    """Calls made to the vendor (HTTP requests, connections), for cost and rate accounting."""
    errors: int = 0
    last_success_us: int | None = None
    last_error: str = ""
    latency_ms: float | None = None
    """Of the latest successful call."""
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


class ChunkSender(Protocol):
    async def send_all(self, chunks: asyncio.Queue[Chunk | None]) -> None:
        """Sends chunks from the queue until None, and returns once every chunk is answered."""
        ...
