"""Command-side ingest benchmark (run: python -m bench.ingest [--points N] [--batch N]
[--rules]).

Workload: batches of 1,000 (--batch) valid price points of one series from one source, with
the series' default rules (or, with --rules, rules and two-source reconciliation). The same
points go in both request forms: per point (`points`, one DataPoint each) and in columns
(`columns`, a PointColumns: int64 µs snaps, and the prices as decimal strings or as unscaled
integers at scale 4). Measured in one run, on fresh stores each time:

1. gRPC: a real qis-command process, fed through the BulkIngest stream (chunks pipelined) in
   each form, and through sequential unary IngestPoints calls (per point);
2. in-process: the same request messages mapped and handled by the same application code,
   without gRPC, in each form (the columnar runs must store the very events the per-point run
   stored: checked);
3. the edge alone: the request messages mapped to commands, nothing handled;
4. raw: the exact appends step 2 made, replayed straight into a fresh event store.

Beside each rate, the CPU time per point it took (of the qis-command process for gRPC, of this
process in-process): unlike a rate, other work on the machine hardly changes it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from qis_command.application.commands import DefineSeries, IngestPoints, RegisterSource
from qis_command.bootstrap import build_handlers
from qis_command.entrypoints.grpc_service import ingest_command
from qis_command.settings import CommandSettings
from qis_domain.commands import CommandContext
from qis_domain.errors import FieldViolation
from qis_runtime.logs import tune_garbage_collection

from bench.support import USER, free_port, own_peak_rss_mb, peak_rss_mb, process, rate, wait_serving

SERIES, SOURCE, SECOND_SOURCE = "BENCH.PX", "vendor", "vendor-b"
SOURCES = (SOURCE, SECOND_SOURCE)
BATCH = 1_000
BASE_S = 1_700_000_000


POINTS, TEXTS, UNSCALED = "points", "columns (texts)", "columns (unscaled)"
FORMS = (POINTS, TEXTS, UNSCALED)
SCALE = 4


def requests(
    points: int, prefix: str, rules: bool, form: str = POINTS, batch: int = BATCH
) -> list[pb.IngestPointsRequest]:
    """With `rules`, every batch comes from two sources in turn (the second within tolerance
    of the first), so every point is validated, reconciled and compared. `form`: the same
    points per point or in columns."""
    return [
        request(b, source, prefix, form, batch)
        for b in range(points // batch)
        for source in (SOURCES if rules else SOURCES[:1])
    ]


def request(
    b: int, source: str, prefix: str, form: str = POINTS, batch: int = BATCH
) -> pb.IngestPointsRequest:
    """Batch `b` of `source`: the snaps after batch b - 1's, prices cycling over 97 cents (the
    second source's within tolerance of the first's), command id "{prefix}-{source}-{b}"."""
    bump = SOURCES.index(source) / 10_000
    seconds = [BASE_S + b * batch + i for i in range(batch)]
    texts = [f"{100 + (i % 97) / 100 + bump:.{SCALE}f}" for i in range(batch)]
    out = pb.IngestPointsRequest(
        command_id=f"{prefix}-{source}-{b}", series=f"series/{SERIES}", source=f"sources/{source}"
    )
    if form == POINTS:
        out.points.extend(
            values_pb2.DataPoint(
                snap_time=timestamp_pb2.Timestamp(seconds=s),
                value=values_pb2.DataValue(price=values_pb2.Price(value=t)),
            )
            for s, t in zip(seconds, texts, strict=True)
        )
    else:
        prices = (
            values_pb2.DecimalColumn(texts=texts)
            if form == TEXTS
            else values_pb2.DecimalColumn(
                unscaled=[int(t.replace(".", "")) for t in texts], scale=SCALE
            )
        )
        out.columns.CopyFrom(
            values_pb2.PointColumns(
                snap_time_micros=[s * 1_000_000 for s in seconds], prices=prices
            )
        )
    return out


def parsed(r: pb.IngestPointsRequest) -> IngestPoints:
    """A request's command, as the command servicer maps it."""
    violations: list[FieldViolation] = []
    command = ingest_command(r, violations)
    assert not violations, violations
    assert command is not None
    return command


def definition_requests(
    rules: bool,
) -> tuple[list[pb.RegisterDataSourceRequest], pb.DefineSeriesRequest]:
    """The series' default rules, or (`rules`) positivity, jump (percent) and z-score and a
    median of two sources within 5 bps."""
    ids = SOURCES if rules else SOURCES[:1]
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def over_grpc(
    reqs: Sequence[pb.IngestPointsRequest], bulk: bool, rules: bool
) -> tuple[float, float, float]:
    """Seconds to ingest `reqs` into a fresh qis-command process, its peak RSS (MiB) and the
    CPU seconds it spent on them."""
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
                cpu = cpu_seconds(proc.pid)
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
                return elapsed, peak_rss_mb(proc.pid), cpu_seconds(proc.pid) - cpu


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
) -> tuple[float, float, list[list[StreamAppend]]]:
    """Seconds and CPU seconds to handle `reqs`, and the appends they made."""
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
        cpu = time.process_time()
        started = time.perf_counter()
        for r in reqs:
            await handlers.ingest(parsed(r), CommandContext(r.command_id, "bench", 0))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        await inner.close()
        return elapsed, cpu, store.appends


async def raw(appends: list[list[StreamAppend]]) -> tuple[float, float]:
    """Seconds and CPU seconds (the store's threads included) to replay `appends`."""
    with tempfile.TemporaryDirectory() as data:
        store = await SqliteEventStore.open(Path(data) / "events.db")
        cpu = time.process_time()
        started = time.perf_counter()
        for batch in appends:
            await store.append(batch)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        await store.close()
        return elapsed, cpu


def edge_only(reqs: Sequence[pb.IngestPointsRequest]) -> float:
    """Seconds to map the requests to their points (the edge's share of in-process)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for r in reqs:
            parsed(r)
        best = min(best, time.perf_counter() - started)
    return best


def stored(appends: list[list[StreamAppend]]) -> list[tuple[str, str, bytes]]:
    """What the appends stored, without the events' fresh ids."""
    return [(a.stream, e.type, e.data) for batch in appends for a in batch for e in a.events]


async def main(points: int, rules: bool, batch: int) -> None:
    # Rates move with what else runs on the machine (CPU times much less): say how busy it was.
    load_before = os.getloadavg()[0]
    reqs = {form: requests(points, "bench", rules, form, batch) for form in FORMS}
    n = len(reqs[POINTS]) * batch
    wire = {form: sum(r.ByteSize() for r in reqs[form]) for form in FORMS}
    t_edge = {form: edge_only(reqs[form]) for form in FORMS}
    t_inproc: dict[str, float] = {}
    cpu_inproc: dict[str, float] = {}
    appends: dict[str, list[list[StreamAppend]]] = {}
    for form in FORMS:
        t_inproc[form], cpu_inproc[form], appends[form] = await in_process(reqs[form], rules)
    same = all(stored(appends[f]) == stored(appends[POINTS]) for f in FORMS)
    t_raw, cpu_raw = await raw(appends[POINTS])
    t_bulk: dict[str, float] = {}
    rss_bulk: dict[str, float] = {}
    cpu_bulk: dict[str, float] = {}
    for form in FORMS:
        t_bulk[form], rss_bulk[form], cpu_bulk[form] = await over_grpc(
            reqs[form], bulk=True, rules=rules
        )
    t_unary, rss_unary, cpu_unary = await over_grpc(reqs[POINTS], bulk=False, rules=rules)
    events = sum(len(a.events) for made in appends[POINTS] for a in made)
    payload = sum(len(e.data) for made in appends[POINTS] for a in made for e in a.events)
    workload = (
        "two sources in turn, positivity + jump % + z-score rules, median within 5 bps"
        if rules
        else "one source, the series' default rules"
    )
    print(f"ingest benchmark: {n:,} price points in batches of {batch:,}, one series, {workload}")

    def us(cpu: float) -> str:
        return f"{cpu / n * 1e6:5.2f} CPU us/point"

    for form in FORMS:
        print(
            f"  {'gRPC BulkIngest, ' + form:<50}{rate(n, t_bulk[form])}   {us(cpu_bulk[form])}"
            f"   command peak RSS {rss_bulk[form]:.0f} MiB"
        )
    print(
        f"  {'gRPC IngestPoints (sequential), points':<50}{rate(n, t_unary)}   {us(cpu_unary)}"
        f"   command peak RSS {rss_unary:.0f} MiB"
    )
    for form in FORMS:
        print(f"  {'in-process, ' + form:<50}{rate(n, t_inproc[form])}   {us(cpu_inproc[form])}")
    for form in FORMS:
        print(
            f"  {'edge alone (request -> command), ' + form:<50}{rate(n, t_edge[form])}"
            f"   {wire[form] / n:.1f} bytes/point on the wire"
        )
    print(
        f"  {'raw append of the same events':<50}{rate(n, t_raw)}   {us(cpu_raw)}"
        f"   ({events:,} events, {payload / 1e6:.1f} MB)"
    )
    print(f"  columnar runs stored the per-point run's events: {'yes' if same else 'NO'}")

    def ratio(label: str, value: float, note: str = "") -> None:
        print(f"  {label:<50}{value:>12.2f}   {note}".rstrip())

    for form in FORMS:
        note = "(target >= 0.8)" if form != POINTS else ""
        ratio(f"gRPC bulk / in-process, {form}", t_inproc[form] / t_bulk[form], note)
    ratio("gRPC unary / in-process, points", t_inproc[POINTS] / t_unary)
    for form in (TEXTS, UNSCALED):
        ratio(f"gRPC bulk, {form} / points", t_bulk[POINTS] / t_bulk[form])
    ratio("in-process / raw append, points", t_raw / t_inproc[POINTS])
    ratio("in-process / raw append, columns (unscaled)", t_raw / t_inproc[UNSCALED])
    best_columns = max(n / t_bulk[TEXTS], n / t_bulk[UNSCALED])
    target = 100_000 if rules else 250_000
    print(
        f"  target columnar gRPC >= {target:,} points/s: "
        f"{'met' if best_columns >= target else 'NOT met'} ({best_columns:,.0f})"
    )
    if not rules:
        print(
            "  target per-point gRPC >= 100,000 points/s: "
            f"{'met' if n / t_bulk[POINTS] >= 100_000 else 'NOT met'} ({n / t_bulk[POINTS]:,.0f})"
        )
    print(f"  benchmark process peak RSS {own_peak_rss_mb():.0f} MiB")
    print(
        f"  load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after,"
        f" on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    tune_garbage_collection()  # as the qis-command process does: a like-for-like in-process run
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200_000, help="snaps (x2 with --rules)")
    parser.add_argument("--batch", type=int, default=BATCH, help="points per request (chunk)")
    parser.add_argument(
        "--rules", action="store_true", help="rules and two-source reconciliation on every point"
    )
    args = parser.parse_args()
    asyncio.run(main(args.points, args.rules, args.batch))
