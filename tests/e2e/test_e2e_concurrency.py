"""Concurrent writers on the same series, through two command-service instances on one event
store (the scale-out deployment: stateless command services, optimistic concurrency)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.e2e.harness import (
    COMMAND,
    US,
    Clients,
    Cluster,
    as_user,
    ingest_request,
    micros,
    price_series,
    query_all,
    setup_series,
    timestamp,
    unique,
)

pytestmark = pytest.mark.e2e

SECOND_COMMAND = "command-2"
BASE = 1_710_000_000 * US - (1_710_000_000 * US) % (3600 * US)  # an hour (bucket) boundary
COMMANDS_PER_WRITER = 30
POINTS_PER_COMMAND = 120
WRITERS_PER_INSTANCE = 2


@pytest.fixture
def second_command(cluster: Cluster) -> Iterator[str]:
    if SECOND_COMMAND not in cluster.processes:
        cluster.add_instance(SECOND_COMMAND, COMMAND)
    cluster.start(SECOND_COMMAND)
    try:
        yield SECOND_COMMAND
    finally:
        assert cluster.stop(SECOND_COMMAND) == 0


def writer_items(writer: int, writers: int, command: int) -> list[tuple[int, str]]:
    """Writer w owns the seconds s with s % writers == w: command n of every writer covers the
    same 8 minutes, interleaved, so concurrent commands hit the same hourly buckets (and some
    cross an hour boundary: two buckets in one atomic append)."""
    first = (command * POINTS_PER_COMMAND - 60) * writers
    return [
        (BASE + (first + i * writers + writer) * US, f"{writer}.{command}{i:03d}")
        for i in range(POINTS_PER_COMMAND)
    ]


async def test_concurrent_writers_lose_nothing(cluster: Cluster, second_command: str) -> None:
    series_id, source = unique("race"), unique("feed")
    writers = 2 * WRITERS_PER_INSTANCE
    async with cluster.clients() as c, cluster.clients(command=second_command) as c2:
        await setup_series(c, series_id, price_series([(source, 1)], series_pb2.FREQUENCY_SECOND))

        aborted: list[str] = []

        async def send(
            client: Clients, request: cmd.IngestPointsRequest, user: str
        ) -> cmd.IngestPointsResponse:
            """What a well-behaved client does: ABORTED (the service gave up on conflicts) is
            retried with the same command id after a jittered pause."""
            for attempt in range(20):
                try:
                    return await client.command.IngestPoints(request, metadata=as_user(user))
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.ABORTED:
                        raise
                    aborted.append(request.command_id)
                    await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            raise AssertionError(f"{request.command_id} kept being ABORTED")

        async def write(client: Clients, writer: int) -> list[cmd.IngestPointsResponse]:
            replies = []
            for n in range(COMMANDS_PER_WRITER):
                request = ingest_request(
                    f"{series_id}-w{writer}-{n}",
                    series_id,
                    source,
                    writer_items(writer, writers, n),
                )
                replies.append(await send(client, request, f"w{writer}"))
            return replies

        results = await asyncio.gather(*(write(c if w % 2 == 0 else c2, w) for w in range(writers)))
        replies = [r for per_writer in results for r in per_writer]
        # An ABORTED attempt stored nothing: its retry is not a duplicate.
        assert all(r.accepted == POINTS_PER_COMMAND and not r.duplicate for r in replies)
        assert all(r.published == POINTS_PER_COMMAND for r in replies)
        # Every command got its own commit: positions are unique.
        positions = [r.commit_position for r in replies]
        assert len(set(positions)) == len(positions)
        # The writers really ran side by side: in commit order, they take turns.
        order = sorted((r.commit_position, w) for w, rs in enumerate(results) for r in rs)
        turns = sum(a[1] != b[1] for a, b in itertools.pairwise(order))
        assert turns >= COMMANDS_PER_WRITER, f"writers barely interleaved ({turns} turns)"
        print(
            f"\nwriters took {turns} turns over {len(order)} commands;"
            f" {len(aborted)} attempts ABORTED after the service's own conflict retries"
        )

        expected = sorted(
            item
            for w in range(writers)
            for n in range(COMMANDS_PER_WRITER)
            for item in writer_items(w, writers, n)
        )
        assert len({s for s, _ in expected}) == len(expected)  # disjoint snaps
        stored = await query_all(c, series_id, min_position=max(positions))
        assert [(micros(v.snap_time), v.value.price.value) for v in stored] == expected
        assert {v.version for v in stored} == {1}

        # Each point has exactly one observation, from the writer that sent it.
        for snap_us, value in expected[:: len(expected) // 7]:
            history = await c.query.GetPointHistory(
                q.GetPointHistoryRequest(
                    series=f"series/{series_id}",
                    snap_time=timestamp(snap_us),
                ),
                metadata=as_user("reader"),
            )
            assert [o.value.price.value for o in history.observations] == [value]
            assert history.observations[0].user == f"w{value.split('.')[0]}"

        # Retrying every command (a client that lost its replies) changes nothing.
        again = await asyncio.gather(
            *(
                cl.command.IngestPoints(
                    ingest_request(
                        f"{series_id}-w{w}-{n}", series_id, source, writer_items(w, writers, n)
                    ),
                    metadata=as_user(f"w{w}"),
                )
                for w in range(writers)
                for n in range(0, COMMANDS_PER_WRITER, 5)
                for cl in (c, c2)
            )
        )
        assert all(r.duplicate for r in again)
        by_id = {
            (w, n): results[w][n].commit_position
            for w in range(writers)
            for n in range(COMMANDS_PER_WRITER)
        }
        assert [r.commit_position for r in again] == [
            by_id[w, n]
            for w in range(writers)
            for n in range(0, COMMANDS_PER_WRITER, 5)
            for _ in (c, c2)
        ]
