"""A real qis-projector meets an event it cannot project (written into the log directly, as a
bug of the command side once did: a snap 2^62 seconds after the epoch). It must not die and must
not go quiet: the process keeps answering health, `qis.data.v1.Projector` is NOT_SERVING with
the position, type and stream of the event in the reason, and its log says so in one ERROR line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_projector.entrypoints.health import REASON_KEY
from qis_projector.main import LAG_SERVICE

from tests.e2e.harness import PROJECTOR, Cluster, MakeCluster, generation_checkpoint
from tests.service.projector.projector_support import (
    BASE_US,
    append,
    ingested,
    overflowing_snap,
)

pytestmark = pytest.mark.e2e

POISON_STREAM = "series/POISON/points/0"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(cluster: Cluster, service: str) -> tuple[int, str]:
    """The health status of `service` and the reason the projector gives with it."""
    with grpc.insecure_channel(cluster.address(PROJECTOR)) as channel:
        reply, call = health_pb2_grpc.HealthStub(channel).Check.with_call(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        reasons = [str(v) for k, v in call.trailing_metadata() or () if k == REASON_KEY]
        return reply.status, "".join(reasons)


def wait_not_serving(cluster: Cluster, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert cluster.processes[PROJECTOR].running(), cluster.log_tail(PROJECTOR)
        with contextlib.suppress(grpc.RpcError):  # NOT_FOUND until the first report
            status, reason = check(cluster, LAG_SERVICE)
            if status == NOT_SERVING:
                return reason
        time.sleep(0.1)
    raise AssertionError(f"{LAG_SERVICE} not NOT_SERVING after {timeout_s} s")


def error_lines(cluster: Cluster) -> list[dict[str, str]]:
    lines = cluster.processes[PROJECTOR].log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [entry for entry in entries if entry["level"] == "ERROR"]


async def test_a_poison_event_halts_the_projector_loudly_while_it_keeps_serving_health(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(start=(PROJECTOR,))
    events = await SqliteEventStore.open(cluster.events_db)
    try:
        good = await append(events, "series/GOOD/points/0", ingested("GOOD", BASE_US, 5))
        poison = await append(events, POISON_STREAM, overflowing_snap(POISON_STREAM, "POISON"))
        await append(events, "series/GOOD/points/1", ingested("GOOD", BASE_US + 10**9, 5))
    finally:
        await events.close()

    reason = wait_not_serving(cluster)
    for detail in (f"position {poison}", "DataIngested", POISON_STREAM):
        assert detail in reason

    await asyncio.sleep(3)  # several health rounds later: still up, still saying why
    assert cluster.processes[PROJECTOR].running()
    assert check(cluster, "") == (SERVING, "")
    assert check(cluster, LAG_SERVICE) == (NOT_SERVING, reason)
    assert generation_checkpoint(cluster.read_db, "g1") == good

    errors = error_lines(cluster)
    assert len(errors) == 1, errors
    assert errors[0]["msg"] == reason
    assert "exc" not in errors[0]
