"""A source's feed settings (credentials reference, retry policy) through the real command,
projector and query services in this process: recorded, read back, updated by mask; a secret
sent in place of a reference is refused and never stored. And the health report's points and
per-instrument freshness as GetDataSource shows them."""

from __future__ import annotations

from decimal import Decimal

from google.protobuf import duration_pb2, field_mask_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2
from qis_adapters.readstore.port import SourceEntry, SourceHealthEntry
from qis_domain.definitions import (
    DataSourceConfig,
    HealthReport,
    InstrumentFreshness,
    SourceStatus,
    SourceUsage,
)
from qis_domain.events import DataSourceHealthReported
from qis_query.application.sources import SourceView
from qis_query.entrypoints.sources import data_source

from tests.service.query.test_query_filtered import bad_request
from tests.service.query.test_query_sources import FEEDER, stack

RETRY = series_pb2.DataSourceRetryPolicy(
    max_attempts=2,
    initial_backoff=duration_pb2.Duration(nanos=250_000_000),
    max_backoff=duration_pb2.Duration(seconds=10),
)


async def test_feed_settings_are_recorded_read_back_and_updated() -> None:
    async with stack() as s:
        await s.command.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id="reg-cg",
                source_id="cg",
                source=series_pb2.DataSource(
                    provider="coingecko",
                    rate_limit_per_minute=100,
                    credentials_ref="env:COINGECKO_API_KEY",
                    retry_policy=RETRY,
                ),
            ),
            metadata=FEEDER,
        )
        refused = await bad_request(
            s.command.ConfigureDataSource(
                cmd.ConfigureDataSourceRequest(
                    command_id="cfg-secret",
                    source=series_pb2.DataSource(
                        name="sources/cg", credentials_ref="CG-x8Jq2mZ7pLw4rT9vK3nB"
                    ),
                ),
                metadata=FEEDER,
            )
        )
        changed = await s.command.ConfigureDataSource(
            cmd.ConfigureDataSourceRequest(
                command_id="cfg-file",
                source=series_pb2.DataSource(
                    name="sources/cg", credentials_ref="file:/run/secrets/cg"
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["credentials_ref", "retry_policy"]),
            ),
            metadata=FEEDER,
        )
        source = await s.query.GetDataSource(
            q.GetDataSourceRequest(name="sources/cg", min_position=changed.commit_position),
            metadata=FEEDER,
        )
        recorded = await s.events.read_stream("sources/cg")
    assert [field for field, _ in refused] == ["source.credentials_ref"]
    assert "CG-x8Jq2" not in refused[0][1]
    assert len(recorded) == 2  # registered, configured once: the refused secret reached none
    assert all(b"CG-x8Jq2" not in e.data for e in recorded)
    assert source.credentials_ref == "file:/run/secrets/cg"
    assert not source.HasField("retry_policy")  # named in the mask and unset: cleared
    assert source.rate_limit_per_minute == 100  # not named: kept


async def test_a_registered_retry_policy_is_read_back() -> None:
    async with stack() as s:
        reply = await s.command.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id="reg-rp",
                source_id="rp",
                source=series_pb2.DataSource(provider="rest_poll", retry_policy=RETRY),
            ),
            metadata=FEEDER,
        )
        source = await s.query.GetDataSource(
            q.GetDataSourceRequest(name="sources/rp", min_position=reply.commit_position),
            metadata=FEEDER,
        )
    assert source.retry_policy == RETRY
    assert source.credentials_ref == ""


def test_points_and_instrument_freshness_are_shown() -> None:
    report = HealthReport(
        status=SourceStatus.HEALTHY,
        start_us=1_000_000,
        end_us=31_000_000,
        points_received=12,
        points_sent=11,
        instruments=(
            InstrumentFreshness(series_id="ETH.USD"),
            InstrumentFreshness(series_id="BTC.USD", latest_value_us=26_000_000),
        ),
    )
    usage = SourceUsage().plus(report, Decimal(0))
    event = DataSourceHealthReported(
        source_id="cg",
        day_us=0,
        report=report,
        cost=Decimal(0),
        status_since_us=31_000_000,
        day_usage=usage,
    )
    view = SourceView(
        SourceEntry("cg", DataSourceConfig(provider="coingecko").model_dump(mode="json"), 0, 1),
        [
            SourceHealthEntry(
                "cg", 0, event.model_dump(mode="json", exclude={"source_id", "day_us"}), 32, 2
            )
        ],
    )
    health = data_source(view).health
    assert (health.points_received, health.points_sent) == (12, 11)
    eth, btc = health.instruments
    assert (eth.series, eth.HasField("latest_value_time"), eth.HasField("staleness")) == (
        "series/ETH.USD",
        False,
        False,
    )
    assert btc.series == "series/BTC.USD"
    assert btc.latest_value_time.ToMicroseconds() == 26_000_000
    assert btc.staleness == duration_pb2.Duration(seconds=5)  # at the end of the interval
    total = data_source(view).total_usage
    assert (total.points_received, total.points_sent) == (12, 11)
