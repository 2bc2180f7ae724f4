"""The per-point state of one series over one time bucket: values per source, the reconciled
candidate, the official versions, and the commands already handled.

A series' points are split into buckets (see snaps.BUCKET_SPAN_US) so that deciding a command
reads a bounded state, whatever the length of the series' history.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.definitions import BreakAction, PublicationMode, SeriesDefinition
from qis_domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DomainEvent,
    IngestedPoint,
    Issue,
    OfficialPoint,
    QualityIssueDetected,
    ReconciledPoint,
)
from qis_domain.quality import PointStatus, quality_score
from qis_domain.reconciliation import reconcile, within_tolerance
from qis_domain.rules import RuleFailure, Severity, check_value
from qis_domain.snaps import Snap
from qis_domain.values import (
    DataValue,
    OhlcBar,
    Price,
    Volume,
    value_from_doc,
    value_to_doc,
)

_ISSUES_NAMESPACE = uuid.UUID("6f1c7a52-3f0e-4d8e-9a59-0c7d1f0e4b21")
MANUAL = "manual"


def bucket_stream(series_id: str, bucket_us: int) -> str:
    return f"series/{series_id}/points/{bucket_us}"


@dataclass(frozen=True, slots=True)
class Recorded:
    """Where an event being applied came from: the command that caused it and its place in the
    log (the metadata part the state needs)."""

    command_id: str
    user_id: str
    position: int
    stream_version: int


@dataclass(slots=True)
class Observed:
    value: DataValue
    user_id: str
    failures: tuple[RuleFailure, ...] = ()


@dataclass(slots=True)
class Candidate:
    value: DataValue
    doc: dict[str, object]
    method: str
    sources: tuple[str, ...]
    excluded: tuple[str, ...]
    quality: str
    status: PointStatus


@dataclass(slots=True)
class Official:
    version: int
    value: DataValue
    manual: bool  # a manual correction: automatic reconciliation does not override it


@dataclass(slots=True)
class PointState:
    observed: dict[str, Observed] = field(default_factory=dict)
    candidate: Candidate | None = None
    official: Official | None = None


class SeriesBucket:
    def __init__(self, series_id: str, bucket_us: int) -> None:
        self.series_id = series_id
        self.bucket_us = bucket_us
        self.version: int | None = None  # stream version of the last applied event
        self.points: dict[int, PointState] = {}
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return bucket_stream(self.series_id, self.bucket_us)

    def outcome_of(self, command_id: str) -> CommandOutcome | None:
        return self._outcomes.get(command_id)

    # --- decisions: pure functions of the state and the command, returning new events ---

    def ingest(
        self,
        definition: SeriesDefinition,
        source_id: str,
        points: Sequence[tuple[Snap, DataValue]],
        ctx: CommandContext,
    ) -> list[DomainEvent]:
        ingested: list[IngestedPoint] = []
        issues: list[Issue] = []
        reconciled: list[ReconciledPoint] = []
        first: list[OfficialPoint] = []
        restated: list[OfficialPoint] = []
        if len({snap.utc_us for snap, _ in points}) != len(points):
            raise InvalidArgument.single("points", "snaps must be unique within one command")
        for snap, value in points:
            failures = tuple(check_value(value, definition.validation))
            ingested.append(
                IngestedPoint(
                    snap_us=snap.utc_us, offset_s=snap.offset_s, value=value_to_doc(value)
                )
            )
            issues.extend(_issues(ctx.command_id, snap.utc_us, source_id, failures))
            state = self.points.get(snap.utc_us) or PointState()
            observed = dict(state.observed)
            known_before = source_id in observed
            observed[source_id] = Observed(value, ctx.user_id, failures)
            candidate, point_issues = _candidate(definition, observed, snap.utc_us, ctx.command_id)
            issues.extend(point_issues)
            reconciled.append(_reconciled_point(snap.utc_us, candidate, observed))
            if candidate.status is not PointStatus.PUBLISHED:
                continue
            official = state.official
            if official is None:
                first.append(_official_point(snap.utc_us, 1, candidate, observed))
            elif not official.manual and not within_tolerance(
                candidate.value, official.value, definition.reconciliation
            ):
                cause = "corrected_source" if known_before else "late_source"
                reason = (
                    f"corrected value from {source_id}"
                    if known_before
                    else f"late source {source_id}"
                )
                restated.append(
                    _official_point(
                        snap.utc_us, official.version + 1, candidate, observed, reason, cause
                    )
                )
        events: list[DomainEvent] = [
            DataIngested(series_id=self.series_id, source_id=source_id, points=ingested)
        ]
        if issues:
            events.append(QualityIssueDetected(series_id=self.series_id, issues=issues))
        events.append(DataReconciled(series_id=self.series_id, points=reconciled))
        if first:
            events.append(DataPublished(series_id=self.series_id, mode="automatic", points=first))
        if restated:
            events.append(DataRestated(series_id=self.series_id, points=restated))
        return events

    def publish(
        self,
        snaps: Sequence[tuple[str, int]],
        comment: str,
        ctx: CommandContext,
    ) -> list[DomainEvent]:
        """Manual approval of the current candidates. `snaps` pairs a field path with a snap.

        Four-eyes: the approver may not be anyone whose value the candidate was made from.
        """
        first: list[OfficialPoint] = []
        restated: list[OfficialPoint] = []
        for field_path, snap_us in snaps:
            state = self.points.get(snap_us)
            if state is None or state.candidate is None:
                raise NotFound(f"point {self.series_id}@{snap_us}", field_path)
            candidate = state.candidate
            submitters = {
                state.observed[s].user_id for s in candidate.sources if s in state.observed
            }
            if ctx.user_id in submitters:
                raise PermissionDenied(
                    f"{field_path}: four-eyes rule: {ctx.user_id!r} submitted a value of this point"
                    " and cannot also approve it"
                )
            official = state.official
            if official is not None and not official.manual and official.value == candidate.value:
                continue  # already official: approving it again changes nothing
            point = OfficialPoint(
                snap_us=snap_us,
                version=1 if official is None else official.version + 1,
                value=candidate.doc,
                quality_score=candidate.quality,
                sources=list(candidate.sources),
                method=candidate.method,
                flags=_flags(state.observed, candidate.sources),
                reason=comment,
                cause="" if official is None else "approved_change",
            )
            (first if official is None else restated).append(point)
        events: list[DomainEvent] = []
        if first:
            events.append(DataPublished(series_id=self.series_id, mode=MANUAL, points=first))
        if restated:
            events.append(DataRestated(series_id=self.series_id, points=restated))
        return events

    def restate(
        self, snap_us: int, value: DataValue, reason: str, ctx: CommandContext
    ) -> list[DomainEvent]:
        """A manual correction of a published point: a new version that automatic
        reconciliation will not override."""
        if not reason.strip():
            raise InvalidArgument.single("reason", "a restatement needs a reason")
        state = self.points.get(snap_us)
        if state is None or state.official is None:
            raise FailedPrecondition(f"point {self.series_id}@{snap_us} has not been published")
        point = OfficialPoint(
            snap_us=snap_us,
            version=state.official.version + 1,
            value=value_to_doc(value),
            quality_score="1",
            sources=[MANUAL],
            method=MANUAL,
            flags=[],
            reason=reason,
            cause="manual_correction",
        )
        return [DataRestated(series_id=self.series_id, points=[point])]

    # --- evolution: the only place state changes ---

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        command_id, position = meta.command_id, meta.position
        outcome = self._outcomes.get(command_id) or CommandOutcome(position)
        if isinstance(event, DataIngested):
            for p in event.points:
                state = self.points.setdefault(p.snap_us, PointState())
                state.observed[event.source_id] = Observed(value_from_doc(p.value), meta.user_id)
            outcome = outcome + CommandOutcome(position, accepted=len(event.points))
        elif isinstance(event, QualityIssueDetected):
            flagged: set[int] = set()
            for issue in event.issues:
                observed = self.points[issue.snap_us].observed.get(issue.source_id)
                if observed is not None:
                    failure = RuleFailure(issue.rule, Severity(issue.severity), issue.evidence)
                    observed.failures = (*observed.failures, failure)
                flagged.add(issue.snap_us)
            outcome = outcome + CommandOutcome(position, flagged=len(flagged))
        elif isinstance(event, DataReconciled):
            for r in event.points:
                self.points[r.snap_us].candidate = Candidate(
                    value_from_doc(r.value),
                    r.value,
                    r.method,
                    tuple(r.contributions),
                    tuple(r.excluded),
                    r.quality_score,
                    PointStatus(r.status),
                )
        elif isinstance(event, DataPublished | DataRestated):
            for o in event.points:
                state = self.points.setdefault(o.snap_us, PointState())
                state.official = Official(o.version, value_from_doc(o.value), o.method == MANUAL)
            outcome = outcome + CommandOutcome(position, published=len(event.points))
        self._outcomes[command_id] = outcome


def _issues(
    command_id: str, snap_us: int, source_id: str, failures: Sequence[RuleFailure]
) -> list[Issue]:
    return [
        Issue(
            issue_id=str(
                uuid.uuid5(_ISSUES_NAMESPACE, f"{command_id}|{snap_us}|{source_id}|{f.rule}")
            ),
            snap_us=snap_us,
            source_id=source_id,
            rule=f.rule,
            severity=f.severity.value,
            blocking=f.blocking,
            evidence=f.evidence,
        )
        for f in failures
    ]


def _candidate(
    definition: SeriesDefinition, observed: dict[str, Observed], snap_us: int, command_id: str
) -> tuple[Candidate, list[Issue]]:
    result = reconcile({s: o.value for s, o in observed.items()}, definition)
    value = _rounded(result.value, definition.precision)
    failures = [f for s in result.contributors for f in observed[s].failures]
    issues: list[Issue] = []
    policy = definition.publication
    blocking = any(f.blocking for f in failures)
    if result.breaks:
        block = definition.reconciliation.on_break is BreakAction.BLOCK
        blocking = blocking or block
        severity = Severity.ERROR if block else Severity.WARNING
        evidence: dict[str, object] = {
            "chosen": str(value.number),
            "sources": {s: str(observed[s].value.number) for s in result.breaks},
        }
        issues.append(
            Issue(
                issue_id=str(
                    uuid.uuid5(_ISSUES_NAMESPACE, f"{command_id}|{snap_us}||source_break")
                ),
                snap_us=snap_us,
                source_id="",
                rule="source_break",
                severity=severity.value,
                blocking=block,
                evidence=evidence,
            )
        )
    score = quality_score(failures, len(result.breaks))
    if blocking or policy.mode is PublicationMode.MANUAL:
        status = PointStatus.HELD
    elif len(observed) < policy.min_sources or (
        policy.min_quality_score is not None and score < policy.min_quality_score
    ):
        status = PointStatus.PENDING
    else:
        status = PointStatus.PUBLISHED
    candidate = Candidate(
        value,
        value_to_doc(value),
        result.method.value,
        result.contributors,
        result.excluded,
        str(score),
        status,
    )
    return candidate, issues


def _rounded(value: DataValue, precision: int) -> DataValue:
    if precision <= 0:
        return value
    quantum = Decimal(1).scaleb(-precision)

    def q(d: Decimal) -> Decimal:
        return d.quantize(quantum, ROUND_HALF_EVEN)

    if isinstance(value, Price):
        return Price(q(value.value), value.currency)
    if isinstance(value, Volume):
        return Volume(q(value.quantity), value.unit)
    if isinstance(value, OhlcBar):
        volume = value.volume
        return OhlcBar(q(value.open), q(value.high), q(value.low), q(value.close), volume)
    return value


def _flags(observed: dict[str, Observed], sources: Sequence[str]) -> list[str]:
    return sorted({f.rule for s in sources if s in observed for f in observed[s].failures})


def _reconciled_point(snap_us: int, c: Candidate, observed: dict[str, Observed]) -> ReconciledPoint:
    return ReconciledPoint(
        snap_us=snap_us,
        value=c.doc,
        method=c.method,
        contributions={s: str(observed[s].value.number) for s in c.sources},
        excluded=list(c.excluded),
        quality_score=c.quality,
        status=c.status.value,
    )


def _official_point(
    snap_us: int,
    version: int,
    c: Candidate,
    observed: dict[str, Observed],
    reason: str = "",
    cause: str = "",
) -> OfficialPoint:
    return OfficialPoint(
        snap_us=snap_us,
        version=version,
        value=c.doc,
        quality_score=c.quality,
        sources=list(c.sources),
        method=c.method,
        flags=_flags(observed, c.sources),
        reason=reason,
        cause=cause,
    )
