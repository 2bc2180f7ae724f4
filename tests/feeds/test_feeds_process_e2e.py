"""qis-feeds as a process beside the three real qis processes: a configuration file of a
synthetic feed, a drop folder and a WebSocket feed whose server is down at first; per-feed
health NOT_SERVING while a provider fails and SERVING once it recovers; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.server import ServerConnection, serve

from tests.e2e.harness import BIN, Cluster, free_port, price_series, query_all, setup_series, unique

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    own = Cluster.create(tmp_path / "cluster")
    try:
        own.start_all()
        yield own
    finally:
        own.stop_all()


def health(address: str, service: str) -> str:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError as error:
            return str(error.code())
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


async def until(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} after {timeout_s} s")


def start_feeds(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([str(BIN / "qis-feeds")], env=env, stdout=out, stderr=out)


async def ticks(ws: ServerConnection) -> None:
    await ws.recv()
    for i in range(5):
        await ws.send(f'{{"s":"X","t":{1_717_200_000_000 + i * 1000},"p":"{10 + i}.5"}}')
    await ws.wait_closed()


async def test_the_feeds_process_runs_its_configuration(cluster: Cluster, tmp_path: Path) -> None:
    synthetic, files, ticked = unique("SYN"), unique("FILE"), unique("WS")
    source = unique("feed")
    async with cluster.clients() as c:
        for n, series in enumerate((synthetic, files, ticked)):
            await setup_series(c, series, price_series([(source, 1)]), register_sources=n == 0)
    drop = tmp_path / "drop"
    drop.mkdir()
    ws_port = free_port()
    config = tmp_path / "feeds.toml"
    config.write_text(
        f"""
[[feed]]
name = "demo"
provider = "synthetic"
source = "{source}"
step_s = 86400
pace_s = 0.01
[[feed.instrument]]
series = "{synthetic}"

[[feed]]
name = "files"
provider = "drop_folder"
source = "{source}"
path = "{drop}"
settle_s = 0.2

[[feed]]
name = "ticks"
provider = "websocket"
source = "{source}"
url = "ws://127.0.0.1:{ws_port}/"
subscribe = '{{"symbols":{{symbols}}}}'
[[feed.instrument]]
series = "{ticked}"
symbol = "X"
"""
    )
    address = f"127.0.0.1:{free_port()}"
    env = {
        **cluster.env,
        "QIS_FEEDS_CONFIG": str(config),
        "QIS_FEEDS_ADDRESS": address,
        "QIS_COMMAND_ADDRESS": cluster.address("command"),
        "QIS_FEEDS_HEALTH_S": "0.2",
    }
    process = start_feeds(env, tmp_path / "feeds.log")
    try:
        await until(lambda: health(address, "") == "SERVING", "serving")
        await until(lambda: health(address, "qis.feeds.ticks") == "NOT_SERVING", "failing")
        assert health(address, "qis.feeds.demo") == "SERVING"
        (drop / f"{files}.csv").write_text("snap,value\n2024-06-03T00:00:00Z,1.25\n")
        async with serve(ticks, "127.0.0.1", ws_port):
            await until(lambda: health(address, "qis.feeds.ticks") == "SERVING", "recovered")
            async with cluster.clients() as c:

                async def count(series: str) -> int:
                    return len(await query_all(c, series))

                for series, expected in ((ticked, 5), (files, 1), (synthetic, 20)):
                    deadline = time.monotonic() + 20
                    while await count(series) < expected:
                        assert time.monotonic() < deadline, f"{series}: {await count(series)}"
                        await asyncio.sleep(0.2)
        assert (drop / "done" / f"{files}.csv.report.txt").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logged = (tmp_path / "feeds.log").read_text()
    assert "stopped: received" in logged
