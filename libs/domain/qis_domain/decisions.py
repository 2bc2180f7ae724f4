"""How one point's values become a candidate official value: reconciliation, rule penalties,
rounding and the publication policy. Used by SeriesBucket for every kind of command."""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from itertools import repeat
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from qis_domain.commands import CommandContext
from qis_domain.cross_series import CrossSeriesView
from qis_domain.day_over_day import PriorOfficials
from qis_domain.definitions import (
    BreakAction,
    PublicationMode,
    ReconciliationMethod,
    SeriesDefinition,
)
from qis_domain.events import Issue, RawValue
from qis_domain.quality import ONE, PointStatus, quality_score
from qis_domain.reconciliation import (
    Reconciliation,
    break_nodes,
    by_priority,
    reconcile,
    within_tolerance,
)
from qis_domain.rules import CalendarView, Received, RuleFailure, Severity
from qis_domain.service_levels import Arrivals
from qis_domain.snaps import Snap
from qis_domain.values import (
    DataValue,
    OhlcBar,
    Price,
    Surface,
    TermStructure,
    Volume,
    decode_value,
    encode_value,
)

_ISSUES_NAMESPACE = uuid.UUID("6f1c7a52-3f0e-4d8e-9a59-0c7d1f0e4b21")
_NAMESPACE_BYTES = _ISSUES_NAMESPACE.bytes
PRIORITY = ReconciliationMethod.PRIORITY.value
# Figures are bounded (bounds.py) to |x| < 1e18 with at most 18 places, 36 digits: 64 always
# suffice, whatever the default context of the process.
_ROUNDING = Context(prec=64)


_T = TypeVar("_T", bound=tuple[Any, ...])


def tuples_of(kind: type[_T], *columns: Iterable[Any]) -> Iterator[_T]:
    """`map(kind, *columns)` for a NamedTuple `kind`, one column per field, without the Python
    call its constructor costs per row: applying one batch event makes a thousand."""
    return map(tuple.__new__, repeat(kind), zip(*columns, strict=True))


class Observed(NamedTuple):
    """One source's latest value for a point. Immutable, so that a copy of a bucket's state
    shares its points with the original and neither can change under the other."""

    raw: RawValue
    user_id: str
    failures: tuple[RuleFailure, ...] = ()
    issue_ids: tuple[str, ...] = ()  # one per failure, same order
    cleared: bool = False  # a person approved its errors: they no longer hold the point
    rejected: bool = False  # a person rejected it: kept as lineage, no longer reconciled

    @property
    def blocking(self) -> bool:
        return not self.cleared and any(f.blocking for f in self.failures)


class Candidate(NamedTuple):
    raw: RawValue
    method: str
    sources: tuple[str, ...]
    quality: str
    status: PointStatus


class Contributions(NamedTuple):
    figures: dict[str, str]  # source -> the figure it contributed
    excluded: list[str]


class Reconciled(NamedTuple):
    """The values of a point that count and what reconciliation chose from them (rounded): the
    point's received figure, which no rule changes (rules change its status and score)."""

    values: dict[str, DataValue]
    result: Reconciliation
    chosen: DataValue


@dataclass(slots=True)
class Timeline:
    """One source's received figures by snap, kept sorted: what the look-back rules compare
    that source's values with.

    One timeline serves a whole command (of one source), across its buckets: the application
    adds the source's recorded figures of each bucket before the bucket is decided, and the
    decision puts every value of the command, so a value is compared with the source's value
    just before it whether that came in the same command, an earlier one, the same bucket or
    an earlier one. The recorded figures after the command's (a backfill's later ones, the
    first of the later buckets) are added too: those whose look-back reaches a value of the
    command are judged again.
    `floor_us` of a lookup bounds how far back "previous" reaches (see `look_back_floor`).

    Kept in columns (the fields of `Received`, one list each): a decision puts a thousand
    figures and its float screen reads their floats back, with no object per point; a
    `Received` is made only for the few points an exact rule looks at (`before`).
    """

    snaps: list[int] = field(default_factory=list)
    figures: list[Decimal] = field(default_factory=list)
    sources: list[tuple[str, ...]] = field(default_factory=list)
    approx: list[float] = field(default_factory=list)
    covered: set[int] = field(default_factory=set)  # buckets whose candidates were added
    # The command's own snaps, ascending (each bucket's, in bucket order): the figures its
    # values set, which the figures after them within the rules' reach are judged against
    # again (a backfill, a correction).
    changed: list[int] = field(default_factory=list)
    # Points of buckets before the deciding one whose next figure now makes no spike of them:
    # the application has their bucket retract an open spike issue (SeriesBucket.unflag).
    unspiked: list[int] = field(default_factory=list)

    @property
    def points(self) -> list[Received]:
        return self._points(0, len(self.snaps))

    def before(self, snap_us: int, n: int, floor_us: int) -> list[Received]:
        i = bisect.bisect_left(self.snaps, snap_us)
        lo = bisect.bisect_left(self.snaps, floor_us, 0, i)
        return self._points(max(lo, i - n), i)

    @property
    def _columns(self) -> tuple[list[Any], ...]:
        return self.snaps, self.figures, self.sources, self.approx

    def _points(self, lo: int, hi: int) -> list[Received]:
        return list(tuples_of(Received, *(c[lo:hi] for c in self._columns)))

    def add(self, bucket_us: int, points: Sequence[Received]) -> None:
        """A bucket's recorded received figures (ascending), added once."""
        self.covered.add(bucket_us)
        self.put_all(points)

    def put_all(self, points: Sequence[Received]) -> None:
        """`put` of each of `points` (ascending)."""
        if points:
            snaps, figures, sources, approx = map(list, zip(*points, strict=True))
            self.put_columns(snaps, figures, sources, approx)

    def put_columns(
        self,
        snaps: list[int],
        figures: list[Decimal],
        sources: list[tuple[str, ...]],
        approx: list[float],
    ) -> None:
        """`put` of each point of these columns (the fields of `Received`, ascending snaps),
        at once in the common cases: points after every known one (a load), or the very snaps
        of a run of known ones (another source)."""
        if not snaps:
            return
        new: tuple[list[Any], ...] = (snaps, figures, sources, approx)
        if not self.snaps or snaps[0] > self.snaps[-1]:
            for column, more in zip(self._columns, new, strict=True):
                column.extend(more)
            return
        i = bisect.bisect_left(self.snaps, snaps[0])
        j = i + len(snaps)
        if self.snaps[i:j] == snaps:
            for column, more in zip(self._columns, new, strict=True):
                column[i:j] = more
            return
        for point in tuples_of(Received, *new):
            self.put(point)

    def put(self, point: Received) -> None:
        i = bisect.bisect_left(self.snaps, point.snap_us)
        if i < len(self.snaps) and self.snaps[i] == point.snap_us:
            for column, value in zip(self._columns, point, strict=True):
                column[i] = value
        else:
            for column, value in zip(self._columns, point, strict=True):
                column.insert(i, value)


@dataclass(slots=True)
class LastStructures:
    """The last received structure of each bucket a command reached, as the command leaves it
    (None: the bucket has none): what the first snap of a bucket compares its nodes with, as
    the timeline serves the look-back of figures. The application adds the earlier buckets'
    before a bucket is decided; the decision puts its own, for the buckets after it."""

    last: dict[int, DataValue | None] = field(default_factory=dict)

    def before(self, bucket_us: int, floor_us: int) -> DataValue | None:
        """The latest structure of the buckets in [floor_us, bucket_us)."""
        for known_us in sorted(self.last, reverse=True):
            if floor_us <= known_us < bucket_us and (value := self.last[known_us]) is not None:
                return value
        return None


@dataclass(frozen=True, slots=True)
class SeriesView:
    """What a decision may need beyond the bucket, handed in by the application.

    `timeline`: received figures of the series (None: no look-back rule), shared by every
    bucket of the command and updated by each decision. `calendar`: None for no calendar
    check. `references`: other series' official figures for the cross-series checks (None:
    none run). `prior`: the prior sessions' official figures for the day_over_day rule (None:
    it does not run), shared by every bucket of the command and updated by each decision.
    `structures`: the earlier buckets' last structures for the node jump check (None: only the
    bucket's own), shared and updated the same way. `arrivals`: the source's arrival deadlines
    under the series' service levels, one per level remembered (none: its values are not
    judged late on arrival).
    """

    timeline: Timeline | None = None
    calendar: CalendarView | None = None
    references: CrossSeriesView | None = None
    prior: PriorOfficials | None = None
    structures: LastStructures | None = None
    arrivals: tuple[Arrivals, ...] = ()


def issue_id(command_id: str, snap_us: int, source_id: str, rule: str) -> str:
    """Deterministic, so re-deciding the same command (after a conflict) yields the same ids;
    prefixed with the snap, so an id alone locates the point (and bucket) it is about.

    The text of `uuid.uuid5(_ISSUES_NAMESPACE, name)`, made from its SHA-1 digest directly:
    a `uuid.UUID` object costs about as much again as the hash, for every issue raised."""
    name = f"{command_id}|{snap_us}|{source_id}|{rule}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{snap_us}-{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def point_issue(
    command_id: str,
    snap_us: int,
    rule: str,
    severity: Severity,
    evidence: dict[str, Any],
    source_id: str = "",
) -> Issue:
    """An issue a command raises about a point (or, with `source_id`, about a source's part in
    it) rather than about a value: only an error holds."""
    return Issue(
        issue_id=issue_id(command_id, snap_us, source_id, rule),
        snap_us=snap_us,
        source_id=source_id,
        rule=rule,
        severity=severity.value,
        blocking=severity is Severity.ERROR,
        evidence=evidence,
    )


def snap_of_issue(issue: str) -> int | None:
    head, _, rest = issue.partition("-")
    try:
        return int(head) if rest else None
    except ValueError:
        return None


def issues_of(
    command_id: str, snap_us: int, source_id: str, failures: Sequence[RuleFailure]
) -> list[Issue]:
    return [
        Issue(
            issue_id=issue_id(command_id, snap_us, source_id, f.rule),
            snap_us=snap_us,
            source_id=source_id,
            rule=f.rule,
            severity=f.severity.value,
            blocking=f.blocking,
            evidence=f.evidence,
        )
        for f in failures
    ]


SEEN_AFTER = frozenset({"spike"})
"""Rules a value fails only once later values came (a spike is seen when the move back
arrives), after the value was decided: they put the point in the exception queue, and count in
neither its score nor its flags, which would otherwise depend on whether anything (another
source, a resolution) decided the point again after they were raised, and so on the order
the values came in."""


def counted(failures: Iterable[RuleFailure]) -> list[RuleFailure]:
    """The failures that count in a point's score and flags (not those `SEEN_AFTER`)."""
    return [f for f in failures if f.rule not in SEEN_AFTER]


def flags_of(observed: dict[str, Observed], sources: Sequence[str]) -> list[str]:
    if not any(observed[s].failures for s in sources if s in observed):
        return []
    return sorted({f.rule for s in sources if s in observed for f in counted(observed[s].failures)})


class Decider:
    """The per-command decision context: the definition, the caller, and value decoding."""

    def __init__(self, definition: SeriesDefinition, ctx: CommandContext) -> None:
        self.definition = definition
        self.ctx = ctx
        self.quantum = Decimal(1).scaleb(-definition.precision) if definition.precision else None
        self.sole_source_status = self.status(blocking=False, sources=1, score=ONE)
        self._priority = {s.source_id: s.priority for s in definition.sources}
        self._zone = ZoneInfo(definition.time_zone)

    @classmethod
    def reading(cls, definition: SeriesDefinition) -> Decider:
        """A decider outside any command, to decode figures and local days (it decides nothing:
        no caller, no time)."""
        return cls(definition, CommandContext("", "", 0))

    def by_priority(self, *sources: str) -> list[str]:
        return by_priority(sources, self._priority)

    def decode(self, raw: RawValue) -> DataValue:
        d = self.definition
        return decode_value(d.data_type, d.unit, raw)

    def figure(self, raw: RawValue) -> Decimal | None:
        """`decode(raw).number`, without making the value of a scalar (a decimal string)."""
        return Decimal(raw) if isinstance(raw, str) else self.decode(raw).number

    def local_day(self, snap_us: int) -> date:
        """Exact (no float seconds); at the ends of the bounds' range a local day beyond year
        1 or 9999 is clamped to that year's first or last day."""
        moment = Snap(snap_us).to_datetime()
        try:
            return moment.astimezone(self._zone).date()
        except OverflowError:
            return date.min if moment.year == 1 else date.max

    def local_seconds(self, snap_us: int) -> int:
        """Seconds after local midnight (wall clock). At the ends of the bounds' range, where
        the local moment is beyond year 1 or 9999, the UTC time of day."""
        moment = Snap(snap_us).to_datetime()
        with contextlib.suppress(OverflowError):
            moment = moment.astimezone(self._zone)
        return moment.hour * 3600 + moment.minute * 60 + moment.second

    def local_midnight_us(self, day: date) -> int:
        midnight = datetime(day.year, day.month, day.day, tzinfo=self._zone)
        return int(midnight.timestamp()) * 1_000_000

    def candidate(
        self,
        snap_us: int,
        observed: dict[str, Observed],
        break_approved: bool = False,
    ) -> tuple[Candidate | None, Contributions, list[Issue]]:
        """Reconcile the values that count (not rejected). None when no value counts."""
        made = self.reconciled(observed)
        if made is None:
            return None, Contributions({}, []), []
        return self.judged(snap_us, observed, made, break_approved)

    def reconciled(
        self, observed: dict[str, Observed], incoming: tuple[str, DataValue] | None = None
    ) -> Reconciled | None:
        """What reconciliation makes of the values that count (not rejected); None when none
        does. `incoming`: the value of one of them being ingested, already decoded, to spare
        decoding it again."""
        values = {
            s: incoming[1] if incoming is not None and s == incoming[0] else self.decode(o.raw)
            for s, o in observed.items()
            if not o.rejected
        }
        if not values:
            return None
        result = reconcile(values, self.definition, self._priority)
        return Reconciled(values, result, self.rounded(result.value))

    def judged(
        self,
        snap_us: int,
        observed: dict[str, Observed],
        made: Reconciled,
        break_approved: bool = False,
    ) -> tuple[Candidate, Contributions, list[Issue]]:
        """The candidate `made` is, by the failures of the values it was made from (`observed`),
        the sources it breaks with and how many agree with it: with the issues of the point
        those raise (a break, a low confidence). `break_approved`: a person accepted that the
        point's sources disagree (approved either issue), so neither holds it any more."""
        d = self.definition
        policy = d.reconciliation
        values, result, chosen = made
        failures = counted(f for s in result.contributors for f in observed[s].failures)
        blocking = any(observed[s].blocking for s in result.contributors)
        point_issues = []
        if result.breaks:
            block = policy.on_break is BreakAction.BLOCK
            blocking = blocking or (block and not break_approved)
            evidence: dict[str, Any] = {
                "chosen": str(chosen.number),
                "sources": {s: str(values[s].number) for s in result.breaks},
            }
            if isinstance(chosen, TermStructure | Surface):
                # A structure has no one figure: the break names its nodes, per source.
                evidence["nodes"] = {
                    s: break_nodes(v, chosen, policy)
                    for s in result.breaks
                    if isinstance(v := values[s], TermStructure | Surface)
                }
            point_issues.append(self._point_issue(snap_us, "source_break", block, evidence))
        if policy.checks_confidence and len(values) >= policy.min_agreeing_sources:
            # Only once enough sources have sent: too few values is completeness
            # (min_sources, cutoff), not disagreement.
            agreeing = [s for s in values if within_tolerance(values[s], result.value, policy)]
            if len(agreeing) < policy.min_agreeing_sources:
                block = policy.on_low_confidence is BreakAction.BLOCK
                blocking = blocking or (block and not break_approved)
                evidence = {
                    "agreeing": len(agreeing),
                    "total": len(values),
                    "min_agreeing": policy.min_agreeing_sources,
                    "chosen": str(chosen.number),
                    "agreeing_sources": self.by_priority(*agreeing),
                }
                point_issues.append(self._point_issue(snap_us, "confidence_level", block, evidence))
        score = quality_score(failures, len(result.breaks)) if failures or result.breaks else ONE
        status = self.status(blocking, len(values), score)
        candidate = Candidate(
            encode_value(chosen), result.method.value, result.contributors, str(score), status
        )
        figures = {s: str(values[s].number) for s in result.contributors}
        return candidate, Contributions(figures, list(result.excluded)), point_issues

    def _point_issue(self, snap_us: int, rule: str, block: bool, evidence: dict[str, Any]) -> Issue:
        """An issue about the point, not one source's value: an error when it holds it."""
        severity = Severity.ERROR if block else Severity.WARNING
        return point_issue(self.ctx.command_id, snap_us, rule, severity, evidence)

    def status(self, blocking: bool, sources: int, score: Decimal) -> PointStatus:
        policy = self.definition.publication
        if blocking or policy.mode is PublicationMode.MANUAL:
            return PointStatus.HELD
        if sources < policy.min_sources or (
            policy.min_quality_score is not None and score < policy.min_quality_score
        ):
            return PointStatus.PENDING
        return PointStatus.PUBLISHED

    def rounded(self, value: DataValue) -> DataValue:
        if self.quantum is None:
            return value
        q = self.rounded_figure
        if isinstance(value, Price):
            return Price(q(value.value), value.currency)
        if isinstance(value, Volume):
            return Volume(q(value.quantity), value.unit)
        if isinstance(value, OhlcBar):
            return OhlcBar(q(value.open), q(value.high), q(value.low), q(value.close), value.volume)
        return value

    def rounded_figure(self, figure: Decimal) -> Decimal:
        """A figure at the series' precision (half to even), or as it is without one."""
        if self.quantum is None:
            return figure
        return figure.quantize(self.quantum, ROUND_HALF_EVEN, _ROUNDING)
