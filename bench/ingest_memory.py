"""Memory of the command process against the data it has taken in (run: python -m bench.ingest_memory
[--points N ...] [--no-rules] [--cache-points N] [--no-scheduler]).

Each run feeds a fresh qis-command process N points (default 1M, then 10M) through one columnar
BulkIngest stream (the workload of `bench.ingest --rules`: two sources in turn, positivity, jump
and z-score rules, a median within 5 bps; a point is one source's value, so N points are N / 2
snaps) and prints, at ten checkpoints, the process's resident memory and the rate since the
checkpoint before, and the process's CPU time per point (which other work on the machine
hardly changes, unlike the rate). Then:

- the slope of RSS against points beyond the warm-up (the points until the aggregate cache holds
  its budget, with one checkpoint's margin), in MiB per 1M points: ~0 when memory is bounded by
  the cache setting and not by data size;
- the rate and CPU time per point over the first and the last tenth of each run, and the last
  tenth of the longest run against the whole of the shortest (the target: within 10 %).

The process's scheduler (on by default, as deployed) calculates the quality metrics of each day
loaded once it has been quiet for a minute, so a run longer than that does this work too:
`--no-scheduler` measures ingestion alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc

from bench.ingest import BATCH, SOURCES, UNSCALED, definition_requests, request
from bench.support import USER, free_port, peak_rss_mb, process, wait_serving

CHECKPOINTS = 10


def rss_mb(pid: int) -> float:
    """Resident memory of a process now, in MiB."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s(pid: int) -> float:
    """User and system CPU time of a process so far, in seconds."""
    # After the command name, which may hold spaces, in parentheses: utime and stime are the
    # 12th and 13th fields.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    points: int
    rss_mb: float
    seconds: float  # since the stream started
    cpu_s: float  # the process's CPU time since the stream started


START = Checkpoint(0, 0.0, 0.0, 0.0)


def rate(a: Checkpoint, b: Checkpoint) -> float:
    """Points per second between two checkpoints."""
    return (b.points - a.points) / (b.seconds - a.seconds)


def cpu_us(a: Checkpoint, b: Checkpoint) -> float:
    """The process's CPU microseconds per point between two checkpoints."""
    return (b.cpu_s - a.cpu_s) * 1e6 / (b.points - a.points)


@dataclass(frozen=True, slots=True)
class Run:
    points: int
    warm_up: int  # points until the cache is full, with a checkpoint's margin
    checkpoints: list[Checkpoint]
    peak_mb: float

    def tenth(self, i: int) -> tuple[Checkpoint, Checkpoint]:
        """The checkpoints around the i-th tenth (0: the first; -1: the last)."""
        marks = [START, *self.checkpoints]
        return (marks[i], marks[i + 1]) if i >= 0 else (marks[i - 1], marks[i])

    def whole(self) -> tuple[Checkpoint, Checkpoint]:
        return START, self.checkpoints[-1]

    def slope(self) -> float | None:
        """Least-squares MiB per 1M points over the checkpoints past the warm-up."""
        warm = [c for c in self.checkpoints if c.points >= self.warm_up]
        if len(warm) < 3:
            return None
        xs = [c.points / 1e6 for c in warm]
        ys = [c.rss_mb for c in warm]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )


async def run(points: int, rules: bool, cache_points: int, scheduler: bool) -> Run:
    sources = SOURCES if rules else SOURCES[:1]
    # Whole batches of every source between checkpoints.
    batches = points // (BATCH * len(sources) * CHECKPOINTS) * CHECKPOINTS
    total = batches * BATCH * len(sources)
    step = total // CHECKPOINTS
    # The cache counts snaps; a point is one source's value.
    warm_up = cache_points * len(sources) + step
    with tempfile.TemporaryDirectory() as data:
        address = f"127.0.0.1:{free_port()}"
        env = {
            "QIS_DATA_DIR": data,
            "QIS_COMMAND_ADDRESS": address,
            "QIS_LOG_LEVEL": "WARNING",
            "QIS_AGGREGATE_CACHE_POINTS": str(cache_points),
            "QIS_SCHEDULER_ENABLED": str(scheduler).lower(),
        }
        with process("qis-command", env, Path(data) / "command.log") as proc:
            await asyncio.to_thread(wait_serving, address)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.CommandServiceStub(channel)
                source_requests, series = definition_requests(rules)
                for source in source_requests:
                    await stub.RegisterDataSource(source, metadata=USER)
                await stub.DefineSeries(series, metadata=USER)

                async def chunks() -> AsyncIterator[pb.IngestPointsRequest]:
                    for b in range(batches):
                        for source in sources:
                            yield request(b, source, "memory", UNSCALED)

                checkpoints: list[Checkpoint] = []
                done = 0
                started, cpu_started = time.perf_counter(), cpu_s(proc.pid)
                async for ack in stub.BulkIngest(chunks(), metadata=USER):
                    if ack.WhichOneof("outcome") != "result":
                        raise RuntimeError(f"chunk rejected: {ack}")
                    done += BATCH
                    if done % step == 0:
                        elapsed = time.perf_counter() - started
                        cpu = cpu_s(proc.pid) - cpu_started
                        checkpoints.append(Checkpoint(done, rss_mb(proc.pid), elapsed, cpu))
                        a = checkpoints[-2] if len(checkpoints) > 1 else START
                        b = checkpoints[-1]
                        print(
                            f"    {done:>12,} points   RSS {b.rss_mb:>7.0f} MiB"
                            f"   {rate(a, b):>10,.0f} points/s   {cpu_us(a, b):5.1f} CPU us/point",
                            flush=True,
                        )
                return Run(total, warm_up, checkpoints, peak_rss_mb(proc.pid))


async def main(sizes: list[int], rules: bool, cache_points: int, scheduler: bool) -> None:
    workload = "two sources, rules, median reconciliation" if rules else "one source, default rules"
    print(
        f"qis-command memory against data: columnar BulkIngest, {BATCH:,} points per chunk,"
        f" {workload}, aggregate cache {cache_points:,} points,"
        f" scheduler {'on' if scheduler else 'off'}"
    )
    runs = []
    for size in sorted(sizes):
        print(f"  run of {size:,} points:")
        result = await run(size, rules, cache_points, scheduler)
        runs.append(result)
        slope = result.slope()
        slope_text = "n/a (too few checkpoints past warm-up)" if slope is None else f"{slope:+.2f}"
        print(
            f"    RSS slope past {result.warm_up:,} points: {slope_text} MiB per 1M points;"
            f" peak {result.peak_mb:.0f} MiB"
        )
        for label, (a, b) in (
            ("first tenth", result.tenth(0)),
            ("last tenth", result.tenth(-1)),
            ("whole run", result.whole()),
        ):
            print(f"    {label:<12}{rate(a, b):>10,.0f} points/s  {cpu_us(a, b):5.1f} CPU us/point")
    if len(runs) > 1:
        short, long = runs[0].whole(), runs[-1].tenth(-1)
        speed = rate(*long) / rate(*short)
        cost = cpu_us(*short) / cpu_us(*long)
        print(
            f"  last tenth of {runs[-1].points:,} points against the whole {runs[0].points:,} run:"
            f" rate {speed:.2f}, CPU per point {cost:.2f} (inverse; target >= 0.90 each:"
            f" {'met' if min(speed, cost) >= 0.9 else 'NOT met'})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--no-rules", action="store_true", help="one source, default rules")
    parser.add_argument("--cache-points", type=int, default=200_000)
    parser.add_argument("--no-scheduler", action="store_true", help="ingestion alone")
    args = parser.parse_args()
    asyncio.run(main(args.points, not args.no_rules, args.cache_points, not args.no_scheduler))
