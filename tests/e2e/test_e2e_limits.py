"""Limits on what one caller can cost (issue 8), against the real processes: an oversized request
is refused by gRPC before it is parsed, and a request of millions of empty points within the
size limit by its count, both without the command process's memory growing; an idle BulkIngest
stream is ended; 200 subscribers that stop reading cost a bounded amount each, and one caller's
subscriptions are capped; a QueryRange call streams a bounded number of points and messages,
then ends with a token that continues.

The figures (RSS before and after, the cost of a subscriber, the time of a call) are printed:
run with -s to see them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2, values_pb2

from tests.e2e.harness import (
    COMMAND,
    QUERY,
    US,
    Cluster,
    as_user,
    bulk_ingest,
    ingest_request,
    price_series,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
BASE = 1_700_000_000 * US
IDLE_S = 1.0
POINTS_PER_CALL = 5_000
MESSAGES_PER_CALL = 2_000
SUBSCRIPTIONS_PER_CALLER = 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Small limits, so that reaching them is quick; the request size limits are the defaults."""
    own = Cluster.create(
        tmp_path_factory.mktemp("qis-limits"),
        {
            "QIS_BULK_IDLE_TIMEOUT_S": str(IDLE_S),
            "QIS_QUERY_MAX_POINTS_PER_CALL": str(POINTS_PER_CALL),
            "QIS_QUERY_MAX_MESSAGES_PER_CALL": str(MESSAGES_PER_CALL),
            "QIS_QUERY_MAX_SUBSCRIPTIONS_PER_CALLER": str(SUBSCRIPTIONS_PER_CALLER),
            "QIS_SUBSCRIBE_STALL_TIMEOUT_S": "120",  # stalled subscribers stay while measured
            "QIS_QUERY_MAX_WAIT_S": "30",
        },
    )
    try:
        own.start_all()
        yield own
    finally:
        own.stop_all()


async def defined_series(cluster: Cluster, items: int = 0) -> tuple[str, str, int]:
    """A price series with a source and `items` points one second apart, projected; returns its
    id, its source and the last commit position."""
    series_id, source = unique("lim"), unique("src")
    async with cluster.clients() as c:
        position = await setup_series(
            c, series_id, price_series([(source, 1)], series_pb2.FREQUENCY_SECOND)
        )
        if items:
            values = [(BASE + i * US, f"{100 + i % 97}.25") for i in range(items)]
            acks = await bulk_ingest(c, series_id, source, values, chunk=5_000)
            position = acks[-1].result.commit_position
        await c.query.GetSeries(
            q.GetSeriesRequest(name=f"series/{series_id}", min_position=position),
            metadata=as_user("reader"),
        )
    return series_id, source, position


@contextlib.asynccontextmanager
async def sampled_rss(cluster: Cluster, name: str) -> AsyncIterator[list[int]]:
    """RSS samples (KiB) of a process every 20 ms for the duration of the block."""
    samples = [cluster.rss_kib(name)]

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.02)
            samples.append(cluster.rss_kib(name))

    sampler = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


async def ingest_raw(cluster: Cluster, request: bytes) -> grpc.aio.AioRpcError:
    """Sends IngestPoints request bytes as they are (building millions of points as messages
    would cost the test more than the server); returns the error it is answered with."""
    async with cluster.channel(COMMAND) as channel:
        call: Any = channel.unary_unary(
            "/qis.data.v1.CommandService/IngestPoints",
            request_serializer=None,
            response_deserializer=cmd.IngestPointsResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(request, metadata=as_user("hostile"), timeout=60)
    return error.value


def request_of(series_id: str, source: str, point: bytes, size: int) -> bytes:
    """An IngestPointsRequest of `size` bytes or so: its fields, then `point` (one encoded
    `points` entry) repeated."""
    head = cmd.IngestPointsRequest(
        command_id=unique("big"), series=f"series/{series_id}", source=f"sources/{source}"
    ).SerializeToString()
    return head + point * (size // len(point))


def points_entry(request: cmd.IngestPointsRequest) -> bytes:
    """The encoding of the `points` entries of a request (without its other fields)."""
    return cmd.IngestPointsRequest(points=request.points).SerializeToString()


# --- request size ----------------------------------------------------------------------------


async def test_an_oversized_request_is_refused_before_it_is_parsed(cluster: Cluster) -> None:
    series_id, source, _ = await defined_series(cluster)
    point = points_entry(ingest_request("x", series_id, source, [(BASE, "101.25")]))
    request = request_of(series_id, source, point, 48 * MIB)
    async with sampled_rss(cluster, COMMAND) as rss:
        error = await ingest_raw(cluster, request)
        await asyncio.sleep(1.0)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "larger than max" in (error.details() or "")
    print(
        f"\n48 MiB request ({(len(request) - 100) // len(point):,} points): qis-command RSS"
        f" {rss[0] / 1024:.0f} MiB before, peak {max(rss) / 1024:.0f} MiB,"
        f" {rss[-1] / 1024:.0f} MiB after"
    )
    assert max(rss) - rss[0] < 32 * 1024


async def test_millions_of_empty_points_within_the_size_limit_are_refused_by_their_count(
    cluster: Cluster,
) -> None:
    """The densest request the size limit lets through: 2 million empty points in 4 MiB. Its
    points are not checked one by one (a violation each would cost a GiB)."""
    series_id, source, _ = await defined_series(cluster)
    empty = points_entry(cmd.IngestPointsRequest(points=[values_pb2.DataPoint()]))
    request = request_of(series_id, source, empty, 4 * MIB - 1024)
    started = time.monotonic()
    async with sampled_rss(cluster, COMMAND) as rss:
        error = await ingest_raw(cluster, request)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    print(
        f"\n4 MiB of {(len(request) - 100) // len(empty):,} empty points: refused in"
        f" {elapsed:.2f} s; qis-command RSS {rss[0] / 1024:.0f} MiB before, peak"
        f" {max(rss) / 1024:.0f} MiB, {rss[-1] / 1024:.0f} MiB after"
    )
    assert elapsed < 5.0
    assert max(rss) - rss[0] < 200 * 1024


# --- BulkIngest: an idle stream ------------------------------------------------------------------


async def test_an_idle_bulk_ingest_stream_is_ended_and_what_was_acknowledged_stays(
    cluster: Cluster,
) -> None:
    series_id, source, _ = await defined_series(cluster)
    chunks: asyncio.Queue[cmd.IngestPointsRequest] = asyncio.Queue()

    async def requests() -> AsyncIterator[cmd.IngestPointsRequest]:
        while True:
            yield await chunks.get()

    async with cluster.clients() as c:
        stream = c.command.BulkIngest(requests(), metadata=as_user("loader"))
        # Chunks closer together than the timeout, for longer than it: the stream stays open.
        for i in range(3):
            await chunks.put(
                ingest_request(f"{series_id}-{i}", series_id, source, [(BASE + i * US, "1.5")])
            )
            ack = await asyncio.wait_for(stream.read(), 10)
            assert isinstance(ack, cmd.BulkIngestResponse)
            assert ack.WhichOneof("outcome") == "result", ack
            await asyncio.sleep(IDLE_S * 0.6)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(stream.read(), 10 * IDLE_S)
        waited = time.monotonic() - started
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "acknowledged before is committed" in (ended.value.details() or "")
        assert waited < 3 * IDLE_S
        # What was acknowledged is stored: a resend is a duplicate.
        again = await c.command.IngestPoints(
            ingest_request(f"{series_id}-0", series_id, source, [(BASE, "1.5")]),
            metadata=as_user("loader"),
        )
        assert again.duplicate


# --- Subscribe: subscribers that stop reading, and the cap per caller ----------------------------

SUBSCRIBERS = 200
FEED_POINTS = 20_000


async def test_200_stalled_subscribers_cost_a_bounded_amount_each(cluster: Cluster) -> None:
    """Each subscriber reads one message then stops, so the server holds a batch for each: the
    worst case of a subscriber's memory (an idle live one holds none)."""
    series_id, _, _ = await defined_series(cluster, FEED_POINTS)
    request = q.SubscribeRequest(series=[f"series/{series_id}"], after_position=0)
    callers = SUBSCRIBERS // SUBSCRIPTIONS_PER_CALLER
    async with cluster.clients() as c:
        await asyncio.sleep(0.5)
        before = cluster.rss_kib(QUERY)
        calls = [
            c.query.Subscribe(request, metadata=as_user(f"subscriber-{i % callers}"))
            for i in range(SUBSCRIBERS)
        ]
        try:
            firsts = await asyncio.wait_for(asyncio.gather(*(s.read() for s in calls)), 60)
            assert all(isinstance(m, q.SubscribeResponse) and m.values for m in firsts)
            await asyncio.sleep(3.0)  # every server loop has read its next batch and waits
            held = cluster.rss_kib(QUERY)

            # Each of these callers has all its subscriptions open: one more is refused.
            extra = c.query.Subscribe(request, metadata=as_user("subscriber-0"))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(extra.read(), 10)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "close one first" in (refused.value.details() or "")
        finally:
            for call in calls:
                call.cancel()
        await asyncio.sleep(2.0)
        after = cluster.rss_kib(QUERY)
    per_subscriber = (held - before) / SUBSCRIBERS
    print(
        f"\n{SUBSCRIBERS} stalled subscribers: qis-query RSS {before / 1024:.0f} MiB before,"
        f" {held / 1024:.0f} MiB with them ({per_subscriber:.0f} KiB each),"
        f" {after / 1024:.0f} MiB after they closed"
    )
    assert per_subscriber < 512


# --- QueryRange: points and messages per call ----------------------------------------------------

RANGE_POINTS = 12_000


async def test_a_range_call_ends_at_its_cap_with_a_token_that_continues(cluster: Cluster) -> None:
    series_id, _, position = await defined_series(cluster, RANGE_POINTS)
    async with cluster.clients() as c:

        async def calls(page_size: int) -> list[tuple[int, int, float]]:
            """(points, messages, seconds) of each call until the range is read."""
            made: list[tuple[int, int, float]] = []
            snaps: list[int] = []
            token = ""
            while True:
                request = q.QueryRangeRequest(
                    series=f"series/{series_id}",
                    page_size=page_size,
                    page_token=token,
                    min_position=position,
                )
                started, messages, count = time.monotonic(), 0, 0
                async for reply in c.query.QueryRange(request, metadata=as_user("reader")):
                    assert len(reply.values) <= page_size
                    snaps.extend(v.snap_time.seconds for v in reply.values)
                    messages, count, token = (
                        messages + 1,
                        count + len(reply.values),
                        reply.next_page_token,
                    )
                made.append((count, messages, time.monotonic() - started))
                if not token:
                    assert snaps == [(BASE // US) + i for i in range(RANGE_POINTS)]
                    return made

        large = await calls(page_size=1_000)
        assert [n for n, _, _ in large] == [5_000, 5_000, 2_000]
        small = await calls(page_size=1)
        assert [n for n, _, _ in small] == [2_000] * 6 + [0]
    print(
        f"\nQueryRange of {RANGE_POINTS:,} points, at most {POINTS_PER_CALL:,} points and"
        f" {MESSAGES_PER_CALL:,} messages a call: page_size 1000 in"
        f" {', '.join(f'{s:.2f}' for _, _, s in large)} s; page_size 1 in"
        f" {', '.join(f'{s:.2f}' for _, _, s in small)} s"
    )
