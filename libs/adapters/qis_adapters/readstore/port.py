"""The read-store port: bitemporal read models written by the projector, read by the query service.

Both adapters (embedded SQLite, MongoDB) implement exactly these semantics and are held to them
by one shared contract suite (tests/contract/readstore). docs/architecture.md §3 is the model:

- valid time = the snap, int64 microseconds since the Unix epoch, UTC;
- knowledge time = [recorded_from_us, recorded_to_us) taken from event commit times, and the same
  interval in commit positions [position_from, position_to); an open end is OPEN_END;
- values are serialised `qis.data.v1.DataValue` messages (decimal strings inside, no floats).

Exactly-once effect without transactions: every write below is idempotent (keyed upserts with
content that a replay reproduces, or conditional updates), so replaying any suffix of the event
log changes nothing; the checkpoint is written last by `apply`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple, Protocol, TypeVar

OPEN_END = 2**63 - 1
"""Far-future sentinel for an open recorded_to_us / position_to (never null, so indexes work)."""

JsonDoc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResumeToken:
    """Where a reader stands in the log: an event's commit position and a point index inside it."""

    position: int
    index: int

    def __lt__(self, other: ResumeToken) -> bool:
        return (self.position, self.index) < (other.position, other.index)


# The per-point records (OfficialVersion, Observation, ChangeFeedEntry) are NamedTuples, not
# frozen dataclasses: the projector builds three per published point, and a frozen dataclass
# sets each field through object.__setattr__ (2.1-2.4 us a record against 0.8-1.0 us, 15
# fields, under load). Immutable all the same; `_replace` and `_fields` stand for
# dataclasses.replace and dataclasses.fields. They compare equal to plain tuples of their
# fields: nothing compares them with anything but their own kind.

_Record = TypeVar("_Record", bound=tuple[Any, ...])


def records(kind: type[_Record], /, **columns: Iterable[Any]) -> list[_Record]:
    """Records of `kind`, one of the NamedTuples below, from one column per field named as the
    field (every field, defaults included), built in C: tuple.__new__ over zip, what
    `kind._make` does for one, without the Python-level __new__ a NamedTuple runs per record
    (~0.2 of ~0.5 us)."""
    fields: tuple[str, ...] = kind._fields  # type: ignore[attr-defined]
    if columns.keys() != set(fields):
        missing, unknown = set(fields) - columns.keys(), columns.keys() - set(fields)
        raise TypeError(f"{kind.__name__}: no column {sorted(missing)}, unknown {sorted(unknown)}")
    # Not strict: constant columns are endless (itertools.repeat, count).
    in_order = (columns[name] for name in fields)
    return list(map(tuple.__new__, repeat(kind), zip(*in_order, strict=False)))


class OfficialVersion(NamedTuple):
    """One published version of one point. Key: (series_id, snap_us, version)."""

    series_id: str
    snap_us: int
    version: int  # 1, 2, ...
    value: bytes  # serialised qis.data.v1.DataValue
    quality_score: float  # in [0, 1]
    recorded_from_us: int
    position_from: int
    reason: str  # "" for a first publication
    user_id: str
    command_id: str
    sources: tuple[str, ...]  # source ids that contributed
    method: str  # reconciliation method or "manual"
    flags: tuple[str, ...] = ()  # rules the point failed, e.g. ("stale",)
    recorded_to_us: int = OPEN_END
    position_to: int = OPEN_END


VERSION_FIELDS = OfficialVersion._fields[1:]
"""OfficialVersion's fields after series_id, in its order: a record as a row of columns (the
segments) or a list (the query cache's entries)."""
VERSION_TUPLES = (VERSION_FIELDS.index("sources"), VERSION_FIELDS.index("flags"))
"""The positions in VERSION_FIELDS of the fields held as tuples (lists in Arrow and JSON)."""


@dataclass(frozen=True, slots=True)
class VersionClosure:
    """Version `version` of a point stopped being current at (recorded_to_us, position_to)."""

    series_id: str
    snap_us: int
    version: int
    recorded_to_us: int
    position_to: int


@dataclass(frozen=True, slots=True)
class Segment:
    """The official values of one time bucket of a series, in columns, over a stretch of the log:
    one version of the bucket's segment (the ArcticDB idea on our stores). Key: (series_id,
    bucket_us, position_from).

    The projector writes a new version of a bucket's segment for each batch of events that
    changed the bucket, and closes the one before (SegmentClosure). A version holds every row
    version that was official at some commit position in [position_from, position_to): the
    rows of the bucket as they stood when the version begins, and those published or restated
    by the batch's later events. Each row carries its own knowledge interval, so that a read
    at any position or knowledge time inside the version's interval selects exactly the rows
    the per-point records give (qis_adapters.readstore.segments holds the row schema). Adapters
    store `payload` as opaque bytes.
    """

    series_id: str
    bucket_us: int  # the bucket's start: its points' stream (qis_domain.series_bucket)
    first_snap_us: int  # smallest snap of any row
    last_snap_us: int  # largest snap of any row
    rows: int
    payload: bytes  # Arrow IPC stream, compressed (qis_adapters.readstore.segments)
    recorded_from_us: int
    position_from: int
    recorded_to_us: int = OPEN_END
    position_to: int = OPEN_END


MAX_SEGMENT_BYTES = 12 * 2**20
"""Largest segment payload a writer is given (MongoDB documents stop at 16 MiB). The projector
stores a bucket whose segment would be larger as an empty, *overflowing* segment
(`rows == OVERFLOW_ROWS`): its values are read from the per-point records instead."""

OVERFLOW_ROWS = -1


@dataclass(frozen=True, slots=True)
class SegmentClosure:
    """The segment version (series_id, bucket_us, position_from) stopped being current at
    (recorded_to_us, position_to): the position and knowledge time of the next version."""

    series_id: str
    bucket_us: int
    position_from: int
    recorded_to_us: int
    position_to: int


@dataclass(frozen=True, slots=True)
class Latest:
    """The current version of each point."""


@dataclass(frozen=True, slots=True)
class KnownAt:
    """The versions that were official at this knowledge time."""

    at_us: int


@dataclass(frozen=True, slots=True)
class AtPosition:
    """The versions that were official right after this commit position."""

    position: int


AsOf = Latest | KnownAt | AtPosition
LATEST = Latest()


class Observation(NamedTuple):
    """A raw value of one source for one point (lineage). Key: (position, index)."""

    series_id: str
    snap_us: int
    source_id: str
    value: bytes  # serialised qis.data.v1.DataValue
    snap_offset_s: int  # UTC offset the source sent, in seconds
    recorded_at_us: int
    position: int
    index: int  # type: ignore[assignment]  # shadows tuple.index: no reader calls it
    command_id: str
    user_id: str
    flags: tuple[str, ...] = ()


ISSUE_STATUSES = ("open", "approved", "rejected", "overridden", "retracted")
"""Where a quality issue is in the exception queue: raised open, then resolved once (by a
person, or retracted by the system when it no longer holds for its source's figures)."""


@dataclass(frozen=True, slots=True)
class QualityIssue:
    """A rule a point failed. Key: (series_id, issue_id): an issue id is unique only within its
    series (qis_domain.decisions.issue_id derives it from the command id, snap, source and rule,
    and command ids are unique per series). Later writes of the same key update status fields."""

    issue_id: str
    series_id: str
    snap_us: int
    rule: str  # one of qis_domain.rules.RULE_NAMES
    severity: str  # a qis_domain.rules.Severity value: "info" | "warning" | "error"
    evidence: JsonDoc
    status: str  # one of ISSUE_STATUSES
    raised_at_us: int
    position: int
    source_id: str = ""
    resolved_by: str = ""
    resolution_reason: str = ""
    resolved_at_us: int = 0


@dataclass(frozen=True, slots=True)
class IssueResolution:
    """A person settled the issue (series_id, issue_id), or the system retracted it. Applied
    after the batch's issues; idempotent."""

    series_id: str  # the series the resolving event names: an issue id alone is ambiguous
    issue_id: str
    status: str  # "approved" | "rejected" | "overridden" | "retracted"
    resolved_by: str
    resolution_reason: str
    resolved_at_us: int
    position: int  # of the resolving event: a replayed raise of the issue never reopens it


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what, when, to a series (one of its points when snap_us is set), to a data
    source, or to another resource (an access policy). Key: (position, index). The fields after
    `details` came later: entries stored before them read with their defaults."""

    position: int
    index: int
    recorded_at_us: int
    series_id: str  # "" for entries about sources
    snap_us: int | None  # None for series-level entries
    action: str  # the event type, e.g. "DataPublished"
    user_id: str
    command_id: str
    details: JsonDoc
    source_id: str = ""  # the source of an entry about a source; "" for entries about series
    resource: str = ""
    """The resource name of an entry about neither a series nor a source, e.g.
    "accessPolicies/ops"; "" for the others."""


class ChangeFeedEntry(NamedTuple):
    """A new or restated official value, for subscribers. Key: (position, index)."""

    position: int
    index: int  # type: ignore[assignment]  # as Observation.index
    series_id: str
    snap_us: int
    version: int
    value: bytes
    quality_score: float
    recorded_at_us: int
    reason: str
    user_id: str
    sources: tuple[str, ...] = ()
    method: str = ""
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesEntry:
    """The catalogue entry of a series. Key: series_id; replaced only by a higher schema_version."""

    series_id: str
    schema_version: int
    definition: JsonDoc  # the proto-JSON form of qis.data.v1.Series
    updated_at_us: int
    position: int


@dataclass(frozen=True, slots=True)
class QualityMetrics:
    """Quality of a series over a window. Key: (series_id, window_start_us, window_end_us).

    `completeness` is None when it is unknown: some days of the window lie outside the exchange
    calendar's coverage (`uncovered_days` > 0), so no count of expected values is complete, and
    a number would claim more than is known. `expected_snaps` and `received_snaps` then count
    the covered days only. The fields after `position` came later: records stored before them
    read with their defaults.
    """

    series_id: str
    window_start_us: int
    window_end_us: int
    accuracy: float
    completeness: float | None
    timeliness: float
    consistency: float
    calculated_at_us: int
    position: int
    expected_snaps: int = 0
    received_snaps: int = 0
    missing_sessions: tuple[str, ...] = ()  # ISO dates of expected sessions without a value
    uncovered_days: int = 0  # days of the window outside the calendar's coverage


@dataclass(frozen=True, slots=True)
class AccessPolicyEntry:
    """An access policy as the query service evaluates it (qis_domain.access), projected from
    the `access/policies` stream. Key: policy_id; replaced only by a write of a higher or equal
    position. A deleted policy keeps its entry with `policy` None: a replay of its earlier
    events cannot bring it back, and `stream_version` moves with a deletion too."""

    policy_id: str
    revision: int
    stream_version: int
    """Of `access/policies` after this change: the highest over the entries is the version of
    the policies the command side decides on (what a denial names)."""
    updated_at_us: int
    position: int
    policy: JsonDoc | None = None
    """qis_domain.definitions.AccessPolicy in JSON (model_dump(mode="json")); None: deleted."""


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """A data source's configuration, projected from its stream. Key: source_id; replaced only
    by a write of a higher or equal position."""

    source_id: str
    config: JsonDoc
    """qis_domain.definitions.DataSourceConfig in JSON (model_dump(mode="json"))."""
    updated_at_us: int
    position: int


@dataclass(frozen=True, slots=True)
class SourceHealthEntry:
    """The latest health report of a source in one UTC day, with that day's usage up to it.
    Key: (source_id, day_us); replaced only by a write of a higher or equal position. A
    source's latest health is its entry of the greatest day; its total usage, the sum of its
    entries' day usage."""

    source_id: str
    day_us: int
    health: JsonDoc
    """qis_domain.events.DataSourceHealthReported in JSON, but its ids (model_dump(mode="json",
    exclude={"source_id", "day_us"})): the report, its cost, status_since_us, day_usage."""
    reported_at_us: int
    position: int


@dataclass(frozen=True, slots=True)
class TopicVersion:
    """A topic's definition from one position of the log on (docs/routing.md), projected from
    the `routing/topics` stream. Key: (topic, position): every change is kept, so that the
    projector restarting at any checkpoint finds the definitions in force there, whatever a
    crash left written beyond it."""

    topic: str  # the name, without "topics/"
    position: int
    updated_at_us: int
    definition: JsonDoc | None = None
    """qis_domain.routing.TopicDefinition in JSON (model_dump(mode="json")); None: deleted."""


@dataclass(frozen=True, slots=True)
class TopicEntry:
    """One entry of a topic's log: a routed event, or one part of a large one. Key: (topic,
    position, index); a topic's entries are read in key order, which is log order."""

    topic: str
    position: int
    index: int  # the part of the event, from 0
    series_id: str
    event_type: str
    payload: bytes  # serialised qis.data.v1.TopicMessage: what a consumer receives
    recorded_at_us: int


@dataclass(frozen=True, slots=True)
class ConsumerGroupEntry:
    """A consumer group's checkpoint (docs/routing.md), projected from its stream
    (`routing/groups/{topic}/{group}`): every entry up to (checkpoint_position,
    checkpoint_index) is settled. Key: (topic, group); replaced only by a write of a higher or
    equal position."""

    topic: str
    group: str
    checkpoint_position: int
    checkpoint_index: int
    updated_at_us: int
    position: int


PARKED = "parked"
REPLAYED = "replayed"  # back to delivery, not settled yet
SETTLED = "settled"  # replayed and settled: parked no more


@dataclass(frozen=True, slots=True)
class ParkedEntry:
    """An entry a consumer group parked. Key: (topic, group, entry_position, entry_index);
    replaced only by a write of a higher or equal position (parked again after a replay)."""

    topic: str
    group: str
    entry_position: int
    entry_index: int
    attempts: int
    last_error: str
    parked_at_us: int
    state: str  # PARKED, REPLAYED or SETTLED
    position: int


@dataclass(frozen=True, slots=True)
class ParkedState:
    """A parked entry's new state (REPLAYED, SETTLED) from the log's `position` on."""

    topic: str
    group: str
    entry_position: int
    entry_index: int
    state: str
    position: int


def topics_in_force(versions: Iterable[TopicVersion], at_position: int) -> list[TopicVersion]:
    """Of `versions` in (topic, position) order, each topic's last up to `at_position`: how
    every adapter answers `topics`."""
    chosen: dict[str, TopicVersion] = {}
    for version in versions:
        if version.position <= at_position:
            chosen[version.topic] = version
    return list(chosen.values())


@dataclass(slots=True)
class ProjectionBatch:
    """Everything the projector derived from a run of events, applied as one unit."""

    versions: list[OfficialVersion] = field(default_factory=list)
    closures: list[VersionClosure] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    issues: list[QualityIssue] = field(default_factory=list)
    resolutions: list[IssueResolution] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    changes: list[ChangeFeedEntry] = field(default_factory=list)
    series: list[SeriesEntry] = field(default_factory=list)
    metrics: list[QualityMetrics] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    segment_closures: list[SegmentClosure] = field(default_factory=list)
    policies: list[AccessPolicyEntry] = field(default_factory=list)
    sources: list[SourceEntry] = field(default_factory=list)
    source_health: list[SourceHealthEntry] = field(default_factory=list)
    topics: list[TopicVersion] = field(default_factory=list)
    topic_entries: list[TopicEntry] = field(default_factory=list)
    consumer_groups: list[ConsumerGroupEntry] = field(default_factory=list)
    parked: list[ParkedEntry] = field(default_factory=list)
    parked_states: list[ParkedState] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.topics)
            + len(self.consumer_groups)
            + len(self.parked)
            + len(self.parked_states)
            + len(self.topic_entries)
            + len(self.policies)
            + len(self.sources)
            + len(self.source_health)
            + len(self.segments)
            + len(self.segment_closures)
            + len(self.versions)
            + len(self.closures)
            + len(self.observations)
            + len(self.issues)
            + len(self.resolutions)
            + len(self.audit)
            + len(self.changes)
            + len(self.series)
            + len(self.metrics)
        )


@dataclass(frozen=True, slots=True)
class IssueFilter:
    """The issues of a series ("" for every series) in a status ("" for any).

    Only what an index serves in listing order, so that reading `limit` issues is one bounded
    index range scan in every adapter (SQLite: the key or the (status, series_id, issue_id) or
    (series_id, status, issue_id) index; MongoDB: the matching compound index, see
    mongodb._INDEXES): (series_id, issue_id) order for every series, issue_id order within the
    one series named. The query service checks any other condition itself."""

    series_id: str = ""
    status: str = ""


def issue_page_key(
    issue_filter: IssueFilter, after_series_id: str, after_issue_id: str
) -> tuple[str, str]:
    """The (series_id, issue_id) key a `list_issues` page starts strictly after.

    With a series in the filter, the listing stays in that series and only `after_issue_id`
    counts (`after_series_id` is ignored). Listing every series, the key is the pair: issue ids
    repeat across series, so an issue id alone cannot say where a page ended, and asking for
    one without its series is refused (ValueError) rather than restarting the listing.
    """
    if issue_filter.series_id:
        return issue_filter.series_id, after_issue_id
    if after_issue_id and not after_series_id:
        raise ValueError(
            "a page of the issues of every series resumes after a (series, issue) key:"
            " pass after_series_id with after_issue_id"
        )
    return after_series_id, after_issue_id


@dataclass(frozen=True, slots=True)
class AuditScope:
    """Whose audit entries a read returns: those of a series (of one of its points when
    `snap_us` is set too), those of a data source, or, with neither id, every entry."""

    series_id: str = ""
    source_id: str = ""
    snap_us: int | None = None

    def __post_init__(self) -> None:
        if self.series_id and self.source_id:
            raise ValueError("an audit scope is a series or a source, not both")
        if self.snap_us is not None and not self.series_id:
            raise ValueError("an audit scope names a point only within a series")


class ReadModelWriter(Protocol):
    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        """Write the batch idempotently, then record `checkpoint` (a commit position) last.

        Semantics every adapter guarantees, per record kind:
        - versions: insert if absent (same key → no change);
        - closures: set recorded_to/position_to of that version (idempotent);
        - current record of (series_id, snap_us): set from each version in `versions`, replaced
          only by a strictly higher version, so readers never see zero or two latest versions;
        - observations, audit, changes: insert if absent by (position, index);
        - issues: upsert by (series_id, issue_id) (a later write carries the newer status);
        - resolutions: set status, resolution fields and position of the issue
          (series_id, issue_id) when its stored position is not newer, after the issues;
        - series: upsert by series_id only when schema_version is higher or equal;
        - policies: upsert by policy_id only when position is higher or equal;
        - sources: upsert by source_id, source_health: upsert by (source_id, day_us), each
          only when position is higher or equal;
        - metrics: upsert by key;
        - topics, topic_entries: insert if absent by key;
        - consumer_groups: upsert by (topic, group), parked: upsert by (topic, group,
          entry_position, entry_index), each only when position is higher or equal;
          parked_states: set state and position of that parked entry when its stored
          position is not newer, after the parked entries;
        - segments: insert if absent by (series_id, bucket_us, position_from), before the
          segment closures; segment_closures: set recorded_to_us/position_to of that segment
          version (idempotent). Between the two a reader may see two open versions of one
          bucket: `segments` then returns the newer.
        """
        ...

    async def checkpoint(self) -> int | None:
        """Position of the last applied batch, None before the first."""
        ...

    async def last_segment(self, series_id: str, bucket_us: int) -> Segment | None:
        """The version of the bucket's segment with the greatest position_from, None when the
        bucket has none: what the projector builds the next version on."""
        ...

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        """The version of each topic in force at `at_position` (its greatest position up to
        it), deleted topics included, ascending by topic: what the projector routes with when it
        starts again at its checkpoint, and what ListTopics shows. A deployment holds tens of
        topics: read whole."""
        ...


class ReadModelReader(Protocol):
    async def latest_range(
        self, series_id: str, start_us: int, end_us: int, limit: int
    ) -> list[OfficialVersion]:
        """Current versions with start_us <= snap_us < end_us, ascending by snap, at most limit."""
        ...

    async def as_of_time_range(
        self, series_id: str, start_us: int, end_us: int, known_at_us: int, limit: int
    ) -> list[OfficialVersion]:
        """Versions with snap in [start, end) and recorded_from_us <= known_at < recorded_to_us."""
        ...

    async def as_of_position_range(
        self, series_id: str, start_us: int, end_us: int, position: int, limit: int
    ) -> list[OfficialVersion]:
        """Versions with snap in [start, end) and position_from <= position < position_to."""
        ...

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        """None when the generation read was built before segments (a format below
        SEGMENTS_FORMAT: until the projector's rebuild switches over, its values are in the
        per-point records only). Else, for each bucket of the series with from_bucket_us <= bucket_us < end_us, its segment
        version valid `as_of`: Latest, position_to == OPEN_END; KnownAt(t), recorded_from_us <=
        t < recorded_to_us; AtPosition(p), position_from <= p < position_to. When several
        versions of one bucket match (a writer between a segment's insert and its predecessor's
        closure), the one with the greatest position_from. Ascending by bucket_us, at most
        `limit` segments."""
        ...

    async def history(self, series_id: str, snap_us: int) -> list[OfficialVersion]:
        """All versions of one point, ascending by version."""
        ...

    async def observations(self, series_id: str, snap_us: int) -> list[Observation]:
        """Raw per-source values of one point, ascending by (position, index)."""
        ...

    async def changes_after(
        self, after: ResumeToken, series_ids: Sequence[str], limit: int
    ) -> list[ChangeFeedEntry]:
        """Change-feed entries strictly after `after`, ascending; empty series_ids means all."""
        ...

    async def audit_trail(
        self, scope: AuditScope, after: ResumeToken | None, limit: int
    ) -> list[AuditEntry]:
        """Audit entries in `scope` strictly after `after` (None: from the start) up to the
        checkpoint, ascending by (position, index), at most limit."""
        ...

    async def list_series(self, after_series_id: str, limit: int) -> list[SeriesEntry]:
        """Catalogue entries with series_id > after_series_id, ascending by id."""
        ...

    async def get_series(self, series_id: str) -> SeriesEntry | None: ...

    async def list_issues(
        self,
        issue_filter: IssueFilter,
        after_issue_id: str,
        limit: int,
        *,
        after_series_id: str = "",
    ) -> list[QualityIssue]:
        """At most `limit` issues matching the filter whose (series_id, issue_id) comes strictly
        after the page key (see issue_page_key), ascending by (series_id, issue_id): by issue_id
        within the series the filter names. The next page of every series' issues passes the
        last issue's series_id and issue_id; of one series' issues, its issue_id."""
        ...

    async def metrics(self, series_id: str, start_us: int, end_us: int) -> list[QualityMetrics]:
        """Metrics whose window starts in [start, end), ascending by window start."""
        ...

    async def access_policies(self) -> list[AccessPolicyEntry]:
        """Every access policy entry, deleted ones included, ascending by policy_id. A
        deployment holds tens of policies, hundreds at most: read whole."""
        ...

    async def list_sources(self, after_source_id: str, limit: int) -> list[SourceEntry]:
        """Sources with source_id > after_source_id, ascending by id, at most limit."""
        ...

    async def get_source(self, source_id: str) -> SourceEntry | None: ...

    async def source_health(self, source_id: str) -> list[SourceHealthEntry]:
        """Every day's health entry of the source, ascending by day_us: one per day its feed
        reported (a few hundred a year), read whole."""
        ...

    async def topic_entries(self, topic: str, after: ResumeToken, limit: int) -> list[TopicEntry]:
        """Entries of `topic` strictly after `after` up to the checkpoint, ascending by
        (position, index), at most limit."""
        ...

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        """As ReadModelWriter.topics, of the generation read: what TopicService serves."""
        ...

    async def consumer_group(self, topic: str, group: str) -> ConsumerGroupEntry | None:
        """The group's checkpoint; None before its first."""
        ...

    async def parked_entries(
        self, topic: str, group: str, after: ResumeToken, limit: int, state: str = ""
    ) -> list[ParkedEntry]:
        """The group's parked entries in `state` ("": PARKED or REPLAYED, not SETTLED) strictly
        after `after` (an entry's (position, index)), ascending by it, at most limit."""
        ...

    async def checkpoint(self) -> int | None: ...


class ReadStore(ReadModelWriter, ReadModelReader, Protocol):
    async def close(self) -> None: ...


GENERATION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
ACTIVE_GENERATION_KEY = "active"  # meta record naming the generation queries read
GENERATION_KEY_PREFIX = "generation:"  # + name: meta record of one generation (its checkpoint)
FORMAT_KEY_PREFIX = "format:"  # + name: the format a generation was built with (SQLite meta)

READ_MODEL_FORMAT = 6
"""The format of the read models this code builds: what the records hold and how they are
keyed. Each generation records the format it was built with when it is created, and keeps it.

Bumped when read models built by earlier code are wrong in a way only projecting the log again
fixes. A change a store can make in place (a column or field with a default, an index) needs no
bump. When the active generation is of an older format, the projector rebuilds the read models
into a fresh generation when it starts and then switches to it; until the switch the query
service goes on serving the old generation, which the projector no longer advances.
"""

SEGMENTS_FORMAT = 3
"""The first read-model format with segments."""

UNRECORDED_FORMAT = 1
"""The format of a generation without a format record: built before formats were recorded."""

FORMAT_CHANGES = {
    2: "quality issues keyed by (series, issue id), as issue ids repeat across series; series"
    " definitions in the qis.data.v1 shape (cut-off and SLA as durations); audit entries about"
    " data sources name their source",
    3: "official values also in columnar segments per series and time bucket, versioned by"
    " position and knowledge time (range reads and exports read them)",
    4: "data sources and their feeds' health reports (GetDataSource, ListDataSources): sources"
    " registered before were projected as audit entries only",
    5: "topics and their logs (docs/routing.md): topics defined before were not projected",
    6: "consumer groups of topics: their checkpoints and parked entries",
}
"""What each format changed from the one before: why a generation of an older one is rebuilt."""


class GenerationFormatError(RuntimeError):
    """A writer was opened on a generation built with another read-model format: its records
    would be written in a shape its other records do not have. Rebuild instead."""

    def __init__(self, generation: str, found: int) -> None:
        self.generation = generation
        self.found = found
        super().__init__(
            f"generation {generation!r} holds read models of format {found}, this code writes"
            f" format {READ_MODEL_FORMAT}: build a fresh generation (`qis-projector rebuild`;"
            " the projector rebuilds an older active generation when it starts)"
        )


def validate_generation(name: str) -> str:
    """Generation names become table / collection-name prefixes: plain identifiers only."""
    if not GENERATION_NAME.fullmatch(name):
        raise ValueError(f"invalid generation name {name!r}: letters, digits, _ (max 40)")
    return name


class GenerationAdmin(Protocol):
    """Read models live in named generations (a table / collection-name prefix per generation).

    A rebuild projects into a fresh generation while queries keep reading the active one, then
    switches the pointer: no downtime, and the old generation is dropped afterwards.

    Each generation records the read-model format it was built with (READ_MODEL_FORMAT when a
    writer created it); a writer refuses a generation of another format
    (GenerationFormatError), readers read any.
    """

    async def active_generation(self) -> str | None:
        """Name of the generation queries read, None before any was activated."""
        ...

    async def set_active_generation(self, name: str) -> None: ...

    async def list_generations(self) -> list[str]: ...

    async def generation_format(self, name: str) -> int:
        """The read-model format generation `name` was built with; UNRECORDED_FORMAT when it
        has no format record. ValueError for an unknown generation."""
        ...

    async def generation_checkpoint(self, name: str) -> int | None:
        """The checkpoint of generation `name` (whichever is active, and whatever this store
        writes), None before its first batch: what a rebuild must have reached before it
        switches. ValueError for an unknown generation."""
        ...

    async def drop_generation(self, name: str) -> None:
        """Delete a generation's data; refuses (ValueError) to drop the active one."""
        ...
