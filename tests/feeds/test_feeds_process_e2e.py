"""qis-feeds as a process beside the three real qis processes: a configuration file of a
synthetic feed, a drop folder, a WebSocket feed whose server is down at first and a feed of a
disabled source; while the WebSocket provider fails its feed is NOT_SERVING (qis.feeds.NAME,
qis.component.feed.NAME, StatusService.GetHealthReport) and its source's reported health is DOWN
(GetDataSource), and all of them recover once it answers; the disabled source is not fed;
SIGTERM stops it."""

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
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2, status_pb2, status_pb2_grpc
from websockets.asyncio.server import ServerConnection, serve

from tests.e2e.harness import (
    BIN,
    Clients,
    Cluster,
    as_user,
    free_port,
    price_series,
    query_all,
    setup_series,
    unique,
)

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


def component(address: str, name: str) -> str:
    """The status of one component in the process's StatusService.GetHealthReport."""
    with grpc.insecure_channel(address) as channel:
        report = status_pb2_grpc.StatusServiceStub(channel).GetHealthReport(
            status_pb2.GetHealthReportRequest(), metadata=as_user("admin"), timeout=2
        )
    [found] = [c for c in report.components if c.name == name]
    return status_pb2.ComponentStatus.Name(found.status)


async def source_status(c: Clients, source_id: str) -> str:
    """The status of the source's latest health report, as the query service shows it."""
    source = await c.query.GetDataSource(
        q.GetDataSourceRequest(name=f"sources/{source_id}"), metadata=as_user("admin")
    )
    if not source.HasField("health"):
        return "none"
    return series_pb2.DataSourceStatus.Name(source.health.status)


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
    source, tick_source, off = unique("feed"), unique("ticks"), unique("off")
    async with cluster.clients() as c:
        for n, series in enumerate((synthetic, files)):
            await setup_series(c, series, price_series([(source, 1)]), register_sources=n == 0)
        # The WebSocket feed has a source of its own, whose health is its feed's alone.
        await setup_series(c, ticked, price_series([(tick_source, 1)]))
        await c.command.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id=unique("reg"),
                source_id=off,
                source=series_pb2.DataSource(provider="synthetic", disabled=True),
            ),
            metadata=as_user("admin"),
        )
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
source = "{tick_source}"
url = "ws://127.0.0.1:{ws_port}/"
subscribe = '{{"symbols":{{symbols}}}}'
[[feed.instrument]]
series = "{ticked}"
symbol = "X"

[[feed]]
name = "off"
provider = "synthetic"
source = "{off}"
[[feed.instrument]]
series = "{synthetic}"
"""
    )
    address = f"127.0.0.1:{free_port()}"
    env = {
        **cluster.env,
        "QIS_FEEDS_CONFIG": str(config),
        "QIS_FEEDS_ADDRESS": address,
        "QIS_COMMAND_ADDRESS": cluster.address("command"),
        "QIS_QUERY_ADDRESS": cluster.address("query"),
        "QIS_FEEDS_HEALTH_S": "0.2",
        "QIS_FEEDS_HEALTH_REPORT_S": "0.3",
    }
    process = start_feeds(env, tmp_path / "feeds.log")
    try:
        await until(lambda: health(address, "") == "SERVING", "serving")
        await until(lambda: health(address, "qis.feeds.ticks") == "NOT_SERVING", "failing")
        await until(
            lambda: health(address, "qis.component.feed.ticks") == "NOT_SERVING", "a failing part"
        )
        assert component(address, "feed.ticks") == "COMPONENT_STATUS_NOT_SERVING"
        assert health(address, "qis.feeds.demo") == "SERVING"
        async with cluster.clients() as c:
            deadline = time.monotonic() + 20
            while await source_status(c, tick_source) != "DATA_SOURCE_STATUS_DOWN":
                assert time.monotonic() < deadline, await source_status(c, tick_source)
                await asyncio.sleep(0.2)
        (drop / f"{files}.csv").write_text("snap,value\n2024-06-03T00:00:00Z,1.25\n")
        async with serve(ticks, "127.0.0.1", ws_port):
            await until(lambda: health(address, "qis.feeds.ticks") == "SERVING", "recovered")
            await until(
                lambda: health(address, "qis.component.feed.ticks") == "SERVING", "part recovered"
            )
            assert component(address, "feed.ticks") != "COMPONENT_STATUS_NOT_SERVING"
            async with cluster.clients() as c:

                async def count(series: str) -> int:
                    return len(await query_all(c, series))

                for series, expected in ((ticked, 5), (files, 1), (synthetic, 20)):
                    deadline = time.monotonic() + 20
                    while await count(series) < expected:
                        assert time.monotonic() < deadline, f"{series}: {await count(series)}"
                        await asyncio.sleep(0.2)
                # A report of an interval without a failure: the source is healthy again.
                deadline = time.monotonic() + 20
                while await source_status(c, tick_source) != "DATA_SOURCE_STATUS_HEALTHY":
                    assert time.monotonic() < deadline, await source_status(c, tick_source)
                    await asyncio.sleep(0.2)
                assert await source_status(c, off) == "none"  # never fed, never reported
        assert (drop / "done" / f"{files}.csv.report.txt").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logged = (tmp_path / "feeds.log").read_text()
    assert "stopped: received" in logged
    assert f"feed off: not run: sources/{off} is disabled" in logged
