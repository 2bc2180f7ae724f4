"""`qis-projector rebuild` while everything runs and a client keeps writing: queries never fail
and never go back in time, the running projector follows the switch (new writes stay readable
with min_position), and a subscriber's feed crosses the switch without a gap."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import grpc.aio
import pytest
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.e2e.harness import (
    US,
    MakeCluster,
    as_user,
    bulk_ingest,
    ingest_request,
    micros,
    price_series,
    query_all,
    setup_series,
    timestamp,
    unique,
)

pytestmark = pytest.mark.e2e

LOADED = 20_000
BASE = 1_740_000_000 * US - (1_740_000_000 * US) % (3600 * US)


async def test_rebuild_switches_generation_without_downtime(make_cluster: MakeCluster) -> None:
    cluster = make_cluster({"QIS_QUERY_MAX_WAIT_S": "10"})
    series_id, source = unique("online"), unique("src")
    name = f"series/{series_id}"
    items = [(BASE + i * US, f"{10 + i % 50}.5") for i in range(LOADED)]
    async with cluster.clients() as c:
        defined = await setup_series(
            c, series_id, price_series([(source, 1)], series_pb2.FREQUENCY_SECOND)
        )
        acks = await bulk_ingest(c, series_id, source, items)
        loaded_at = acks[-1].result.commit_position
        assert len(await query_all(c, series_id, min_position=loaded_at)) == LOADED

        stop = asyncio.Event()
        written: list[tuple[int, str]] = []
        counts: list[int] = []
        failures: list[str] = []
        feed: list[q.OfficialValue] = []
        arrived = asyncio.Event()

        async def writer() -> None:
            n = LOADED
            while not stop.is_set():
                point = (BASE + n * US, "7.25")
                await c.command.IngestPoints(
                    ingest_request(unique("w"), series_id, source, [point]),
                    metadata=as_user("writer"),
                )
                written.append(point)
                n += 1
                await asyncio.sleep(0.01)

        tail = q.QueryRangeRequest(series=name, start_time=timestamp(BASE + (LOADED - 100) * US))

        async def reader() -> None:
            while not stop.is_set():
                try:
                    count = 0
                    async for reply in c.query.QueryRange(tail, metadata=as_user("reader")):
                        count += len(reply.values)
                    counts.append(count)
                except grpc.aio.AioRpcError as error:
                    failures.append(f"{error.code()}: {error.details()}")

        async def subscriber() -> None:
            call = c.query.Subscribe(
                q.SubscribeRequest(series=[name], after_position=defined),
                metadata=as_user("subscriber"),
            )
            try:
                async for reply in call:
                    feed.extend(reply.values)
                    arrived.set()
            finally:
                call.cancel()

        tasks = [asyncio.create_task(t()) for t in (writer, reader, subscriber)]
        try:
            await asyncio.sleep(0.3)
            started = time.monotonic()
            rebuild = await asyncio.to_thread(cluster.run_tool, "qis-projector", "rebuild")
            rebuild_s = time.monotonic() - started
            assert rebuild.returncode == 0, rebuild.stderr[-3000:]
            match = re.search(r"generation (\w+) active", rebuild.stdout)
            assert match is not None, rebuild.stdout
            assert match.group(1) == "g2"
            await asyncio.sleep(1.5)  # the projector follows within about a second
        finally:
            stop.set()
            await asyncio.gather(*tasks[:2])
        # Read-your-writes after the switch: the running projector now feeds the new generation.
        last = await c.command.IngestPoints(
            ingest_request(unique("last"), series_id, source, [(BASE - US, "1")]),
            metadata=as_user("writer"),
        )
        final = await query_all(c, series_id, min_position=last.commit_position)
        expected = sorted([(BASE - US, "1"), *items, *written])
        assert [(micros(v.snap_time), v.value.price.value) for v in final] == expected

        async with asyncio.timeout(10):
            while len(feed) < len(expected):
                arrived.clear()
                await arrived.wait()
        tasks[2].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[2]

    print(
        f"\nrebuild of {LOADED + len(written)} points took {rebuild_s:.1f} s while"
        f" {len(written)} writes and {len(counts)} queries ran"
    )
    assert failures == []
    assert len(counts) > 20
    assert counts == sorted(counts), "a query saw fewer points than an earlier one"
    in_order = [(micros(v.snap_time), v.value.price.value) for v in feed]
    assert list(dict.fromkeys(in_order)) == [*items, *written, (BASE - US, "1")]
