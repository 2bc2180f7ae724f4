"""Arrow Flight benchmark (run: python -m bench.flight [--points 1000000]), one run:

1. one price series of `--points` points written straight into a fresh SQLite read store
   (untimed), served by a real qis-query process;
2. raw anchors, in this process: a plain sqlite3 scan of the per-point rows (every row fetched
   as a tuple), and a plain read of the current segments' payloads, each decoded into an
   Arrow table (the stored data as columns: the faster of the two, and the one the target is
   measured against), then the same decoding only the columns an export reads;
3. Flight: DoGets of the whole series into a pyarrow Table (`read_all`; the endpoint's fast
   path, qis-query giving it its read model: see qis_query.entrypoints.flight), every point
   counted and the last one checked, the best of `--repeat` (the machine is shared: the median is
   printed beside it); the ratio to the raw segment read (best of as many), against the target
   of issue 10 (>= 10,000,000 points/s or >= 0.8 of the raw scan, whichever is lower); and
   the CPU time per point of the qis-query process and of this client during the best one,
   which a busy machine changes far less than the wall time;
4. where the time goes, in this process without Flight: the application's pages alone (the
   segments as Arrow tables, through QueryHandlers.query_range call after call), then the same
   pages made into Arrow batches, then the batches of the Flight endpoint's fast path for prices
   and volumes (the segments decoded a store read at a time, no pages);
5. the write side's share: CPU time per point of making the series' segments (segments.extend
   and encode, bucket by bucket, as the projector's SegmentBuilder does), which the projector
   pays for every point it publishes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl
from google.protobuf import json_format
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import (
    LATEST,
    OPEN_END,
    OfficialVersion,
    ProjectionBatch,
    SeriesEntry,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.snaps import BUCKET_SPAN_US, Frequency
from qis_projector.application.segments import SegmentBuilder, add_segments
from qis_query.application.arrow_batches import BatchBuilder
from qis_query.application.export import (
    STORED_COLUMNS,
    ExportPage,
    ExportRequest,
    ValueColumns,
    open_export,
)
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import selection
from qis_query.application.segment_export import StoreRead, columns_read, read
from qis_query.bootstrap import build_handlers
from qis_query.settings import QuerySettings

from bench.support import cpu_seconds, free_port, process, wait_serving

SERIES = "FLIGHT.PX"
GENERATION = "g1"
BASE_US = 1_600_000_000 * 1_000_000
STEP_US = 1_000_000
WRITE_CHUNK = 50_000
USER = [(b"x-qis-user", b"bench")]
TARGET_POINTS_S = 10_000_000
TARGET_RATIO = 0.8
_VALUES = [
    values_pb2.DataValue(
        price=values_pb2.Price(value=f"{100 + i / 100:.2f}", currency="USD")
    ).SerializeToString()
    for i in range(100)
]


def batches(points: int) -> Iterator[ProjectionBatch]:
    definition = series_pb2.Series(
        name=f"series/{SERIES}",
        data_type=values_pb2.DATA_TYPE_PRICE,
        unit="USD",
        frequency=series_pb2.FREQUENCY_SECOND,
    )
    entry = SeriesEntry(SERIES, 1, json_format.MessageToDict(definition), BASE_US, 1)
    for first in range(0, points, WRITE_CHUNK):
        batch = ProjectionBatch(series=[entry] if first == 0 else [])
        batch.versions.extend(
            OfficialVersion(
                series_id=SERIES,
                snap_us=BASE_US + i * STEP_US,
                version=1,
                value=_VALUES[i % 100],
                quality_score=1.0,
                recorded_from_us=BASE_US + i * STEP_US + STEP_US,
                position_from=first // WRITE_CHUNK + 1,
                reason="",
                user_id="bench",
                command_id="bench",
                sources=("vendor",),
                method="priority",
            )
            for i in range(first, min(points, first + WRITE_CHUNK))
        )
        yield batch


async def write_store(path: Path, points: int) -> None:
    store = await SqliteReadStore.open(path, GENERATION)
    segments = SegmentBuilder(store)
    try:
        for position, batch in enumerate(batches(points), start=1):
            await store.apply(await add_segments(segments, batch, Frequency.SECOND), position)
        await store.set_active_generation(GENERATION)
    finally:
        await store.close()


def raw_scan(path: Path) -> tuple[int, float]:
    """The store's latest-range query, every row fetched as a tuple."""
    with sqlite3.connect(path) as conn:
        sql = (
            f"SELECT * FROM {GENERATION}_current WHERE series_id = ? AND snap_us >= ?"
            " AND snap_us < ? ORDER BY snap_us"
        )
        started = time.perf_counter()
        count = 0
        cursor = conn.execute(sql, (SERIES, -(2**63), 2**63 - 1))
        while rows := cursor.fetchmany(10_000):
            count += len(rows)
        return count, time.perf_counter() - started


EXPORTED = STORED_COLUMNS[ValueColumns.DECIMAL] | selection(LATEST)
"""The columns of the segments a latest price export decodes."""


def raw_segments(path: Path, columns: frozenset[str] | None = None) -> tuple[int, float]:
    """The current segments' payloads, each decoded into an Arrow table (of `columns`; None:
    all): the floor of reading the stored data as columns."""
    with sqlite3.connect(path) as conn:
        sql = (
            f"SELECT p.payload FROM {GENERATION}_segments AS s JOIN {GENERATION}_segment_payloads"
            " AS p USING (series_id, bucket_us, position_from) WHERE s.series_id = ?"
            f" AND s.position_to = {OPEN_END} ORDER BY s.bucket_us"
        )
        started = time.perf_counter()
        count = sum(
            segments.decode(payload, columns).num_rows
            for (payload,) in conn.execute(sql, (SERIES,))
        )
        return count, time.perf_counter() - started


@dataclass(frozen=True)
class FlightRead:
    table: pa.Table
    seconds: float
    server_cpu_s: float
    client_cpu_s: float


def flight_read(address: str, series_range: dict[str, object], server_pid: int) -> FlightRead:
    ticket = fl.Ticket(json.dumps({"series": [f"series/{SERIES}"], **series_range}).encode())
    with fl.FlightClient(f"grpc+tcp://{address}") as client:
        server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
        started = time.perf_counter()
        table = client.do_get(ticket, fl.FlightCallOptions(headers=USER)).read_all()
        seconds = time.perf_counter() - started
        return FlightRead(
            table,
            seconds,
            cpu_seconds(server_pid) - server_cpu,
            time.process_time() - client_cpu,
        )


def best_of(repeat: int, read: Callable[[], tuple[int, float]]) -> tuple[int, float]:
    return min((read() for _ in range(repeat)), key=lambda counted: counted[1])


async def in_process(path: Path, points: int) -> tuple[float, float, float]:
    """Seconds for the application's pages alone, for the pages made into batches, and for
    the batches of the Flight endpoint's fast path (segment_export: the same segments decoded
    a store read at a time, without pages)."""
    store = await SqliteReadStore.open(path)
    try:
        handlers = build_handlers(store, QuerySettings(auth="dev"))
        timings = []
        for make_batches in (False, True):
            started = time.perf_counter()
            export = await open_export(handlers, ExportRequest((SERIES,)))
            builder = BatchBuilder(export.series, export.columns, export.read_position)
            count = 0
            async for page in export.pages:
                if make_batches:
                    builder.batches(page)
                count += page.rows.num_rows
            timings.append(time.perf_counter() - started)
            assert count == points, (count, points)
        started = time.perf_counter()
        assert await fast_path_rows(store, handlers) == points
        return timings[0], timings[1], time.perf_counter() - started
    finally:
        await store.close()


async def fast_path_rows(store: SqliteReadStore, handlers: QueryHandlers) -> int:
    """The rows of the fast path's batches of the whole series, its store reads one after
    the other (the endpoint runs the next one while it sends these)."""
    request = ExportRequest((SERIES,))
    export = await open_export(handlers, request, from_segments=True)
    await export.pages.aclose()
    builder = BatchBuilder(export.series, export.columns, export.read_position)
    columns = columns_read(request)
    count = 0
    store_read = StoreRead.first(export.series, 0, request.start_us)
    while store_read is not None:
        decoded = await read(store, export.series, request, store_read, columns)
        assert decoded.found is not None, "a read model of segments"
        for part in decoded.parts:
            assert isinstance(part, pa.Table), "no bucket too large for a segment"
            count += sum(len(batch) for batch in builder.batches(ExportPage(0, part)))
        store_read = store_read.following(decoded.found, export.series, request.start_us)
    return count


def encode_cpu_s(points: int) -> float:
    """CPU seconds to make the series' segments from its versions, a bucket at a time."""
    versions = [v for batch in batches(points) for v in batch.versions]
    started = time.process_time()
    for first in range(0, points, BUCKET_POINTS):
        segments.encode(segments.extend(segments.EMPTY, versions[first : first + BUCKET_POINTS]))
    return time.process_time() - started


BUCKET_POINTS = BUCKET_SPAN_US[Frequency.SECOND] // STEP_US
"""Points of a bucket's span (qis_domain.snaps), as many as the projector's segments hold."""


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} points/s ({count:,} in {seconds:.2f} s)"


async def main(points: int, repeat: int) -> None:
    load_before = os.getloadavg()
    print(f"Arrow Flight benchmark: {points:,} points of one price series, SQLite read store")
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load_before)} ({os.cpu_count()} CPUs)"
    )
    with tempfile.TemporaryDirectory(prefix="qis-flight-") as tmp:
        data = Path(tmp)
        path = data / "read.db"
        started = time.perf_counter()
        await write_store(path, points)
        print(f"  written in {time.perf_counter() - started:.1f} s (untimed)")

        raw_count, raw_s = raw_scan(path)
        assert raw_count == points
        segment_count, segment_s = best_of(repeat, lambda: raw_segments(path))
        assert segment_count == points
        exported_count, exported_s = best_of(repeat, lambda: raw_segments(path, EXPORTED))
        assert exported_count == points
        address = f"127.0.0.1:{free_port()}"
        env = {
            "QIS_DATA_DIR": str(data),
            "QIS_READ_STORE_URI": f"sqlite:///{path}",
            "QIS_QUERY_ADDRESS": f"127.0.0.1:{free_port()}",
            "QIS_FLIGHT_ADDRESS": address,
            "QIS_LOG_LEVEL": "WARNING",
        }
        with process("qis-query", env, data / "query.log") as server:
            await asyncio.to_thread(wait_serving, env["QIS_QUERY_ADDRESS"])
            warm_end = BASE_US + 10_000 * STEP_US
            flight_read(address, {"end_time": _rfc3339(warm_end)}, server.pid)  # connections
            reads = [flight_read(address, {}, server.pid) for _ in range(repeat)]
        for read in reads:
            assert read.table.num_rows == points, read.table.num_rows
            last = read.table.column("snap_time")[-1].value
            assert last == BASE_US + (points - 1) * STEP_US, "last point missing"
        best = min(reads, key=lambda read: read.seconds)
        flight_s = best.seconds
        median_s = statistics.median(read.seconds for read in reads)
        pages_s, batches_s, fast_path_s = await in_process(path, points)
    encode_s = min(encode_cpu_s(points) for _ in range(repeat))

    # The anchor is the faster raw read of the same data: the stored segments.
    raw_rate, flight_rate = segment_count / segment_s, points / flight_s
    ratio = flight_rate / raw_rate
    target = min(TARGET_POINTS_S, TARGET_RATIO * raw_rate)
    print(f"raw sqlite3 scan of the per-point rows {rate(raw_count, raw_s)}")
    print(f"raw read of the segments, decoded      {rate(segment_count, segment_s)}")
    print(f"  the same, the export's columns only  {rate(exported_count, exported_s)}")
    print(f"Flight DoGet into a pyarrow Table      {rate(points, flight_s)}")
    print(f"  median of {repeat}                          {rate(points, median_s)}")
    print(
        f"  CPU per point during the best: qis-query {best.server_cpu_s / points * 1e9:.0f} ns,"
        f" this client {best.client_cpu_s / points * 1e9:.0f} ns"
        f" (the raw segment read: {segment_s / segment_count * 1e9:.0f} ns wall)"
    )
    print(
        f"  ratio to the raw segment read {ratio:.2f}; target {target:,.0f} points/s"
        f" (>= {TARGET_POINTS_S:,} or >= {TARGET_RATIO} of the raw scan, the lower):"
        f" {'met' if flight_rate >= target else 'NOT met'}"
    )
    print(f"in-process, application pages only     {rate(points, pages_s)}")
    print(f"in-process, pages + Arrow batches      {rate(points, batches_s)}")
    print(f"in-process, Flight's fast path batches {rate(points, fast_path_s)}")
    print(f"segments made (extend + encode)        {encode_s / points * 1e9:.0f} ns CPU per point")
    load_after = os.getloadavg()
    print(
        f"load average before {' '.join(f'{x:.2f}' for x in load_before)},"
        f" after {' '.join(f'{x:.2f}' for x in load_after)}"
    )


def _rfc3339(us: int) -> str:
    seconds = us // 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="DoGets and raw reads timed")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.points, arguments.repeat))
