"""The aggregate health report: `qis status` over the three real processes, the
StatusService.GetHealthReport figures, and the per-component grpc.health.v1 names an
orchestrator probes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import grpc
import pytest
from qis.data.v1 import status_pb2, status_pb2_grpc

from tests.e2e.harness import (
    BIN,
    COMMAND,
    PROJECTOR,
    QUERY,
    Cluster,
    MakeCluster,
    free_port,
    price_series,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e


def qis_status(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env.update({k: v for k, v in cluster.env.items() if k.endswith("_ADDRESS")})
    env.update({"QIS_USER": "operator", "QIS_FEEDS_ADDRESS": f"127.0.0.1:{free_port()}"})
    return subprocess.run(
        [str(BIN / "qis"), "status"], env=env, capture_output=True, text=True, timeout=60
    )


def report(cluster: Cluster, name: str) -> status_pb2.GetHealthReportResponse:
    with grpc.insecure_channel(cluster.address(name)) as channel:
        reply: status_pb2.GetHealthReportResponse = status_pb2_grpc.StatusServiceStub(
            channel
        ).GetHealthReport(
            status_pb2.GetHealthReportRequest(), metadata=(("x-qis-user", "ops"),), timeout=10
        )
        return reply


def test_status_lists_every_component_and_fails_when_one_is_down(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    cluster.wait_serving(PROJECTOR, "qis.data.v1.Projector")
    done = qis_status(cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.split(None, 3) for line in done.stdout.splitlines()]
    components = {(row[0], row[1]): row[2] for row in lines[1:]}
    assert components == {
        ("qis-command", "event-store"): "SERVING",
        ("qis-command", "scheduler"): "SERVING",
        ("qis-projector", "projector"): "SERVING",
        ("qis-projector", "event-store"): "SERVING",
        ("qis-projector", "read-store"): "SERVING",
        ("qis-query", "read-store"): "SERVING",
        ("qis-query", "cache"): "SERVING",
        ("qis-feeds", "-"): "-",  # not running: not a failure
    }

    projector = report(cluster, PROJECTOR)
    assert projector.process == "qis-projector"
    assert projector.status == status_pb2.COMPONENT_STATUS_SERVING
    assert projector.checked_at.seconds > 0
    (lag,) = [c for c in projector.components if c.name == "projector"]
    assert lag.health_service == "qis.component.projector"
    assert lag.figures["lag_positions"] == "0"
    assert {"checkpoint", "generation", "events_projected"} <= set(lag.figures)
    # The names are refreshed every few seconds: each becomes SERVING (wait_serving polls).
    for name, component in (
        (COMMAND, "event-store"),
        (COMMAND, "scheduler"),
        (QUERY, "read-store"),
        (PROJECTOR, "projector"),
        (PROJECTOR, "read-store"),
    ):
        cluster.wait_serving(name, f"qis.component.{component}", timeout=15)

    cluster.stop(PROJECTOR)
    done = qis_status(cluster)
    assert done.returncode == 4, done.stdout + done.stderr
    (down,) = [line for line in done.stdout.splitlines() if line.startswith("qis-projector")]
    assert "NOT_SERVING" in down
    assert "UNAVAILABLE" in down


def figures(cluster: Cluster, process: str, component: str) -> dict[str, str]:
    (found,) = [c for c in report(cluster, process).components if c.name == component]
    return dict(found.figures)


def scheduler_figures(cluster: Cluster) -> dict[str, str]:
    return figures(cluster, COMMAND, "scheduler")


def within(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the wait"
        time.sleep(0.1)


async def test_the_scheduler_reports_its_checkpoint_and_a_restart_resumes_from_it(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(
        {"QIS_SCHEDULER_CHECKPOINT_S": "0.1", "QIS_SCHEDULER_CHECKPOINT_EVENTS": "1"}
    )
    assert scheduler_figures(cluster)["checkpoint"] == "0"  # nothing to save yet
    async with cluster.clients() as c:
        defined = await setup_series(c, unique("ck"), price_series([(unique("src"), 1)]))
    # The position of the definition it observed (the command's own record comes after it).
    within(lambda: int(scheduler_figures(cluster)["checkpoint"]) > 0)
    saved = int(scheduler_figures(cluster)["checkpoint"])
    assert saved <= defined

    cluster.stop(COMMAND)
    cluster.start(COMMAND)
    # Read back at start: the restarted scheduler resumes after the saved position.
    assert int(scheduler_figures(cluster)["checkpoint"]) >= saved
    # The checkpoint events are read by the projector too: they are no lag.
    within(lambda: figures(cluster, PROJECTOR, "projector")["lag_positions"] == "0")
