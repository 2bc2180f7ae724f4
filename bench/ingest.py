"""Command-side ingest benchmark (run: python -m bench.ingest [--points N]).

Workload: batches of 1,000 valid price points of one series from one source, with the series'
default rules. Measured in one run, on fresh stores each time:

1. gRPC: a real qis-command process, fed through the BulkIngest stream (chunks pipelined) and
   through sequential unary IngestPoints calls;
2. in-process: the same request messages mapped and handled by the same application code,
   without gRPC;
3. raw: the exact appends step 2 made, replayed straight into a fresh event store.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.eventstore.port import AppendResult, EventStore, StreamAppend
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.proto.definitions import series_from_proto, source_from_proto
from qis_adapters.proto.values import points_from_proto
from qis_command.application.commands import DefineSeries, IngestPoints, RegisterSource
from qis_command.bootstrap import build_handlers
from qis_command.settings import CommandSettings
from qis_domain.commands import CommandContext
from qis_domain.errors import FieldViolation
from qis_runtime.logs import tune_garbage_collection

from bench.support import USER, free_port, own_peak_rss_mb, peak_rss_mb, process, rate, wait_serving

SERIES, SOURCE, SECOND_SOURCE = "BENCH.PX", "vendor", "vendor-b"
BATCH = 1_000
BASE_S = 1_700_000_000


def requests(points: int, prefix: str, rules: bool) -> list[pb.IngestPointsRequest]:
    """With `rules`, every batch comes from two sources in turn (the second within tolerance
    of the first), so every point is validated, reconciled and compared."""
    sources = [(SOURCE, 0.0), (SECOND_SOURCE, 0.0001)] if rules else [(SOURCE, 0.0)]
    out = []
    for b in range(points // BATCH):
        for source, bump in sources:
            batch = [
                values_pb2.DataPoint(
                    snap_time=timestamp_pb2.Timestamp(seconds=BASE_S + b * BATCH + i),
                    value=values_pb2.DataValue(
                        price=values_pb2.Price(value=f"{100 + (i % 97) / 100 + bump:.4f}")
                    ),
                )
                for i in range(BATCH)
            ]
            out.append(
                pb.IngestPointsRequest(
                    command_id=f"{prefix}-{source}-{b}",
                    series=f"series/{SERIES}",
                    source=f"sources/{source}",
                    points=batch,
                )
            )
    return out


def definition_requests(
    rules: bool,
) -> tuple[list[pb.RegisterDataSourceRequest], pb.DefineSeriesRequest]:
    """The series' default rules, or (`rules`) positivity, jump (percent) and z-score and a
    median of two sources within 5 bps."""
    ids = [SOURCE, SECOND_SOURCE] if rules else [SOURCE]
    sources = [
        pb.RegisterDataSourceRequest(
            command_id=f"bench-source-{i}",
            source_id=i,
            source=series_pb2.DataSource(provider="synthetic"),
        )
        for i in ids
    ]
    series = series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=series_pb2.FREQUENCY_SECOND,
        unit="USD",
        sources=[
            series_pb2.SeriesSource(source=f"sources/{i}", priority=n + 1)
            for n, i in enumerate(ids)
        ],
    )
    if rules:
        series.validation.CopyFrom(
            series_pb2.ValidationRules(
                require_positive=True, max_jump_percent="10", max_zscore="50", zscore_window=20
            )
        )
        series.reconciliation.CopyFrom(
            series_pb2.ReconciliationPolicy(
                method=series_pb2.RECONCILIATION_METHOD_MEDIAN, tolerance_bps="5"
            )
        )
    return sources, pb.DefineSeriesRequest(
        command_id="bench-series", series_id=SERIES, series=series
    )


async def over_grpc(
    reqs: Sequence[pb.IngestPointsRequest], bulk: bool, rules: bool
) -> tuple[float, float]:
    """Seconds to ingest `reqs` into a fresh qis-command process, and its peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as data:
        address = f"127.0.0.1:{free_port()}"
        env = {"QIS_DATA_DIR": data, "QIS_COMMAND_ADDRESS": address, "QIS_LOG_LEVEL": "WARNING"}
        with process("qis-command", env, Path(data) / "command.log") as proc:
            await asyncio.to_thread(wait_serving, address)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.CommandServiceStub(channel)
                sources, series = definition_requests(rules)
                for source in sources:
                    await stub.RegisterDataSource(source, metadata=USER)
                await stub.DefineSeries(series, metadata=USER)
                started = time.perf_counter()
                if bulk:
                    acks = 0

                    async def chunks() -> AsyncIterator[pb.IngestPointsRequest]:
                        for r in reqs:
                            yield r

                    async for ack in stub.BulkIngest(chunks(), metadata=USER):
                        if ack.WhichOneof("outcome") != "result":
                            raise RuntimeError(f"chunk rejected: {ack}")
                        acks += 1
                    assert acks == len(reqs)
                else:
                    for r in reqs:
                        await stub.IngestPoints(r, metadata=USER)
                elapsed = time.perf_counter() - started
                return elapsed, peak_rss_mb(proc.pid)


class RecordingStore:
    """Passes appends through to a real store and keeps them for the raw replay."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.appends: list[list[StreamAppend]] = []

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        self.appends.append(list(appends))
        return await self.inner.append(appends)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def in_process(
    reqs: Sequence[pb.IngestPointsRequest], rules: bool
) -> tuple[float, list[list[StreamAppend]]]:
    with tempfile.TemporaryDirectory() as data:
        inner = await SqliteEventStore.open(Path(data) / "events.db")
        store = RecordingStore(inner)
        handlers = build_handlers(store, CommandSettings())  # type: ignore[arg-type]
        sources, series = definition_requests(rules)
        for source in sources:
            await handlers.register_source(
                RegisterSource(source.source_id, source_from_proto(source.source)),
                CommandContext(source.command_id, "bench", 0),
            )
        await handlers.define_series(
            DefineSeries(SERIES, series_from_proto(series.series)), CommandContext("d", "bench", 0)
        )
        store.appends.clear()
        started = time.perf_counter()
        for r in reqs:
            violations: list[FieldViolation] = []
            points = points_from_proto(r.points, violations)
            assert not violations
            source_id = r.source.removeprefix("sources/")
            await handlers.ingest(
                IngestPoints(SERIES, source_id, points), CommandContext(r.command_id, "bench", 0)
            )
        elapsed = time.perf_counter() - started
        await inner.close()
        return elapsed, store.appends


async def raw(appends: list[list[StreamAppend]]) -> float:
    with tempfile.TemporaryDirectory() as data:
        store = await SqliteEventStore.open(Path(data) / "events.db")
        started = time.perf_counter()
        for batch in appends:
            await store.append(batch)
        elapsed = time.perf_counter() - started
        await store.close()
        return elapsed


async def main(points: int, rules: bool) -> None:
    reqs = requests(points, "bench", rules)
    n = len(reqs) * BATCH
    t_inproc, appends = await in_process(reqs, rules)
    t_raw = await raw(appends)
    t_bulk, rss_bulk = await over_grpc(reqs, bulk=True, rules=rules)
    t_unary, rss_unary = await over_grpc(reqs, bulk=False, rules=rules)
    events = sum(len(a.events) for batch in appends for a in batch)
    payload = sum(len(e.data) for batch in appends for a in batch for e in a.events)
    workload = (
        "two sources in turn, positivity + jump % + z-score rules, median within 5 bps"
        if rules
        else "one source, the series' default rules"
    )
    print(f"ingest benchmark: {n:,} price points in batches of {BATCH:,}, one series, {workload}")
    print(
        f"  {'gRPC BulkIngest (pipelined)':<36}{rate(n, t_bulk)}   command peak RSS {rss_bulk:.0f} MiB"
    )
    print(
        f"  {'gRPC IngestPoints (sequential)':<36}{rate(n, t_unary)}   command peak RSS {rss_unary:.0f} MiB"
    )
    print(f"  {'in-process (same requests, no gRPC)':<36}{rate(n, t_inproc)}")
    print(
        f"  {'raw append of the same events':<36}{rate(n, t_raw)}   ({events:,} events, {payload / 1e6:.1f} MB)"
    )
    print(f"  ratio gRPC bulk / in-process      {t_inproc / t_bulk:.2f}   (target >= 0.67)")
    print(f"  ratio gRPC unary / in-process     {t_inproc / t_unary:.2f}")
    print(f"  ratio in-process / raw append     {t_raw / t_inproc:.2f}")
    print(
        f"  target >= 100,000 points/s over gRPC: {'met' if n / t_bulk >= 100_000 else 'NOT met'}"
    )
    print(f"  benchmark process peak RSS {own_peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    tune_garbage_collection()  # as the qis-command process does: a like-for-like in-process run
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200_000, help="snaps (x2 with --rules)")
    parser.add_argument(
        "--rules", action="store_true", help="rules and two-source reconciliation on every point"
    )
    args = parser.parse_args()
    asyncio.run(main(args.points, args.rules))
