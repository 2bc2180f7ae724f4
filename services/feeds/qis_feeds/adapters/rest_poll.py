"""REST polling of any JSON API that answers ticks: GET `url` every `poll_s`, with query
parameters in which {since_ms} becomes the time of the latest tick received (0 at first), and
read the ticks of the answer (the body itself, or the list under `items_field`) with the same
field mapping as WebSocket feeds (qis_feeds.adapters.ticks): a tick not newer than the latest
of its symbol, as an overlapping poll brings back, is dropped as a replay.

Calls go through JsonApi: the rate limit, retries of 429 (after Retry-After), 5xx, timeouts and
cut JSON, with jittered backoff. A poll that still fails is logged, counted in the health, and
the next poll comes `poll_s` later: a feed does not stop on a vendor's bad minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from qis_feeds.adapters.http import JsonApi, RetryPolicy, VendorError
from qis_feeds.adapters.ticks import TickFields, TickInstrument, TickReader
from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth

log = logging.getLogger("qis.feeds.rest_poll")
_PER_SERIES_QUEUE = 1_000


CALLS_PER_MINUTE = 60.0
"""The rate limit when neither the feed nor its source states one."""


@dataclass(frozen=True, slots=True)
class RestPollSettings:
    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    items_field: str = ""
    """Where the list of ticks is in the answer; "": the answer is the list (or one tick)."""
    fields: TickFields = field(default_factory=TickFields)
    poll_s: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)
    """E.g. the API key's header, its value read from the environment by the bootstrap."""
    calls_per_minute: float = CALLS_PER_MINUTE
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class RestPollProvider:
    name = "rest_poll"

    def __init__(self, instruments: Sequence[TickInstrument], settings: RestPollSettings) -> None:
        self._settings = settings
        self._ticks = TickReader(instruments, settings.fields)
        self.kinds: Mapping[str, ValueKind] = self._ticks.kinds
        parts = urlsplit(settings.url)
        self._path = parts.path.lstrip("/")
        self._api = JsonApi(
            f"{parts.scheme}://{parts.netloc}",
            settings.headers,
            settings.calls_per_minute,
            settings.retry,
        )
        self._queues: dict[str, asyncio.Queue[RawValue]] = {
            series_id: asyncio.Queue(_PER_SERIES_QUEUE) for series_id in self.kinds
        }
        self._poller: asyncio.Task[None] | None = None
        self.polls = 0

    @property
    def replayed(self) -> int:
        return self._ticks.replayed

    async def connect(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="rest-poll")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self._api.close()

    async def get_health(self) -> ProviderHealth:
        return self._api.health(self._ticks.last_value_us)

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        queue = self._queues[series_id]
        while True:
            yield await queue.get()

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        raise NotImplementedError("a polled feed has no history: load it from a REST provider")
        yield  # pragma: no cover - makes this an async generator

    async def _poll_forever(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self._settings.poll_s)

    async def poll(self) -> None:
        """One poll: its new ticks onto the series' queues (waiting while they are full)."""
        since = str(self._ticks.since_ms())
        params = {k: v.replace("{since_ms}", since) for k, v in self._settings.params.items()}
        self.polls += 1
        try:
            body: Any = await self._api.get(self._path, params)
        except VendorError as error:
            log.warning("%s: %s; next poll in %.0f s", self.name, error, self._settings.poll_s)
            return
        if self._settings.items_field:
            body = body.get(self._settings.items_field) if isinstance(body, dict) else None
        for raw in self._ticks.read(body if body is not None else []):
            await self._queues[raw.series_id].put(raw)
