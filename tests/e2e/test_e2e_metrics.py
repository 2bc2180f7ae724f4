"""The three real processes with their Prometheus endpoints (QIS_METRICS_ADDRESS): the figures
scraped over HTTP move by exactly what the test did (docs/observability.md)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from qis.data.v1 import query_service_pb2 as q

from tests.e2e.harness import (
    DAY_US,
    ROLES,
    US,
    Cluster,
    as_user,
    free_port,
    ingest_request,
    price_series,
    query_all,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FIRST_SNAP = 1_704_229_200 * US
N = 40


def scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[Cluster, dict[str, str]]]:
    cluster = Cluster.create(tmp_path, {"QIS_QUERY_MAX_WAIT_S": "10"})
    endpoints = {}
    try:
        for role in ROLES:  # one endpoint each: the environment is copied at each start
            endpoints[role] = cluster.env["QIS_METRICS_ADDRESS"] = f"127.0.0.1:{free_port()}"
            cluster.start(role, wait=False)
        for role in ROLES:
            cluster.wait_serving(role)
        yield cluster, endpoints
    finally:
        cluster.stop_all()


async def wait_for(address: str, name: str, expected: float, **labels: str) -> Samples:
    """Scrapes until `name` (with `labels`) reaches `expected`: the projector works, and
    measures its lag, asynchronously."""
    deadline = time.monotonic() + 15
    while True:
        samples = scrape(address)
        if total(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.2)


async def test_scraped_figures_move_with_the_work_done(
    metered: tuple[Cluster, dict[str, str]],
) -> None:
    cluster, endpoints = metered
    series_id, source = unique("met"), unique("src")
    before = {role: scrape(address) for role, address in endpoints.items()}
    assert total(before["projector"], "qis_points_ingested_total", source=source) == 0

    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(source, 1)]))
        snaps = [FIRST_SNAP + d * DAY_US for d in range(N)]
        half = N // 2
        for i, part in enumerate((snaps[:half], snaps[half:])):
            reply = await c.command.IngestPoints(
                ingest_request(f"{series_id}-{i}", series_id, source, ((s, "10.5") for s in part)),
                metadata=as_user("loader"),
            )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await c.command.IngestPoints(
                ingest_request(unique("x"), unique("nope"), source, [(FIRST_SNAP, "1")]),
                metadata=as_user("loader"),
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        values = await query_all(c, series_id, min_position=reply.commit_position)
        assert len(values) == N

    command = scrape(endpoints["command"])
    rpc = "rpc_server_call_duration_seconds_count"
    ingest_ok = {"rpc_method": "IngestPoints", "rpc_grpc_status_code": "0"}
    ingest_missing = {"rpc_method": "IngestPoints", "rpc_grpc_status_code": "5"}
    assert total(command, rpc, **ingest_ok) - total(before["command"], rpc, **ingest_ok) == 2
    assert (
        total(command, rpc, **ingest_missing) - total(before["command"], rpc, **ingest_missing) == 1
    )
    appends = "qis_eventstore_duration_seconds_count"
    # The source's registration, the series' definition and two ingestions: 4 appends at
    # least (the scheduler may add its own).
    assert (
        total(command, appends, operation="append")
        - total(before["command"], appends, operation="append")
        >= 4
    )
    assert total(command, "qis_eventstore_appended_total") > total(
        before["command"], "qis_eventstore_appended_total"
    )

    projector = await wait_for(
        endpoints["projector"], "qis_points_ingested_total", N, source=source
    )
    assert total(projector, "qis_points_ingested_total", source=source) == N
    assert (
        total(projector, "qis_reconciliation_points_total", status="published")
        - total(before["projector"], "qis_reconciliation_points_total", status="published")
        == N
    )
    assert (
        total(projector, "qis_points_published_total", mode="automatic")
        - total(before["projector"], "qis_points_published_total", mode="automatic")
        == N
    )
    assert (
        total(projector, "qis_quality_points_total")
        - total(before["projector"], "qis_quality_points_total")
        == N
    )
    latency = "qis_publication_latency_seconds_count"
    assert (
        total(projector, latency, since="received")
        - total(before["projector"], latency, since="received")
        == 2
    )  # one sample per publication event
    projector = await wait_for(endpoints["projector"], "qis_projector_lag", 0)
    assert total(projector, "qis_projector_lag") == 0
    assert total(projector, "qis_projector_lag_time_seconds") == 0
    assert total(projector, "qis_projector_checkpoint") >= reply.commit_position

    query = scrape(endpoints["query"])
    ranges = {"rpc_method": "QueryRange", "rpc_grpc_status_code": "0"}
    assert total(query, rpc, **ranges) - total(before["query"], rpc, **ranges) >= 1
    reads = "qis_readstore_duration_seconds_count"
    assert total(query, reads) > total(before["query"], reads)
    # A subscriber is counted while its call lasts, and not behind once it has all there is.
    async with cluster.clients() as c:
        call = c.query.Subscribe(
            q.SubscribeRequest(series=[f"series/{series_id}"]), metadata=as_user("s")
        )
        received = 0
        while received < N:
            batch = await asyncio.wait_for(call.read(), 10)
            assert isinstance(batch, q.SubscribeResponse)
            received += len(batch.values)
        subscribed = await wait_for(endpoints["query"], "qis_subscription_backlog", 0)
        assert total(subscribed, "qis_subscribers") == 1
        call.cancel()
    unsubscribed = await wait_for(endpoints["query"], "qis_subscribers", 0)
    assert total(unsubscribed, "qis_subscribers") == 0
    # Every endpoint tells the process's own figures too.
    for role, address in endpoints.items():
        assert total(scrape(address), "process_resident_memory_bytes") > 0, role
