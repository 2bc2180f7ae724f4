"""Command handlers: load bounded state, let the domain decide, append atomically, retry on
conflict by re-loading and re-deciding (never by overwriting)."""

from __future__ import annotations

import asyncio
import bisect
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from functools import partial, reduce
from operator import attrgetter, itemgetter
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from qis_adapters.eventstore.port import WrongExpectedVersion
from qis_domain.access import (
    DENIALS_PREFIX,
    DENIALS_SCOPE,
    POLICIES_STREAM,
    AccessPolicies,
    DenialRecord,
    denial_stream,
)
from qis_domain.command_log import CommandRecord, command_stream, fingerprint
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.data_source import (
    DataSource,
    SourceHealthDay,
    health_stream,
    report_day,
    source_stream,
)
from qis_domain.day_over_day import SessionDays
from qis_domain.decisions import Decider, LastStructures, SeriesView, Timeline, snap_of_issue
from qis_domain.definitions import SeriesDefinition
from qis_domain.errors import FieldViolation, InvalidArgument, RetryLater
from qis_domain.events import DomainEvent, Issue, QualityIssueDetected, QualityRetracted
from qis_domain.metrics import calculate, window_limit_us
from qis_domain.names import series_name, source_name
from qis_domain.quality_window import QualityWindow, quality_stream
from qis_domain.reference_data import ReferenceData, definition_stream
from qis_domain.routing import (
    GROUPS_PREFIX,
    ROUTING_STREAM,
    ConsumerGroup,
    EventRouting,
    group_stream,
)
from qis_domain.rules import CalendarView
from qis_domain.scalar_points import ScalarPoints
from qis_domain.scheduler_state import SCHEDULER_STREAM, SchedulerState
from qis_domain.series_bucket import (
    LOOK_BACK_BUCKETS,
    SeriesBucket,
    bucket_stream,
    look_back,
    look_back_floor,
)
from qis_domain.service_levels import Arrivals
from qis_domain.snaps import BUCKET_SPAN_US, Snap, bucket_of
from qis_domain.structures import structure_violations
from qis_domain.values import DataValue, Price, Surface, TermStructure, Volume

from qis_command.application.commands import (
    CalculateQualityMetrics,
    CheckpointConsumerGroup,
    CheckpointScheduler,
    CommandResult,
    ConfigureSource,
    DefineSeries,
    DeleteAccessPolicy,
    DeleteTopic,
    EvolveSeries,
    ExpireOverrides,
    IngestPoints,
    ParkTopicEntry,
    PublishDue,
    PublishPoints,
    RaiseLateness,
    RecordDenial,
    RegisterSource,
    ReplayParkedEntries,
    ReportSourceHealth,
    ResolveIssues,
    RestatePoint,
    SetAccessPolicy,
    SetTopic,
)
from qis_command.application.ports import TradingCalendar
from qis_command.application.references import (
    level_sessions,
    prior_officials,
    with_references,
)
from qis_command.application.repository import Aggregate, Repository, Wanted

A = TypeVar("A", bound=Aggregate)


class ConcurrencyExhausted(RetryLater):
    """Other writers kept changing the same streams; the command was not applied."""

    kind = "contention"
    retry_after_s = 0.1


Change = tuple[Aggregate, Sequence[DomainEvent]]
Loaded = tuple[CommandRecord, list[A]]
"""A command's record and the aggregates it decides on."""


class CommandHandlers:
    def __init__(
        self, repository: Repository, calendar: TradingCalendar, max_attempts: int = 8
    ) -> None:
        self._repo = repository
        self._calendar = calendar
        self._max_attempts = max_attempts
        self.conflicts_retried = 0  # observable: a metric, and proof in tests that races happened
        # The bucket span of each series ingested into: fixed once a series is defined.
        self._spans: dict[str, int] = {}

    async def define_series(self, cmd: DefineSeries, ctx: CommandContext) -> CommandResult:
        async def decide(series: ReferenceData) -> list[DomainEvent]:
            known = await self._known_sources(cmd.definition)
            return series.define(cmd.definition, known, ctx, self._unknown_calendar(cmd.definition))

        return await self._decide_one(
            ctx, series_name(cmd.series_id), cmd, _definition_of(cmd.series_id), decide
        )

    async def evolve_series(self, cmd: EvolveSeries, ctx: CommandContext) -> CommandResult:
        async def decide(series: ReferenceData) -> list[DomainEvent]:
            # Merged on the state this attempt loaded and appends after: a change another
            # writer made since is kept, or the append conflicts and the merge is made again.
            definition = series.updated(cmd.update, cmd.expected_schema_version)
            known = await self._known_sources(definition)
            unknown_calendar = self._unknown_calendar(definition)
            return series.evolve(definition, cmd.reason, known, ctx, unknown_calendar)

        return await self._decide_one(
            ctx, series_name(cmd.series_id), cmd, _definition_of(cmd.series_id), decide
        )

    async def register_source(self, cmd: RegisterSource, ctx: CommandContext) -> CommandResult:
        async def decide(source: DataSource) -> list[DomainEvent]:
            return source.register(cmd.config, ctx)

        return await self._decide_one(
            ctx, source_name(cmd.source_id), cmd, _source_of(cmd.source_id), decide
        )

    async def configure_source(self, cmd: ConfigureSource, ctx: CommandContext) -> CommandResult:
        async def decide(source: DataSource) -> list[DomainEvent]:
            return source.configure(cmd.update, ctx)

        return await self._decide_one(
            ctx, source_name(cmd.source_id), cmd, _source_of(cmd.source_id), decide
        )

    async def report_source_health(
        self, cmd: ReportSourceHealth, ctx: CommandContext
    ) -> CommandResult:
        day_us = report_day(cmd.report)
        day_of = Wanted(
            health_stream(cmd.source_id, day_us), partial(SourceHealthDay, cmd.source_id, day_us)
        )

        async def decide(loaded: list[DataSource | SourceHealthDay]) -> list[Change]:
            source, day = loaded
            assert isinstance(source, DataSource)
            assert isinstance(day, SourceHealthDay)
            of_source, of_day = source.report_health(day, cmd.report)
            return [(source, of_source), (day, of_day)]

        return await self._decide(
            ctx, source_name(cmd.source_id), cmd, [_source_of(cmd.source_id), day_of], decide
        )

    async def ingest(
        self, cmd: IngestPoints, ctx: CommandContext, columns: str = ""
    ) -> CommandResult:
        """`columns`: the request's value column ("columns.prices") when the points came in
        columns, which violations then name (the command is the same in either form)."""
        snaps = _utc_us(cmd.points)
        # A series' frequency never changes once defined, so with its span known the series,
        # the command's record and the buckets are read together: one round trip, not two.
        preloaded: Loaded[SeriesBucket] | None = None
        by_bucket: dict[int, Sequence[tuple[Snap, DataValue]]] | None = None
        # Rejected (or failed), the command leaves the cache as it found it: what was read for a
        # decision that was not made (its buckets, those before them read for the look-back,
        # other series' read for references; kept, a stream of rejections fills the cache).
        with self._repo.forgotten_on_failure():
            if (span := self._spans.get(cmd.series_id)) is None:
                series = await self._series(cmd.series_id)
            else:
                by_bucket = _by_bucket(cmd.points, span, snaps)
                # With the buckets after the command's, which a look-back rule's re-judging
                # reads (in the same round trip; unused by a series without one).
                wanted = _buckets_of(cmd.series_id, _with_later(by_bucket, span))
                series, record, *buckets = await self._load(
                    _definition_of(cmd.series_id),
                    _record_of(series_name(cmd.series_id), ctx.command_id),
                    *wanted,
                )
                preloaded = record, buckets
            return await self._ingest_into(cmd, ctx, columns, series, snaps, by_bucket, preloaded)

    async def _ingest_into(
        self,
        cmd: IngestPoints,
        ctx: CommandContext,
        columns: str,
        series: ReferenceData,
        snaps: list[int],
        by_bucket: dict[int, Sequence[tuple[Snap, DataValue]]] | None,
        preloaded: Loaded[SeriesBucket] | None,
    ) -> CommandResult:
        """`by_bucket`: the points per bucket, when the series' span was known before it was
        read."""
        definition = series.require_definition()
        if definition.source(cmd.source_id) is None:
            raise InvalidArgument.single(
                "source",
                f"{source_name(cmd.source_id)} is not configured for {series_name(cmd.series_id)}",
            )
        _conform(definition, cmd.points, snaps, columns=columns)
        span = self._spans[cmd.series_id] = BUCKET_SPAN_US[definition.frequency]
        if by_bucket is None:
            by_bucket = _by_bucket(cmd.points, span, snaps)
        calendar = (
            self._calendar_view(definition, snaps) if definition.validation.check_calendar else None
        )
        sessions = self._sessions(definition, snaps)
        arrivals = self._arrivals(series, cmd.source_id)

        async def decide(loaded: list[SeriesBucket]) -> list[Change]:
            # One timeline for the whole command, made anew on every attempt: each bucket is
            # decided (in snap order) against what the buckets before it decided.
            timeline = Timeline() if look_back(definition) else None
            # Likewise the prior sessions' officials: read again on a retry.
            prior = await prior_officials(
                cmd.series_id, definition, snaps, sessions, loaded, self._bucket
            )
            schema = definition.structure
            jumps = schema is not None and schema.checks.max_node_jump_percent is not None
            structures = LastStructures() if jumps else None
            view = SeriesView(
                timeline, calendar, prior=prior, structures=structures, arrivals=arrivals
            )
            # Earlier buckets read for the look-back: a spike routed to one is appended at the
            # version its figures were read at.
            earlier: dict[int, SeriesBucket] = {}
            changes: list[Change] = []
            for bucket in loaded:
                if bucket.bucket_us not in by_bucket:
                    # After the command's buckets (in snap order, empty): the figures whose
                    # look-back reaches its values are judged again, in bucket order.
                    if timeline is not None and (
                        events := bucket.rejudge(definition, cmd.source_id, ctx, view)
                    ):
                        changes.append((bucket, events))
                    continue
                if timeline is not None:
                    await self._add_received(timeline, definition, cmd.source_id, bucket, earlier)
                if structures is not None:
                    await self._add_structures(
                        structures, definition, cmd.source_id, bucket, earlier
                    )
                points = by_bucket[bucket.bucket_us]
                # The other series' official figures the cross-series checks need (read now:
                # a retry reads them again).
                view = await with_references(
                    view, definition, bucket, points, self._series, self._bucket
                )
                changes.append(
                    (bucket, bucket.ingest(definition, cmd.source_id, points, ctx, view))
                )
            unspiked = [] if timeline is None else timeline.unspiked
            return await self._route_issues(
                cmd.series_id, definition, changes, earlier, (cmd.source_id, unspiked)
            )

        buckets = _with_later(by_bucket, span) if look_back(definition) else sorted(by_bucket)
        return await self._decide_buckets(ctx, cmd.series_id, cmd, buckets, decide, preloaded)

    async def publish(self, cmd: PublishPoints, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()
        by_bucket: dict[int, list[tuple[str, int]]] = {}
        for i, snap in enumerate(cmd.snaps):
            bucket = bucket_of(snap.utc_us, definition.frequency)
            by_bucket.setdefault(bucket, []).append((f"snap_times[{i}]", snap.utc_us))

        def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.publish(definition, by_bucket[bucket.bucket_us], cmd.comment, ctx)

        return await self._decide_buckets(ctx, cmd.series_id, cmd, list(by_bucket), each(decide))

    async def restate(self, cmd: RestatePoint, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()
        _conform(definition, [(cmd.snap, cmd.value)], field="value")

        def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.restate(
                definition,
                cmd.snap.utc_us,
                cmd.value,
                cmd.reason,
                ctx,
                cmd.reason_code,
                cmd.expires_us,
            )

        bucket_us = bucket_of(cmd.snap.utc_us, definition.frequency)
        return await self._decide_buckets(ctx, cmd.series_id, cmd, [bucket_us], each(decide))

    async def resolve_issues(self, cmd: ResolveIssues, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()
        if cmd.value is not None:
            _conform(definition, [(Snap(0), cmd.value)], field="value")
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

        def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            issues = by_bucket[bucket.bucket_us]
            return bucket.resolve(
                definition,
                issues,
                cmd.action,
                cmd.reason,
                ctx,
                cmd.value,
                cmd.reason_code,
                cmd.expires_us,
            )

        return await self._decide_buckets(ctx, cmd.series_id, cmd, list(by_bucket), each(decide))

    async def publish_due(self, cmd: PublishDue, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()

        def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.publish_due(definition, ctx)

        return await self._decide_buckets(ctx, cmd.series_id, cmd, [cmd.bucket_us], each(decide))

    async def expire_overrides(self, cmd: ExpireOverrides, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()

        def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.expire_overrides(definition, ctx)

        return await self._decide_buckets(ctx, cmd.series_id, cmd, [cmd.bucket_us], each(decide))

    async def calculate_metrics(
        self, cmd: CalculateQualityMetrics, ctx: CommandContext
    ) -> CommandResult:
        series = await self._series(cmd.series_id)
        definition = series.require_definition()
        if not cmd.start_us < cmd.end_us <= cmd.start_us + window_limit_us(definition):
            raise InvalidArgument.single(
                "window",
                "the end must follow the start, within 40 buckets of the series (at least a day)",
            )
        decider = Decider(definition, ctx)
        calendar = None
        if definition.calendar:
            # One day either side: metrics keep the sessions whose local day starts in the window.
            calendar = self._calendar_days(definition, [cmd.start_us, cmd.end_us])
        span = BUCKET_SPAN_US[definition.frequency]
        first_bucket = bucket_of(cmd.start_us, definition.frequency)

        window = Wanted(
            quality_stream(cmd.series_id, cmd.start_us, cmd.end_us),
            partial(QualityWindow, cmd.series_id, cmd.start_us, cmd.end_us),
        )

        async def decide(_: QualityWindow) -> list[DomainEvent]:
            points = []
            for bucket_us in range(first_bucket, cmd.end_us, span):
                bucket = await self._bucket(cmd.series_id, bucket_us)
                points.extend(bucket.summaries(cmd.start_us, cmd.end_us, decider))
            return [
                calculate(
                    definition, cmd.series_id, cmd.start_us, cmd.end_us, points, calendar, decider
                )
            ]

        return await self._decide_one(ctx, series_name(cmd.series_id), cmd, window, decide)

    async def set_policy(self, cmd: SetAccessPolicy, ctx: CommandContext) -> CommandResult:
        async def decide(policies: AccessPolicies) -> list[DomainEvent]:
            return policies.set_policy(cmd.policy_id, cmd.policy, cmd.reason, cmd.expected_revision)

        return await self._decide_one(ctx, POLICIES_STREAM, cmd, _POLICIES, decide)

    async def delete_policy(self, cmd: DeleteAccessPolicy, ctx: CommandContext) -> CommandResult:
        async def decide(policies: AccessPolicies) -> list[DomainEvent]:
            return policies.remove_policy(cmd.policy_id, cmd.reason, cmd.expected_revision)

        return await self._decide_one(ctx, POLICIES_STREAM, cmd, _POLICIES, decide)

    async def record_denial(self, cmd: RecordDenial, ctx: CommandContext) -> CommandResult:
        """The denial, in the stream its command id names."""

        async def decide(record: DenialRecord) -> list[DomainEvent]:
            return record.record(cmd.denial)

        denial = Wanted(denial_stream(ctx.command_id), partial(DenialRecord, ctx.command_id))
        return await self._decide_one(ctx, DENIALS_SCOPE, cmd, denial, decide)

    async def set_topic(self, cmd: SetTopic, ctx: CommandContext) -> CommandResult:
        async def decide(routing: EventRouting) -> list[DomainEvent]:
            return routing.set_topic(cmd.name, cmd.definition)

        return await self._decide_one(ctx, ROUTING_STREAM, cmd, _ROUTING, decide)

    async def delete_topic(self, cmd: DeleteTopic, ctx: CommandContext) -> CommandResult:
        async def decide(routing: EventRouting) -> list[DomainEvent]:
            return routing.delete_topic(cmd.name)

        return await self._decide_one(ctx, ROUTING_STREAM, cmd, _ROUTING, decide)

    async def checkpoint_group(
        self, cmd: CheckpointConsumerGroup, ctx: CommandContext
    ) -> CommandResult:
        async def decide(group: ConsumerGroup) -> list[DomainEvent]:
            return group.checkpoint_at(cmd.position, cmd.index, cmd.settled)

        return await self._decide_group(ctx, cmd.topic, cmd.group, cmd, decide)

    async def park_entry(self, cmd: ParkTopicEntry, ctx: CommandContext) -> CommandResult:
        async def decide(group: ConsumerGroup) -> list[DomainEvent]:
            return group.park(cmd.position, cmd.index, cmd.attempts, cmd.last_error)

        return await self._decide_group(ctx, cmd.topic, cmd.group, cmd, decide)

    async def replay_parked(self, cmd: ReplayParkedEntries, ctx: CommandContext) -> CommandResult:
        async def decide(group: ConsumerGroup) -> list[DomainEvent]:
            return group.replay(cmd.entries)

        return await self._decide_group(ctx, cmd.topic, cmd.group, cmd, decide)

    # --- plumbing ---

    async def _decide_group(
        self,
        ctx: CommandContext,
        topic: str,
        group: str,
        command: object,
        decide: Callable[[ConsumerGroup], Awaitable[list[DomainEvent]]],
    ) -> CommandResult:
        stream = group_stream(topic, group)
        wanted = Wanted(stream, partial(ConsumerGroup, topic, group))
        return await self._decide_one(ctx, stream, command, wanted, decide)

    async def _decide_one(
        self,
        ctx: CommandContext,
        scope: str,
        command: object,
        wanted: Wanted[A],
        decide: Callable[[A], Awaitable[list[DomainEvent]]],
    ) -> CommandResult:
        async def decide_all(aggregates: list[A]) -> list[Change]:
            return [(aggregates[0], await decide(aggregates[0]))]

        return await self._decide(ctx, scope, command, [wanted], decide_all)

    async def _decide_buckets(
        self,
        ctx: CommandContext,
        series_id: str,
        command: object,
        buckets: list[int],
        decide: Callable[[list[SeriesBucket]], Awaitable[list[Change]]],
        preloaded: Loaded[SeriesBucket] | None = None,
    ) -> CommandResult:
        """A command on the points of several buckets: decided per bucket, appended atomically.
        `preloaded`: see `_decide`."""
        wanted = _buckets_of(series_id, buckets)
        return await self._decide(ctx, series_name(series_id), command, wanted, decide, preloaded)

    async def _decide(
        self,
        ctx: CommandContext,
        scope: str,
        command: object,
        wanted: Sequence[Wanted[A]],
        decide: Callable[[list[A]], Awaitable[list[Change]]],
        preloaded: Loaded[A] | None = None,
    ) -> CommandResult:
        """Load the command's record with the aggregates `wanted`, in one read of the store (a
        round trip is most of a small command's cost), answer a repeated command id with its
        first outcome, decide, append together with the command's record; on a concurrency
        conflict, all of it again on fresh state. `preloaded`: the record and the aggregates,
        read already (used once: a retry reads them again).

        Command ids are unique per scope (a series, a source): the record of the first command
        with an id is one read of one small stream away, whichever streams a repeat touches."""
        print_ = fingerprint(command)
        record_of = _record_of(scope, ctx.command_id)

        async def attempt() -> CommandResult:
            nonlocal preloaded
            if preloaded is not None:
                (record, aggregates), preloaded = preloaded, None
            else:
                record, *aggregates = await self._load(record_of, *wanted)
            if (streams := record.earlier_streams(print_, command)) is not None:
                earlier = await self._outcome_in(streams, ctx.command_id, record.position)
                return CommandResult(earlier, duplicate=True)
            # Commands handled before command records existed are known to their streams only.
            if (done := _earlier_outcome(aggregates, ctx.command_id)) is not None:
                return CommandResult(done, duplicate=True)
            changes = await decide(aggregates)
            # Recorded even when nothing else changes (e.g. re-approving an official value), so
            # that the id cannot be reused for other arguments.
            streams = [a.stream for a, events in changes if events]
            changes.append((record, record.accept(print_, streams)))
            result = await self._repo.save(changes, ctx)
            outcome = _earlier_outcome([a for a, _ in changes], ctx.command_id)
            return CommandResult(outcome or CommandOutcome(result.position), duplicate=False)

        return await self._with_retries(attempt)

    async def _outcome_in(
        self, streams: Sequence[str], command_id: str, position: int
    ) -> CommandOutcome:
        """A repeated command's outcome, from the streams its events went to; `position`: where
        its record was appended, with its events."""
        outcomes = []
        for stream in streams:
            aggregate = await self._repo.load(stream, _factory_of(stream))
            if (outcome := aggregate.outcome_of(command_id)) is not None:
                outcomes.append(outcome)
        return reduce(lambda x, y: x + y, outcomes, CommandOutcome(position))

    async def _add_received(
        self,
        timeline: Timeline,
        definition: SeriesDefinition,
        source_id: str,
        bucket: SeriesBucket,
        earlier: dict[int, SeriesBucket],
    ) -> None:
        """Before `bucket` is decided (which adds the source's own recorded figures): those of
        `source_id` in the buckets before it that its values may look back to, unless already
        there (a bucket of this command decided earlier is, with this command's decisions).
        Buckets read are kept in `earlier`."""
        decider = Decider.reading(definition)
        need = look_back(definition)
        for before_us in _buckets_before(definition, bucket):
            if before_us not in timeline.covered:
                previous = await self._bucket(bucket.series_id, before_us)
                earlier[before_us] = previous
                timeline.add(before_us, previous.received(decider, source_id, last=need))
            if len(timeline.before(bucket.bucket_us, need, before_us)) >= need:
                break  # enough points between this bucket and `before_us`

    async def _add_structures(
        self,
        structures: LastStructures,
        definition: SeriesDefinition,
        source_id: str,
        bucket: SeriesBucket,
        earlier: dict[int, SeriesBucket],
    ) -> None:
        """Before `bucket` is decided: the last structure of `source_id` in the buckets before
        it, back to the first that has one or to the look-back floor (as `_add_received`
        reads figures), unless the command decided or read them already."""
        decider = Decider.reading(definition)
        for before_us in _buckets_before(definition, bucket):
            if before_us not in structures.last:
                previous = earlier.get(before_us) or await self._bucket(bucket.series_id, before_us)
                earlier[before_us] = previous
                structures.last[before_us] = previous.last_structure(decider, source_id)
            if structures.last[before_us] is not None:
                break

    async def _route_issues(
        self,
        series_id: str,
        definition: SeriesDefinition,
        changes: list[Change],
        earlier: dict[int, SeriesBucket],
        unspiked: tuple[str, Sequence[int]] = ("", ()),
    ) -> list[Change]:
        """A decision may raise issues about points of an earlier bucket (a spike is seen when
        the move back arrives): each goes to the bucket that owns the point, in the same atomic
        append, in one QualityIssueDetected with that bucket's own issues (its points counted
        once); a bucket the command does not touch is the one its figures were read from. Or
        find that the spike about such a point no longer holds (`unspiked`: the source and
        the points): the bucket that owns it retracts its open spike issue."""
        buckets = {a.bucket_us: a for a, _ in changes if isinstance(a, SeriesBucket)}
        events_of: dict[int, list[DomainEvent]] = {}
        foreign: dict[int, list[Issue]] = {}
        for bucket_us, bucket in buckets.items():
            kept = events_of.setdefault(bucket_us, [])
            for event in next(events for a, events in changes if a is bucket):
                if not isinstance(event, QualityIssueDetected):
                    kept.append(event)
                    continue
                own = []
                for issue in event.issues:
                    owner = bucket_of(issue.snap_us, definition.frequency)
                    if owner == bucket_us:
                        own.append(issue)
                    else:
                        foreign.setdefault(owner, []).append(issue)
                if own:
                    kept.append(event.model_copy(update={"issues": own}))
        for owner, issues in sorted(foreign.items()):
            if owner not in buckets:
                buckets[owner] = earlier.get(owner) or await self._bucket(series_id, owner)
            events = events_of.setdefault(owner, [])
            # A spike about a value this command replaced here is retracted with it: found
            # again about the new value, it is raised anew.
            closing = {i for e in events if isinstance(e, QualityRetracted) for i in e.issue_ids}
            for flagged in buckets[owner].flag(issues, closing):
                held = [i for i, e in enumerate(events) if isinstance(e, QualityIssueDetected)]
                if not held:
                    events.append(flagged)
                    continue
                current = events[held[0]]
                assert isinstance(current, QualityIssueDetected)
                merged = [*current.issues, *flagged.issues]
                events[held[0]] = current.model_copy(update={"issues": merged})
        source_id, points = unspiked
        by_owner: dict[int, list[int]] = {}
        for snap_us in points:
            by_owner.setdefault(bucket_of(snap_us, definition.frequency), []).append(snap_us)
        for owner, snaps in sorted(by_owner.items()):
            bucket = (
                buckets.get(owner) or earlier.get(owner) or await self._bucket(series_id, owner)
            )
            if retracted := bucket.unflag(source_id, snaps):
                buckets[owner] = bucket
                events_of.setdefault(owner, []).extend(retracted)
        return [(buckets[b], events_of[b]) for b in sorted(buckets)]

    def _calendar_view(
        self, definition: SeriesDefinition, snaps_us: Sequence[int]
    ) -> CalendarView | None:
        if not (definition.validation.check_calendar and definition.calendar and snaps_us):
            return None
        return self._calendar_days(definition, snaps_us)

    def _calendar_days(self, definition: SeriesDefinition, snaps_us: Sequence[int]) -> CalendarView:
        """The exchange's sessions over the local days of `snaps_us`, and the days it covers."""
        decider = Decider.reading(definition)
        days = [decider.local_day(s) for s in snaps_us]
        code = definition.calendar
        first, last = self._calendar.coverage(code)
        return CalendarView(self._calendar.sessions(code, min(days), max(days)), first, last)

    def _sessions(
        self, definition: SeriesDefinition, snaps_us: Sequence[int]
    ) -> SessionDays | None:
        """For the day_over_day rule: the calendar's sessions over the local days of `snaps_us`
        and back to the session before the first (None: no rule, or no calendar: every day is
        a session). Widened until a session is found or the calendar's coverage ends: an
        exchange may close for weeks."""
        code = definition.calendar
        if definition.validation.day_over_day is None or not code or not snaps_us:
            return None
        decider = Decider.reading(definition)
        days = [decider.local_day(s) for s in snaps_us]
        lo, hi = min(days), max(days)
        first, last = self._calendar.coverage(code)
        back = timedelta(days=7)
        while True:
            start = first if lo - first <= back else lo - back
            found = self._calendar.sessions(code, start, hi)
            if start <= first or any(d < lo for d in found):
                return SessionDays(tuple(sorted(found)), last)
            back *= 2

    def _arrivals(self, series: ReferenceData, source_id: str) -> tuple[Arrivals, ...]:
        """The source's arrival deadline under each of the series' service levels remembered
        that gives it one, over the snaps the level was in force for."""
        return tuple(
            Arrivals(
                level.level,
                level.frequency,
                ZoneInfo(level.time_zone),
                since_us,
                deadline,
                level_sessions(self._calendar, level.calendar),
                until_us,
            )
            for since_us, until_us, level in series.level_periods()
            if (deadline := level.level.arrival_deadlines(level.sources).get(source_id)) is not None
        )

    def _unknown_calendar(self, definition: SeriesDefinition) -> bool:
        return bool(definition.calendar) and not self._calendar.knows(definition.calendar)

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

    async def _load(self, *wanted: Wanted[Any]) -> list[Any]:
        """The aggregates wanted, read together (Repository.load_together); a series whose
        service level's commit time this process does not know yet is read from the store
        again (see _level_time_unknown)."""
        loaded = await self._repo.load_together(*wanted)
        stale = [a for a in loaded if isinstance(a, ReferenceData) and _level_time_unknown(a)]
        if not stale:
            return loaded
        for series in stale:
            self._repo.forget(series.stream)
        return await self._repo.load_together(*wanted)

    async def _series(self, series_id: str) -> ReferenceData:
        (series,) = await self._load(_definition_of(series_id))
        return series  # type: ignore[no-any-return]  # made by its factory

    async def _source(self, source_id: str) -> DataSource:
        (source,) = await self._load(_source_of(source_id))
        return source  # type: ignore[no-any-return]  # made by its factory

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

    async def raise_lateness(self, cmd: RaiseLateness, ctx: CommandContext) -> CommandResult:
        definition = (await self._series(cmd.series_id)).require_definition()
        if any(bucket_of(snap_us, definition.frequency) != cmd.bucket_us for snap_us, _ in cmd.due):
            raise InvalidArgument.single("due", "a snap outside the bucket")

        def decide(bucket: SeriesBucket) -> list[DomainEvent]:
            return bucket.raise_lateness(cmd.rule, cmd.source_id, cmd.due, cmd.severity, ctx)

        return await self._decide_buckets(ctx, cmd.series_id, cmd, [cmd.bucket_us], each(decide))

    async def checkpoint_scheduler(
        self, cmd: CheckpointScheduler, ctx: CommandContext
    ) -> CommandResult:
        async def decide(state: SchedulerState) -> list[DomainEvent]:
            return state.checkpoint(cmd.snapshot)

        state = Wanted(SCHEDULER_STREAM, partial(SchedulerState, cmd.known_version))
        return await self._decide_one(ctx, SCHEDULER_STREAM, cmd, state, decide)


def each(
    decide: Callable[[SeriesBucket], list[DomainEvent]],
) -> Callable[[list[SeriesBucket]], Awaitable[list[Change]]]:
    """A command whose buckets are decided independently of each other."""

    async def decide_all(loaded: list[SeriesBucket]) -> list[Change]:
        return [(bucket, decide(bucket)) for bucket in loaded]

    return decide_all


_WINDOW_KEY = re.compile(r"(-?\d+)-(-?\d+)")


def _factory_of(stream: str) -> Callable[[], Aggregate]:
    """An empty aggregate of the kind a stream name holds (see each kind's `*_stream`)."""
    if stream == POLICIES_STREAM:
        return AccessPolicies
    if stream == ROUTING_STREAM:
        return EventRouting
    if stream == SCHEDULER_STREAM:
        return SchedulerState
    if stream.startswith(GROUPS_PREFIX):
        topic, _, group = stream.removeprefix(GROUPS_PREFIX).partition("/")
        return lambda: ConsumerGroup(topic, group)
    if stream.startswith(DENIALS_PREFIX):
        return lambda: DenialRecord(stream.removeprefix(DENIALS_PREFIX))
    kind, _, rest = stream.partition("/")
    if kind == "sources":
        source_id, _, day = rest.partition("/health/")
        if day:
            return lambda: SourceHealthDay(source_id, int(day))
        return lambda: DataSource(rest)
    series_id, _, tail = rest.partition("/")
    part, _, key = tail.partition("/")
    if part == "points":
        return lambda: SeriesBucket(series_id, int(key))
    if part == "quality":
        window = _WINDOW_KEY.fullmatch(key)  # either end is negative before 1970
        if window is None:
            raise ValueError(f"{stream!r} is not a quality window's stream")
        start, end = map(int, window.groups())
        return lambda: QualityWindow(series_id, start, end)
    return lambda: ReferenceData(series_id)


def _level_time_unknown(series: ReferenceData) -> bool:
    """This process appended a service level, and an append does not return its commit time:
    the store has it (read again once per level and process)."""
    return any(change.since_us is None for change in series.levels)


def _earlier_outcome(aggregates: Sequence[Aggregate], command_id: str) -> CommandOutcome | None:
    """A command's events in several buckets were appended atomically: together they are its
    outcome."""
    outcomes = [o for a in aggregates if (o := a.outcome_of(command_id)) is not None]
    return reduce(lambda x, y: x + y, outcomes) if outcomes else None


def _with_later(buckets: Iterable[int], span: int) -> list[int]:
    """`buckets` (their starts) and the buckets after each whose points may look back to it
    (it is above their look-back floor), ascending."""
    reach = range(0, (LOOK_BACK_BUCKETS + 1) * span, span)
    return sorted({b + k for b in buckets for k in reach})


def _buckets_before(definition: SeriesDefinition, bucket: SeriesBucket) -> range:
    """The starts of the buckets before `bucket` that its points may look back to (down to
    the look-back floor), nearest first."""
    span = BUCKET_SPAN_US[definition.frequency]
    floor_us = look_back_floor(bucket.bucket_us, definition.frequency)
    return range(bucket.bucket_us - span, floor_us - 1, -span)


def _record_of(scope: str, command_id: str) -> Wanted[CommandRecord]:
    """A command's record: read once, so not cached (it would only push out warm buckets)."""
    return Wanted(
        command_stream(scope, command_id), partial(CommandRecord, scope, command_id), False
    )


_POLICIES = Wanted(POLICIES_STREAM, AccessPolicies)
_ROUTING = Wanted(ROUTING_STREAM, EventRouting)


def _definition_of(series_id: str) -> Wanted[ReferenceData]:
    return Wanted(definition_stream(series_id), partial(ReferenceData, series_id))


def _source_of(source_id: str) -> Wanted[DataSource]:
    return Wanted(source_stream(source_id), partial(DataSource, source_id))


def _buckets_of(series_id: str, buckets: Iterable[int]) -> list[Wanted[SeriesBucket]]:
    return [
        Wanted(bucket_stream(series_id, b), partial(SeriesBucket, series_id, b)) for b in buckets
    ]


# Snap is a tuple whose first item is its UTC µs: read a point's without a Python call.
_FIRST, _VALUE = itemgetter(0), itemgetter(1)
_CURRENCY, _UNIT = attrgetter("currency"), attrgetter("unit")


def _utc_us(points: Sequence[tuple[Snap, DataValue]]) -> list[int]:
    if type(points) is ScalarPoints:
        return list(points.utc_us)
    return list(map(_FIRST, map(_FIRST, points)))


def _by_bucket(
    points: Sequence[tuple[Snap, DataValue]], span: int, snaps_us: list[int] | None = None
) -> dict[int, Sequence[tuple[Snap, DataValue]]]:
    """The points per bucket (see snaps.bucket_of), in the order given (`snaps_us`: theirs,
    when the caller has them); a batch within one bucket (the usual) is kept whole, one in snap
    order (a bulk load's chunk spanning buckets) is cut where each bucket ends, found by
    bisection."""
    if not points:
        return {}
    if snaps_us is None:
        snaps_us = _utc_us(points)
    lo, hi = min(snaps_us), max(snaps_us)
    if lo - lo % span == hi - hi % span:
        return {lo - lo % span: points}
    by_bucket: dict[int, Sequence[tuple[Snap, DataValue]]] = {}
    if snaps_us == sorted(snaps_us):
        start = 0
        while start < len(points):
            bucket_us = snaps_us[start] - snaps_us[start] % span
            end = bisect.bisect_left(snaps_us, bucket_us + span, start)
            by_bucket[bucket_us] = points[start:end]
            start = end
        return by_bucket
    scattered: dict[int, list[tuple[Snap, DataValue]]] = {}
    for us, point in zip(snaps_us, points, strict=True):
        scattered.setdefault(us - us % span, []).append(point)
    return dict(scattered)


def _conform(
    definition: SeriesDefinition,
    points: Sequence[tuple[Snap, DataValue]],
    snaps_us: list[int] | None = None,
    field: str = "",
    columns: str = "",
) -> None:
    """Raises unless the values are of the series' type and unit (a missing currency/unit is
    the series' one: values are stored without it) and the snaps are unique. `snaps_us`: the
    points' (`_utc_us`), when the caller has them. `columns`: the points came in columns, and
    their value column is named so (one violation for a column of the wrong type, the snaps'
    column for a repeated snap).

    A batch of one type, in the series' unit, with unique snaps (the usual) is seen to be so
    by three sets made in C (ScalarPoints, by their kind); only a batch that is not is walked
    point by point, to name each violation."""
    if type(points) is ScalarPoints and points.data_type is definition.data_type:
        return  # one kind, no unit of their own, unique snaps: what ScalarPoints hold
    if definition.structure is not None:
        # The shape any structure has was checked at the edge; its series' schema only here.
        shaped: list[FieldViolation] = []
        for i, (_, value) in enumerate(points):
            if isinstance(value, TermStructure | Surface):
                at = field or columns or f"points[{i}].value"
                structure_violations(value, definition.structure, at, shaped)
        if shaped:
            raise InvalidArgument(shaped)
    values = list(map(_VALUE, points))
    kinds = set(map(type, values))
    # One kind of value: the first value's data type is every value's.
    if len(kinds) == 1 and values[0].data_type is definition.data_type:
        kind = kinds.pop()
        units: set[str] = set()
        if kind is Price:
            units = set(map(_CURRENCY, values))
        elif kind is Volume:
            units = set(map(_UNIT, values))
        if snaps_us is None:
            snaps_us = _utc_us(points)
        if units <= {"", definition.unit} and len(set(snaps_us)) == len(points):
            return
    violations: list[FieldViolation] = []
    first_index: dict[int, int] = {}
    snaps_path = f"{columns.rsplit('.', 1)[0]}.snap_time_micros" if columns else ""
    for i, (snap, value) in enumerate(points):
        path = field or columns or f"points[{i}].value"
        if (j := first_index.setdefault(snap.utc_us, i)) != i:
            violations.append(
                FieldViolation(f"{snaps_path}[{i}]", f"the same instant as {snaps_path}[{j}]")
                if columns
                else FieldViolation(
                    f"points[{i}].snap_time", f"the same instant as points[{j}].snap_time"
                )
            )
        if value.data_type is not definition.data_type:
            violations.append(
                FieldViolation(
                    path,
                    f"series holds {definition.data_type.value} values, got {value.data_type.value}",
                )
            )
            if columns:
                break  # one for the column
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
    if violations:
        raise InvalidArgument(violations)
