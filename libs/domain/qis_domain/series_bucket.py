"""The per-point state of one series over one time bucket: values per source, the reconciled
candidate, the official versions, and the commands already handled.

A series' points are split into buckets (see snaps.BUCKET_SPAN_US) so that deciding a command
reads a bounded state, whatever the length of the series' history. State keeps values in their
encoded event form and decodes one only when a decision compares it: applying a 1,000-point
event then costs little more than storing references.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.definitions import (
    BreakAction,
    PublicationMode,
    ReconciliationMethod,
    SeriesDefinition,
)
from qis_domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DomainEvent,
    Issue,
    QualityIssueDetected,
    RawValue,
)
from qis_domain.quality import ONE, PointStatus, quality_score
from qis_domain.reconciliation import reconcile, within_tolerance
from qis_domain.rules import RuleFailure, Severity, check_value
from qis_domain.snaps import Snap
from qis_domain.values import DataValue, OhlcBar, Price, Volume, decode_value, encode_value

_ISSUES_NAMESPACE = uuid.UUID("6f1c7a52-3f0e-4d8e-9a59-0c7d1f0e4b21")
MANUAL = "manual"
_PRIORITY = ReconciliationMethod.PRIORITY.value
# Figures are bounded to 1e±30 (values.MAX_EXPONENT) and precision to 18 places: 64 digits
# always suffice, whatever the default context of the process.
_ROUNDING = Context(prec=64)
_STATUSES = {s.value: s for s in PointStatus}


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


@dataclass(slots=True)
class Observed:
    raw: RawValue
    user_id: str
    failures: tuple[RuleFailure, ...] = ()


@dataclass(slots=True)
class Candidate:
    raw: RawValue
    method: str
    sources: tuple[str, ...]
    quality: str
    status: PointStatus


@dataclass(slots=True)
class Official:
    version: int
    raw: RawValue
    manual: bool  # a manual correction: automatic reconciliation does not override it


# One tuple per point while deciding, turned into event columns at the end: a tuple and an
# append per point cost a fraction of a method call filling nine lists.
_OfficialRow = tuple[int, int, RawValue, str, list[str], str, list[str], str, str]
_ReconciledRow = tuple[int, RawValue, str, dict[str, str], list[str], str, str]


def _official_row(
    snap_us: int, version: int, c: Candidate, flags: list[str], reason: str = "", cause: str = ""
) -> _OfficialRow:
    return (snap_us, version, c.raw, c.quality, list(c.sources), c.method, flags, reason, cause)


def _official_events(
    series_id: str, d: SeriesDefinition, mode: str, rows: list[_OfficialRow]
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
        }
        out.append(DataPublished(mode=mode, **columns) if first else DataRestated(**columns))
    return out


def _reconciled_event(
    series_id: str, d: SeriesDefinition, rows: list[_ReconciledRow]
) -> DataReconciled:
    snaps, values, methods, contributions, excluded, quality, statuses = map(
        list, zip(*rows, strict=True)
    )
    return DataReconciled(
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


class SeriesBucket:
    def __init__(self, series_id: str, bucket_us: int) -> None:
        self.series_id = series_id
        self.bucket_us = bucket_us
        self.version: int | None = None  # stream version of the last applied event
        # Per snap (UTC µs). Three flat maps rather than one object per point: applying a
        # batch event is then a few bulk dict updates.
        self.observed: dict[int, dict[str, Observed]] = {}
        self.candidates: dict[int, Candidate] = {}
        self.officials: dict[int, Official] = {}
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
        if len({snap.utc_us for snap, _ in points}) != len(points):
            raise InvalidArgument.single("points", "snaps must be unique within one command")
        decide = _Decider(definition, ctx)
        snaps: list[int] = []
        offsets: list[int] = []
        raws: list[RawValue] = []
        issues: list[Issue] = []
        reconciled: list[_ReconciledRow] = []
        official: list[_OfficialRow] = []
        officials = self.officials
        for snap, value in points:
            snap_us = snap.utc_us
            failures = tuple(check_value(value, definition.validation))
            raw = encode_value(value)
            snaps.append(snap_us)
            offsets.append(snap.offset_s)
            raws.append(raw)
            if failures:
                issues.extend(_issues(ctx.command_id, snap_us, source_id, failures))
            before = self.observed.get(snap_us)
            observed = {} if before is None else dict(before)
            known_before = source_id in observed
            observed[source_id] = Observed(raw, ctx.user_id, failures)
            if len(observed) == 1 and not failures:
                # The bulk-load case, kept cheap: nothing to reconcile, nothing to penalise.
                candidate, contributions = decide.sole_source(source_id, value, raw)
            else:
                candidate, contributions, break_issue = decide.candidate(
                    snap_us, observed, source_id, value
                )
                if break_issue is not None:
                    issues.append(break_issue)
            reconciled.append(
                (
                    snap_us,
                    candidate.raw,
                    candidate.method,
                    contributions.figures,
                    contributions.excluded,
                    candidate.quality,
                    candidate.status.value,
                )
            )
            if candidate.status is not PointStatus.PUBLISHED:
                continue
            current = officials.get(snap_us)
            flags = _flags(observed, candidate.sources) if len(observed) > 1 or failures else []
            if current is None:
                official.append(_official_row(snap_us, 1, candidate, flags))
            elif not current.manual and not within_tolerance(
                decide.decode(candidate.raw),
                decide.decode(current.raw),
                definition.reconciliation,
            ):
                cause = "corrected_source" if known_before else "late_source"
                what = "corrected value from" if known_before else "late source"
                official.append(
                    _official_row(
                        snap_us, current.version + 1, candidate, flags, f"{what} {source_id}", cause
                    )
                )
        events: list[DomainEvent] = [
            DataIngested(
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
        events.append(_reconciled_event(self.series_id, definition, reconciled))
        events.extend(_official_events(self.series_id, definition, "automatic", official))
        return events

    def publish(
        self,
        definition: SeriesDefinition,
        snaps: Sequence[tuple[str, int]],
        comment: str,
        ctx: CommandContext,
    ) -> list[DomainEvent]:
        """Manual approval of the current candidates. `snaps` pairs a field path with a snap.

        Four-eyes: the approver may not be anyone whose value the candidate was made from.
        """
        seen: set[int] = set()
        for field_path, snap_us in snaps:
            if snap_us in seen:
                raise InvalidArgument.single(field_path, "snap listed twice")
            seen.add(snap_us)
        rows: list[_OfficialRow] = []
        for field_path, snap_us in snaps:
            candidate = self.candidates.get(snap_us)
            if candidate is None:
                raise NotFound(f"point {self.series_id}@{snap_us}", field_path)
            observed = self.observed.get(snap_us, {})
            submitters = {observed[s].user_id for s in candidate.sources if s in observed}
            if ctx.user_id in submitters:
                raise PermissionDenied(
                    f"{field_path}: four-eyes rule: {ctx.user_id!r} submitted a value of this point"
                    " and cannot also approve it"
                )
            official = self.officials.get(snap_us)
            if official is not None and not official.manual and official.raw == candidate.raw:
                continue  # already official: approving it again changes nothing
            flags = _flags(observed, candidate.sources)
            if official is None:
                rows.append(_official_row(snap_us, 1, candidate, flags, comment))
            else:
                version = official.version + 1
                rows.append(
                    _official_row(snap_us, version, candidate, flags, comment, "approved_change")
                )
        return _official_events(self.series_id, definition, MANUAL, rows)

    def restate(
        self,
        definition: SeriesDefinition,
        snap_us: int,
        value: DataValue,
        reason: str,
        ctx: CommandContext,
    ) -> list[DomainEvent]:
        """A manual correction of a published point: a new version that automatic
        reconciliation will not override."""
        if not reason.strip():
            raise InvalidArgument.single("reason", "a restatement needs a reason")
        official = self.officials.get(snap_us)
        if official is None:
            raise FailedPrecondition(f"point {self.series_id}@{snap_us} has not been published")
        rounded = _Decider(definition, ctx).rounded(value)
        manual = Candidate(encode_value(rounded), MANUAL, (MANUAL,), "1", PointStatus.PUBLISHED)
        row = _official_row(snap_us, official.version + 1, manual, [], reason, "manual_correction")
        return _official_events(self.series_id, definition, MANUAL, [row])

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
                    per_source[source] = Observed(raw, user)
            outcome = outcome + CommandOutcome(position, accepted=len(event.snaps))
        elif isinstance(event, QualityIssueDetected):
            for issue in event.issues:
                flagged = self.observed[issue.snap_us].get(issue.source_id)
                if flagged is not None:
                    failure = RuleFailure(issue.rule, Severity(issue.severity), issue.evidence)
                    flagged.failures = (*flagged.failures, failure)
            snaps = {issue.snap_us for issue in event.issues}
            outcome = outcome + CommandOutcome(position, flagged=len(snaps))
        elif isinstance(event, DataReconciled):
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
            manual = [m == MANUAL for m in event.methods]
            self.officials.update(
                zip(event.snaps, map(Official, event.versions, event.values, manual), strict=True)
            )
            outcome = outcome + CommandOutcome(position, published=len(event.snaps))
        self._outcomes[command_id] = outcome


@dataclass(frozen=True, slots=True)
class _Contributions:
    figures: dict[str, str]  # source -> figure it contributed
    excluded: list[str]


class _Decider:
    """The per-command decision context: definition, caller, and value decoding."""

    def __init__(self, definition: SeriesDefinition, ctx: CommandContext) -> None:
        self.definition = definition
        self.ctx = ctx
        self.quantum = Decimal(1).scaleb(-definition.precision) if definition.precision else None
        self.sole_source_status = self._status(blocking=False, sources=1, score=ONE)

    def decode(self, raw: RawValue) -> DataValue:
        d = self.definition
        return decode_value(d.data_type, d.unit, raw)

    def sole_source(
        self, source_id: str, value: DataValue, raw: RawValue
    ) -> tuple[Candidate, _Contributions]:
        """What `candidate` decides for a point with one clean value, without its general work."""
        if self.quantum is not None:
            raw = encode_value(self.rounded(value))
        figure = str(value.number)
        candidate = Candidate(raw, _PRIORITY, (source_id,), "1", self.sole_source_status)
        return candidate, _Contributions({source_id: figure}, [])

    def candidate(
        self, snap_us: int, observed: dict[str, Observed], source_id: str, value: DataValue
    ) -> tuple[Candidate, _Contributions, Issue | None]:
        d = self.definition
        values = {s: value if s == source_id else self.decode(o.raw) for s, o in observed.items()}
        result = reconcile(values, d)
        chosen = self.rounded(result.value)
        failures = [f for s in result.contributors for f in observed[s].failures]
        blocking = any(f.blocking for f in failures)
        break_issue = None
        if result.breaks:
            block = d.reconciliation.on_break is BreakAction.BLOCK
            blocking = blocking or block
            break_issue = Issue(
                issue_id=_issue_id(self.ctx.command_id, snap_us, "", "source_break"),
                snap_us=snap_us,
                source_id="",
                rule="source_break",
                severity=(Severity.ERROR if block else Severity.WARNING).value,
                blocking=block,
                evidence={
                    "chosen": str(chosen.number),
                    "sources": {s: str(values[s].number) for s in result.breaks},
                },
            )
        score = quality_score(failures, len(result.breaks)) if failures or result.breaks else ONE
        status = self._status(blocking, len(observed), score)
        candidate = Candidate(
            encode_value(chosen), result.method.value, result.contributors, str(score), status
        )
        figures = {s: str(values[s].number) for s in result.contributors}
        return candidate, _Contributions(figures, list(result.excluded)), break_issue

    def _status(self, blocking: bool, sources: int, score: Decimal) -> PointStatus:
        policy = self.definition.publication
        if blocking or policy.mode is PublicationMode.MANUAL:
            return PointStatus.HELD
        if sources < policy.min_sources or (
            policy.min_quality_score is not None and score < policy.min_quality_score
        ):
            return PointStatus.PENDING
        return PointStatus.PUBLISHED

    def rounded(self, value: DataValue) -> DataValue:
        quantum = self.quantum
        if quantum is None:
            return value

        def q(d: Decimal) -> Decimal:
            return d.quantize(quantum, ROUND_HALF_EVEN, _ROUNDING)

        if isinstance(value, Price):
            return Price(q(value.value), value.currency)
        if isinstance(value, Volume):
            return Volume(q(value.quantity), value.unit)
        if isinstance(value, OhlcBar):
            return OhlcBar(q(value.open), q(value.high), q(value.low), q(value.close), value.volume)
        return value


def _issues(
    command_id: str, snap_us: int, source_id: str, failures: Sequence[RuleFailure]
) -> list[Issue]:
    return [
        Issue(
            issue_id=_issue_id(command_id, snap_us, source_id, f.rule),
            snap_us=snap_us,
            source_id=source_id,
            rule=f.rule,
            severity=f.severity.value,
            blocking=f.blocking,
            evidence=f.evidence,
        )
        for f in failures
    ]


def _issue_id(command_id: str, snap_us: int, source_id: str, rule: str) -> str:
    """Deterministic: re-deciding the same command (after a conflict) yields the same ids."""
    return str(uuid.uuid5(_ISSUES_NAMESPACE, f"{command_id}|{snap_us}|{source_id}|{rule}"))


def _flags(observed: dict[str, Observed], sources: Sequence[str]) -> list[str]:
    if not any(observed[s].failures for s in sources if s in observed):
        return []
    return sorted({f.rule for s in sources if s in observed for f in observed[s].failures})
