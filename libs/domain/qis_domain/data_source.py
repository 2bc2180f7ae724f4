"""The DataSource aggregate: a provider's configuration and the status of its feed; and the
health reports of its feed, one day at a time.

Health reports come every few seconds for as long as a feed runs, so they do not go to the
source's own stream, whose whole history every decision about the source reads: each UTC day's
reports have a stream of their own (`SourceHealthDay`: that day's usage and command ids,
bounded). The source's stream gets an event only when the status changes.
"""

from __future__ import annotations

from decimal import Decimal

from qis_domain.commands import CommandContext, CommandOutcome, RemembersCommands
from qis_domain.definitions import (
    EXACT,
    DataSourceConfig,
    HealthReport,
    SourceStatus,
    SourceUsage,
    Update,
)
from qis_domain.errors import AlreadyExists, FailedPrecondition, NotFound
from qis_domain.events import (
    DataSourceConfigured,
    DataSourceHealthReported,
    DataSourceRegistered,
    DataSourceStatusChanged,
    DomainEvent,
)
from qis_domain.names import source_name, source_resource
from qis_domain.series_bucket import Recorded

DAY_US = 86_400 * 1_000_000


def source_stream(source_id: str) -> str:
    return f"sources/{source_id}"


def health_stream(source_id: str, day_us: int) -> str:
    return f"sources/{source_id}/health/{day_us}"


def report_day(report: HealthReport) -> int:
    """The UTC day a report counts in: the one its interval ends in (an interval ending at
    midnight, which it excludes, belongs to the day before)."""
    last_us = report.end_us - 1
    return last_us - last_us % DAY_US


class DataSource(RemembersCommands):
    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.version: int | None = None
        self.config: DataSourceConfig | None = None
        self.status: SourceStatus | None = None  # of the latest report; None before any
        self.status_since_us = 0
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return source_stream(self.source_id)

    @property
    def exists(self) -> bool:
        return self.config is not None

    def register(self, config: DataSourceConfig, ctx: CommandContext) -> list[DomainEvent]:
        if self.config is not None:
            raise AlreadyExists(source_resource(self.source_id))
        return [DataSourceRegistered(source_id=self.source_id, config=config)]

    def configure(self, update: Update, ctx: CommandContext) -> list[DomainEvent]:
        """`update` applies to the configuration this decision is made on (see Update)."""
        if self.config is None:
            raise NotFound(source_resource(self.source_id), "source.name")
        config = update.applied_to(self.config)
        if config == self.config:
            return []
        return [DataSourceConfigured(source_id=self.source_id, config=config)]

    def report_health(
        self, day: SourceHealthDay, report: HealthReport
    ) -> tuple[list[DomainEvent], list[DomainEvent]]:
        """The events of a health report: (those of the source's stream: a status change, if
        any; those of `day`'s stream, the day of the report). The cost is the domain's:
        requests x cost_per_request as configured now."""
        if self.config is None:
            raise NotFound(source_resource(self.source_id), "source")
        if not self.config.enabled:
            raise FailedPrecondition(
                f"{source_name(self.source_id)} is disabled: enable it before its feed reports",
                "SOURCE_DISABLED",
            )
        if day.source_id != self.source_id or day.day_us != report_day(report):
            raise ValueError("a report goes to the stream of its own source and day")
        cost = EXACT.multiply(self.config.cost_per_request, Decimal(report.requests))
        changed = report.status != self.status
        reported = DataSourceHealthReported(
            source_id=self.source_id,
            day_us=day.day_us,
            report=report,
            cost=cost,
            status_since_us=report.end_us if changed else self.status_since_us,
            day_usage=day.usage.plus(report, cost),
        )
        if not changed:
            return [], [reported]
        change = DataSourceStatusChanged(
            source_id=self.source_id,
            previous=self.status,
            status=report.status,
            at_us=report.end_us,
            last_error=report.last_error,
        )
        return [change], [reported]

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, DataSourceRegistered | DataSourceConfigured):
            self.config = event.config
        elif isinstance(event, DataSourceStatusChanged):
            self.status, self.status_since_us = event.status, event.at_us
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)


class SourceHealthDay(RemembersCommands):
    """The health reports of one source over one UTC day: that day's usage so far, and the
    command ids of its reports (a resent report is a duplicate within its day, which its
    interval decides)."""

    def __init__(self, source_id: str, day_us: int) -> None:
        self.source_id = source_id
        self.day_us = day_us
        self.version: int | None = None
        self.usage = SourceUsage()
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return health_stream(self.source_id, self.day_us)

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, DataSourceHealthReported):
            self.usage = event.day_usage
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)
