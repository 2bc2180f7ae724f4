"""The aggregate health report: `qis status` over the three real processes, the
StatusService.GetHealthReport figures, and the per-component grpc.health.v1 names an
orchestrator probes."""

from __future__ import annotations

import os
import subprocess

import grpc
import pytest
from qis.data.v1 import status_pb2, status_pb2_grpc

from tests.e2e.harness import BIN, COMMAND, PROJECTOR, QUERY, Cluster, MakeCluster, free_port

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
