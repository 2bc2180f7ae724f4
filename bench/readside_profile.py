"""cProfile of the read-side hot paths, in-process (run: python -m bench.readside_profile).

The same workloads as bench/readside.py, without processes or gRPC, so that the profile shows
our code: the projector (read, decode, project, apply), QueryRange per point (segments → rows
→ OfficialValue wire bytes → one parse per page, through the real servicer with a context
that only counts what it is given) and GetValues as-of lookups (through the real servicer).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from qis.data.v1 import query_service_pb2 as qpb
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_query.bootstrap import build_handlers
from qis_query.entrypoints.grpc_service import QueryService
from qis_query.settings import QuerySettings

from bench.readside import CapturingWriter, CountingContext, lookups, percentile, project
from bench.readside_data import GENERATION, Bitemporal, ingest_log, series_batches, write_batches


def show(profile: cProfile.Profile, title: str, top: int) -> None:
    print(f"\n=== {title}: top {top} by own time ===")
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)


async def projector(tmp: Path, points: int, top: int) -> None:
    log = await ingest_log(tmp / "events.db", points)
    store = await SqliteReadStore.open(tmp / "read.db", GENERATION)
    try:
        writer = CapturingWriter(store)
        profile = cProfile.Profile()
        profile.enable()
        elapsed, _ = await project(tmp / "events.db", writer, log.head)
        profile.disable()
    finally:
        await store.close()
    print(
        f"\nprojector: {points:,} points in {elapsed:.2f} s ({points / elapsed:,.0f}/s),"
        f" apply {writer.apply_s:.2f} s in the store's worker thread (shown as epoll wait)"
    )
    show(profile, "projector", top)


async def query_range(tmp: Path, points: int, top: int) -> None:
    path = tmp / "range.db"
    await write_batches(path, series_batches("PROFILE.PX", points), 1)
    store = await SqliteReadStore.open(path)
    try:
        service = QueryService(build_handlers(store, QuerySettings()))
        request = qpb.QueryRangeRequest(series="series/PROFILE.PX", page_size=1_000)
        context = CountingContext()
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        await service.QueryRange(request, cast(Any, context))
        profile.disable()
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    assert context.values == points, context.values
    print(
        f"\nQueryRange in-process: {points:,} points in {elapsed:.2f} s ({points / elapsed:,.0f}/s)"
    )
    show(profile, "QueryRange (servicer, no gRPC)", top)


async def get_values(tmp: Path, snaps: int, calls: int, top: int) -> None:
    path = tmp / "asof.db"
    model = Bitemporal.make(100, snaps, 0.05)
    await write_batches(path, model.batches(), 1)
    store = await SqliteReadStore.open(path)
    try:
        service = QueryService(build_handlers(store, QuerySettings()))
        for q in lookups(model, 200, seed=3):
            await service.GetValues(q.request, cast(Any, None))
        latencies = []
        profile = cProfile.Profile()
        for q in lookups(model, calls):
            started = time.perf_counter()
            profile.enable()
            await service.GetValues(q.request, cast(Any, None))
            profile.disable()
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await store.close()
    latencies.sort()
    print(
        f"\nGetValues in-process (cProfile on): p50 {percentile(latencies, 50):.3f} ms,"
        f" p99 {percentile(latencies, 99):.3f} ms over {calls:,} calls"
    )
    show(profile, "GetValues as-of (servicer, no gRPC)", top)


async def main(points: int, top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="qis-readside-profile-") as tmp:
        await projector(Path(tmp), points, top)
        await query_range(Path(tmp), points, top)
        await get_values(Path(tmp), 1_000, 2_000, top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.points, args.top))
