"""`qis up` supervises: a service that dies is restarted (with backoff) while the others go on
serving, and a second `qis up` on the same data directory is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis_cli.up import RestartBackoff

from tests.cli import test_cli_up
from tests.cli.cli_support import BIN, free_port

up = test_cli_up.up
Up = test_cli_up.Up


def pid_of(up: Up, script: str) -> int:
    for pid in up.children():
        if script in Path(f"/proc/{pid}/cmdline").read_text():
            return pid
    raise AssertionError(f"no {script} under `qis up`")


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.e2e
def test_a_killed_service_is_restarted_while_the_others_keep_serving(up: Up) -> None:
    up.wait_for("Ctrl-C stops everything")
    others = {pid_of(up, "qis-command"), pid_of(up, "qis-query")}
    os.kill(pid_of(up, "qis-projector"), signal.SIGKILL)

    assert up.wait_for("qis-projector").split() == [
        "qis-projector",
        "killed",
        "by",
        "SIGKILL;",
        "restarting",
        "in",
        "1",
        "s",
    ]
    address = up.env["QIS_PROJECTOR_ADDRESS"]
    assert up.wait_for("qis-projector").split() == ["qis-projector", "serving", "on", address]
    assert serving(address)
    # The other two were never stopped: the same processes, still serving.
    assert {pid_of(up, "qis-command"), pid_of(up, "qis-query")} == others
    assert serving(up.env["QIS_COMMAND_ADDRESS"])
    assert serving(up.env["QIS_QUERY_ADDRESS"])
    assert up.process.poll() is None


@pytest.mark.e2e
def test_a_second_up_on_the_same_data_dir_is_refused_at_once(up: Up, tmp_path: Path) -> None:
    up.wait_for("Ctrl-C stops everything")
    # Ports of its own: only the data directory is shared.
    env = {
        **up.env,
        **{
            var: f"127.0.0.1:{free_port()}"
            for var in (
                "QIS_COMMAND_ADDRESS",
                "QIS_PROJECTOR_ADDRESS",
                "QIS_QUERY_ADDRESS",
                "QIS_FLIGHT_ADDRESS",
            )
        },
    }
    data_dir = tmp_path / "data"
    started = time.monotonic()
    second = subprocess.Popen(
        [str(BIN / "qis"), "up", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = second.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        # Stopped the way a person would, so that it stops the services it started.
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
        raise AssertionError(
            "a second `qis up` on the same data directory was not refused"
        ) from None
    assert time.monotonic() - started < 10
    assert second.returncode == 2
    assert f"{data_dir} is in use by another `qis up` (pid {up.process.pid})" in err
    assert "serving" not in out
    assert up.process.poll() is None


def test_restarts_back_off_up_to_30_s_and_start_over_after_a_minute_of_service() -> None:
    backoff = RestartBackoff()
    assert [backoff.after_exit(uptime_s=2.0) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_exit(uptime_s=60.0) == 1
    assert backoff.after_exit(uptime_s=0.5) == 2
