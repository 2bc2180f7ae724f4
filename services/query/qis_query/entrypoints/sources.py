"""Data sources (qis_query.application.sources) to qis.data.v1.DataSource messages: the
configuration, with the feed's latest health and usage as output-only fields (its traffic only
to a caller shown every series the feed feeds: SourceView.shows_traffic)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import duration_pb2
from google.type import date_pb2
from qis.data.v1 import series_pb2
from qis_adapters.proto.definitions import retry_policy_to_proto
from qis_adapters.proto.times import timestamp
from qis_domain.definitions import DataSourceConfig, HealthReport, SourceStatus, SourceUsage
from qis_domain.errors import InvalidArgument
from qis_domain.names import SOURCES_COLLECTION, parse_name, series_name, source_name

from qis_query.application.sources import SourceView
from qis_query.entrypoints.fields import RequestFields

STATUSES = {
    SourceStatus.HEALTHY: series_pb2.DATA_SOURCE_STATUS_HEALTHY,
    SourceStatus.DEGRADED: series_pb2.DATA_SOURCE_STATUS_DEGRADED,
    SourceStatus.DOWN: series_pb2.DATA_SOURCE_STATUS_DOWN,
}


def source_id(fields: RequestFields, name: str, field: str) -> str:
    """The source id of a resource name "sources/{id}", refused through `fields` if it is not
    one ("" then, as RequestFields reads a field in violation)."""
    try:
        return parse_name(name, SOURCES_COLLECTION, field)
    except InvalidArgument as error:
        for violation in error.violations:
            fields.refuse(violation.field, violation.description)
        return ""


def data_source(view: SourceView) -> series_pb2.DataSource:
    config = DataSourceConfig.model_validate(view.entry.config)
    msg = series_pb2.DataSource(
        name=source_name(view.entry.source_id),
        provider=config.provider,
        description=config.description,
        rate_limit_per_minute=config.rate_limit_per_minute,
        cost_per_request=str(config.cost_per_request),
        settings=config.settings,
        disabled=not config.enabled,
        credentials_ref=config.credentials_ref,
    )
    if config.retry is not None:
        msg.retry_policy.CopyFrom(retry_policy_to_proto(config.retry))
    latest = view.latest
    if latest is None:
        return msg
    health = latest.health
    report = HealthReport.model_validate(health["report"])
    msg.health.CopyFrom(
        series_pb2.DataSourceHealth(
            status=STATUSES[report.status],
            status_change_time=timestamp(health["status_since_us"]),
            start_time=timestamp(report.start_us),
            end_time=timestamp(report.end_us),
            report_time=timestamp(latest.reported_at_us),
        )
    )
    if view.shows_traffic:
        msg.health.MergeFrom(
            series_pb2.DataSourceHealth(
                request_count=report.requests,
                failure_count=report.failures,
                rate_limited_count=report.rate_limited,
                retry_count=report.retries,
                last_error=report.last_error,
                cost=health["cost"],
                points_received=report.points_received,
                points_sent=report.points_sent,
            )
        )
    for instrument in report.instruments:
        if instrument.series_id in view.hidden:
            continue
        shown = msg.health.instruments.add(series=series_name(instrument.series_id))
        if instrument.latest_value_us is not None:
            shown.latest_value_time.CopyFrom(timestamp(instrument.latest_value_us))
            age_us = max(0, report.end_us - instrument.latest_value_us)
            shown.staleness.CopyFrom(_duration(age_us))
    if report.latency_p50_us is not None:
        msg.health.latency_p50.CopyFrom(_duration(report.latency_p50_us))
    if report.latency_p99_us is not None:
        msg.health.latency_p99.CopyFrom(_duration(report.latency_p99_us))
    if report.last_success_us is not None:
        msg.health.last_success_time.CopyFrom(timestamp(report.last_success_us))
    if not view.shows_traffic:
        return msg
    msg.total_usage.CopyFrom(usage(view.total_usage()))
    msg.day_usage.CopyFrom(usage(SourceUsage.model_validate(health["day_usage"])))
    day = datetime.fromtimestamp(latest.day_us / 1_000_000, UTC).date()
    msg.day_usage.day.CopyFrom(date_pb2.Date(year=day.year, month=day.month, day=day.day))
    return msg


def usage(u: SourceUsage) -> series_pb2.DataSourceUsage:
    return series_pb2.DataSourceUsage(
        report_count=u.reports,
        request_count=u.requests,
        failure_count=u.failures,
        rate_limited_count=u.rate_limited,
        retry_count=u.retries,
        cost=str(u.cost),
        points_received=u.points_received,
        points_sent=u.points_sent,
    )


def _duration(us: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1_000)
