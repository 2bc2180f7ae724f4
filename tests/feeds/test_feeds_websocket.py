"""The WebSocket feed against a local WebSocket server: ticks, a dropped connection, a reconnect
with backoff, and a resume that neither loses nor repeats a tick, on to the real command
service."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal

from qis_feeds.adapters.bulk_ingest import BulkIngestSender
from qis_feeds.adapters.ticks import TickInstrument
from qis_feeds.adapters.websocket import WebSocketProvider, WebSocketSettings
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import RawValue
from qis_feeds.application.runner import Feed, FeedRunner, RunnerSettings
from websockets.asyncio.server import ServerConnection, serve

from tests.feeds.feeds_support import FEEDER, command_service, define_series

T0 = 1_717_200_000_000  # ms
TICKS = [(symbol, T0 + i * 1_000, f"{100 + i}.{n}5") for i in range(20) for n, symbol in enumerate(("BTC", "ETH"))]  # fmt: skip


class TickServer:
    """Sends the ticks after the subscription's `since`; drops the first connection without a
    close frame after 9 ticks; on a resume, sends the last 3 ticks before `since` again (as a
    server that resends to be safe) before going on."""

    def __init__(self) -> None:
        self.subscriptions: list[dict[str, object]] = []

    async def __call__(self, ws: ServerConnection) -> None:
        subscription = json.loads(await ws.recv())
        self.subscriptions.append(subscription)
        since = int(subscription["since"])
        await ws.send(json.dumps({"event": "subscribed", "symbols": subscription["symbols"]}))
        ticks = [t for t in TICKS if t[1] > since]
        if since:
            ticks = [t for t in TICKS if t[1] <= since][-3:] + ticks
        for number, (symbol, at, price) in enumerate(ticks):
            if len(self.subscriptions) == 1 and number == 9:
                ws.transport.abort()  # the network drops: no close frame
                return
            await ws.send(f'[{{"s":"{symbol}","t":{at},"p":{price}}}]')
        await ws.wait_closed()


@contextlib.asynccontextmanager
async def tick_server() -> AsyncIterator[tuple[str, TickServer]]:
    handler = TickServer()
    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ticks", handler


def provider(url: str) -> WebSocketProvider:
    settings = WebSocketSettings(
        url=url,
        subscribe='{"op":"subscribe","symbols":{symbols},"since":{since_ms}}',
        reconnect_first_s=0.05,
    )
    return WebSocketProvider(
        [TickInstrument("BTC.USD", "BTC"), TickInstrument("ETH.USD", "ETH")], settings
    )


async def take(feed: WebSocketProvider, series: str, count: int) -> list[RawValue]:
    out = []
    async for value in feed.subscribe(series):
        out.append(value)
        if len(out) == count:
            return out
    raise AssertionError("the subscription ended")


async def test_a_dropped_connection_resumes_without_loss_or_duplicate() -> None:
    async with tick_server() as (url, server):
        feed = provider(url)
        await feed.connect()
        try:
            btc, eth = await asyncio.wait_for(
                asyncio.gather(take(feed, "BTC.USD", 20), take(feed, "ETH.USD", 20)), 10
            )
        finally:
            await feed.close()
    assert [(v.time, v.value) for v in btc] == [
        (at * 1_000, Decimal(price)) for symbol, at, price in TICKS if symbol == "BTC"
    ]
    assert [v.time for v in eth] == [at * 1_000 for symbol, at, _ in TICKS if symbol == "ETH"]
    assert feed.connections == 2
    # Nine ticks made it before the drop (BTC and ETH of 4 seconds, and BTC of the 5th): the
    # resume asks from the older of the two latest (ETH's), so the 5th second's BTC comes again,
    # after the three the server resends: four replays, dropped.
    assert [s["since"] for s in server.subscriptions] == [0, T0 + 3_000]
    assert feed.replayed == 4
    health = await feed.get_health()
    # Two connections made, none refused: the drop shows as the reconnect, a retry.
    assert (health.requests, health.errors, health.retries) == (2, 0, 1)


async def test_ticks_reach_the_command_service_once_across_the_reconnect() -> None:
    async with tick_server() as (url, _), command_service() as served:
        for series in ("BTC.USD", "ETH.USD"):
            await define_series(served.stub, series, "ws")
        counters = FeedCounters()
        sender = BulkIngestSender(served.stub, FEEDER, counters)
        runner = FeedRunner(sender, RunnerSettings(batch_delay_s=0.05), counters)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run_live([Feed("ticks", provider(url), "ws")], stop))
        for _ in range(200):
            if counters.sent >= 40:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
    assert (counters.received, counters.sent, counters.accepted) == (40, 40, 40)
    assert counters.duplicates == counters.dropped == 0
