"""Command handlers: load bounded state, let the domain decide, append atomically, retry on
conflict by re-loading and re-deciding (never by overwriting)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from functools import reduce
from typing import TypeVar

from qis_adapters.eventstore.port import WrongExpectedVersion
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.data_source import DataSource, source_stream
from qis_domain.decisions import Decider, SeriesView, snap_of_issue
from qis_domain.definitions import SeriesDefinition
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.events import DomainEvent
from qis_domain.metrics import calculate, window_limit_us
from qis_domain.names import series_name, source_name
from qis_domain.quality_window import QualityWindow, quality_stream
from qis_domain.reference_data import ReferenceData, definition_stream
from qis_domain.series_bucket import NO_VIEW, SeriesBucket, bucket_stream, look_back
from qis_domain.snaps import BUCKET_SPAN_US, Snap, bucket_of
from qis_domain.values import DataValue, Price, Volume

from qis_command.application.commands import (
    CalculateQualityMetrics,
    CommandResult,
    ConfigureSource,
    DefineSeries,
    EvolveSeries,
    ExpireOverrides,
    IngestPoints,
    PublishDue,
    PublishPoints,
    RegisterSource,
    ResolveIssues,
    RestatePoint,
)
from qis_command.application.ports import TradingCalendar
from qis_command.application.repository import Aggregate, Repository

A = TypeVar("A", bound=Aggregate)

_TAIL_BUCKETS = 3


class ConcurrencyExhausted(Exception):
    """Other writers kept changing the same streams; the command was not applied."""


Change = tuple[Aggregate, Sequence[DomainEvent]]


class CommandHandlers:
    def __init__(
        self, repository: Repository, calendar: TradingCalendar, max_attempts: int = 8
    ) -> None:
        self._repo = repository
        self._calendar = calendar
        self._max_attempts = max_attempts
        self.conflicts_retried = 0  # observable: a metric, and proof in tests that races happened

    async def define_series(self, cmd: DefineSeries, ctx: CommandContext) -> CommandResult:
        async def decide(series: ReferenceData) -> list[DomainEvent]:
            self._check_calendar(cmd.definition)
            known = await self._known_sources(cmd.definition)
            return series.define(cmd.definition, known, ctx)

        return await self._decide_one(ctx, lambda: self._series(cmd.series_id), decide)

    async def evolve_series(self, cmd: EvolveSeries, ctx: CommandContext) -> CommandResult:
        async def decide(series: ReferenceData) -> list[DomainEvent]:
            self._check_calendar(cmd.definition)
            known = await self._known_sources(cmd.definition)
            return series.evolve(cmd.definition, cmd.reason, known, ctx)

        return await self._decide_one(ctx, lambda: self._series(cmd.series_id), decide)

    async def register_source(self, cmd: RegisterSource, ctx: CommandContext) -> CommandResult:
        async def decide(source: DataSource) -> list[DomainEvent]:
            return source.register(cmd.config, ctx)

        return await self._decide_one(ctx, lambda: self._source(cmd.source_id), decide)

    async def configure_source(self, cmd: ConfigureSource, ctx: CommandContext) -> CommandResult:
        async def decide(source: DataSource) -> list[DomainEvent]:
            return source.configure(cmd.config, ctx)

        return await self._decide_one(ctx, lambda: self._source(cmd.source_id), decide)

    async def ingest(self, cmd: IngestPoints, ctx: CommandContext) -> CommandResult:
        series = await self._series(cmd.series_id)
        definition = series.require_definition()
        if definition.source(cmd.source_id) is None:
            raise InvalidArgument.single(
                "source",
                f"{source_name(cmd.source_id)} is not configured for {series_name(cmd.series_id)}",
            )
        by_bucket: dict[int, list[tuple[Snap, DataValue]]] = {}
        for point in _conform(definition, cmd.points):
            by_bucket.setdefault(bucket_of(point[0].utc_us, definition.frequency), []).append(point)

        async def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            points = by_bucket[bucket.bucket_us]
            view = await self._view(cmd.series_id, definition, bucket, points)
            return bucket.ingest(definition, cmd.source_id, points, ctx, view)

        return await self._decide_buckets(ctx, cmd.series_id, list(by_bucket), decide)

    async def publish(self, cmd: PublishPoints, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()
        by_bucket: dict[int, list[tuple[str, int]]] = {}
        for i, snap in enumerate(cmd.snaps):
            bucket = bucket_of(snap.utc_us, definition.frequency)
            by_bucket.setdefault(bucket, []).append((f"snaps[{i}]", snap.utc_us))

        async def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.publish(definition, by_bucket[bucket.bucket_us], cmd.comment, ctx)

        return await self._decide_buckets(ctx, cmd.series_id, list(by_bucket), decide)

    async def restate(self, cmd: RestatePoint, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()
        ((_, value),) = _conform(definition, [(cmd.snap, cmd.value)], field="value")

        async def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.restate(
                definition, cmd.snap.utc_us, value, cmd.reason, ctx, cmd.reason_code, cmd.expires_us
            )

        bucket_us = bucket_of(cmd.snap.utc_us, definition.frequency)
        return await self._decide_buckets(ctx, cmd.series_id, [bucket_us], decide)

    async def resolve_issues(self, cmd: ResolveIssues, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()
        value = None
        if cmd.value is not None:
            ((_, value),) = _conform(definition, [(Snap(0), cmd.value)], field="value")
        by_bucket: dict[int, list[tuple[str, str]]] = {}
        for i, issue in enumerate(cmd.issue_ids):
            snap_us = snap_of_issue(issue)
            if snap_us is None:
                raise InvalidArgument.single(f"issue_ids[{i}]", f"{issue!r} is not an issue id")
            bucket_us = bucket_of(snap_us, definition.frequency)
            by_bucket.setdefault(bucket_us, []).append((f"issue_ids[{i}]", issue))
        if not by_bucket:
            raise InvalidArgument.single("issue_ids", "at least one issue id is required")
        if cmd.action == "override" and len(by_bucket) != 1:
            raise InvalidArgument.single("issue_ids", "an override settles the issues of one point")

        async def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            issues = by_bucket[bucket.bucket_us]
            return bucket.resolve(
                definition,
                issues,
                cmd.action,
                cmd.reason,
                ctx,
                value,
                cmd.reason_code,
                cmd.expires_us,
            )

        return await self._decide_buckets(ctx, cmd.series_id, list(by_bucket), decide)

    async def publish_due(self, cmd: PublishDue, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()

        async def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.publish_due(definition, ctx)

        return await self._decide_buckets(ctx, cmd.series_id, [cmd.bucket_us], decide)

    async def expire_overrides(self, cmd: ExpireOverrides, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()

        async def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.expire_overrides(definition, ctx)

        return await self._decide_buckets(ctx, cmd.series_id, [cmd.bucket_us], decide)

    async def calculate_metrics(
        self, cmd: CalculateQualityMetrics, ctx: CommandContext
    ) -> CommandResult:
        series = await self._series(cmd.series_id)
        definition = series.require_definition()
        if not cmd.start_us < cmd.end_us <= cmd.start_us + window_limit_us(definition):
            raise InvalidArgument.single(
                "window", "the end must follow the start, within 40 buckets of the series"
            )
        decider = Decider(definition, ctx)
        sessions = None
        if definition.calendar:
            # One day either side: metrics keep the sessions whose local day starts in the window.
            first, last = decider.local_day(cmd.start_us), decider.local_day(cmd.end_us)
            sessions = self._calendar.sessions(definition.calendar, first, last)
        span = BUCKET_SPAN_US[definition.frequency]
        first_bucket = bucket_of(cmd.start_us, definition.frequency)

        async def window() -> QualityWindow:
            return await self._repo.load(
                quality_stream(cmd.series_id, cmd.start_us, cmd.end_us),
                lambda: QualityWindow(cmd.series_id, cmd.start_us, cmd.end_us),
            )

        async def decide(_: QualityWindow) -> list[DomainEvent]:
            points = []
            for bucket_us in range(first_bucket, cmd.end_us, span):
                bucket = await self._bucket(cmd.series_id, bucket_us)
                points.extend(bucket.summaries(cmd.start_us, cmd.end_us, decider))
            return [
                calculate(
                    definition, cmd.series_id, cmd.start_us, cmd.end_us, points, sessions, decider
                )
            ]

        return await self._decide_one(ctx, window, decide)

    # --- plumbing ---

    async def _decide_one(
        self,
        ctx: CommandContext,
        load: Callable[[], Awaitable[A]],
        decide: Callable[[A], Awaitable[list[DomainEvent]]],
    ) -> CommandResult:
        async def load_all() -> list[A]:
            return [await load()]

        async def decide_all(aggregates: list[A]) -> list[Change]:
            return [(aggregates[0], await decide(aggregates[0]))]

        return await self._decide(ctx, load_all, decide_all)

    async def _decide_buckets(
        self,
        ctx: CommandContext,
        series_id: str,
        buckets: list[int],
        decide: Callable[[SeriesBucket], Awaitable[list[DomainEvent]]],
    ) -> CommandResult:
        """A command on the points of several buckets: decided per bucket, appended atomically."""

        async def load_all() -> list[SeriesBucket]:
            return [await self._bucket(series_id, b) for b in buckets]

        async def decide_all(loaded: list[SeriesBucket]) -> list[Change]:
            return [(b, await decide(b)) for b in loaded]

        return await self._decide(ctx, load_all, decide_all)

    async def _decide(
        self,
        ctx: CommandContext,
        load: Callable[[], Awaitable[list[A]]],
        decide: Callable[[list[A]], Awaitable[list[Change]]],
    ) -> CommandResult:
        """Load, answer a repeated command id with its first outcome, decide, append; on a
        concurrency conflict, all of it again on fresh state."""

        async def attempt() -> CommandResult:
            aggregates = await load()
            if (done := _earlier_outcome(aggregates, ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            return await self._save(await decide(aggregates), ctx)

        return await self._with_retries(attempt)

    async def _view(
        self,
        series_id: str,
        definition: SeriesDefinition,
        bucket: SeriesBucket,
        points: Sequence[tuple[Snap, DataValue]],
    ) -> SeriesView:
        """The tail of official values before the bucket, and the calendar's sessions around
        the points, when the series' rules need them."""
        back = look_back(definition)
        check_calendar = definition.validation.check_calendar and bool(definition.calendar)
        if not back and not check_calendar:
            return NO_VIEW
        decider = Decider(definition, CommandContext("", "", 0))
        tail: list[tuple[int, Decimal]] = []
        span = BUCKET_SPAN_US[definition.frequency]
        earlier = bucket.bucket_us
        # Bounded: a gap longer than a few buckets restarts the look-back rules.
        for _ in range(_TAIL_BUCKETS if back else 0):
            if len(tail) >= back:
                break
            earlier -= span
            previous = await self._bucket(series_id, earlier)
            tail = previous.last_officials(back - len(tail), decider) + tail
        sessions = None
        if check_calendar:
            days = [decider.local_day(snap.utc_us) for snap, _ in points]
            sessions = self._calendar.sessions(definition.calendar, min(days), max(days))
        return SeriesView(tuple(tail), sessions)

    def _check_calendar(self, definition: SeriesDefinition) -> None:
        if definition.calendar and not self._calendar.knows(definition.calendar):
            raise InvalidArgument.single(
                "series.calendar", f"unknown exchange calendar {definition.calendar!r}"
            )

    async def _with_retries(self, attempt: Callable[[], Awaitable[CommandResult]]) -> CommandResult:
        for tries in range(self._max_attempts):
            try:
                return await attempt()
            except WrongExpectedVersion:
                # The next attempt re-loads: load() reads what the winner appended. A short
                # random pause keeps writers that collided from colliding again in lockstep.
                self.conflicts_retried += 1
                await asyncio.sleep(random.uniform(0, 0.002 * 2**tries))
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
    first_index: dict[int, int] = {}
    for i, (snap, value) in enumerate(points):
        path = field or f"points[{i}].value"
        if (j := first_index.setdefault(snap.utc_us, i)) != i:
            violations.append(
                FieldViolation(f"points[{i}].snap", f"the same instant as points[{j}].snap")
            )
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
        elif isinstance(value, Volume) and value.unit and value.unit != definition.unit:
            violations.append(
                FieldViolation(f"{path}.volume.unit", f"series is in {definition.unit}")
            )
        out.append((snap, value))
    if violations:
        raise InvalidArgument(violations)
    return out
