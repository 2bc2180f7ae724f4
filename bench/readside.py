"""Read-side benchmark (run: python -m bench.readside [--scale small|full]).

Measured in one run on the embedded SQLite stores (docs/architecture.md §3, §7), each step on fresh files:

1. projector: an event store filled through the in-process command handlers (untimed), then the
   real Projector projecting all of it into a fresh read store; every ProjectionBatch it applied
   is captured and the same rows are written again by `raw_bulk_insert` (plain executemany in one
   transaction) into a scratch file: the ratio is projector / raw;
2. range streaming: one long series written straight into the read store (untimed), a real
   qis-query process, a client streaming QueryRange (latest) with two page sizes, per point and
   in columns (VALUE_VIEW_COLUMNS), every point counted; the same servicer is then run
   in-process without gRPC (the ceiling of our code), and the store's reads alone (the ceiling
   of any view built on them);
3. as-of point lookups: 100 series with 5 % of the points restated, sequential GetValues calls
   with one snap and a random as_of_time each from a plain blocking client, every answer checked
   against the expected version; a health Check before each call on the same channel gives the
   gRPC floor of the same server at the same moment; then the same calls to the servicer
   in-process, per point and in columns;
4. ingest-to-queryable: qis-command, qis-projector and qis-query on a temp data dir, a producer
   sending IngestPoints of 10 points every 10 ms, a subscriber timestamping each point on arrival;
5. peak RSS (VmHWM) of the processes of steps 2-4, read at two data sizes to show growth, with
   the current split into anonymous memory and file-backed pages (SQLite's mmap);
6. FerretDB (functional timings only, no targets: it scans whole collections): the projector into
   MongoReadStore, with the one-time opening of its generation (registration, indexes) timed
   apart and the commands each batch costs (PyMongo command monitoring) beside the time FerretDB
   took over them; then QueryRange through a qis-query pointed at it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis.data.v1 import command_service_pb2 as cpb
from qis.data.v1 import command_service_pb2_grpc as cpb_grpc
from qis.data.v1 import query_service_pb2 as qpb
from qis.data.v1 import query_service_pb2_grpc as qpb_grpc
from qis.data.v1 import values_pb2
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.proto.times import micros, timestamp
from qis_adapters.readstore import segments
from qis_adapters.readstore.mongodb import MongoReadStore
from qis_adapters.readstore.port import (
    LATEST,
    OPEN_END,
    ProjectionBatch,
    ReadModelWriter,
    Segment,
    TopicVersion,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_projector.application.projector import Projector
from qis_query.application.ranges import SEGMENTS_PER_READ
from qis_query.bootstrap import build_handlers
from qis_query.entrypoints.grpc_service import QueryService
from qis_query.settings import QuerySettings
from qis_runtime.logs import tune_garbage_collection

from bench.ingest import SERIES, SOURCE, definition_requests
from bench.readside_data import (
    BASE_US,
    GENERATION,
    US,
    Bitemporal,
    ingest_log,
    series_batches,
    write_batches,
)
from bench.support import (
    USER,
    cpu_seconds,
    free_port,
    own_peak_rss_mb,
    process,
    wait_serving,
)

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
PROJECT_TIMEOUT_S = 900.0
QUIET = {"QIS_LOG_LEVEL": "WARNING"}
FERRET_BATCH = 100


@dataclass(frozen=True, slots=True)
class Scale:
    projector_points: int
    range_points: int
    range_warm_points: int  # a shorter series streamed first: memory at two data sizes
    asof_series: int
    asof_snaps: int
    asof_calls: int
    live_seconds: float
    ferret_points: int


SCALES = {
    "small": Scale(20_000, 100_000, 10_000, 100, 1_000, 1_000, 5.0, 1_000),
    "full": Scale(200_000, 1_000_000, 100_000, 100, 10_000, 5_000, 30.0, 10_000),
}


# --- the report -----------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    step: str
    metric: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(
        self, step: str, metric: str, value: str, target: str = "", met: bool | None = None
    ) -> None:
        self.rows.append(Row(step, metric, value, target, met))
        print(
            f"  [{step}] {metric}: {value}" + (f"   (target {target})" if target else ""),
            flush=True,
        )

    def print(self) -> None:
        rows = sorted(self.rows, key=lambda r: r.step)  # stable: each step in measuring order
        width = max((len(r.metric) for r in rows), default=10) + 2
        print(f"\n{'step':<5}{'measurement':<{width}}measured  [target: status]")
        for r in rows:
            status = "" if r.met is None else ("met" if r.met else "NOT met")
            target = f"  [{r.target}: {status}]" if r.target else ""
            print(f"{r.step:<5}{r.metric:<{width}}{r.value}{target}")


def memory(pid: int) -> str:
    """Peak RSS of a running process, and what its RSS is made of now: anonymous memory (heap)
    grows with leaks or buffering, file-backed pages (SQLite's mmap of the database) come and
    go with the page cache."""
    status = {
        k: int(v.split()[0]) / 1024
        for k, v in (
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        if k in ("VmHWM", "RssAnon", "RssFile")
    }
    return (
        f"{status['VmHWM']:.0f} MiB peak"
        f" (now anon {status['RssAnon']:.0f} + file {status['RssFile']:.0f})"
    )


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def per_s(count: float, seconds: float, unit: str = "points") -> str:
    return f"{count / seconds:,.0f} {unit}/s"


# --- step 1: projector vs raw bulk insert -----------------------------------------------------


class CountingContext:
    """Stands in for the grpc.aio context of a streaming call: counts the values written, one
    per OfficialValue or per row of columns."""

    def __init__(self) -> None:
        self.values = 0

    async def write(self, message: qpb.QueryRangeResponse) -> None:
        self.values += len(message.values) + len(message.columns.snap_time_micros)
        message.SerializeToString()  # what grpc does with it next


class CapturingWriter:
    """Passes batches through to the real read store; keeps them and the time spent in apply."""

    def __init__(self, inner: ReadModelWriter) -> None:
        self.inner = inner
        self.batches: list[ProjectionBatch] = []
        self.apply_s = 0.0

    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        started = time.perf_counter()
        await self.inner.apply(batch, checkpoint)
        self.apply_s += time.perf_counter() - started
        self.batches.append(batch)

    async def checkpoint(self) -> int | None:
        return await self.inner.checkpoint()

    async def last_segment(self, series_id: str, bucket_us: int) -> Segment | None:
        return await self.inner.last_segment(series_id, bucket_us)

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        return await self.inner.topics(at_position)


def merged(batches: list[ProjectionBatch]) -> ProjectionBatch:
    out = ProjectionBatch()
    for f in fields(ProjectionBatch):
        rows: list[object] = getattr(out, f.name)
        for batch in batches:
            rows.extend(getattr(batch, f.name))
    return out


async def project(events_path: Path, writer: ReadModelWriter, head: int) -> tuple[float, Projector]:
    events = await SqliteEventStore.open(events_path)
    try:
        projector = Projector(events, writer)
        started = time.perf_counter()
        await asyncio.wait_for(projector.run(until_position=head), PROJECT_TIMEOUT_S)
        return time.perf_counter() - started, projector
    finally:
        await events.close()


@contextlib.contextmanager
def projector_collector() -> Iterator[None]:
    """The garbage collector as the qis-projector process tunes it, for the projector step
    only: the other steps measure processes of their own, or in-process code as before.
    (With CPython's default thresholds the records of a batch in flight are rescanned by a
    full collection about once a batch: ~7 of ~28 us of CPU per point.)"""
    thresholds = gc.get_threshold()
    tune_garbage_collection()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def projector_step(scale: Scale, tmp: Path, report: Report) -> None:
    log = await ingest_log(tmp / "events.db", scale.projector_points)
    with projector_collector():  # the raw anchor too: like for like
        store = await SqliteReadStore.open(tmp / "read.db", GENERATION)
        try:
            writer = CapturingWriter(store)
            cpu = time.process_time()  # every thread: the store's writes run on its own
            elapsed, projector = await project(tmp / "events.db", writer, log.head)
            cpu = time.process_time() - cpu
        finally:
            await store.close()
        batch = merged(writer.batches)
        points = len(batch.versions)
        assert points == log.published == log.points, (points, log)
        scratch = await SqliteReadStore.open(tmp / "raw.db")
        try:
            started, raw_cpu = time.perf_counter(), time.process_time()
            rows = await scratch.raw_bulk_insert(batch, "raw")
            raw_s, raw_cpu = time.perf_counter() - started, time.process_time() - raw_cpu
        finally:
            await scratch.close()
    s = "1"
    report.add(
        s,
        "events projected",
        f"{projector.events_projected:,} events, {projector.batches:,} batches, {rows:,} rows",
    )
    report.add(
        s,
        "projector (read+decode+project+apply)",
        f"{per_s(points, elapsed)} ({elapsed:.2f} s), CPU {cpu / points * 1e6:.1f} us/point",
    )
    # The store's thread needs the GIL for every row it binds, so while the loop projects the
    # next batch the write mostly waits: apply's wall time is not its cost (CPU is).
    report.add(
        s,
        "  of which apply (wall, waits for the GIL included)",
        f"{writer.apply_s:.2f} s ({writer.apply_s / elapsed:.0%}); rest {elapsed - writer.apply_s:.2f} s",
    )
    report.add(
        s,
        "raw_bulk_insert of the same rows",
        f"{per_s(rows, raw_s, 'rows')} = {per_s(points, raw_s)} ({raw_s:.2f} s),"
        f" CPU {raw_cpu / points * 1e6:.1f} us/point",
    )
    ratio = raw_s / elapsed
    report.add(s, "ratio projector / raw", f"{ratio:.2f}", ">= 0.7", ratio >= 0.7)  # issue 10
    report.add(s, "ratio in CPU per point", f"{raw_cpu / cpu:.2f} (load {_load()})")


# --- steps 2, 3: qis-query over a prepared read store ---------------------------------------


@dataclass(frozen=True, slots=True)
class QueryProcess:
    pid: int
    address: str
    stub: qpb_grpc.QueryServiceAsyncStub


@contextlib.asynccontextmanager
async def query_process(
    data: Path, uri: str, extra: dict[str, str] | None = None
) -> AsyncIterator[QueryProcess]:
    address = f"127.0.0.1:{free_port()}"
    env = {
        "QIS_DATA_DIR": str(data),
        "QIS_READ_STORE_URI": uri,
        "QIS_QUERY_ADDRESS": address,
        "QIS_FLIGHT_ADDRESS": f"127.0.0.1:{free_port()}",
        **QUIET,
        **(extra or {}),
    }
    with process("qis-query", env, data / "query.log") as proc:
        await asyncio.to_thread(wait_serving, address)
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            yield QueryProcess(proc.pid, address, qpb_grpc.QueryServiceStub(channel))


VIEWS = {"per-point": qpb.VALUE_VIEW_POINTS, "columnar": qpb.VALUE_VIEW_COLUMNS}


async def stream_range(
    stub: qpb_grpc.QueryServiceAsyncStub,
    series_id: str,
    page: int,
    expected: int,
    view: qpb.ValueView.ValueType = qpb.VALUE_VIEW_POINTS,
) -> float:
    """Seconds to stream the whole series; checks every point arrived, once, in snap order."""
    count, last = 0, -1
    started = time.perf_counter()
    token = ""
    while True:  # a call streams a bounded number of points: continue with its token
        request = qpb.QueryRangeRequest(
            series=f"series/{series_id}", page_size=page, page_token=token, view=view
        )
        token = ""
        async for msg in stub.QueryRange(request, metadata=USER):
            if view == qpb.VALUE_VIEW_COLUMNS:
                snaps = msg.columns.snap_time_micros
                if snaps:
                    assert snaps[0] > last, "points out of order"
                    assert len(msg.columns.prices.texts) == len(snaps), "values missing"
                    last = snaps[-1]
                    count += len(snaps)
            elif msg.values:
                values = msg.values
                first = micros(values[0].snap_time)
                assert first > last, "points out of order"
                last = micros(values[-1].snap_time)
                count += len(values)
            token = msg.next_page_token
        if not token:
            break
    elapsed = time.perf_counter() - started
    assert count == expected, f"received {count:,} points, expected {expected:,}"
    assert last == BASE_US + (expected - 1) * US, "last point missing"
    return elapsed


RANGE_TARGETS = {"per-point": 500_000, "columnar": 2_000_000}  # issue 10


async def range_step(scale: Scale, tmp: Path, report: Report) -> None:
    path = tmp / "read.db"
    warm, full = "RANGE.WARM", "RANGE.PX"
    batches = _chain(
        series_batches(warm, scale.range_warm_points), series_batches(full, scale.range_points)
    )
    await write_batches(path, batches, 1)
    s = "2"
    async with query_process(tmp, f"sqlite:///{path}") as qp:
        await stream_range(qp.stub, warm, 10_000, scale.range_warm_points)
        rss_warm = memory(qp.pid)
        for page in (1_000, 10_000):
            for name, view in VIEWS.items():
                cpu = cpu_seconds(qp.pid)
                elapsed = await stream_range(qp.stub, full, page, scale.range_points, view)
                cpu_us = (cpu_seconds(qp.pid) - cpu) / scale.range_points * 1e6
                rate = scale.range_points / elapsed
                target = RANGE_TARGETS[name]
                report.add(
                    s,
                    f"QueryRange latest, page {page:,}, {name}",
                    f"{rate:,.0f} points/s ({scale.range_points:,} in {elapsed:.2f} s;"
                    f" qis-query {cpu_us:.2f} CPU us/point)",
                    f">= {target:,}/s",
                    rate >= target,
                )
        rss_full = memory(qp.pid)
    # The same servicer in this process, without gRPC: the ceiling of our own code; and the
    # store reads alone, the ceiling of any view.
    store = await SqliteReadStore.open(path)
    try:
        # One call for the whole series: the servicer's own ceiling, past the per-call cap.
        settings = QuerySettings(query_max_points_per_call=10**9, query_max_messages_per_call=10**9)
        service = QueryService(build_handlers(store, settings))
        for name, view in VIEWS.items():
            context = CountingContext()
            request = qpb.QueryRangeRequest(series=f"series/{warm}", page_size=1_000, view=view)
            started = time.perf_counter()
            await service.QueryRange(request, cast(Any, context))
            elapsed = time.perf_counter() - started
            assert context.values == scale.range_warm_points
            report.add(
                s,
                f"  same servicer in-process, no gRPC, page 1,000, {name}",
                f"{per_s(context.values, elapsed)} ({context.values:,} in {elapsed:.2f} s)",
            )
        started = time.perf_counter()
        read = await store_scan(store, warm)
        elapsed = time.perf_counter() - started
        report.add(
            s,
            "  of which the store's reads (segments, decoded and selected)",
            f"{per_s(read, elapsed)} ({read:,} in {elapsed:.2f} s)",
        )
    finally:
        await store.close()
    report.add("5", f"qis-query after streaming {scale.range_warm_points:,}", rss_warm)
    report.add("5", f"qis-query after streaming {scale.range_points:,} four more times", rss_full)


async def store_scan(store: SqliteReadStore, series_id: str) -> int:
    """Every value of the series read from its segments as QueryRange reads them (fetched,
    decoded, selected): how many."""
    count, from_bucket = 0, -(2**63)
    while True:
        found = await store.segments(series_id, from_bucket, OPEN_END, LATEST, SEGMENTS_PER_READ)
        assert found is not None
        for segment in found:
            rows = segments.decode(segment.payload)
            count += segments.select(rows, LATEST, -(2**63), OPEN_END).num_rows
        if len(found) < SEGMENTS_PER_READ:
            return count
        from_bucket = found[-1].bucket_us + 1


def _chain(*parts: Iterator[ProjectionBatch]) -> Iterator[ProjectionBatch]:
    for part in parts:
        yield from part


@dataclass(frozen=True, slots=True)
class Lookup:
    series: int
    snap: int
    known_at_us: int
    request: qpb.GetValuesRequest


def lookups(model: Bitemporal, count: int, seed: int = 11) -> list[Lookup]:
    """Half on restated points, half anywhere; as_of_time from an hour before version 1 to a day
    after the restatement, so answers are none, version 1 or version 2."""
    rng = random.Random(seed)
    restated = sorted(model.restated)
    out = []
    for i in range(count):
        if i % 2 == 0 and restated:
            s, k = rng.choice(restated)
        else:
            s, k = rng.randrange(model.series), rng.randrange(model.snaps)
        known = model.recorded_v1(k) + rng.randrange(-3_600 * US, 2 * model.RESTATE_AFTER_US)
        request = qpb.GetValuesRequest(
            series=f"series/{model.series_id(s)}",
            snap_times=[timestamp(model.snap_us(k))],
            as_of_time=timestamp(known),
        )
        out.append(Lookup(s, k, known, request))
    return out


def column_requests(lookups: list[Lookup]) -> list[qpb.GetValuesRequest]:
    """The same requests, answered in columns."""
    out = []
    for q in lookups:
        request = qpb.GetValuesRequest()
        request.CopyFrom(q.request)
        request.view = qpb.VALUE_VIEW_COLUMNS
        out.append(request)
    return out


def timed_lookups(
    address: str, warmup: list[Lookup], timed: list[Lookup]
) -> tuple[list[float], list[float], list[qpb.GetValuesResponse]]:
    """Sequential GetValues calls from a plain blocking client (the lightest Python client),
    each preceded by a health Check on the same channel: the gRPC floor of the same server at
    the same moment. Returns (lookup seconds, health seconds, answers)."""
    with grpc.insecure_channel(address) as channel:
        stub = qpb_grpc.QueryServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        ping = health_pb2.HealthCheckRequest()
        for q in warmup:
            health.Check(ping)
            stub.GetValues(q.request, metadata=USER)
        lookup_s: list[float] = []
        health_s: list[float] = []
        answers: list[qpb.GetValuesResponse] = []
        clock = time.perf_counter
        for q in timed:
            started = clock()
            health.Check(ping)
            between = clock()
            reply = stub.GetValues(q.request, metadata=USER)
            done = clock()
            health_s.append(between - started)
            lookup_s.append(done - between)
            answers.append(reply)
        return lookup_s, health_s, answers


async def asof_step(scale: Scale, tmp: Path, report: Report) -> None:
    path = tmp / "read.db"
    model = Bitemporal.make(scale.asof_series, scale.asof_snaps, 0.05)
    await write_batches(path, model.batches(), 1)
    warmup = lookups(model, 200, seed=3)
    timed = lookups(model, scale.asof_calls)
    s = "3"
    async with query_process(tmp, f"sqlite:///{path}") as qp:
        rss_before = memory(qp.pid)
        lookup_s, health_s, answers = await asyncio.to_thread(
            timed_lookups, qp.address, warmup, timed
        )
        rss_after = memory(qp.pid)
    # The same calls to the servicer in this process, without gRPC.
    store = await SqliteReadStore.open(path)
    try:
        service = QueryService(build_handlers(store, QuerySettings()))
        for q in warmup:
            await service.GetValues(q.request, cast(Any, None))
        inproc = []
        for q in timed:
            started = time.perf_counter()
            await service.GetValues(q.request, cast(Any, None))
            inproc.append((time.perf_counter() - started) * 1000)
        # The same lookups in columns: one more store read, the series' definition.
        in_columns, column_answers = [], []
        for request in column_requests(timed):
            started = time.perf_counter()
            column_answers.append(await service.GetValues(request, cast(Any, None)))
            in_columns.append((time.perf_counter() - started) * 1000)
    finally:
        await store.close()
    inproc.sort()
    in_columns.sort()
    wrong_in_columns = 0
    for q, reply in zip(timed, column_answers, strict=True):
        c = reply.columns
        got = (c.versions[0], c.prices.texts[0]) if c.versions else None
        wrong_in_columns += got != model.expected(q.series, q.snap, q.known_at_us)
    wrong, seen = 0, {0: 0, 1: 0, 2: 0}
    for q, reply in zip(timed, answers, strict=True):
        expected = model.expected(q.series, q.snap, q.known_at_us)
        got = (reply.values[0].version, reply.values[0].value.price.value) if reply.values else None
        wrong += got != expected
        seen[0 if expected is None else expected[0]] += 1
    ms = sorted(x * 1000 for x in lookup_s)
    floor = sorted(x * 1000 for x in health_s)
    report.add(
        s,
        "read model",
        f"{model.versions:,} versions ({scale.asof_series} series x {scale.asof_snaps:,} snaps,"
        f" {len(model.restated):,} restated)",
    )
    report.add(
        s,
        "GetValues as-of answers checked",
        f"{len(timed) - wrong:,}/{len(timed):,} right (expected: none {seen[0]:,},"
        f" v1 {seen[1]:,}, v2 {seen[2]:,})",
        "all right",
        wrong == 0,
    )
    p50, p90, p99 = (percentile(ms, p) for p in (50, 90, 99))
    report.add(s, "GetValues as-of p50", f"{p50:.2f} ms", "< 0.5 ms", p50 < 0.5)  # issue 10
    report.add(s, "GetValues as-of p90", f"{p90:.2f} ms")
    report.add(s, "GetValues as-of p99", f"{p99:.2f} ms", "< 2 ms", p99 < 2)
    report.add(
        s,
        "GetValues as-of max / mean",
        f"{ms[-1]:.2f} ms / {statistics.fmean(ms):.2f} ms ({len(ms):,} sequential calls)",
    )
    report.add(
        s,
        "gRPC floor: health Check p50/p99/max",
        f"{percentile(floor, 50):.2f} / {percentile(floor, 99):.2f} / {floor[-1]:.2f} ms"
        " (same server, interleaved)",
    )
    report.add(
        s,
        "  same servicer in-process, no gRPC: p50/p99",
        f"{percentile(inproc, 50):.2f} / {percentile(inproc, 99):.2f} ms",
    )
    report.add(
        s,
        "  same, columnar: p50/p99",
        f"{percentile(in_columns, 50):.2f} / {percentile(in_columns, 99):.2f} ms"
        f" ({len(timed) - wrong_in_columns:,}/{len(timed):,} right)",
        "all right",
        wrong_in_columns == 0,
    )
    report.add("5", "qis-query as-of store, idle", rss_before)
    report.add("5", f"qis-query after {len(warmup) + len(timed):,} lookups", rss_after)


# --- step 4: ingest-to-queryable latency with the three processes ---------------------------

LIVE_BATCH = 10
LIVE_PERIOD_S = 0.010
LIVE_BASE_S = 1_710_000_000


def live_request(first: int, prefix: str) -> tuple[cpb.IngestPointsRequest, list[int]]:
    snaps = [LIVE_BASE_S + first + i for i in range(LIVE_BATCH)]
    points = [
        values_pb2.DataPoint(
            snap_time=timestamp(snap * US),
            value=values_pb2.DataValue(
                price=values_pb2.Price(value=f"{100 + (snap % 97) / 100:.2f}")
            ),
        )
        for snap in snaps
    ]
    request = cpb.IngestPointsRequest(
        command_id=f"{prefix}-{first}",
        series=f"series/{SERIES}",
        source=f"sources/{SOURCE}",
        points=points,
    )
    return request, [s * US for s in snaps]


async def live_step(scale: Scale, tmp: Path, report: Report) -> None:
    data = tmp / "live"
    data.mkdir()
    roles = ("command", "projector", "query")
    addresses = {role: f"127.0.0.1:{free_port()}" for role in roles}
    env = {"QIS_DATA_DIR": str(data), **QUIET}
    env.update({f"QIS_{role.upper()}_ADDRESS": a for role, a in addresses.items()})
    batches = int(scale.live_seconds / LIVE_PERIOD_S)
    # Requests are built before the clock starts: the producer only stamps and sends.
    warm_request, warm_snaps = live_request(0, "warm")
    timed = [live_request(LIVE_BATCH * (b + 1), "live") for b in range(batches)]
    s = "4"
    with contextlib.ExitStack() as stack:
        pids = {
            role: stack.enter_context(process(f"qis-{role}", env, data / f"{role}.log")).pid
            for role in roles
        }
        for role in roles:
            await asyncio.to_thread(wait_serving, addresses[role])
        async with (
            grpc.aio.insecure_channel(addresses["command"]) as cch,
            grpc.aio.insecure_channel(addresses["query"], options=CHANNEL_OPTIONS) as qch,
        ):
            command = cpb_grpc.CommandServiceStub(cch)
            query = qpb_grpc.QueryServiceStub(qch)
            (source,), series = definition_requests(rules=False)
            a = await command.RegisterDataSource(source, metadata=USER)
            b = await command.DefineSeries(series, metadata=USER)
            head = max(a.commit_position, b.commit_position)
            arrived: dict[int, float] = {}
            progress = asyncio.Event()

            async def subscribe() -> None:
                request = qpb.SubscribeRequest(series=[f"series/{SERIES}"], after_position=head)
                async for msg in query.Subscribe(request, metadata=USER):
                    now = time.perf_counter()
                    for v in msg.values:
                        arrived.setdefault(micros(v.snap_time), now)
                    progress.set()

            subscriber = asyncio.create_task(subscribe())
            try:
                reply = await command.IngestPoints(warm_request, metadata=USER)
                assert reply.published == LIVE_BATCH, reply
                await _until(lambda: all(x in arrived for x in warm_snaps), progress, 30.0)
                sent: dict[int, float] = {}
                rss_mid: dict[str, str] = {}
                published = 0
                acks: list[float] = []
                started = time.perf_counter()
                for i, (request, snaps) in enumerate(timed):
                    delay = started + i * LIVE_PERIOD_S - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    now = time.perf_counter()
                    for snap in snaps:
                        sent[snap] = now
                    reply = await command.IngestPoints(request, metadata=USER)
                    acks.append(time.perf_counter() - now)
                    published += reply.published
                    if i == batches // 3:
                        rss_mid = {role: memory(pid) for role, pid in pids.items()}
                send_s = time.perf_counter() - started
                await _until(lambda: all(x in arrived for x in sent), progress, 30.0)
                rss_end = {role: memory(pid) for role, pid in pids.items()}
            finally:
                subscriber.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await subscriber
    latencies = sorted((arrived[x] - t) * 1000 for x, t in sent.items() if x in arrived)
    missing = len(sent) - len(latencies)
    points = len(sent)
    report.add(
        s,
        "points sent / published / received",
        f"{points:,} / {published:,} / {len(latencies):,}",
        "all received",
        missing == 0 and published == points,
    )
    rate = points / send_s
    report.add(
        s,
        "achieved ingest rate",
        f"{rate:,.0f} points/s over {send_s:.1f} s",
        ">= 950/s (1,000 asked)",
        rate >= 950,
    )
    p99 = percentile(latencies, 99)
    report.add(s, "ingest-to-subscriber p50", f"{percentile(latencies, 50):.1f} ms")
    report.add(s, "ingest-to-subscriber p99", f"{p99:.1f} ms", "< 100 ms", p99 < 100)  # issue 10
    report.add(s, "ingest-to-subscriber max", f"{latencies[-1]:.1f} ms")
    ack_ms = sorted(x * 1000 for x in acks)
    report.add(
        s,
        "  of which IngestPoints ack p50/p99/max",
        f"{percentile(ack_ms, 50):.1f} / {percentile(ack_ms, 99):.1f} / {ack_ms[-1]:.1f} ms",
    )
    for role in roles:
        report.add("5", f"qis-{role}, live run at 1/3", rss_mid[role])
        report.add("5", f"qis-{role}, live run at the end", rss_end[role])


async def _until(done: Callable[[], bool], progress: asyncio.Event, timeout_s: float) -> None:
    """Waits until `done()` holds, re-checking whenever the subscriber got something; gives up
    after `timeout_s` (what never arrived is then reported as missing)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), min(left, 0.5))


# --- step 6: FerretDB ---------------------------------------------------------------------------


async def ferret_step(scale: Scale, tmp: Path, report: Report) -> None:
    from tests.support.ferretdb import CommandLog, FerretDBError, start_ferretdb

    s = "6"
    try:
        server = await asyncio.to_thread(start_ferretdb)
    except FerretDBError as error:
        report.add(s, "FerretDB", f"skipped: {str(error).splitlines()[0]}")
        return
    try:
        log = await ingest_log(tmp / "ferret-events.db", scale.ferret_points, FERRET_BATCH)
        commands = CommandLog()
        started = time.perf_counter()
        store = await MongoReadStore.open(server.uri, "qis", GENERATION, event_listeners=[commands])
        opened_s, opening = time.perf_counter() - started, commands.take()
        try:
            writer = CapturingWriter(store)
            elapsed, projector = await project(tmp / "ferret-events.db", writer, log.head)
            projecting = commands.take()
            await store.set_active_generation(GENERATION)
        finally:
            await store.close()
        # Once per generation, not per point: apart from the rate.
        report.add(
            s,
            "open a new generation (register, indexes; once)",
            f"{opened_s:.2f} s, {len(opening)} commands",
        )
        report.add(
            s,
            "projector into MongoReadStore on FerretDB",
            f"{per_s(log.points, elapsed)} ({log.points:,} in {elapsed:.2f} s,"
            f" {projector.batches} batches)",
        )
        batches = max(projector.batches, 1)
        kinds = Counter(c.name for c in projecting)
        server_s = sum(c.seconds for c in projecting)
        report.add(
            s,
            "  of which apply (commands answered by FerretDB)",
            f"{writer.apply_s:.2f} s ({server_s:.2f} s); {len(projecting)} commands,"
            f" {len(projecting) / batches:.0f} per batch"
            f" ({', '.join(f'{n} {name}' for name, n in kinds.most_common())})",
        )
        data = tmp / "ferret-query"
        data.mkdir()
        extra = {"QIS_MONGO_DATABASE": "qis"}
        async with query_process(data, server.uri, extra) as qp:
            stub = qp.stub
            count = 0
            started = time.perf_counter()
            request = qpb.QueryRangeRequest(series=f"series/{SERIES}", page_size=1_000)
            async for msg in stub.QueryRange(request, metadata=USER):
                count += len(msg.values)
            elapsed = time.perf_counter() - started
        assert count == log.points, (count, log.points)
        report.add(
            s,
            "QueryRange latest via FerretDB, page 1,000",
            f"{per_s(count, elapsed)} ({count:,} in {elapsed:.2f} s)",
        )
    finally:
        await asyncio.to_thread(server.stop)


# --- main -----------------------------------------------------------------------------------


async def main(scale_name: str, only: str) -> None:
    scale = SCALES[scale_name]
    report = Report()
    load_before = os.getloadavg()
    started = time.perf_counter()
    print(f"read-side benchmark, scale {scale_name}: {scale}")
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load_before)} ({os.cpu_count()} CPUs)"
    )
    steps = (
        ("1 projector vs raw", projector_step),
        ("2 range streaming", range_step),
        ("3 as-of lookups", asof_step),
        ("4 ingest-to-queryable", live_step),
        ("6 FerretDB", ferret_step),
    )
    try:
        for name, step in steps:
            if only and name[0] not in only:
                continue
            step_started = time.perf_counter()
            print(f"step {name} ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="qis-readside-") as tmp:
                await step(scale, Path(tmp), report)
            print(f"  ({time.perf_counter() - step_started:.1f} s)", flush=True)
    finally:
        report.add("5", "benchmark process peak RSS", f"{own_peak_rss_mb():.0f} MiB")
        report.print()
        load_after = os.getloadavg()
        print(
            f"\nload average before {' '.join(f'{x:.2f}' for x in load_before)},"
            f" after {' '.join(f'{x:.2f}' for x in load_after)};"
            f" total {time.perf_counter() - started:.0f} s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--steps", default="", help="run only these steps, e.g. 123 (default all)")
    args = parser.parse_args()
    asyncio.run(main(args.scale, args.steps))
