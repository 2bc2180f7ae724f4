"""The DataSource aggregate decides what a health report records: its exact cost, the day's
usage, and a status change as an event of its own."""

from __future__ import annotations

from decimal import Decimal

import pytest
from qis_domain.data_source import DAY_US, DataSource, SourceHealthDay, report_day
from qis_domain.definitions import DataSourceConfig, HealthReport, SourceStatus, Update
from qis_domain.errors import FailedPrecondition, NotFound
from qis_domain.events import DataSourceHealthReported, DataSourceStatusChanged, DomainEvent
from qis_domain.series_bucket import Recorded

D0 = 20_454 * DAY_US  # 2026-01-01


class Log:
    """Applies decided events as the repository would, numbering positions."""

    def __init__(self) -> None:
        self.position = 0

    def apply(self, aggregate: DataSource | SourceHealthDay, events: list[DomainEvent]) -> None:
        for event in events:
            self.position += 1
            version = 0 if aggregate.version is None else aggregate.version + 1
            aggregate.apply(event, Recorded(f"c{self.position}", "u", self.position, version))


def registered(cost: str = "0.1", *, enabled: bool = True) -> tuple[DataSource, Log]:
    source, log = DataSource("cg"), Log()
    config = DataSourceConfig(provider="coingecko", cost_per_request=Decimal(cost), enabled=enabled)
    log.apply(source, source.register(config, ctx=None))  # type: ignore[arg-type]
    return source, log


def report(start_us: int, status: SourceStatus, requests: int = 3) -> HealthReport:
    return HealthReport(status=status, start_us=start_us, end_us=start_us + 30, requests=requests)


def decide(
    source: DataSource, log: Log, r: HealthReport, day: SourceHealthDay | None = None
) -> tuple[list[DomainEvent], DataSourceHealthReported, SourceHealthDay]:
    day = day or SourceHealthDay("cg", report_day(r))
    of_source, of_day = source.report_health(day, r)
    log.apply(source, of_source)
    log.apply(day, of_day)
    [reported] = of_day
    assert isinstance(reported, DataSourceHealthReported)
    return of_source, reported, day


def test_the_cost_is_exact_and_the_day_adds_up() -> None:
    # 36 significant digits times 10^12 requests: the default decimal context would round.
    source, log = registered("123456789012345678.123456789012345678")
    big = report(D0, SourceStatus.HEALTHY, requests=10**12)
    _, first, day = decide(source, log, big)
    assert first.cost == Decimal("123456789012345678123456789012.345678")
    _, second, _ = decide(source, log, report(D0 + 60, SourceStatus.HEALTHY, 1), day)
    assert second.day_usage.reports == 2
    assert second.day_usage.requests == 10**12 + 1
    assert second.cost == Decimal("123456789012345678.123456789012345678")
    assert second.day_usage.cost == Decimal("123456789012469134912469134690.469134789012345678")


def test_only_a_change_of_status_is_recorded_in_the_source_stream() -> None:
    source, log = registered()
    changes, first, day = decide(source, log, report(D0, SourceStatus.HEALTHY))
    assert changes == [
        DataSourceStatusChanged(
            source_id="cg", previous=None, status=SourceStatus.HEALTHY, at_us=D0 + 30
        )
    ]
    same, second, _ = decide(source, log, report(D0 + 30, SourceStatus.HEALTHY), day)
    assert same == []
    assert second.status_since_us == first.status_since_us == D0 + 30
    down, third, _ = decide(source, log, report(D0 + 60, SourceStatus.DOWN), day)
    assert [(e.previous, e.status) for e in down] == [(SourceStatus.HEALTHY, SourceStatus.DOWN)]  # type: ignore[attr-defined]
    assert third.status_since_us == D0 + 90
    assert source.status is SourceStatus.DOWN


def test_a_report_counts_in_the_day_its_interval_ends_in() -> None:
    before_midnight = HealthReport(
        status=SourceStatus.HEALTHY, start_us=D0 - 30, end_us=D0
    )  # ends at midnight, which it excludes
    assert report_day(before_midnight) == D0 - DAY_US
    assert report_day(report(D0 - 10, SourceStatus.HEALTHY)) == D0
    source, _ = registered()
    with pytest.raises(ValueError, match="its own source and day"):
        source.report_health(SourceHealthDay("cg", D0), before_midnight)


def test_unknown_and_disabled_sources_refuse_reports() -> None:
    with pytest.raises(NotFound):
        DataSource("cg").report_health(SourceHealthDay("cg", D0), report(D0, SourceStatus.DOWN))
    source, log = registered()
    log.apply(source, source.configure(Update(values={"enabled": False}), ctx=None))  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition) as refused:
        source.report_health(SourceHealthDay("cg", D0), report(D0, SourceStatus.DOWN))
    assert refused.value.reason == "SOURCE_DISABLED"
