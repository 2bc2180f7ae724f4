"""A command application on the in-memory event store, and readers of what it recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import EventStore
from qis_command.application.commands import (
    CommandResult,
    DefineSeries,
    IngestPoints,
    RegisterSource,
)
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    DataSourceConfig,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.events import DataPublished, DataRestated, DomainEvent, Issue, QualityIssueDetected
from qis_domain.series_bucket import bucket_stream
from qis_domain.snaps import Frequency, Snap, bucket_of
from qis_domain.values import DataType, Price

NEW_YORK = ZoneInfo("America/New_York")
NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def close(day: date) -> Snap:
    """The 16:00 New York close of `day`, with its offset (EST or EDT)."""
    moment = datetime(day.year, day.month, day.day, 16, tzinfo=NEW_YORK)
    offset = moment.utcoffset()
    assert offset is not None
    return Snap(int(moment.timestamp()) * 1_000_000, int(offset.total_seconds()))


def daily_series(*sources: str, rules: ValidationRules) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.DAILY,
        unit="USD",
        time_zone="America/New_York",
        calendar="XNYS",
        sources=tuple(SeriesSource(source_id=s, priority=i + 1) for i, s in enumerate(sources)),
        validation=rules,
    )


def prices(points: Sequence[tuple[date, str]]) -> list[tuple[Snap, Price]]:
    return [(close(day), Price(Decimal(text), "")) for day, text in points]


@dataclass
class App:
    """CommandHandlers over one store, as qis-command wires them (the scheduler and the gRPC
    servicer share one such instance, and so its aggregate cache)."""

    store: EventStore
    handlers: CommandHandlers
    series_id: str = "SPX"
    definition: SeriesDefinition | None = None
    commands: int = field(default=0)

    @classmethod
    def on(cls, store: EventStore) -> App:
        return cls(store, CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars()))

    def ctx(self, command_id: str | None = None, user: str = "feed") -> CommandContext:
        self.commands += 1
        return CommandContext(command_id or f"cmd-{self.commands}", user, NOW_US)

    async def define(self, definition: SeriesDefinition) -> None:
        for source in definition.sources:
            await self.handlers.register_source(
                RegisterSource(source.source_id, DataSourceConfig(provider="test")), self.ctx()
            )
        await self.handlers.define_series(DefineSeries(self.series_id, definition), self.ctx())
        self.definition = definition

    async def ingest(
        self,
        source: str,
        points: Sequence[tuple[date, str]],
        command_id: str | None = None,
        user: str = "feed",
    ) -> CommandResult:
        command = IngestPoints(self.series_id, source, prices(points))
        return await self.handlers.ingest(command, self.ctx(command_id, user))

    async def events(self, days: Sequence[date]) -> list[DomainEvent]:
        """Every event of the buckets holding `days`, in log order."""
        assert self.definition is not None
        codec = EventCodec()
        buckets = sorted({bucket_of(close(d).utc_us, self.definition.frequency) for d in days})
        records = []
        for bucket_us in buckets:
            records.extend(await self.store.read_stream(bucket_stream(self.series_id, bucket_us)))
        records.sort(key=lambda r: r.position)
        return [codec.decode(r).event for r in records]


def new_app() -> App:
    return App.on(InMemoryEventStore(clock=lambda: NOW_US))


def issues(events: Sequence[DomainEvent], rule: str | None = None) -> list[Issue]:
    found = [i for e in events if isinstance(e, QualityIssueDetected) for i in e.issues]
    return [i for i in found if rule is None or i.rule == rule]


def flagged_days(events: Sequence[DomainEvent], rule: str) -> list[date]:
    return sorted(
        datetime.fromtimestamp(i.snap_us / 1e6, NEW_YORK).date() for i in issues(events, rule)
    )


def official_versions(events: Sequence[DomainEvent]) -> dict[int, list[tuple[int, str, str]]]:
    """Per snap, every official version as (version, value, flags), in the order published."""
    out: dict[int, list[tuple[int, str, str]]] = {}
    for event in events:
        if isinstance(event, DataPublished | DataRestated):
            for row in event.rows():
                out.setdefault(row.snap_us, []).append(
                    (row.version, str(row.value), ",".join(row.flags))
                )
    return out
