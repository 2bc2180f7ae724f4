"""Read store in one process's memory: for service-layer tests that inject their adapters.

Same bitemporal semantics as the SQLite reference adapter, held to the same contract suite. An
`InMemoryReadDatabase` plays the part of the SQLite file: every `InMemoryReadStore` built on it
(a projector's writer, a query service's reader, a rebuild's writer of a new generation) sees
the same generations and the same active pointer. Nothing outlives the process, so no URI
selects it.
"""

from __future__ import annotations

import dataclasses
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Generic, TypeVar, assert_never

from qis_adapters.readstore.port import (
    OPEN_END,
    READ_MODEL_FORMAT,
    SEGMENTS_FORMAT,
    SETTLED,
    UNRECORDED_FORMAT,
    AccessPolicyEntry,
    AsOf,
    AtPosition,
    AuditEntry,
    AuditScope,
    ChangeFeedEntry,
    ConsumerGroupEntry,
    GenerationFormatError,
    IssueFilter,
    JsonDoc,
    KnownAt,
    Latest,
    Observation,
    OfficialVersion,
    ParkedEntry,
    ParkedState,
    ProjectionBatch,
    QualityIssue,
    QualityMetrics,
    ResumeToken,
    Segment,
    SegmentClosure,
    SeriesEntry,
    SourceEntry,
    SourceHealthEntry,
    TopicEntry,
    TopicVersion,
    VersionClosure,
    issue_page_key,
    topics_in_force,
    validate_generation,
)

R = TypeVar("R")
Versioned = TypeVar("Versioned", OfficialVersion, Segment)
Key = tuple[str | int, ...]

_BEFORE_ALL = ResumeToken(-1, -1)


def _json_copy(doc: JsonDoc) -> JsonDoc:
    """What a store that serialises documents hands back: a fresh copy holding only JSON types.

    Copied on the way in and on the way out, so the store never shares a mutable document with
    a caller, and a document JSON cannot carry fails here as it would in the other adapters.
    """
    copy: JsonDoc = json.loads(json.dumps(doc))
    return copy


class _Table(Generic[R]):
    """Records of one kind by natural key, read in key order: the order the port's queries return.

    A shorter key bounds a range of longer ones, as a tuple prefix sorts before its extensions:
    (series, start) <= (series, snap, version) < (series, end) for start <= snap < end.
    """

    def __init__(
        self, key: Callable[[R], Key], detach: Callable[[R], R] = lambda record: record
    ) -> None:
        self._key = key
        self._detach = detach  # applied to every record stored and every record read
        self._records: dict[Key, R] = {}
        self._keys: list[Key] = []
        self._sorted = True

    def get(self, key: Key) -> R | None:
        record = self._records.get(key)
        return None if record is None else self._detach(record)

    def write(self, record: R, replaces: Callable[[R, R], bool] | None = None) -> None:
        """Insert `record` when its key is absent; when present, replace the stored record only
        if `replaces(stored, record)` holds."""
        key = self._key(record)
        stored = self._records.get(key)
        if stored is None:
            # The projector writes mostly in key order: then the keys stay sorted as they are.
            if self._keys and key < self._keys[-1]:
                self._sorted = False
            self._keys.append(key)
        elif replaces is None or not replaces(stored, record):
            return
        self._records[key] = self._detach(record)

    def write_all(
        self, records: Iterable[R], replaces: Callable[[R, R], bool] | None = None
    ) -> None:
        for record in records:
            self.write(record, replaces)

    def scan(self, low: Key = (), high: Key | None = None, *, after: bool = False) -> Iterator[R]:
        """Records with low <= key < high (low < key when `after`), in key order."""
        if not self._sorted:
            self._keys.sort()
            self._sorted = True
        keys = self._keys
        start = bisect_right(keys, low) if after else bisect_left(keys, low)
        stop = len(keys) if high is None else bisect_left(keys, high)
        return (self._detach(self._records[key]) for key in keys[start:stop])


def _version_key(v: OfficialVersion | VersionClosure) -> Key:
    return v.series_id, v.snap_us, v.version


def _point_key(v: OfficialVersion) -> Key:
    return v.series_id, v.snap_us


def _token_key(record: Observation | AuditEntry | ChangeFeedEntry) -> Key:
    return record.position, record.index


def _issue_key(issue: QualityIssue) -> Key:
    return issue.series_id, issue.issue_id


def _segment_key(s: Segment | SegmentClosure) -> Key:
    return s.series_id, s.bucket_us, s.position_from


def _parked_key(e: ParkedEntry | ParkedState) -> Key:
    return e.topic, e.group, e.entry_position, e.entry_index


def _knowledge_time(v: OfficialVersion) -> tuple[int, int]:
    return v.recorded_from_us, v.recorded_to_us


def _log_positions(v: OfficialVersion) -> tuple[int, int]:
    return v.position_from, v.position_to


def _valid(as_of: AsOf) -> Callable[[Segment], bool]:
    """Whether `as_of` may read a segment version (the newest of a bucket's is then chosen)."""
    match as_of:
        case Latest():
            return lambda s: s.position_to == OPEN_END
        case KnownAt(at_us=at):
            return lambda s: s.recorded_from_us <= at < s.recorded_to_us
        case AtPosition(position=at):
            return lambda s: s.position_from <= at < s.position_to
        case _:
            assert_never(as_of)


def _higher_version(stored: OfficialVersion, new: OfficialVersion) -> bool:
    return new.version > stored.version


def _always(_stored: object, _new: object) -> bool:
    return True


Positioned = (
    QualityIssue
    | QualityMetrics
    | AccessPolicyEntry
    | SourceEntry
    | SourceHealthEntry
    | ConsumerGroupEntry
    | ParkedEntry
)


def _not_older(stored: Positioned, new: Positioned) -> bool:
    # Equal positions replace, as in the SQLite store: a replay writes the same content anyway.
    return new.position >= stored.position


def _not_older_schema(stored: SeriesEntry, new: SeriesEntry) -> bool:
    return (new.schema_version, new.position) >= (stored.schema_version, stored.position)


def _close(
    table: _Table[Versioned],
    key: Key,
    closure: VersionClosure | SegmentClosure,
    replace: Callable[..., Versioned],
) -> None:
    """Set the end of the stored version `key` (absent: nothing to close) with `replace`:
    OfficialVersion._replace or dataclasses.replace."""
    stored = table.get(key)
    if stored is not None:
        closed = replace(
            stored, recorded_to_us=closure.recorded_to_us, position_to=closure.position_to
        )
        table.write(closed, _always)


class _Generation:
    """The read models of one generation: a table per record kind, its checkpoint, and the
    read-model format it was built with (None: no format record, as before formats were
    recorded)."""

    def __init__(self) -> None:
        self.format: int | None = READ_MODEL_FORMAT
        self.versions = _Table[OfficialVersion](_version_key)
        self.current = _Table[OfficialVersion](_point_key)
        self.observations = _Table[Observation](_token_key)
        self.audit = _Table[AuditEntry](
            _token_key, lambda a: dataclasses.replace(a, details=_json_copy(a.details))
        )
        self.changes = _Table[ChangeFeedEntry](_token_key)
        self.issues = _Table[QualityIssue](
            _issue_key, lambda i: dataclasses.replace(i, evidence=_json_copy(i.evidence))
        )
        self.series = _Table[SeriesEntry](
            lambda s: (s.series_id,),
            lambda s: dataclasses.replace(s, definition=_json_copy(s.definition)),
        )
        self.metrics = _Table[QualityMetrics](
            lambda m: (m.series_id, m.window_start_us, m.window_end_us)
        )
        self.segments = _Table[Segment](_segment_key)
        self.policies = _Table[AccessPolicyEntry](
            lambda p: (p.policy_id,),
            lambda p: (
                p if p.policy is None else dataclasses.replace(p, policy=_json_copy(p.policy))
            ),
        )
        self.sources = _Table[SourceEntry](
            lambda e: (e.source_id,),
            lambda e: dataclasses.replace(e, config=_json_copy(e.config)),
        )
        self.source_health = _Table[SourceHealthEntry](
            lambda e: (e.source_id, e.day_us),
            lambda e: dataclasses.replace(e, health=_json_copy(e.health)),
        )
        self.topics = _Table[TopicVersion](
            lambda t: (t.topic, t.position),
            lambda t: (
                t
                if t.definition is None
                else dataclasses.replace(t, definition=_json_copy(t.definition))
            ),
        )
        self.topic_entries = _Table[TopicEntry](lambda e: (e.topic, e.position, e.index))
        self.consumer_groups = _Table[ConsumerGroupEntry](lambda e: (e.topic, e.group))
        self.parked = _Table[ParkedEntry](_parked_key)
        self.checkpoint: int | None = None

    def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        """The writes of ReadModelWriter.apply, in the SQLite store's order."""
        for v in batch.versions:
            self.versions.write(v)
            self.current.write(v, _higher_version)
        for c in batch.closures:
            _close(self.versions, _version_key(c), c, OfficialVersion._replace)
        self.observations.write_all(batch.observations)
        self.audit.write_all(batch.audit)
        self.changes.write_all(batch.changes)
        self.issues.write_all(batch.issues, _not_older)
        for r in batch.resolutions:
            issue = self.issues.get((r.series_id, r.issue_id))
            if issue is not None and issue.position <= r.position:
                resolved = dataclasses.replace(
                    issue,
                    status=r.status,
                    resolved_by=r.resolved_by,
                    resolution_reason=r.resolution_reason,
                    resolved_at_us=r.resolved_at_us,
                    position=r.position,
                )
                self.issues.write(resolved, _always)
        self.series.write_all(batch.series, _not_older_schema)
        self.metrics.write_all(batch.metrics, _not_older)
        self.policies.write_all(batch.policies, _not_older)
        self.sources.write_all(batch.sources, _not_older)
        self.source_health.write_all(batch.source_health, _not_older)
        self.segments.write_all(batch.segments)
        for sc in batch.segment_closures:
            _close(self.segments, _segment_key(sc), sc, dataclasses.replace)
        self.topics.write_all(batch.topics)
        self.topic_entries.write_all(batch.topic_entries)
        self.consumer_groups.write_all(batch.consumer_groups, _not_older)
        self.parked.write_all(batch.parked, _not_older)
        for change in batch.parked_states:
            entry = self.parked.get(_parked_key(change))
            if entry is not None and entry.position <= change.position:
                moved = dataclasses.replace(entry, state=change.state, position=change.position)
                self.parked.write(moved, _always)
        self.checkpoint = checkpoint

    def dump(self) -> dict[str, object]:
        return {
            "checkpoint": self.checkpoint,
            "versions": list(self.versions.scan()),
            "current": list(self.current.scan()),
            "observations": list(self.observations.scan()),
            "audit": list(self.audit.scan()),
            "changes": list(self.changes.scan()),
            "issues": list(self.issues.scan()),
            "series": list(self.series.scan()),
            "metrics": list(self.metrics.scan()),
            "policies": list(self.policies.scan()),
            "sources": list(self.sources.scan()),
            "source_health": list(self.source_health.scan()),
            "segments": list(self.segments.scan()),
            "topics": list(self.topics.scan()),
            "topic_entries": list(self.topic_entries.scan()),
            "consumer_groups": list(self.consumer_groups.scan()),
            "parked": list(self.parked.scan()),
        }


class InMemoryReadDatabase:
    """What the stores built on it share, as processes share one SQLite file: the generations
    and the pointer to the active one."""

    def __init__(self) -> None:
        self._generations: dict[str, _Generation] = {}
        self._active: str | None = None

    @property
    def active(self) -> str | None:
        return self._active

    def generation(self, name: str) -> _Generation | None:
        return self._generations.get(name)

    def create(self, name: str) -> None:
        self._generations.setdefault(validate_generation(name), _Generation())

    def activate(self, name: str) -> None:
        if validate_generation(name) not in self._generations:
            raise ValueError(f"unknown generation {name!r}")
        self._active = name

    def names(self) -> list[str]:
        return sorted(self._generations)

    def drop(self, name: str) -> None:
        if validate_generation(name) == self._active:
            raise ValueError(f"generation {name!r} is active and cannot be dropped")
        self._generations.pop(name, None)


class InMemoryReadStore:
    """ReadStore + GenerationAdmin on an InMemoryReadDatabase, for one event loop.

    `generation`: the generation this instance writes, created when absent (the projector) and
    refused when of another read-model format (GenerationFormatError); None for a reader (the
    query service). Reads follow the active pointer, so a switch is seen on the very next query.
    No method awaits, so each call is atomic on the loop: a reader never sees half a batch.
    Queries walk the records in key order; sized for tests, not for volume.
    """

    def __init__(
        self, database: InMemoryReadDatabase | None = None, generation: str | None = None
    ) -> None:
        self.database = database or InMemoryReadDatabase()
        self._generation = generation
        self._closed = False
        if generation is not None:
            self.database.create(generation)
            built = self.database.generation(generation)
            found = None if built is None else built.format
            if found != READ_MODEL_FORMAT:
                raise GenerationFormatError(generation, found or UNRECORDED_FORMAT)

    def _open(self) -> InMemoryReadDatabase:
        if self._closed:
            raise RuntimeError("read store is closed")
        return self.database

    def _written(self) -> _Generation:
        database = self._open()
        if self._generation is None:
            raise RuntimeError("this read store was opened without a generation to write")
        generation = database.generation(self._generation)
        if generation is None:
            raise RuntimeError(f"generation {self._generation!r} was dropped")
        return generation

    def _reading(self) -> _Generation | None:
        """The active generation; None (everything reads as empty) before one is activated."""
        database = self._open()
        return None if database.active is None else database.generation(database.active)

    def _select(
        self, query: Callable[[_Generation], Iterable[R]], limit: int | None = None
    ) -> list[R]:
        """`query` on the active generation, at most `limit` records (None: all)."""
        generation = self._reading()
        if generation is None or (limit is not None and limit <= 0):
            return []
        return list(islice(query(generation), limit))

    def _feed(
        self,
        table: Callable[[_Generation], _Table[R]],
        keep: Callable[[R], bool],
        after: ResumeToken,
        limit: int,
    ) -> list[R]:
        """Records strictly after `after` up to the checkpoint, in token order: the other
        adapters stop there because a batch above it may be half-written, and paging past it
        could skip its missing records forever."""

        def query(generation: _Generation) -> Iterable[R]:
            if generation.checkpoint is None:
                return ()
            low, high = (after.position, after.index), (generation.checkpoint + 1,)
            return filter(keep, table(generation).scan(low, high, after=True))

        return self._select(query, limit)

    # --- ReadModelWriter ----------------------------------------------------------------------

    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        self._written().apply(batch, checkpoint)

    async def checkpoint(self) -> int | None:
        database = self._open()
        name = self._generation or database.active
        generation = None if name is None else database.generation(name)
        return None if generation is None else generation.checkpoint

    async def last_segment(self, series_id: str, bucket_us: int) -> Segment | None:
        bucket = (series_id, bucket_us)
        versions = list(self._written().segments.scan(bucket, (series_id, bucket_us + 1)))
        return versions[-1] if versions else None

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        database = self._open()
        name = self._generation or database.active
        generation = None if name is None else database.generation(name)
        if generation is None:
            return []
        return topics_in_force(generation.topics.scan(), at_position)

    # --- ReadModelReader ----------------------------------------------------------------------

    async def latest_range(
        self, series_id: str, start_us: int, end_us: int, limit: int
    ) -> list[OfficialVersion]:
        return self._select(
            lambda g: g.current.scan((series_id, start_us), (series_id, end_us)), limit
        )

    async def as_of_time_range(
        self, series_id: str, start_us: int, end_us: int, known_at_us: int, limit: int
    ) -> list[OfficialVersion]:
        return self._as_of(series_id, start_us, end_us, _knowledge_time, known_at_us, limit)

    async def as_of_position_range(
        self, series_id: str, start_us: int, end_us: int, position: int, limit: int
    ) -> list[OfficialVersion]:
        return self._as_of(series_id, start_us, end_us, _log_positions, position, limit)

    def _as_of(
        self,
        series_id: str,
        start_us: int,
        end_us: int,
        interval: Callable[[OfficialVersion], tuple[int, int]],
        at: int,
        limit: int,
    ) -> list[OfficialVersion]:
        """Versions with snap in [start, end) whose interval [from, to) holds `at`."""

        def query(g: _Generation) -> Iterator[OfficialVersion]:
            for v in g.versions.scan((series_id, start_us), (series_id, end_us)):
                since, until = interval(v)
                if since <= at < until:
                    yield v

        return self._select(query, limit)

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        valid = _valid(as_of)
        generation = self._reading()
        if generation is not None and (generation.format or UNRECORDED_FORMAT) < SEGMENTS_FORMAT:
            return None

        def query(g: _Generation) -> Iterator[Segment]:
            # Key order puts a bucket's versions by position_from: the last valid one wins.
            chosen: Segment | None = None
            for s in g.segments.scan((series_id, from_bucket_us), (series_id, end_us)):
                if chosen is not None and s.bucket_us != chosen.bucket_us:
                    yield chosen
                    chosen = None
                if valid(s):
                    chosen = s
            if chosen is not None:
                yield chosen

        return self._select(query, limit)

    async def history(self, series_id: str, snap_us: int) -> list[OfficialVersion]:
        return self._select(
            lambda g: g.versions.scan((series_id, snap_us), (series_id, snap_us + 1))
        )

    async def observations(self, series_id: str, snap_us: int) -> list[Observation]:
        return self._select(
            lambda g: (
                o for o in g.observations.scan() if (o.series_id, o.snap_us) == (series_id, snap_us)
            )
        )

    async def changes_after(
        self, after: ResumeToken, series_ids: Sequence[str], limit: int
    ) -> list[ChangeFeedEntry]:
        wanted = frozenset(series_ids)
        return self._feed(
            lambda g: g.changes,
            lambda c: not wanted or c.series_id in wanted,
            after,
            limit,
        )

    async def audit_trail(
        self, scope: AuditScope, after: ResumeToken | None, limit: int
    ) -> list[AuditEntry]:
        def in_scope(a: AuditEntry) -> bool:
            if scope.source_id:
                return a.source_id == scope.source_id
            if scope.series_id:
                return a.series_id == scope.series_id and (
                    scope.snap_us is None or a.snap_us == scope.snap_us
                )
            return True

        return self._feed(lambda g: g.audit, in_scope, after or _BEFORE_ALL, limit)

    async def list_series(self, after_series_id: str, limit: int) -> list[SeriesEntry]:
        return self._select(lambda g: g.series.scan((after_series_id,), after=True), limit)

    async def get_series(self, series_id: str) -> SeriesEntry | None:
        generation = self._reading()
        return None if generation is None else generation.series.get((series_id,))

    async def list_issues(
        self,
        issue_filter: IssueFilter,
        after_issue_id: str,
        limit: int,
        *,
        after_series_id: str = "",
    ) -> list[QualityIssue]:
        after = issue_page_key(issue_filter, after_series_id, after_issue_id)
        series, status = issue_filter.series_id, issue_filter.status
        # Every key of `series` sorts below (series + "\0",), every key of a later series not.
        high = (series + "\0",) if series else None

        def query(g: _Generation) -> Iterable[QualityIssue]:
            issues = g.issues.scan(after, high, after=True)
            return (i for i in issues if i.status == status) if status else issues

        return self._select(query, limit)

    async def metrics(self, series_id: str, start_us: int, end_us: int) -> list[QualityMetrics]:
        return self._select(lambda g: g.metrics.scan((series_id, start_us), (series_id, end_us)))

    async def access_policies(self) -> list[AccessPolicyEntry]:
        return self._select(lambda g: g.policies.scan())

    async def list_sources(self, after_source_id: str, limit: int) -> list[SourceEntry]:
        return self._select(lambda g: g.sources.scan((after_source_id,), after=True), limit)

    async def get_source(self, source_id: str) -> SourceEntry | None:
        generation = self._reading()
        return None if generation is None else generation.sources.get((source_id,))

    async def source_health(self, source_id: str) -> list[SourceHealthEntry]:
        # Every key of the source sorts below (source_id + "\0",), every later source's not.
        return self._select(lambda g: g.source_health.scan((source_id,), (source_id + "\0",)))

    async def topic_entries(self, topic: str, after: ResumeToken, limit: int) -> list[TopicEntry]:
        def query(g: _Generation) -> Iterable[TopicEntry]:
            if g.checkpoint is None:
                return ()
            low, high = (topic, after.position, after.index), (topic, g.checkpoint + 1)
            return g.topic_entries.scan(low, high, after=True)

        return self._select(query, limit)

    async def consumer_group(self, topic: str, group: str) -> ConsumerGroupEntry | None:
        generation = self._reading()
        return None if generation is None else generation.consumer_groups.get((topic, group))

    async def parked_entries(
        self, topic: str, group: str, after: ResumeToken, limit: int, state: str = ""
    ) -> list[ParkedEntry]:
        def query(g: _Generation) -> Iterable[ParkedEntry]:
            low = (topic, group, after.position, after.index)
            entries = g.parked.scan(low, (topic, group + "\0"), after=True)
            if state:
                return (e for e in entries if e.state == state)
            return (e for e in entries if e.state != SETTLED)

        return self._select(query, limit)

    # --- GenerationAdmin ----------------------------------------------------------------------

    async def active_generation(self) -> str | None:
        return self._open().active

    async def set_active_generation(self, name: str) -> None:
        self._open().activate(name)

    async def list_generations(self) -> list[str]:
        return self._open().names()

    async def generation_format(self, name: str) -> int:
        generation = self._open().generation(validate_generation(name))
        if generation is None:
            raise ValueError(f"unknown generation {name!r}")
        return UNRECORDED_FORMAT if generation.format is None else generation.format

    async def generation_checkpoint(self, name: str) -> int | None:
        generation = self._open().generation(validate_generation(name))
        if generation is None:
            raise ValueError(f"unknown generation {name!r}")
        return generation.checkpoint

    async def drop_generation(self, name: str) -> None:
        self._open().drop(name)

    # --- tests and lifecycle --------------------------------------------------------------------

    async def dump_all(self, generation: str | None = None) -> dict[str, object]:
        """Every record of a generation (default: the written one, else the active one) as port
        records sorted by natural key, plus its checkpoint: equal dumps mean equal read models.
        """
        database = self._open()
        name = generation or self._generation or database.active
        if name is None:
            raise ValueError("no generation to dump")
        dumped = database.generation(name)
        if dumped is None:
            raise ValueError(f"unknown generation {name!r}")
        return dumped.dump()

    async def close(self) -> None:
        self._closed = True
