"""Command handlers: load bounded state, let the domain decide, append atomically, retry on
conflict by re-loading and re-deciding (never by overwriting)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import reduce

from qis_adapters.eventstore.port import WrongExpectedVersion
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.data_source import DataSource, source_stream
from qis_domain.definitions import SeriesDefinition
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.events import DomainEvent
from qis_domain.names import series_name, source_name
from qis_domain.reference_data import ReferenceData, definition_stream
from qis_domain.series_bucket import SeriesBucket, bucket_stream
from qis_domain.snaps import Snap, bucket_of
from qis_domain.values import DataValue, Price, Volume

from qis_command.application.commands import (
    CommandResult,
    ConfigureSource,
    DefineSeries,
    EvolveSeries,
    IngestPoints,
    PublishPoints,
    RegisterSource,
    RestatePoint,
)
from qis_command.application.repository import Aggregate, Repository


class ConcurrencyExhausted(Exception):
    """Other writers kept changing the same streams; the command was not applied."""


Change = tuple[Aggregate, Sequence[DomainEvent]]


class CommandHandlers:
    def __init__(self, repository: Repository, max_attempts: int = 8) -> None:
        self._repo = repository
        self._max_attempts = max_attempts
        self.conflicts_retried = 0  # observable: a metric, and proof in tests that races happened

    async def define_series(self, cmd: DefineSeries, ctx: CommandContext) -> CommandResult:
        async def attempt() -> CommandResult:
            series = await self._series(cmd.series_id)
            if (done := series.outcome_of(ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            known = await self._known_sources(cmd.definition)
            return await self._save([(series, series.define(cmd.definition, known, ctx))], ctx)

        return await self._with_retries(attempt)

    async def evolve_series(self, cmd: EvolveSeries, ctx: CommandContext) -> CommandResult:
        async def attempt() -> CommandResult:
            series = await self._series(cmd.series_id)
            if (done := series.outcome_of(ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            known = await self._known_sources(cmd.definition)
            events = series.evolve(cmd.definition, cmd.reason, known, ctx)
            return await self._save([(series, events)], ctx)

        return await self._with_retries(attempt)

    async def register_source(self, cmd: RegisterSource, ctx: CommandContext) -> CommandResult:
        async def attempt() -> CommandResult:
            source = await self._source(cmd.source_id)
            if (done := source.outcome_of(ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            return await self._save([(source, source.register(cmd.config, ctx))], ctx)

        return await self._with_retries(attempt)

    async def configure_source(self, cmd: ConfigureSource, ctx: CommandContext) -> CommandResult:
        async def attempt() -> CommandResult:
            source = await self._source(cmd.source_id)
            if (done := source.outcome_of(ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            return await self._save([(source, source.configure(cmd.config, ctx))], ctx)

        return await self._with_retries(attempt)

    async def ingest(self, cmd: IngestPoints, ctx: CommandContext) -> CommandResult:
        series = await self._series(cmd.series_id)
        definition = series.require_definition()
        if definition.source(cmd.source_id) is None:
            raise InvalidArgument.single(
                "source",
                f"{source_name(cmd.source_id)} is not configured for {series_name(cmd.series_id)}",
            )
        points = _conform(definition, cmd.points)
        by_bucket: dict[int, list[tuple[Snap, DataValue]]] = {}
        for point in points:
            by_bucket.setdefault(bucket_of(point[0].utc_us, definition.frequency), []).append(point)

        async def attempt() -> CommandResult:
            buckets = [await self._bucket(cmd.series_id, b) for b in by_bucket]
            if (done := _earlier_outcome(buckets, ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            changes: list[Change] = [
                (b, b.ingest(definition, cmd.source_id, by_bucket[b.bucket_us], ctx))
                for b in buckets
            ]
            return await self._save(changes, ctx)

        return await self._with_retries(attempt)

    async def publish(self, cmd: PublishPoints, ctx: CommandContext) -> CommandResult:
        series = await self._series(cmd.series_id)
        definition = series.require_definition()
        by_bucket: dict[int, list[tuple[str, int]]] = {}
        for i, snap in enumerate(cmd.snaps):
            bucket = bucket_of(snap.utc_us, definition.frequency)
            by_bucket.setdefault(bucket, []).append((f"snaps[{i}]", snap.utc_us))

        async def attempt() -> CommandResult:
            buckets = [await self._bucket(cmd.series_id, b) for b in by_bucket]
            if (done := _earlier_outcome(buckets, ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            changes: list[Change] = [
                (b, b.publish(definition, by_bucket[b.bucket_us], cmd.comment, ctx))
                for b in buckets
            ]
            return await self._save(changes, ctx)

        return await self._with_retries(attempt)

    async def restate(self, cmd: RestatePoint, ctx: CommandContext) -> CommandResult:
        series = await self._series(cmd.series_id)
        definition = series.require_definition()
        ((_, value),) = _conform(definition, [(cmd.snap, cmd.value)], field="value")
        bucket_us = bucket_of(cmd.snap.utc_us, definition.frequency)

        async def attempt() -> CommandResult:
            bucket = await self._bucket(cmd.series_id, bucket_us)
            if (done := bucket.outcome_of(ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            events = bucket.restate(definition, cmd.snap.utc_us, value, cmd.reason, ctx)
            return await self._save([(bucket, events)], ctx)

        return await self._with_retries(attempt)

    # --- plumbing ---

    async def _with_retries(self, attempt: Callable[[], Awaitable[CommandResult]]) -> CommandResult:
        for _ in range(self._max_attempts):
            try:
                return await attempt()
            except WrongExpectedVersion:
                # The next attempt re-loads: load() reads what the winner appended.
                self.conflicts_retried += 1
        raise ConcurrencyExhausted(f"gave up after {self._max_attempts} conflicting attempts")

    async def _save(self, changes: Sequence[Change], ctx: CommandContext) -> CommandResult:
        if not any(events for _, events in changes):
            # Nothing changes state (e.g. re-approving an official value); report where the
            # log stands so the caller still gets a usable consistency token.
            return CommandResult(CommandOutcome(await self._repo.head_position()), duplicate=False)
        result = await self._repo.save(changes, ctx)
        outcome = _earlier_outcome([a for a, _ in changes], ctx.command_id)
        return CommandResult(outcome or CommandOutcome(result.position), duplicate=False)

    async def _series(self, series_id: str) -> ReferenceData:
        return await self._repo.load(definition_stream(series_id), lambda: ReferenceData(series_id))

    async def _source(self, source_id: str) -> DataSource:
        return await self._repo.load(source_stream(source_id), lambda: DataSource(source_id))

    async def _bucket(self, series_id: str, bucket_us: int) -> SeriesBucket:
        return await self._repo.load(
            bucket_stream(series_id, bucket_us), lambda: SeriesBucket(series_id, bucket_us)
        )

    async def _known_sources(self, definition: SeriesDefinition) -> set[str]:
        known = set()
        for s in definition.sources:
            if (await self._source(s.source_id)).exists:
                known.add(s.source_id)
        return known


def _earlier_outcome(aggregates: Sequence[Aggregate], command_id: str) -> CommandOutcome | None:
    """A command's events in several buckets were appended atomically: together they are its
    outcome."""
    outcomes = [o for a in aggregates if (o := a.outcome_of(command_id)) is not None]
    return reduce(lambda x, y: x + y, outcomes) if outcomes else None


def _conform(
    definition: SeriesDefinition, points: Sequence[tuple[Snap, DataValue]], field: str = ""
) -> list[tuple[Snap, DataValue]]:
    """Values must be of the series' type; a missing currency/unit takes the series' one."""
    violations: list[FieldViolation] = []
    out: list[tuple[Snap, DataValue]] = []
    for i, (snap, value) in enumerate(points):
        path = field or f"points[{i}].value"
        if value.data_type is not definition.data_type:
            violations.append(
                FieldViolation(
                    path,
                    f"series holds {definition.data_type.value} values, got {value.data_type.value}",
                )
            )
            continue
        # An empty currency or unit means the series' own: values are stored without it.
        if isinstance(value, Price):
            if value.currency and value.currency != definition.unit:
                violations.append(
                    FieldViolation(f"{path}.price.currency", f"series is in {definition.unit}")
                )
        elif isinstance(value, Volume):
            if value.unit and value.unit != definition.unit:
                violations.append(
                    FieldViolation(f"{path}.volume.unit", f"series is in {definition.unit}")
                )
        out.append((snap, value))
    if violations:
        raise InvalidArgument(violations)
    return out
