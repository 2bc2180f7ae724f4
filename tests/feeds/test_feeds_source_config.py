"""A source's configuration drives its feed: the rate limit, retry policy and credentials
reference registered with the real command service are read back through the real query service
(GetDataSource, in this process with the projector) and obeyed by a CoinGecko feed against a
local HTTP server, which counts the calls; what the feed's own configuration states wins; a
disabled source is not fed."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import duration_pb2
from pytest_httpserver import HTTPServer
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2
from qis_cli.errors import EXIT_FAILED
from qis_cli.main import main
from qis_feeds.adapters.http import VendorError
from qis_feeds.adapters.source_config import (
    UNKNOWN,
    CredentialsError,
    SourceSettings,
    read_source,
    resolve,
)
from qis_feeds.application.ports import DataProvider, HistoricalRequest
from qis_feeds.bootstrap import build, provider_of
from qis_feeds.config import CoinGeckoFeed, ConfigError, FeedsConfig
from qis_feeds.settings import FeedsSettings
from werkzeug import Request, Response

from tests.feeds.feeds_support import FEEDER
from tests.service.query.test_query_sources import Stack, stack

START = datetime(2023, 1, 1, tzinfo=UTC)
END = START + timedelta(days=200)  # hourly on a demo plan: three windows (90, 90, 20 days)
EMPTY = '{"prices":[],"market_caps":[],"total_volumes":[]}'


class Counted:
    """Answers each call from a list (the last for every further one), noting when it came."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[float, Request]] = []

    def __call__(self, request: Request) -> Response:
        self.calls.append((time.monotonic(), request))
        status = self.statuses[min(len(self.calls), len(self.statuses)) - 1]
        return Response(EMPTY if status == 200 else "busy", status, content_type="application/json")

    def gaps(self) -> list[float]:
        times = [t for t, _ in self.calls]
        return [b - a for a, b in itertools.pairwise(times)]

    def keys(self) -> set[str | None]:
        return {r.headers.get("x-cg-demo-api-key") for _, r in self.calls}


def serve(httpserver: HTTPServer, statuses: list[int]) -> Counted:
    counted = Counted(statuses)
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart/range").respond_with_handler(
        counted
    )
    return counted


async def register(s: Stack, source_id: str, source: series_pb2.DataSource) -> SourceSettings:
    """Registers the source, waits for the read model, and reads it as a feed does."""
    reply = await s.command.RegisterDataSource(
        cmd.RegisterDataSourceRequest(
            command_id=f"reg-{source_id}", source_id=source_id, source=source
        ),
        metadata=FEEDER,
    )
    await s.query.GetDataSource(
        q.GetDataSourceRequest(name=f"sources/{source_id}", min_position=reply.commit_position),
        metadata=FEEDER,
    )
    return await read_source(s.query, FEEDER, source_id)


def coingecko(httpserver: HTTPServer, **explicit: object) -> CoinGeckoFeed:
    return CoinGeckoFeed.model_validate(
        {
            "provider": "coingecko",
            "name": "crypto",
            "source": "cg",
            "base_url": httpserver.url_for("/api/v3"),
            "instrument": [{"series": "BTC.USD", "coin": "bitcoin", "granularity": "hourly"}],
            **explicit,
        }
    )


async def load(provider: DataProvider) -> None:
    try:
        async for _ in provider.request_historical(HistoricalRequest((), START, END)):
            pass
    finally:
        await provider.close()


CONFIGURED = series_pb2.DataSource(
    provider="coingecko",
    rate_limit_per_minute=120,  # one call per 0.5 s: two a minute, with time compressed
    retry_policy=series_pb2.DataSourceRetryPolicy(
        max_attempts=2,
        initial_backoff=duration_pb2.Duration(nanos=1_000_000),
        max_backoff=duration_pb2.Duration(nanos=2_000_000),
    ),
    credentials_ref="env:QIS_TEST_CG_KEY",
)


async def test_the_source_configuration_drives_the_feed(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QIS_TEST_CG_KEY", "key-from-the-source-reference")
    monkeypatch.setenv("COINGECKO_API_KEY", "the-default-variable")
    # Window 1: a failure, then the retry succeeds; window 2 succeeds; window 3 fails twice,
    # and two attempts are all the source allows.
    counted = serve(httpserver, [503, 200, 200, 503, 503])
    async with stack() as s:
        source = await register(s, "cg", CONFIGURED)
    assert source.rate_limit_per_minute == 120
    with pytest.raises(VendorError, match="503"):
        await load(provider_of(coingecko(httpserver), source))
    assert len(counted.calls) == 5  # not one more: the third window had its two attempts
    # Every call waited for the limiter: 0.5 s apart, though the backoff is 1-2 ms.
    assert min(counted.gaps()) >= 0.45, counted.gaps()
    assert counted.keys() == {"key-from-the-source-reference"}


async def test_what_the_feed_states_wins_over_the_source(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QIS_TEST_CG_KEY", "key-from-the-source-reference")
    monkeypatch.setenv("FEED_OWN_KEY", "the-feed-own-key")
    counted = serve(httpserver, [503, 503, 200])
    async with stack() as s:
        source = await register(s, "cg", CONFIGURED)
    feed = coingecko(
        httpserver, max_attempts=3, calls_per_minute=60_000, api_key_env="FEED_OWN_KEY"
    )
    await load(provider_of(feed, source))
    assert len(counted.calls) == 5  # window 1 on its third attempt, then windows 2 and 3
    assert max(counted.gaps()) < 0.4, counted.gaps()  # the feed's own limit: 1 ms apart
    assert counted.keys() == {"the-feed-own-key"}


async def test_without_a_source_configuration_the_defaults_apply(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COINGECKO_API_KEY", "the-default-variable")
    counted = serve(httpserver, [200])
    await load(provider_of(coingecko(httpserver, calls_per_minute=60_000), UNKNOWN))
    assert len(counted.calls) == 3
    assert counted.keys() == {"the-default-variable"}


def test_a_credentials_reference_resolves_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "cg"
    secret.write_text("from-a-file\n")
    assert resolve(f"file:{secret}") == "from-a-file"
    monkeypatch.setenv("QIS_TEST_CG_KEY", "from-the-environment")
    assert resolve("env:QIS_TEST_CG_KEY") == "from-the-environment"
    for missing in ("env:QIS_TEST_UNSET_KEY", f"file:{tmp_path / 'none'}"):
        with pytest.raises(CredentialsError):
            resolve(missing)


async def test_a_reference_that_does_not_resolve_stops_the_feed_at_start(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QIS_TEST_CG_KEY", raising=False)
    with pytest.raises(ConfigError, match="QIS_TEST_CG_KEY is not set"):
        provider_of(coingecko(httpserver), SourceSettings(credentials_ref="env:QIS_TEST_CG_KEY"))


async def test_a_disabled_source_is_not_fed(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("COINGECKO_API_KEY", "k")
    async with stack() as s:
        off = series_pb2.DataSource(provider="coingecko", disabled=True)
        await register(s, "cg", off)
        await register(s, "synth", series_pb2.DataSource(provider="synthetic"))
        config = FeedsConfig.model_validate(
            {
                "feed": [
                    coingecko(httpserver).model_dump(),
                    {
                        "provider": "synthetic",
                        "name": "demo",
                        "source": "synth",
                        "instrument": [{"series": "DEMO.PX"}],
                    },
                ]
            }
        )
        settings = FeedsSettings(command_address="127.0.0.1:1", query_address=s.query_address)
        app = await build(settings, config)
    try:
        assert [f.name for f in app.feeds] == ["demo"]
        assert app.runner.counters.feeds_disabled == 1
        assert "feed crypto: not run: sources/cg is disabled" in caplog.text
    finally:
        await app.close()
    assert not httpserver.log  # nothing was asked of the disabled source's provider


async def test_qis_feed_refuses_a_disabled_source(capsys: pytest.CaptureFixture[str]) -> None:
    async with stack() as s:
        await register(s, "off", series_pb2.DataSource(provider="synthetic", disabled=True))
        load = [
            "feed",
            "synthetic",
            "--series=DEMO.PX",
            "--source=off",
            "--start=2024-01-01",
            "--end=2024-01-05",
            "--address=127.0.0.1:1",  # never dialled: nothing is sent
            f"--query-address={s.query_address}",
            "--user=feeder",
        ]
        # `qis` runs its own event loop: in a thread, beside the services' loop.
        assert await asyncio.to_thread(main, load) == EXIT_FAILED
    assert "sources/off is disabled: not fed" in capsys.readouterr().err
