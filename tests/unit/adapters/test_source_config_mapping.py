"""A data source's credentials reference and retry policy at the edge (never a secret, always
bounded), and the DataSource events stored before these fields (and the health report's points
and instruments) existed, which still decode."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from pydantic import ValidationError
from qis.data.v1 import series_pb2
from qis_adapters.proto.definitions import (
    retry_policy_to_proto,
    source_from_proto,
    source_update_from_proto,
)
from qis_domain.definitions import (
    DataSourceConfig,
    HealthReport,
    SourceRetryPolicy,
    SourceStatus,
    SourceUsage,
    Update,
)
from qis_domain.errors import InvalidArgument
from qis_domain.events import (
    DataSourceHealthReported,
    DataSourceRegistered,
    default_registry,
)

REFUSAL = "a reference to the secret, env:VARIABLE or file:/absolute/path, never the secret itself"


def violations(msg: series_pb2.DataSource) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as error:
        source_from_proto(msg)
    return [(v.field, v.description) for v in error.value.violations]


@pytest.mark.parametrize("ref", ["env:COINGECKO_API_KEY", "env:_K2", "file:/run/secrets/cg", ""])
def test_a_credentials_reference_is_recorded_as_given(ref: str) -> None:
    config = source_from_proto(series_pb2.DataSource(provider="coingecko", credentials_ref=ref))
    assert config.credentials_ref == ref


@pytest.mark.parametrize(
    "ref",
    [
        "CG-x8Jq2mZ7pLw4rT9vK3nB",  # a CoinGecko key pasted in its place
        "sk_live_51HxYz",
        "env:",
        "env:9LIVES",
        "env:MY-KEY",
        "file:relative/path",
        "file:/run/secrets/a key",
        "Bearer eyJhbGciOiJIUzI1NiJ9",
    ],
)
def test_anything_but_a_reference_is_refused_without_being_quoted(ref: str) -> None:
    found = violations(series_pb2.DataSource(provider="coingecko", credentials_ref=ref))
    # One fixed text whatever was sent: a refusal never repeats what may be a secret.
    assert found == [("source.credentials_ref", REFUSAL)]
    with pytest.raises(ValidationError):  # nor does the domain take one
        DataSourceConfig(provider="coingecko", credentials_ref=ref)


def test_a_retry_policy_maps_both_ways_and_unset_leaves_the_feed_its_own() -> None:
    sent = series_pb2.DataSourceRetryPolicy(
        max_attempts=2,
        initial_backoff=duration_pb2.Duration(nanos=250_000_000),
        max_backoff=duration_pb2.Duration(seconds=30),
    )
    config = source_from_proto(series_pb2.DataSource(provider="p", retry_policy=sent))
    assert config.retry == SourceRetryPolicy(
        max_attempts=2, initial_backoff_us=250_000, max_backoff_us=30_000_000
    )
    assert retry_policy_to_proto(config.retry) == sent
    assert source_from_proto(series_pb2.DataSource(provider="p")).retry is None


@pytest.mark.parametrize(
    ("attempts", "first_s", "cap_s", "refused"),
    [
        (0, 0, 1, ["source.retry_policy.max_attempts"]),
        (21, 0, 1, ["source.retry_policy.max_attempts"]),
        (3, -1, 1, ["source.retry_policy.initial_backoff"]),
        (3, 0, 3_601, ["source.retry_policy.max_backoff"]),
        (3, 5, 1, ["source.retry_policy.initial_backoff"]),  # the first wait above the cap
        (0, 0, 7_200, ["source.retry_policy.max_attempts", "source.retry_policy.max_backoff"]),
    ],
)
def test_a_retry_policy_is_bounded(
    attempts: int, first_s: int, cap_s: int, refused: list[str]
) -> None:
    retry = series_pb2.DataSourceRetryPolicy(
        max_attempts=attempts,
        initial_backoff=duration_pb2.Duration(seconds=first_s),
        max_backoff=duration_pb2.Duration(seconds=cap_s),
    )
    found = violations(series_pb2.DataSource(provider="p", retry_policy=retry))
    assert [field for field, _ in found] == refused


def test_an_update_mask_names_the_new_fields() -> None:
    msg = series_pb2.DataSource(
        name="sources/cg",
        credentials_ref="file:/run/secrets/cg",
        retry_policy=series_pb2.DataSourceRetryPolicy(max_attempts=4),
    )
    update = source_update_from_proto(
        msg, field_mask_pb2.FieldMask(paths=["credentials_ref", "retry_policy"])
    )
    assert update == Update(
        values={
            "credentials_ref": "file:/run/secrets/cg",
            "retry": SourceRetryPolicy(max_attempts=4, initial_backoff_us=0, max_backoff_us=0),
        }
    )
    before = DataSourceConfig(provider="coingecko", rate_limit_per_minute=30)
    after = update.applied_to(before)
    assert (after.provider, after.rate_limit_per_minute) == ("coingecko", 30)
    assert after.credentials_ref == "file:/run/secrets/cg"
    assert after.retry is not None
    assert after.retry.max_attempts == 4


def test_events_stored_before_the_new_fields_decode() -> None:
    registry = default_registry()
    # Payloads exactly as the first version wrote them: no credentials reference, no retry
    # policy, no points, no instruments.
    registered = {
        "source_id": "cg",
        "config": {
            "provider": "coingecko",
            "description": "",
            "rate_limit_per_minute": 30,
            "cost_per_request": "0.01",
            "settings": {},
            "enabled": True,
        },
    }
    reported = {
        "source_id": "cg",
        "day_us": 0,
        "report": {
            "status": "degraded",
            "start_us": 1_000,
            "end_us": 2_000,
            "requests": 4,
            "failures": 1,
            "rate_limited": 1,
            "retries": 1,
            "latency_p50_us": None,
            "latency_p99_us": None,
            "last_success_us": 1_500,
            "last_error": "HTTP 429",
        },
        "cost": "0.04",
        "status_since_us": 2_000,
        "day_usage": {
            "reports": 1,
            "requests": 4,
            "failures": 1,
            "rate_limited": 1,
            "retries": 1,
            "cost": "0.04",
        },
    }
    event = registry.decode("DataSourceRegistered", json.dumps(registered).encode(), 1)
    assert isinstance(event, DataSourceRegistered)
    assert (event.config.credentials_ref, event.config.retry) == ("", None)
    event = registry.decode("DataSourceHealthReported", json.dumps(reported).encode(), 1)
    assert isinstance(event, DataSourceHealthReported)
    assert event.report.status is SourceStatus.DEGRADED
    assert (event.report.points_received, event.report.points_sent) == (0, 0)
    assert event.report.instruments == ()
    assert event.day_usage.points_sent == 0
    assert event.day_usage.cost == Decimal("0.04")


def test_usage_sums_the_points_of_its_reports() -> None:
    report = HealthReport(
        status=SourceStatus.HEALTHY, start_us=0, end_us=1, points_received=7, points_sent=5
    )
    usage = SourceUsage().plus(report, Decimal(0)).plus(report, Decimal(0))
    assert (usage.points_received, usage.points_sent, usage.reports) == (14, 10, 2)
