"""End to end: `qis feed coingecko` loads a history from a local HTTP server answering like
CoinGecko, with 429s and a 503 in the middle, through the three real qis processes: every point
lands exactly once, and running the load again stores nothing."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.e2e.harness import (
    BIN,
    Cluster,
    price_series,
    query_all,
    read_only,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

START = datetime(2023, 1, 1, tzinfo=UTC)
END = START + timedelta(days=200)  # hourly: three windows, of 90, 90 and 20 days
HOUR_MS = 3_600_000


def ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


class FlakyCoinGecko:
    """market_chart/range as CoinGecko answers it, hourly prices, with failures scripted by
    request number: 429 (Retry-After: 1) on the 2nd and 3rd requests, 503 on the 5th."""

    FAILURES: ClassVar[dict[int, int]] = {2: 429, 3: 429, 5: 503}

    def __init__(self) -> None:
        self.requests = 0
        self.failed = 0

    def __call__(self, request: Request) -> Response:
        self.requests += 1
        status = self.FAILURES.get(self.requests)
        if status is not None:
            self.failed += 1
            body = json.dumps({"status": {"error_code": status, "error_message": "scripted"}})
            return Response(body, status, {"Retry-After": "1"} if status == 429 else {})
        assert request.headers["x-cg-demo-api-key"] == "demo-key"
        first, last = int(request.args["from"]) * 1000, int(request.args["to"]) * 1000
        rows = ",".join(
            f"[{t},{price_of(t)}]" for t in range(first - first % HOUR_MS, last + 1, HOUR_MS)
        )
        return Response(
            f'{{"prices":[{rows}],"market_caps":[],"total_volumes":[]}}',
            200,
            content_type="application/json",
        )


def price_of(t_ms: int) -> str:
    return f"{20000 + (t_ms // HOUR_MS) % 997}.{(t_ms // HOUR_MS) % 89:02d}1234567"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    own = Cluster.create(tmp_path_factory.mktemp("feeds-e2e"))
    try:
        own.start_all()
        yield own
    finally:
        own.stop_all()


def qis_feed(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "qis"),
            "feed",
            *args,
            f"--address={cluster.address('command')}",
            "--user=feeder",
        ],
        env={**cluster.env, "COINGECKO_API_KEY": "demo-key"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def feed(cluster: Cluster, server: HTTPServer, series: str, source: str) -> str:
    done = qis_feed(
        cluster,
        "coingecko",
        "--coin=bitcoin",
        f"--series={series}",
        f"--source={source}",
        "--granularity=hourly",
        f"--start={START.isoformat()}",
        f"--end={END.isoformat()}",
        f"--base-url={server.url_for('/api/v3')}",
        "--calls-per-minute=600",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def ingested_snaps(events_db: Path, series: str) -> list[int]:
    with contextlib.closing(read_only(events_db)) as conn:
        rows = conn.execute(
            "SELECT data FROM events WHERE type = 'DataIngested' AND stream LIKE ?",
            (f"series/{series}/%",),
        ).fetchall()
    return [snap for (data,) in rows for snap in json.loads(data)["snaps"]]


async def test_a_coingecko_history_with_429s_lands_every_point_exactly_once(
    cluster: Cluster, httpserver: HTTPServer
) -> None:
    vendor = FlakyCoinGecko()
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart/range").respond_with_handler(
        vendor
    )
    series, source = unique("BTC"), unique("cg")
    async with cluster.clients() as c:
        await setup_series(c, series, price_series([(source, 1)]))
    out = feed(cluster, httpserver, series, source)
    assert vendor.failed == 3
    expected = list(range(ms(START), ms(END), HOUR_MS))
    assert f"sent {len(expected):,} (stored {len(expected):,}" in out
    position = int(out.rsplit("last position ", 1)[1].split()[0])
    async with cluster.clients() as c:
        values = await query_all(c, series, min_position=position)
    assert [v.snap_time.seconds * 1000 for v in values] == expected
    assert [v.value.price.value for v in values] == [price_of(t) for t in expected]
    snaps = ingested_snaps(cluster.events_db, series)
    assert sorted(snaps) == [t * 1000 for t in expected]  # each point in one DataIngested

    again = feed(cluster, httpserver, series, source)
    assert f"already stored {len(expected):,}" in again
    assert "stored 0," in again
    assert len(ingested_snaps(cluster.events_db, series)) == len(expected)


async def test_a_synthetic_load_with_faults_and_a_load_into_no_series(cluster: Cluster) -> None:
    series, source, other = unique("SYN"), unique("syn"), unique("syn-b")
    async with cluster.clients() as c:
        await setup_series(c, series, price_series([(source, 1), (other, 2)]))
    load = (
        "synthetic",
        f"--series={series}",
        f"--source={source}",
        "--start=2020-01-01",
        "--end=2021-01-01",
        "--step=1d",
        "--seed=5",
        "--faults=spike=0.05,gap=0.05,duplicate=0.05,late=0.05",
        f"--second-source={other}",
    )
    first = qis_feed(cluster, *load)
    assert first.returncode == 0, first.stderr
    assert "dropped 0 " in first.stdout
    again = qis_feed(cluster, *load)
    assert again.returncode == 0, again.stderr
    assert "stored 0," in again.stdout  # the same chunks: every one a duplicate
    missing = qis_feed(cluster, *load[:1], f"--series={unique('NOPE')}", *load[2:])
    assert missing.returncode == 3  # NOT_FOUND: the load stops at the first refusal
    assert "NOT_FOUND" in missing.stderr
