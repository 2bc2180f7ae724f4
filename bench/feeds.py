"""Feed benchmark (run: python -m bench.feeds [--points N] [--seconds S]).

A real qis-command process (SQLite event store, fresh directory) fed by the feed runner of
qis-feeds in this process, measured in one run:

1. raw: the same points, cut into the same 1,000-point chunks and encoded beforehand, sent
   through one BulkIngest stream with the sender's window: what the service takes;
2. history: the synthetic feed's history of those points through the whole runner (normalise,
   bounded queue, batcher with content-derived ids, sender), on a fresh series: its ratio to 1
   is the runner's own cost;
3. live: the synthetic feed offered at 10,000 and 100,000 points a second for S seconds each
   (1,000-point bursts on schedule), batched by size and by 100 ms: the rate sustained, the
   points still unanswered at the end, and this process's peak RSS.

Not measured here: ingest-to-subscriber latency (it needs the projector and the query service)
and memory under a slow service (tests/feeds/test_feeds_runner.py holds the bound).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc.aio
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2, values_pb2
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, SenderSettings, encode
from qis_feeds.adapters.synthetic import SyntheticProvider, Walk
from qis_feeds.application.batching import Batcher
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import RawValue, ValueKind, normalise
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth
from qis_feeds.application.runner import Feed, FeedRunner, RunnerSettings

from bench.support import USER, free_port, own_peak_rss_mb, process, rate, wait_serving

SOURCE = "bench-feed"
START = datetime(2020, 1, 1, tzinfo=UTC)
METADATA = USER


async def define(stub: pb_grpc.CommandServiceAsyncStub, series_id: str) -> None:
    await stub.DefineSeries(
        pb.DefineSeriesRequest(
            command_id=f"def-{series_id}",
            series_id=series_id,
            series=series_pb2.Series(
                data_type=values_pb2.DATA_TYPE_PRICE,
                frequency=series_pb2.FREQUENCY_SECOND,
                unit="USD",
                sources=[series_pb2.SeriesSource(source=f"sources/{SOURCE}", priority=1)],
            ),
        ),
        metadata=METADATA,
    )


def provider(series_id: str) -> SyntheticProvider:
    return SyntheticProvider([Walk(series_id)], random.Random(1), step=timedelta(seconds=1))


async def raw(stub: pb_grpc.CommandServiceAsyncStub, points: int) -> float:
    series_id = "BENCH.RAW"
    await define(stub, series_id)
    batcher = Batcher(1_000, None, FeedCounters())
    chunks = []
    for value in provider(series_id).values(series_id, int(START.timestamp()) * 10**6, points):
        chunks += batcher.add(normalise(value, SOURCE, ValueKind.PRICE))
    chunks += batcher.drain()
    requests = [encode(chunk) for chunk in chunks]
    started = time.perf_counter()
    call = stub.BulkIngest(metadata=METADATA)
    window = asyncio.Semaphore(8)

    async def write() -> None:
        for request in requests:
            await window.acquire()
            await call.write(request)
        await call.done_writing()

    writer = asyncio.create_task(write())
    async for _ in call:
        window.release()
    await writer
    return time.perf_counter() - started


async def history(stub: pb_grpc.CommandServiceAsyncStub, points: int) -> tuple[float, FeedCounters]:
    series_id = "BENCH.HIST"
    await define(stub, series_id)
    counters = FeedCounters()
    runner = FeedRunner(BulkIngestSender(stub, METADATA, counters), RunnerSettings(), counters)
    request = HistoricalRequest((series_id,), START, START + timedelta(seconds=points))
    started = time.perf_counter()
    await runner.load_history(Feed("bench", provider(series_id), SOURCE), request)
    return time.perf_counter() - started, counters


class Offered:
    """The synthetic feed at a fixed offered rate: bursts of 1,000 points on schedule."""

    name = "offered"

    def __init__(self, series_id: str, per_second: int) -> None:
        self._series_id = series_id
        self._per_second = per_second
        self._walk = provider(series_id)
        self.kinds: Mapping[str, ValueKind] = {series_id: ValueKind.PRICE}
        self.offered = 0

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get_health(self) -> ProviderHealth:
        return ProviderHealth(connected=True)

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        began = time.perf_counter()
        first_us = int(START.timestamp()) * 10**6
        for value in self._walk.values(series_id, first_us, None):
            yield value
            self.offered += 1
            if self.offered % 1_000 == 0:
                ahead = self.offered / self._per_second - (time.perf_counter() - began)
                await asyncio.sleep(max(0.0, ahead))


async def live(stub: pb_grpc.CommandServiceAsyncStub, per_second: int, seconds: float) -> str:
    series_id = f"BENCH.LIVE.{per_second}"
    await define(stub, series_id)
    counters = FeedCounters()
    sender = BulkIngestSender(stub, METADATA, counters, SenderSettings())
    runner = FeedRunner(sender, RunnerSettings(), counters)
    source = Offered(series_id, per_second)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run_live([Feed("live", source, SOURCE)], stop))
    await asyncio.sleep(seconds)
    unanswered = counters.received - counters.sent
    sent = counters.sent
    stop.set()
    await task
    return (
        f"offered {per_second:>7,}/s: sustained {rate(sent, seconds)}, unanswered at the end"
        f" {unanswered:,}, peak RSS {own_peak_rss_mb():.0f} MiB"
    )


async def main(points: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        address = f"127.0.0.1:{free_port()}"
        env = {"QIS_DATA_DIR": directory, "QIS_COMMAND_ADDRESS": address}
        with process("qis-command", env, Path(directory) / "command.log"):
            wait_serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                stub: pb_grpc.CommandServiceAsyncStub = pb_grpc.CommandServiceStub(channel)
                await stub.RegisterDataSource(
                    pb.RegisterDataSourceRequest(
                        command_id="reg",
                        source_id=SOURCE,
                        source=series_pb2.DataSource(provider="synthetic"),
                    ),
                    metadata=METADATA,
                )
                raw_s = await raw(stub, points)
                print(f"raw BulkIngest      {rate(points, raw_s)}  ({points:,} points)")
                feed_s, counters = await history(stub, points)
                print(
                    f"feed history load   {rate(counters.sent, feed_s)}  ratio to raw"
                    f" {raw_s / feed_s:.2f}  ({counters.summary()})"
                )
                for offered in (10_000, 100_000):
                    print(await live(stub, offered, seconds))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.points, args.seconds))
