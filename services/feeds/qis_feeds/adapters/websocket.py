"""A WebSocket tick feed (websockets): JSON messages of ticks, one connection for every series.

The protocol is configured, not hard-wired: after connecting, the feed sends `subscribe` (a JSON
text in which {symbols} becomes the JSON list of symbols and {since_ms} the time of the latest
tick received, 0 at first), then reads messages that are a tick object or a list of them
(qis_feeds.adapters.ticks: fields by name, replays dropped).

Disconnects: the connection is opened again after a jittered backoff (0.5 s doubling to 30 s,
back to the start once a connection delivered ticks), and the subscription asks for ticks since
the latest one received; ticks taken in time order per symbol, a resume loses nothing the
server resends and duplicates nothing it sent before.
Health: each connection attempt is a request (those after the first: retries, the reconnects),
timed to the end of its handshake; an attempt that fails (refused, timed out, a handshake
refused, with HTTP 429 counted as rate limited) is a failure. A connection that breaks after it
opened is not a failed request: the reconnect after it shows as a retry, its cause as the last
error.
Reading stops while the runner's queue is full: the socket is not read, and TCP slows the
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from qis_feeds.adapters.calls import CallStats, elapsed_ms, wall_clock_us
from qis_feeds.adapters.ticks import TickFields, TickInstrument, TickReader
from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth

log = logging.getLogger("qis.feeds.websocket")
_PER_SERIES_QUEUE = 1_000
_FAILURES = (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI)


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    url: str
    subscribe: str = ""
    fields: TickFields = field(default_factory=TickFields)
    reconnect_first_s: float = 0.5
    reconnect_cap_s: float = 30.0
    open_timeout_s: float = 10.0


class WebSocketProvider:
    name = "websocket"

    def __init__(self, instruments: Sequence[TickInstrument], settings: WebSocketSettings) -> None:
        self._settings = settings
        self._ticks_of = TickReader(instruments, settings.fields)
        self.kinds: Mapping[str, ValueKind] = self._ticks_of.kinds
        self._queues: dict[str, asyncio.Queue[RawValue]] = {
            i.series_id: asyncio.Queue(_PER_SERIES_QUEUE) for i in instruments
        }
        self._reader: asyncio.Task[None] | None = None
        self.connections = 0
        """Connections opened."""
        self._connected = False
        self._calls = CallStats()

    @property
    def replayed(self) -> int:
        return self._ticks_of.replayed

    async def connect(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="websocket")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def get_health(self) -> ProviderHealth:
        return self._calls.health(self._connected, self._ticks_of.last_value_us)

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        queue = self._queues[series_id]
        while True:
            yield await queue.get()

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        raise NotImplementedError("a WebSocket feed has no history: load it from a REST provider")
        yield  # pragma: no cover - makes this an async generator

    def _subscription(self) -> str:
        symbols = json.dumps(self._ticks_of.symbols)
        return self._settings.subscribe.replace("{symbols}", symbols).replace(
            "{since_ms}", str(self._ticks_of.since_ms())
        )

    async def _read_forever(self) -> None:
        failures = 0
        settings = self._settings
        calls = self._calls
        while True:
            delivered = False
            try:
                ws = await self._open()
            except _FAILURES as error:
                calls.failed(
                    f"{type(error).__name__}: {error}",
                    rate_limited=isinstance(error, InvalidStatus)
                    and error.response.status_code == HTTPStatus.TOO_MANY_REQUESTS,
                )
            else:
                try:
                    async with ws:
                        if settings.subscribe:
                            await ws.send(self._subscription())
                        async for message in ws:
                            delivered = True
                            calls.last_success_us = wall_clock_us()
                            for raw in self._ticks(message):
                                await self._queues[raw.series_id].put(raw)
                    calls.last_error = "the server closed the connection"
                except _FAILURES as error:
                    # The connection was made: its end is no failed request; the reconnect
                    # that follows is counted as a retry.
                    calls.last_error = f"{type(error).__name__}: {error}"
            self._connected = False
            failures = 1 if delivered else failures + 1
            ceiling = min(
                settings.reconnect_cap_s, settings.reconnect_first_s * 2 ** (failures - 1)
            )
            delay = random.uniform(ceiling / 2, ceiling)
            log.warning("%s: %s; reconnecting in %.1f s", settings.url, calls.last_error, delay)
            await asyncio.sleep(delay)

    async def _open(self) -> ClientConnection:
        """One connection attempt, a request (a retry after the first), timed to the end of the
        handshake."""
        started = self._calls.started(retry=self.connections + self._calls.failures > 0)
        ws = await connect(self._settings.url, open_timeout=self._settings.open_timeout_s)
        self._calls.succeeded(elapsed_ms(started))
        self.connections += 1
        self._connected = True
        return ws

    def _ticks(self, message: str | bytes) -> Iterator[RawValue]:
        try:
            body = json.loads(message, parse_float=Decimal)
        except ValueError:
            self._ticks_of.malformed += 1
            return
        yield from self._ticks_of.read(body)
