"""`qis sources show` prints what drives a source's feed (credentials reference, retry policy)
and what its latest report says of points and of each instrument's freshness."""

from __future__ import annotations

import io

from google.protobuf import duration_pb2, timestamp_pb2
from qis.data.v1 import series_pb2
from qis_cli.sources import render_source


def at(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=1_767_225_600 + seconds)  # from 2026-01-01


def test_show_prints_the_feed_settings_points_and_staleness() -> None:
    source = series_pb2.DataSource(
        name="sources/cg",
        provider="coingecko",
        credentials_ref="env:COINGECKO_API_KEY",
        retry_policy=series_pb2.DataSourceRetryPolicy(
            max_attempts=3,
            initial_backoff=duration_pb2.Duration(nanos=500_000_000),
            max_backoff=duration_pb2.Duration(seconds=30),
        ),
        health=series_pb2.DataSourceHealth(
            status=series_pb2.DATA_SOURCE_STATUS_HEALTHY,
            start_time=at(0),
            end_time=at(30),
            points_received=12,
            points_sent=11,
            instruments=[
                series_pb2.DataSourceInstrumentHealth(series="series/ETH.USD"),
                series_pb2.DataSourceInstrumentHealth(
                    series="series/BTC.USD",
                    latest_value_time=at(25),
                    staleness=duration_pb2.Duration(seconds=5),
                ),
            ],
        ),
        total_usage=series_pb2.DataSourceUsage(points_received=40, points_sent=39),
    )
    out = io.StringIO()
    render_source(source, out)
    lines = {" ".join(line.split()) for line in out.getvalue().splitlines()}
    assert {
        "credentials env:COINGECKO_API_KEY",
        "retries 3 attempts, backoff 500 ms up to 30000 ms",
        "points 12 received, 11 sent",
        "ETH.USD no value yet",
        "BTC.USD latest value 2026-01-01T00:00:25Z, 5 s old",
        "points 40 received, 39 sent",
    } <= lines


def test_show_says_when_the_source_leaves_retries_to_its_feed() -> None:
    out = io.StringIO()
    render_source(series_pb2.DataSource(name="sources/f", provider="file"), out)
    lines = {" ".join(line.split()) for line in out.getvalue().splitlines()}
    assert {"credentials none", "retries the feed's own"} <= lines
