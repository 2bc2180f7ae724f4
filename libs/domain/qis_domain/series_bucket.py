"""The per-point state of one series over one time bucket: values per source, the reconciled
candidate, the official versions, open quality issues, cut-offs and overrides, and the commands
already handled.

A series' points are split into buckets (see snaps.BUCKET_SPAN_US) so that deciding a command
reads a bounded state, whatever the length of the series' history. State keeps values in their
encoded event form and decodes one only when a decision compares it: applying a 1,000-point
event then costs little more than storing references.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.decisions import (
    PRIORITY,
    Candidate,
    Contributions,
    Decider,
    Observed,
    SeriesView,
    Timeline,
    flags_of,
    issue_id,
    issues_of,
)
from qis_domain.definitions import SeriesDefinition
from qis_domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DomainEvent,
    Issue,
    ManualOverrideExpired,
    ManualOverrideSet,
    PublicationScheduled,
    QualityApproved,
    QualityIssueDetected,
    QualityOverridden,
    QualityRejected,
    RawValue,
)
from qis_domain.names import issue_resource, point_resource
from qis_domain.quality import PointStatus
from qis_domain.reconciliation import within_tolerance
from qis_domain.rules import (
    Received,
    RuleFailure,
    Severity,
    check_history,
    check_session,
    check_spike,
    check_value,
)
from qis_domain.snaps import BUCKET_SPAN_US, Frequency, Snap
from qis_domain.values import DataValue, encode_value

MANUAL = "manual"
CUTOFF = "cutoff"
_STATUSES = {s.value: s for s in PointStatus}
_OPEN = "open"
_PUBLISHED = PointStatus.PUBLISHED.value
_RESOLVED = {"approve": "approved", "reject": "rejected", "override": "overridden"}
NO_VIEW = SeriesView()
LOOK_BACK_BUCKETS = 3
"""How far "the previous point" reaches: into at most this many buckets before a point's own.
A longer gap restarts the look-back rules, the same way whether or not the points on either
side of it came in one command."""


def bucket_stream(series_id: str, bucket_us: int) -> str:
    return f"series/{series_id}/points/{bucket_us}"


@dataclass(frozen=True, slots=True)
class Recorded:
    """Where an event being applied came from: the command that caused it and its place in the
    log (the part of the metadata the state needs)."""

    command_id: str
    user_id: str
    position: int
    stream_version: int


class Official(NamedTuple):
    version: int
    raw: RawValue
    manual: bool  # a manual value: automatic reconciliation does not override it
    published_at_us: int  # when version 1 was decided, by the deciding command's clock
    by: str  # who caused the current version


class IssueState(NamedTuple):
    snap_us: int
    source_id: str
    rule: str
    blocking: bool
    status: str = _OPEN


@dataclass(frozen=True, slots=True)
class PointSummary:
    """One point as quality metrics see it."""

    snap_us: int
    figures: dict[str, Decimal | None]  # per source that counts
    official: DataValue | None
    published_at_us: int
    checked: int  # source values the rules looked at
    clean: int  # ...and that passed every rule


# One tuple per point while deciding, turned into event columns at the end: a tuple and an
# append per point cost a fraction of a method call filling nine lists. The batch events built
# from them skip pydantic validation (`model_construct`): the columns are made here, equal in
# length by construction, and validating a thousand-point batch would cost about as much as
# deciding it. Every event read back from the store is validated in full.
_OfficialRow = tuple[int, int, RawValue, str, list[str], str, list[str], str, str]
_ReconciledRow = tuple[int, RawValue, str, dict[str, str], list[str], str, str]


class SeriesBucket:
    def __init__(self, series_id: str, bucket_us: int) -> None:
        self.series_id = series_id
        self.bucket_us = bucket_us
        self.version: int | None = None  # stream version of the last applied event
        # Per snap (UTC µs). Flat maps rather than one object per point: applying a batch
        # event is then a few bulk dict updates. Everything inside them is immutable and
        # replaced, never changed in place, so `clone` can copy the maps alone.
        self.observed: dict[int, dict[str, Observed]] = {}
        self.candidates: dict[int, Candidate] = {}
        self.officials: dict[int, Official] = {}
        self.issues: dict[str, IssueState] = {}
        self.breaks_approved: set[int] = set()
        self.scheduled: dict[int, int] = {}  # snap -> cut-off time
        self.overrides: dict[int, int] = {}  # snap -> expiry (0: none)
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return bucket_stream(self.series_id, self.bucket_us)

    @property
    def size(self) -> int:
        return len(self.observed) or 1

    def outcome_of(self, command_id: str) -> CommandOutcome | None:
        return self._outcomes.get(command_id)

    def clone(self) -> SeriesBucket:
        """A copy that shares no mutable state with this one (the maps' contents are
        immutable): a decision works on its own copy, so nothing changes under it."""
        copy = SeriesBucket(self.series_id, self.bucket_us)
        copy.version = self.version
        copy.observed = dict(self.observed)
        copy.candidates = dict(self.candidates)
        copy.officials = dict(self.officials)
        copy.issues = dict(self.issues)
        copy.breaks_approved = set(self.breaks_approved)
        copy.scheduled = dict(self.scheduled)
        copy.overrides = dict(self.overrides)
        copy._outcomes = dict(self._outcomes)
        return copy

    def received(self, decider: Decider, last: int | None = None) -> list[Received]:
        """The points' received figures, ascending: what look-back rules compare with. `last`:
        only the last that many (what a later bucket's points can reach), so that a command
        does not decode a whole earlier bucket."""
        out = []
        for snap_us in sorted(self.candidates, reverse=True):
            candidate = self.candidates[snap_us]
            figure = decider.decode(candidate.raw).number
            if figure is not None:
                out.append(Received(snap_us, figure, candidate.sources))
                if last is not None and len(out) >= last:
                    break
        return out[::-1]

    def due_cutoffs(self, now_us: int) -> list[int]:
        return sorted(s for s, due in self.scheduled.items() if due <= now_us)

    def due_overrides(self, now_us: int) -> list[int]:
        return sorted(s for s, expiry in self.overrides.items() if 0 < expiry <= now_us)

    def summaries(self, start_us: int, end_us: int, decider: Decider) -> list[PointSummary]:
        out = []
        for snap_us in sorted(self.observed):
            if not start_us <= snap_us < end_us:
                continue
            counting = {s: o for s, o in self.observed[snap_us].items() if not o.rejected}
            official = self.officials.get(snap_us)
            out.append(
                PointSummary(
                    snap_us=snap_us,
                    figures={s: decider.decode(o.raw).number for s, o in counting.items()},
                    official=None if official is None else decider.decode(official.raw),
                    published_at_us=0 if official is None else official.published_at_us,
                    checked=len(self.observed[snap_us]),
                    clean=sum(1 for o in self.observed[snap_us].values() if not o.failures),
                )
            )
        return out

    # --- decisions: pure functions of the state and the command, returning new events ---

    def ingest(
        self,
        definition: SeriesDefinition,
        source_id: str,
        points: Sequence[tuple[Snap, DataValue]],
        ctx: CommandContext,
        view: SeriesView = NO_VIEW,
    ) -> list[DomainEvent]:
        if len({snap.utc_us for snap, _ in points}) != len(points):
            raise InvalidArgument.single("points", "snaps must be unique within one command")
        decide = Decider(definition, ctx)
        rules = definition.validation
        # Decided in snap order: each point is compared with the one just before it, which
        # may be decided by this very command.
        points = sorted(points, key=lambda p: p[0].utc_us)
        back = look_back(definition)
        timeline = None
        if back:
            # Alone (no view), the bucket's own points are all it compares with.
            timeline = Timeline() if view.timeline is None else view.timeline
            if self.bucket_us not in timeline.covered:
                timeline.add(self.bucket_us, self.received(decide))
        floor_us = look_back_floor(self.bucket_us, definition.frequency)
        calendar = view.calendar if rules.check_calendar else None
        snaps: list[int] = []
        offsets: list[int] = []
        raws: list[RawValue] = []
        issues: list[Issue] = []
        reconciled: list[_ReconciledRow] = []
        official: list[_OfficialRow] = []
        scheduled: list[tuple[int, int]] = []
        officials = self.officials
        fresh_published = decide.sole_source_status is PointStatus.PUBLISHED
        for snap, value in points:
            snap_us = snap.utc_us
            failures = check_value(value, rules)
            if timeline is not None and value.number is not None:
                previous = timeline.before(snap_us, back, floor_us)
                failures += check_history(value.number, previous, rules)
                if (spike := check_spike(value.number, snap_us, previous, rules)) is not None:
                    issues.extend(self._spike_issue(ctx, previous[-1], spike, issues))
            if calendar is not None and (
                miss := check_session(decide.local_day(snap_us), calendar)
            ):
                failures.append(miss)
            raw = encode_value(value)
            snaps.append(snap_us)
            offsets.append(snap.offset_s)
            raws.append(raw)
            before = self.observed.get(snap_us)
            if before is None and not failures and fresh_published and snap_us not in officials:
                # A new point with one clean value, the bulk-load case: nothing to reconcile,
                # nothing to penalise, nothing official yet. Decided in two appends.
                chosen = value if decide.quantum is None else decide.rounded(value)
                official_raw = raw if chosen is value else encode_value(chosen)
                figure = raw if isinstance(raw, str) else str(value.number)
                reconciled.append(
                    (snap_us, official_raw, PRIORITY, {source_id: figure}, [], "1", _PUBLISHED)
                )
                official.append((snap_us, 1, official_raw, "1", [source_id], PRIORITY, [], "", ""))
                if timeline is not None and chosen.number is not None:
                    timeline.put(Received(snap_us, chosen.number, (source_id,)))
                continue
            observed = {} if before is None else dict(before)
            known_before = source_id in observed
            if failures:
                new_issues = issues_of(ctx.command_id, snap_us, source_id, failures)
                issues.extend(new_issues)
                ids = tuple(i.issue_id for i in new_issues)
                observed[source_id] = Observed(raw, ctx.user_id, tuple(failures), ids)
            else:
                observed[source_id] = Observed(raw, ctx.user_id)
            candidate: Candidate | None
            if len(observed) == 1 and not failures:
                # The bulk-load case, kept cheap: nothing to reconcile, nothing to penalise.
                candidate, contributions = decide.sole_source(source_id, value, raw)
            else:
                candidate, contributions, break_issue = decide.candidate(
                    snap_us, observed, snap_us in self.breaks_approved, (source_id, value)
                )
                if break_issue is not None and not self._has_open(snap_us, "source_break"):
                    issues.append(break_issue)
            if candidate is None:
                continue  # every value of the point was rejected
            reconciled.append(_reconciled_row(snap_us, candidate, contributions))
            if timeline is not None and (number := decide.decode(candidate.raw).number) is not None:
                timeline.put(Received(snap_us, number, candidate.sources))
            if candidate.status is not PointStatus.PUBLISHED:
                # Waiting for sources, or held: at the cut-off it is published with what
                # arrived, or flagged as still held.
                if definition.publication.cutoff_seconds and snap_us not in self.scheduled:
                    due = snap_us + definition.publication.cutoff_seconds * 1_000_000
                    scheduled.append((snap_us, due))
                continue
            current = officials.get(snap_us)
            flags = flags_of(observed, candidate.sources) if len(observed) > 1 or failures else []
            if current is None:
                official.append(_official_row(snap_us, 1, candidate, flags))
            elif not current.manual and not within_tolerance(
                decide.decode(candidate.raw), decide.decode(current.raw), definition.reconciliation
            ):
                cause = "corrected_source" if known_before else "late_source"
                what = "corrected value from" if known_before else "late source"
                official.append(
                    _official_row(
                        snap_us, current.version + 1, candidate, flags, f"{what} {source_id}", cause
                    )
                )
        events: list[DomainEvent] = [
            DataIngested.model_construct(
                series_id=self.series_id,
                source_id=source_id,
                data_type=definition.data_type,
                unit=definition.unit,
                snaps=snaps,
                offsets=offsets,
                values=raws,
            )
        ]
        if issues:
            events.append(QualityIssueDetected(series_id=self.series_id, issues=issues))
        if reconciled:
            events.append(_reconciled_event(self.series_id, definition, reconciled))
        if scheduled:
            events.append(
                PublicationScheduled(
                    series_id=self.series_id,
                    snaps=[s for s, _ in scheduled],
                    due_us=[d for _, d in scheduled],
                )
            )
        events.extend(_official_events(self.series_id, definition, "automatic", official, ctx))
        return events

    def publish(
        self,
        definition: SeriesDefinition,
        snaps: Sequence[tuple[str, int]],
        comment: str,
        ctx: CommandContext,
    ) -> list[DomainEvent]:
        """Manual approval of the current candidates. `snaps` pairs a field path with a snap.

        Four-eyes: the approver may not be anyone whose value the candidate was made from, nor
        who set the point's current manual value. Open issues of the points are approved.
        """
        _unique(snaps)
        rows: list[_OfficialRow] = []
        approved: list[tuple[str, int]] = []
        for field_path, snap_us in snaps:
            candidate = self.candidates.get(snap_us)
            if candidate is None:
                raise NotFound(point_resource(self.series_id, snap_us), field_path)
            self._four_eyes(snap_us, candidate.sources, ctx, field_path)
            approved.extend((i, snap_us) for i in self._open_issues(snap_us))
            official = self.officials.get(snap_us)
            if official is not None and not official.manual and official.raw == candidate.raw:
                continue  # already official: approving it again changes nothing
            flags = flags_of(self.observed.get(snap_us, {}), candidate.sources)
            version = 1 if official is None else official.version + 1
            cause = "" if official is None else "approved_change"
            rows.append(_official_row(snap_us, version, candidate, flags, comment, cause))
        events: list[DomainEvent] = []
        if approved:
            events.append(
                _resolution(QualityApproved, self.series_id, approved, comment or "published")
            )
        events.extend(_official_events(self.series_id, definition, MANUAL, rows, ctx))
        return events

    def restate(
        self,
        definition: SeriesDefinition,
        snap_us: int,
        value: DataValue,
        reason: str,
        ctx: CommandContext,
        reason_code: str = "",
        expires_us: int = 0,
    ) -> list[DomainEvent]:
        """A manual correction of a published point: a new version that automatic
        reconciliation will not override (until `expires_us`, when given)."""
        if snap_us not in self.officials:
            raise FailedPrecondition(
                f"{point_resource(self.series_id, snap_us).name} has not been published",
                "POINT_NOT_PUBLISHED",
            )
        return self._manual_value(
            definition, snap_us, value, reason, reason_code, expires_us, ctx, []
        )

    def resolve(
        self,
        definition: SeriesDefinition,
        issue_ids: Sequence[tuple[str, str]],
        action: str,
        reason: str,
        ctx: CommandContext,
        value: DataValue | None = None,
        reason_code: str = "",
        expires_us: int = 0,
    ) -> list[DomainEvent]:
        """The exception queue: approve, reject or override open issues (pairs of field path
        and issue id), then decide their points again."""
        if not reason.strip():
            raise InvalidArgument.single("reason", "a resolution needs a reason")
        if action not in _RESOLVED:
            raise InvalidArgument.single(
                "resolution", f"approve, reject or override, not {action!r}"
            )
        _unique(issue_ids)
        found: list[tuple[str, int]] = []
        for field_path, iid in issue_ids:
            issue = self.issues.get(iid)
            if issue is None:
                raise NotFound(issue_resource(self.series_id, iid), field_path)
            if issue.status != _OPEN:
                raise FailedPrecondition(
                    f"{field_path}: issue {iid} is already {issue.status}", "ISSUE_RESOLVED"
                )
            if action == "reject" and not issue.source_id:
                raise FailedPrecondition(
                    f"{field_path}: a {issue.rule} issue is about no single source's value: it"
                    " can be approved or overridden, not rejected",
                    "BREAK_NOT_REJECTABLE",
                )
            if action in ("approve", "override"):
                self._four_eyes(issue.snap_us, self._sources_of(issue), ctx, field_path)
            found.append((iid, issue.snap_us))
        if action == "override":
            snaps = {snap for _, snap in found}
            if value is None or len(snaps) != 1:
                raise InvalidArgument.single(
                    "value", "an override gives one value for the issues of one point"
                )
            (snap_us,) = snaps
            return self._manual_value(
                definition, snap_us, value, reason, reason_code, expires_us, ctx, found
            )
        kind = QualityApproved if action == "approve" else QualityRejected
        resolution = _resolution(kind, self.series_id, found, reason)
        # Decide again on a copy of the state the resolution leads to.
        after = self.clone()
        after._apply_resolution(resolution)
        events: list[DomainEvent] = [resolution]
        points = sorted({snap for _, snap in found})
        events.extend(after._redecide(definition, points, ctx, f"{_RESOLVED[action]}: {reason}"))
        return events

    def publish_due(self, definition: SeriesDefinition, ctx: CommandContext) -> list[DomainEvent]:
        """Cut-off reached: publish pending points with what has arrived; flag held ones."""
        rows: list[_OfficialRow] = []
        missed: list[Issue] = []
        for snap_us in self.due_cutoffs(ctx.now_us):
            candidate = self.candidates.get(snap_us)
            if candidate is None or snap_us in self.officials:
                continue
            policy = definition.publication
            enough_quality = (
                policy.min_quality_score is None
                or Decimal(candidate.quality) >= policy.min_quality_score
            )
            if candidate.status is PointStatus.PENDING and enough_quality:
                arrived = sum(1 for o in self.observed.get(snap_us, {}).values() if not o.rejected)
                reason = f"cut-off reached with {arrived} of {policy.min_sources} sources"
                flags = flags_of(self.observed.get(snap_us, {}), candidate.sources)
                rows.append(_official_row(snap_us, 1, candidate, flags, reason, CUTOFF))
            else:
                evidence: dict[str, Any] = {
                    "due_us": self.scheduled[snap_us],
                    "status": candidate.status.value,
                }
                missed.append(
                    Issue(
                        issue_id=issue_id(ctx.command_id, snap_us, "", "missed_cutoff"),
                        snap_us=snap_us,
                        source_id="",
                        rule="missed_cutoff",
                        severity=Severity.WARNING.value,
                        blocking=False,
                        evidence=evidence,
                    )
                )
        events: list[DomainEvent] = []
        if missed:
            events.append(QualityIssueDetected(series_id=self.series_id, issues=missed))
        events.extend(_official_events(self.series_id, definition, CUTOFF, rows, ctx))
        return events

    def expire_overrides(
        self, definition: SeriesDefinition, ctx: CommandContext
    ) -> list[DomainEvent]:
        """Overrides past their expiry give way to automatic reconciliation again."""
        due = self.due_overrides(ctx.now_us)
        if not due:
            return []
        expired = ManualOverrideExpired(series_id=self.series_id, snaps=due)
        after = self.clone()
        after._apply_override_expiry(expired)
        return [expired, *after._redecide(definition, due, ctx, "override expired")]

    # --- helpers of the decisions ---

    def _manual_value(
        self,
        definition: SeriesDefinition,
        snap_us: int,
        value: DataValue,
        reason: str,
        reason_code: str,
        expires_us: int,
        ctx: CommandContext,
        resolved: list[tuple[str, int]],
    ) -> list[DomainEvent]:
        if not reason.strip():
            raise InvalidArgument.single("reason", "a manual value needs a reason")
        if expires_us and expires_us <= ctx.now_us:
            raise InvalidArgument.single("expire_time", "must be in the future")
        decide = Decider(definition, ctx)
        manual = Candidate(
            encode_value(decide.rounded(value)), MANUAL, (MANUAL,), "1", PointStatus.PUBLISHED
        )
        current = self.officials.get(snap_us)
        version = 1 if current is None else current.version + 1
        cause = f"override:{reason_code}" if reason_code else "manual_correction"
        row = _official_row(snap_us, version, manual, [], reason, cause)
        events: list[DomainEvent] = []
        if resolved:
            events.append(_resolution(QualityOverridden, self.series_id, resolved, reason))
        events.extend(_official_events(self.series_id, definition, MANUAL, [row], ctx))
        events.append(
            ManualOverrideSet(
                series_id=self.series_id,
                snaps=[snap_us],
                expires_us=[expires_us],
                reason_codes=[reason_code],
            )
        )
        return events

    def _redecide(
        self, definition: SeriesDefinition, snaps: Sequence[int], ctx: CommandContext, reason: str
    ) -> list[DomainEvent]:
        """New candidates (and official versions) for points whose state changed other than by
        a new value: a resolution, an expired override."""
        decide = Decider(definition, ctx)
        reconciled: list[_ReconciledRow] = []
        rows: list[_OfficialRow] = []
        scheduled: list[int] = []
        cutoff_us = definition.publication.cutoff_seconds * 1_000_000
        for snap_us in snaps:
            observed = self.observed.get(snap_us, {})
            candidate, contributions, _ = decide.candidate(
                snap_us, observed, snap_us in self.breaks_approved
            )
            if candidate is None:
                # Every value was rejected: withdraw the candidate, so that neither a manual
                # publication nor a cut-off can make a rejected value official.
                reconciled.append((snap_us, "", "none", {}, [], "0", PointStatus.WITHDRAWN.value))
                continue
            reconciled.append(_reconciled_row(snap_us, candidate, contributions))
            waiting = candidate.status is not PointStatus.PUBLISHED
            if waiting and cutoff_us and snap_us not in self.scheduled:
                scheduled.append(snap_us)
            current = self.officials.get(snap_us)
            if candidate.status is not PointStatus.PUBLISHED or (
                current is not None and current.manual
            ):
                continue
            flags = flags_of(observed, candidate.sources)
            if current is None:
                rows.append(_official_row(snap_us, 1, candidate, flags, reason))
            elif not within_tolerance(
                decide.decode(candidate.raw), decide.decode(current.raw), definition.reconciliation
            ):
                rows.append(
                    _official_row(
                        snap_us, current.version + 1, candidate, flags, reason, "redecided"
                    )
                )
        events: list[DomainEvent] = []
        if reconciled:
            events.append(_reconciled_event(self.series_id, definition, reconciled))
        if scheduled:
            due = [s + cutoff_us for s in scheduled]
            events.append(
                PublicationScheduled(series_id=self.series_id, snaps=scheduled, due_us=due)
            )
        events.extend(_official_events(self.series_id, definition, "automatic", rows, ctx))
        return events

    def _four_eyes(
        self, snap_us: int, sources: Iterable[str], ctx: CommandContext, field_path: str
    ) -> None:
        observed = self.observed.get(snap_us, {})
        involved = {observed[s].user_id for s in sources if s in observed}
        official = self.officials.get(snap_us)
        if official is not None and official.manual:
            involved.add(official.by)
        if ctx.user_id in involved:
            raise PermissionDenied(
                f"{field_path}: four-eyes rule: {ctx.user_id!r} submitted or set a value of this"
                " point and cannot also approve it",
                "FOUR_EYES",
            )

    def _sources_of(self, issue: IssueState) -> list[str]:
        if issue.source_id:
            return [issue.source_id]
        return list(self.observed.get(issue.snap_us, {}))

    def _has_open(self, snap_us: int, rule: str) -> bool:
        """One open issue of a point-level rule (source break, spike) per point is enough: a
        later value re-raising it would only add a duplicate to the queue."""
        return any(
            i.snap_us == snap_us and i.rule == rule and i.status == _OPEN
            for i in self.issues.values()
        )

    def _spike_issue(
        self, ctx: CommandContext, spiked: Received, failure: RuleFailure, pending: list[Issue]
    ) -> list[Issue]:
        """The issue of an out-and-back spike, raised on the point in between. That point may
        belong to an earlier bucket: the application routes such issues to their bucket
        (`flag`), which drops a duplicate the same way."""
        snap_us = spiked.snap_us
        if any(i.snap_us == snap_us and i.rule == failure.rule for i in pending) or (
            self._has_open(snap_us, failure.rule)
        ):
            return []
        source = spiked.sources[0] if len(spiked.sources) == 1 else ""
        return issues_of(ctx.command_id, snap_us, source, [failure])

    def flag(self, issues: Sequence[Issue]) -> list[QualityIssueDetected]:
        """Issues another bucket's decision found about points of this one (a spike is seen
        when the move back arrives, maybe in the next bucket)."""
        fresh = [i for i in issues if not self._has_open(i.snap_us, i.rule)]
        return [QualityIssueDetected(series_id=self.series_id, issues=fresh)] if fresh else []

    def _open_issues(self, snap_us: int) -> list[str]:
        return [i for i, s in self.issues.items() if s.snap_us == snap_us and s.status == _OPEN]

    # --- evolution: the only place state changes ---

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        command_id, position = meta.command_id, meta.position
        outcome = self._outcomes.get(command_id) or CommandOutcome(position)
        if isinstance(event, DataIngested):
            source, user, observed = event.source_id, meta.user_id, self.observed
            for snap_us, raw in zip(event.snaps, event.values, strict=True):
                per_source = observed.get(snap_us)
                if per_source is None:
                    observed[snap_us] = {source: Observed(raw, user)}
                else:
                    observed[snap_us] = {**per_source, source: Observed(raw, user)}
            outcome = outcome + CommandOutcome(position, accepted=len(event.snaps))
        elif isinstance(event, QualityIssueDetected):
            for issue in event.issues:
                self.issues[issue.issue_id] = IssueState(
                    issue.snap_us, issue.source_id, issue.rule, issue.blocking
                )
                if issue.rule == "missed_cutoff":
                    self.scheduled.pop(issue.snap_us, None)
                flagged = self.observed.get(issue.snap_us, {}).get(issue.source_id)
                if flagged is not None:
                    failure = RuleFailure(issue.rule, Severity(issue.severity), issue.evidence)
                    self._replace_observed(
                        issue.snap_us,
                        issue.source_id,
                        flagged._replace(
                            failures=(*flagged.failures, failure),
                            issue_ids=(*flagged.issue_ids, issue.issue_id),
                            # a new error holds the value again; a new warning does not
                            cleared=flagged.cleared and not failure.blocking,
                        ),
                    )
            outcome = outcome + CommandOutcome(
                position, flagged=len({i.snap_us for i in event.issues})
            )
        elif isinstance(event, DataReconciled):
            if PointStatus.WITHDRAWN.value in event.statuses:
                for snap_us, status in zip(event.snaps, event.statuses, strict=True):
                    if status == PointStatus.WITHDRAWN.value:
                        self.candidates.pop(snap_us, None)
                        self.scheduled.pop(snap_us, None)
                event = _without_withdrawn(event)
            self.candidates.update(
                zip(
                    event.snaps,
                    map(
                        Candidate,
                        event.values,
                        event.methods,
                        map(tuple, event.contributions),
                        event.quality_scores,
                        map(_STATUSES.__getitem__, event.statuses),
                    ),
                    strict=True,
                )
            )
        elif isinstance(event, DataPublished | DataRestated):
            officials, scheduled, at, user = (
                self.officials,
                self.scheduled,
                event.decided_at_us,
                meta.user_id,
            )
            for snap_us, version, raw, method in zip(
                event.snaps, event.versions, event.values, event.methods, strict=True
            ):
                before = officials.get(snap_us)
                first_at = at if before is None else before.published_at_us
                officials[snap_us] = Official(version, raw, method == MANUAL, first_at, user)
                if scheduled:
                    scheduled.pop(snap_us, None)
            outcome = outcome + CommandOutcome(position, published=len(event.snaps))
        elif isinstance(event, PublicationScheduled):
            self.scheduled.update(zip(event.snaps, event.due_us, strict=True))
        elif isinstance(event, QualityApproved | QualityRejected | QualityOverridden):
            self._apply_resolution(event)
        elif isinstance(event, ManualOverrideSet):
            for snap_us, expiry in zip(event.snaps, event.expires_us, strict=True):
                self.overrides[snap_us] = expiry
        elif isinstance(event, ManualOverrideExpired):
            self._apply_override_expiry(event)
        # Every event of the command moves its position, not only those it counts: the
        # outcome's position is where the command's append ended, the consistency token.
        self._outcomes[command_id] = outcome + CommandOutcome(position)

    def _apply_resolution(
        self, event: QualityApproved | QualityRejected | QualityOverridden
    ) -> None:
        status = {
            QualityApproved: "approved",
            QualityRejected: "rejected",
            QualityOverridden: "overridden",
        }[type(event)]
        for iid in event.issue_ids:
            issue = self.issues[iid]._replace(status=status)
            self.issues[iid] = issue
            observed = self.observed.get(issue.snap_us, {}).get(issue.source_id)
            if observed is not None and iid not in observed.issue_ids:
                continue  # about a value the source has replaced since: only the issue closes
            if isinstance(event, QualityRejected) and observed is not None:
                self._replace_observed(
                    issue.snap_us, issue.source_id, observed._replace(rejected=True)
                )
            elif isinstance(event, QualityApproved):
                if observed is None:
                    # Only an approved break lets the point's sources disagree; approving a
                    # point-level spike or cut-off issue says nothing about later values.
                    if issue.rule == "source_break":
                        self.breaks_approved.add(issue.snap_us)
                elif not self._holds(observed):
                    # Only errors hold: an approved error publishes even while a warning on
                    # the same value stays open (it is still flagged).
                    self._replace_observed(
                        issue.snap_us, issue.source_id, observed._replace(cleared=True)
                    )

    def _apply_override_expiry(self, event: ManualOverrideExpired) -> None:
        for snap_us in event.snaps:
            self.overrides.pop(snap_us, None)
            official = self.officials.get(snap_us)
            if official is not None:
                self.officials[snap_us] = official._replace(manual=False)

    def _replace_observed(self, snap_us: int, source_id: str, observed: Observed) -> None:
        self.observed[snap_us] = {**self.observed[snap_us], source_id: observed}

    def _holds(self, observed: Observed) -> bool:
        """Whether an error of the value is still open."""
        return any(
            failure.blocking and (i not in self.issues or self.issues[i].status == _OPEN)
            for failure, i in zip(observed.failures, observed.issue_ids, strict=True)
        )


def look_back_floor(bucket_us: int, frequency: Frequency) -> int:
    """The earliest snap a point of the bucket may be compared with."""
    return bucket_us - LOOK_BACK_BUCKETS * BUCKET_SPAN_US[frequency]


def look_back(definition: SeriesDefinition) -> int:
    """How many earlier received values the series' rules look at (0: none)."""
    r = definition.validation
    n = 0
    if r.max_jump_percent is not None:
        n = 1
    if r.max_spike_percent is not None:
        n = 2
    if r.max_zscore is not None:
        n = max(n, r.zscore_window + 1)
    if r.stale_after_snaps > 1:
        n = max(n, r.stale_after_snaps - 1)
    return n


def _without_withdrawn(event: DataReconciled) -> DataReconciled:
    keep = [i for i, status in enumerate(event.statuses) if status != PointStatus.WITHDRAWN.value]
    columns = (
        "snaps",
        "values",
        "methods",
        "contributions",
        "excluded",
        "quality_scores",
        "statuses",
    )
    return event.model_copy(update={c: [getattr(event, c)[i] for i in keep] for c in columns})


def _unique(pairs: Sequence[tuple[str, Any]]) -> None:
    seen: set[Any] = set()
    for field_path, key in pairs:
        if key in seen:
            raise InvalidArgument.single(field_path, "listed twice")
        seen.add(key)


def _resolution(
    kind: type[QualityApproved] | type[QualityRejected] | type[QualityOverridden],
    series_id: str,
    issues: list[tuple[str, int]],
    reason: str,
) -> QualityApproved | QualityRejected | QualityOverridden:
    return kind(
        series_id=series_id,
        issue_ids=[i for i, _ in issues],
        snaps=[s for _, s in issues],
        reason=reason,
    )


def _reconciled_row(snap_us: int, c: Candidate, contributions: Contributions) -> _ReconciledRow:
    return (
        snap_us,
        c.raw,
        c.method,
        contributions.figures,
        contributions.excluded,
        c.quality,
        c.status.value,
    )


def _official_row(
    snap_us: int, version: int, c: Candidate, flags: list[str], reason: str = "", cause: str = ""
) -> _OfficialRow:
    return (snap_us, version, c.raw, c.quality, list(c.sources), c.method, flags, reason, cause)


def _official_events(
    series_id: str, d: SeriesDefinition, mode: str, rows: list[_OfficialRow], ctx: CommandContext
) -> list[DomainEvent]:
    """A DataPublished for first versions and a DataRestated for later ones, as needed."""
    out: list[DomainEvent] = []
    for first in (True, False):
        picked = [r for r in rows if (r[1] == 1) is first]
        if not picked:
            continue
        snaps, versions, values, quality, sources, methods, flags, reasons, causes = map(
            list, zip(*picked, strict=True)
        )
        columns: dict[str, Any] = {
            "series_id": series_id,
            "data_type": d.data_type,
            "unit": d.unit,
            "snaps": snaps,
            "versions": versions,
            "values": values,
            "quality_scores": quality,
            "sources": sources,
            "methods": methods,
            "flags": flags,
            "reasons": reasons,
            "causes": causes,
            "decided_at_us": ctx.now_us,
        }
        out.append(
            DataPublished.model_construct(mode=mode, **columns)
            if first
            else DataRestated.model_construct(**columns)
        )
    return out


def _reconciled_event(
    series_id: str, d: SeriesDefinition, rows: list[_ReconciledRow]
) -> DataReconciled:
    snaps, values, methods, contributions, excluded, quality, statuses = map(
        list, zip(*rows, strict=True)
    )
    return DataReconciled.model_construct(
        series_id=series_id,
        data_type=d.data_type,
        unit=d.unit,
        snaps=snaps,
        values=values,
        methods=methods,
        contributions=contributions,
        excluded=excluded,
        quality_scores=quality,
        statuses=statuses,
    )
