"""Query cache benchmark (run: python -m bench.cache [--calls N] [--redis-url redis://...]).

Measured in one run on the embedded SQLite read store (docs/caching.md), the same read model
(Bitemporal: 100 series x 2,000 snaps, 5 % restated) and the same request sequence for every
configuration, each answer checked against the model:

- workload: sequential GetValues of one snap each, over a hot set of 1,000 points (uniform),
  half latest, half as of one of 4 knowledge times (end-of-day style snapshots): 5,000
  distinct questions, 20,000 calls by default: a hot read
  path, where the cache has something to reuse (a request seen before);
- in process (QueryService without gRPC): cache off (QIS_CACHE_MAX_BYTES=0), L1, and with
  --redis-url an L2 alone (L1 too small to hold anything) to show what a shared hit costs;
  p50/p99 latency, throughput, and the hit rate from the cache's own counters;
- over gRPC: a real qis-query with the cache off and on, from a plain blocking client;
- the ratios cache / no cache are of this run.

The read model does not change during the run: what an invalidation costs is in the tests
(tests/service/query/test_query_cache*.py), not here.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from qis.data.v1 import query_service_pb2 as qpb
from qis.data.v1 import query_service_pb2_grpc as qpb_grpc
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_query.adapters.redis_cache import RedisCache
from qis_query.application.cache import CacheLimits, QueryCache
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.subscription import FeedSettings
from qis_query.entrypoints.grpc_service import QueryService

from bench.readside import percentile, query_process
from bench.readside_data import Bitemporal, write_batches
from bench.support import USER

SERIES, SNAPS, HOT = 100, 2_000, 1_000
AS_OF_TIMES = 4


@dataclass(frozen=True, slots=True)
class Call:
    series: int
    snap: int
    known_at_us: int | None  # None: latest
    request: qpb.GetValuesRequest


def workload(model: Bitemporal, count: int, seed: int = 5) -> list[Call]:
    rng = random.Random(seed)
    hot = [(rng.randrange(model.series), rng.randrange(model.snaps)) for _ in range(HOT)]
    last = model.recorded_v2(model.snaps - 1)
    times = sorted(rng.randrange(model.recorded_v1(0), last) for _ in range(AS_OF_TIMES))
    calls = []
    for i in range(count):
        s, k = rng.choice(hot)
        request = qpb.GetValuesRequest(
            series=f"series/{model.series_id(s)}", snap_times=[timestamp(model.snap_us(k))]
        )
        known = None if i % 2 == 0 else rng.choice(times)
        if known is not None:
            request.as_of_time.CopyFrom(timestamp(known))
        calls.append(Call(s, k, known, request))
    return calls


def expected(model: Bitemporal, call: Call) -> tuple[int, str] | None:
    # Latest: what is known once every restatement is (the model's last knowledge time).
    known = model.recorded_v2(call.snap) if call.known_at_us is None else call.known_at_us
    return model.expected(call.series, call.snap, known)


def wrong(model: Bitemporal, calls: list[Call], answers: list[qpb.GetValuesResponse]) -> int:
    count = 0
    for call, reply in zip(calls, answers, strict=True):
        got = (reply.values[0].version, reply.values[0].value.price.value) if reply.values else None
        count += got != expected(model, call)
    return count


@dataclass
class Result:
    name: str
    ms: list[float]
    seconds: float
    wrong: int
    hit_rate: float | None = None

    def line(self, baseline: Result | None) -> str:
        p50, p99 = percentile(self.ms, 50), percentile(self.ms, 99)
        rate = len(self.ms) / self.seconds
        text = f"{self.name:<28} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:>9,.0f} calls/s"
        if self.hit_rate is not None:
            text += f"  hit rate {self.hit_rate:5.1%}"
        if baseline is not None:
            base_p50 = percentile(baseline.ms, 50)
            base_rate = len(baseline.ms) / baseline.seconds
            text += f"  | x{rate / base_rate:.1f} throughput, p50 x{base_p50 / p50:.1f} faster"
        return text + ("" if not self.wrong else f"  WRONG ANSWERS: {self.wrong}")


async def timed(
    name: str, model: Bitemporal, calls: list[Call], call: Callable[[Call], Awaitable[Any]]
) -> Result:
    answers, ms = [], []
    clock = time.perf_counter
    started = clock()
    for c in calls:
        t = clock()
        answers.append(await call(c))
        ms.append((clock() - t) * 1000)
    seconds = clock() - started
    ms.sort()
    return Result(name, ms, seconds, wrong(model, calls, answers))


def hit_rate(metrics: InMemoryMetricReader) -> float:
    """Hits at any level over lookups (each lookup goes to L1 first: its hits and misses)."""
    hits = lookups = 0
    data = metrics.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    if not isinstance(p, NumberDataPoint):
                        continue
                    l1 = (p.attributes or {}).get("level") == "l1"
                    if m.name == "qis.query.cache.hits":
                        hits += int(p.value)
                        lookups += int(p.value) if l1 else 0
                    elif m.name == "qis.query.cache.misses" and l1:
                        lookups += int(p.value)
    return hits / lookups if lookups else 0.0


async def in_process(
    name: str,
    store: SqliteReadStore,
    model: Bitemporal,
    warmup: list[Call],
    calls: list[Call],
    limits: CacheLimits | None,
    redis_url: str = "",
) -> Result:
    metrics = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[metrics]).get_meter("bench")
    shared = RedisCache.from_url(redis_url, 0.1) if redis_url else None
    cache = None if limits is None else QueryCache(store, limits, shared, meter)
    handlers = QueryHandlers(store, ReadPosition(store, 2.0), FeedSettings(0.02, 10.0), cache=cache)
    service = QueryService(handlers)

    async def call(c: Call) -> qpb.GetValuesResponse:
        return await service.GetValues(c.request, cast(Any, None))

    try:
        for c in warmup:
            await call(c)
        result = await timed(name, model, calls, call)
    finally:
        if shared is not None:
            await shared.close()
    if cache is not None:
        result.hit_rate = hit_rate(metrics)
    return result


def over_grpc(
    name: str, address: str, model: Bitemporal, warmup: list[Call], calls: list[Call]
) -> Result:
    with grpc.insecure_channel(address) as channel:
        stub = qpb_grpc.QueryServiceStub(channel)
        for c in warmup:
            stub.GetValues(c.request, metadata=USER)
        answers, ms = [], []
        clock = time.perf_counter
        started = clock()
        for c in calls:
            t = clock()
            answers.append(stub.GetValues(c.request, metadata=USER))
            ms.append((clock() - t) * 1000)
        seconds = clock() - started
    ms.sort()
    return Result(name, ms, seconds, wrong(model, calls, answers))


async def main(count: int, redis_url: str) -> None:
    model = Bitemporal.make(SERIES, SNAPS, 0.05)
    calls = workload(model, count)
    warmup = workload(model, min(count, 2_000), seed=9)
    with tempfile.TemporaryDirectory(prefix="qis-bench-cache-") as tmp:
        path = Path(tmp) / "read.db"
        await write_batches(path, model.batches(), 1)
        print(
            f"read model: {model.versions:,} versions; {count:,} timed calls, {len(warmup):,} warm-up"
        )
        print("in process (QueryService.GetValues, no gRPC):")
        store = await SqliteReadStore.open(path)
        try:
            off = await in_process("cache off", store, model, warmup, calls, None)
            print("  " + off.line(None))
            l1 = await in_process("L1", store, model, warmup, calls, CacheLimits())
            print("  " + l1.line(off))
            if redis_url:
                tiny = CacheLimits(max_bytes=1)  # nothing fits: every hit is Redis's
                l2 = await in_process(
                    "L2 only (Redis)", store, model, warmup, calls, tiny, redis_url
                )
                print("  " + l2.line(off))
        finally:
            await store.close()
        print("over gRPC (a qis-query process, blocking client, sequential):")
        results: list[Result] = []
        for name, env in (("cache off", {"QIS_CACHE_MAX_BYTES": "0"}), ("cache on (L1)", {})):
            async with query_process(Path(tmp), f"sqlite:///{path}", env) as qp:
                result = await asyncio.to_thread(over_grpc, name, qp.address, model, warmup, calls)
            print("  " + result.line(results[0] if results else None))
            results.append(result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--redis-url", default="", help="also measure an L2 on this Redis")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.redis_url))
