"""Helpers of the CLI tests: a `qis-command` process to talk to, and `qis` run in-process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis_cli.main import main

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, f"qis-command exited with {process.returncode}"
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"qis-command not SERVING on {address}")


@dataclass(frozen=True)
class CommandService:
    address: str
    data_dir: Path

    @property
    def events_db(self) -> Path:
        return self.data_dir / "events.db"


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


class Qis:
    """`qis ...` run in this process, against the module's command service."""

    def __init__(self, service: CommandService, capsys: pytest.CaptureFixture[str]) -> None:
        self._service = service
        self._capsys = capsys

    def __call__(self, *args: str) -> Outcome:
        self._capsys.readouterr()
        code = main([*args, "--address", self._service.address, "--user", "cli-tester"])
        captured = self._capsys.readouterr()
        return Outcome(code, captured.out, captured.err)


@dataclass(frozen=True)
class SeriesSetup:
    series_id: str
    source_id: str
