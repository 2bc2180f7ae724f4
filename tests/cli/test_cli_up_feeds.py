"""`qis up` with providers: qis-feeds is a fourth supervised service when a feed configuration
file is there (DATA_DIR/feeds.toml, or the file QIS_FEEDS_CONFIG names), and only then."""

from __future__ import annotations

import asyncio
import io
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from qis_cli.up import FEEDS, Supervisor, _Planned, dial_target

from tests.cli.test_cli_up import Up
from tests.cli.test_cli_up_supervision import pid_of
from tests.e2e.harness import (
    BIN,
    Clients,
    base_env,
    free_port,
    price_series,
    query_all,
    setup_series,
    unique,
)

_ADDRESS_VARS = (
    "QIS_COMMAND_ADDRESS",
    "QIS_PROJECTOR_ADDRESS",
    "QIS_QUERY_ADDRESS",
    "QIS_FLIGHT_ADDRESS",
    "QIS_FEEDS_ADDRESS",
)
READY = "Ctrl-C stops everything"


@contextmanager
def qis_up(data_dir: Path, log: Path) -> Iterator[Up]:
    """`qis up` on free loopback ports, none of the caller's QIS_* variables, stopped by SIGTERM
    (a test that stops it itself finds it stopped)."""
    env = base_env(data_dir, {var: f"127.0.0.1:{free_port()}" for var in _ADDRESS_VARS})
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(BIN / "qis"), "up"], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield Up(process, lines, env)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def scripts_of(up: Up) -> list[str]:
    """The console scripts `qis up` runs (each is `python SCRIPT`)."""
    return [
        Path(Path(f"/proc/{pid}/cmdline").read_text().split("\0")[1]).name for pid in up.children()
    ]


@pytest.mark.e2e
async def test_up_runs_the_configured_feeds_and_their_points_land(tmp_path: Path) -> None:
    series, source = unique("FEED"), unique("synthetic")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = data_dir / "feeds.toml"
    # A value per day of snap time, sent every 50 ms, from the moment qis-feeds starts: those
    # sent before the test defines the series are refused and dropped, the later ones land.
    config.write_text(
        f"""
[[feed]]
name = "demo"
provider = "synthetic"
source = "{source}"
step_s = 86400
pace_s = 0.05
[[feed.instrument]]
series = "{series}"
"""
    )
    with qis_up(data_dir, tmp_path / "services.log") as up:
        assert up.wait_for("feeds:") == f"feeds: qis-feeds runs the feeds of {config}"
        feeds = up.env["QIS_FEEDS_ADDRESS"]
        assert up.wait_for("qis-feeds").split() == ["qis-feeds", "serving", "on", feeds]
        up.wait_for(READY)
        feeds_pid = pid_of(up, "qis-feeds")

        async with (
            grpc.aio.insecure_channel(up.env["QIS_COMMAND_ADDRESS"]) as commands,
            grpc.aio.insecure_channel(up.env["QIS_QUERY_ADDRESS"]) as queries,
        ):
            c = Clients(
                command_service_pb2_grpc.CommandServiceStub(commands),
                query_service_pb2_grpc.QueryServiceStub(queries),
            )
            defined = await setup_series(c, series, price_series([(source, 1)]))
            deadline = time.monotonic() + 30
            while len(values := await query_all(c, series, min_position=defined)) < 5:
                assert time.monotonic() < deadline, f"{len(values)} points landed in 30 s"
                await asyncio.sleep(0.2)
        assert {tuple(value.sources) for value in values} == {(f"sources/{source}",)}
        assert pid_of(up, "qis-feeds") == feeds_pid  # it ran all along, never restarted

        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(30) == 0
        # The feeds stop first, sending what they received while the command service is up.
        assert up.wait_for("stopped") == "qis-feeds      stopped"
        up.wait_for("qis-command    stopped")


@pytest.mark.e2e
def test_up_without_a_feeds_file_starts_no_feeds_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with qis_up(data_dir, tmp_path / "services.log") as up:
        assert up.wait_for("feeds:") == (
            f"feeds: none (no {data_dir}/feeds.toml, and QIS_FEEDS_CONFIG is unset;"
            " see docs/providers.md)"
        )
        up.wait_for(READY)
        assert sorted(scripts_of(up)) == [
            "qis-command",
            "qis-projector",
            "qis-query",
        ]


def test_up_refuses_a_feeds_config_that_does_not_exist(tmp_path: Path) -> None:
    """A typo in QIS_FEEDS_CONFIG would otherwise run no feeds without a word."""
    missing = tmp_path / "feeds.toml"
    env = base_env(
        tmp_path / "data",
        {"QIS_FEEDS_CONFIG": str(missing)}
        | {var: f"127.0.0.1:{free_port()}" for var in _ADDRESS_VARS},
    )
    up = subprocess.Popen(
        [str(BIN / "qis"), "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = up.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        # Stopped the way a person would, so that it stops the services it started.
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=30)
        raise AssertionError("`qis up` started without the feeds file it was told of") from None
    assert up.returncode == 2, err
    assert f"QIS_FEEDS_CONFIG={missing}: no such file" in err
    assert "serving" not in out


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("0.0.0.0:50051", "127.0.0.1:50051"),  # a wildcard listens on loopback too
        ("[::]:50051", "127.0.0.1:50051"),
        # Unbracketed, gRPC reads "::1:50051" as a host without a port: `qis up` on IPv6
        # loopback never saw its services serving, and qis-feeds could not reach the command
        # service.
        ("[::1]:50051", "[::1]:50051"),
        ("localhost:50051", "localhost:50051"),
    ],
)
def test_the_address_feeds_and_health_checks_dial(address: str, target: str) -> None:
    assert dial_target(address) == target


def test_feeds_send_to_the_command_service_where_up_checks_its_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The command and query services listen on a wildcard (as in the image); qis-feeds is
    told the loopback addresses that `qis up` dials, which its TLS settings are known to work
    with (the query service: where it reads its sources' configuration)."""
    monkeypatch.setenv("QIS_COMMAND_ADDRESS", "0.0.0.0:50051")
    monkeypatch.setenv("QIS_QUERY_ADDRESS", "0.0.0.0:50052")
    env = shutil.which("env")
    assert env is not None
    supervisor = Supervisor(tmp_path, io.StringIO())
    supervisor._spawn(_Planned(FEEDS, Path(env), "127.0.0.1:50055", {})).wait(10)
    told = capfd.readouterr().out.splitlines()
    assert "QIS_COMMAND_ADDRESS=127.0.0.1:50051" in told
    assert "QIS_QUERY_ADDRESS=127.0.0.1:50052" in told
    assert "QIS_FEEDS_ADDRESS=127.0.0.1:50055" in told
