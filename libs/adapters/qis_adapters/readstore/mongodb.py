"""Read store on MongoDB (production) with PyMongo's AsyncMongoClient.

Layout of one database:
- `meta`: `{_id: "active", generation, switched_at_us}` (the generation queries read) and
  `{_id: "generation:<name>", generation, format, checkpoint}` per generation (registry, the
  read-model format it was built with, absent before formats were recorded, and checkpoint);
- per generation `<name>_versions`, `_current`, `_observations`, `_audit`, `_changes`, `_issues`,
  `_series`, `_metrics`, `_segments`, `_policies`, `_sources`, `_source_health`, `_topics`,
  `_topic_entries`, `_consumer_groups`, `_parked`. Every document's `_id` encodes its natural key (see
  _key_id), so every write is idempotent: an insert whose duplicate-key error means "already
  written", or an update of one keyed document. A segment's payload is BSON binary.

Only commands that both MongoDB and FerretDB v1.24 implement are used: no transactions, change
streams or aggregation. Atomicity comes from the write order instead: versions and lineage first,
then the current records, closures and change feed that point at them, the checkpoint last; and
token-ordered reads (change feed, audit trail) stop at the checkpoint. Against FerretDB (tests)
writes go out one command at a time, updates in small commands (see `open`).

A batch costs a bounded number of round trips whatever its size: per collection one insert
command for its new documents and one update command for its replacements and closures (on
FerretDB, one per _FERRETDB_OPS_PER_COMMAND updates), plus the checkpoint. Records are inserted,
not upserted: FerretDB v1 runs each update statement as a query and a write transaction of its
own (10 ms and more each on a loaded 2-core machine), where an insert command writes ~100
documents a transaction; on MongoDB an insert is no dearer than an upsert either.

Values are stored as the readable proto-JSON form of `qis.data.v1.DataValue` and serialised back
on read; only canonical encodings are accepted on write, which is what makes that byte-exact.
Snaps, times and positions are int64 (never BSON dates, which are milliseconds).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Generic, TypeVar, assert_never

from bson.int64 import Int64
from google.protobuf.json_format import MessageToDict, ParseDict
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from pymongo.monitoring import CommandListener
from qis.data.v1.values_pb2 import DataValue

from qis_adapters.readstore.port import (
    ACTIVE_GENERATION_KEY,
    GENERATION_KEY_PREFIX,
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
    IssueResolution,
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

POINTER_TTL_S = 1.0
"""How long a reader trusts its cached active-generation pointer (a switch is seen within it)."""

# No generation is dropped sooner than this after a switch, so that no reader still trusting its
# cached pointer queries dropped collections.
_DROP_GRACE_S = 2 * POINTER_TTL_S

_FERRETDB_OPS_PER_COMMAND = 50  # updates; an insert command holds no cursor
_DUPLICATE_KEY = 11000
_BEFORE_ALL = ResumeToken(-1, -1)

R = TypeVar("R")
Doc = dict[str, Any]
Collection = AsyncCollection[Doc]
_Op = InsertOne[Doc] | UpdateOne
_Writes = tuple[Collection, Sequence[_Op]]


def _value_doc(raw: bytes) -> JsonDoc:
    message = DataValue.FromString(raw)
    # The readable form drops encoding details (field order, unknown fields, non-minimal varints);
    # a canonical encoding is the only one that is reproduced exactly on read.
    if message.SerializeToString() != raw:
        raise ValueError("value is not a canonical serialisation of qis.data.v1.DataValue")
    return MessageToDict(message, preserving_proto_field_name=True)


def _key_id(key: tuple[object, ...]) -> str:
    """The _id of a natural key: the bare string of a one-string key, else a compact JSON array
    such as '["S1",1700000000000000,2]' (unambiguous whatever the strings contain).

    A string rather than a subdocument: FerretDB v1 (SQLite) hands only a bare string or
    ObjectId _id down to SQLite and decodes and filters the whole collection itself for anything
    else, per operation. (SQLite still scans the table for it: v1.24 compares `json->'$._id'`
    where its _id index is on `json->"_id"`, so every keyed update costs a scan there.)
    """
    if len(key) == 1 and isinstance(key[0], str):
        return key[0]
    return json.dumps(key, separators=(",", ":"))


def _value_bytes(doc: JsonDoc) -> bytes:
    return ParseDict(doc, DataValue()).SerializeToString()


def _fields_of(record: type[Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The field names of a record type in order and the defaults of those that have one: of
    a NamedTuple (the per-point records) or a frozen dataclass (the others)."""
    if is_dataclass(record):
        found = fields(record)
        return (
            tuple(f.name for f in found),
            {f.name: f.default for f in found if f.default is not MISSING},
        )
    return record._fields, dict(record._field_defaults)


class _Kind(Generic[R]):
    """How one record type maps to documents of one collection per generation."""

    def __init__(
        self,
        suffix: str,
        record: type[R],
        key: tuple[str, ...],
        int64: frozenset[str] = frozenset(),
        arrays: frozenset[str] = frozenset(),
        texts: frozenset[str] = frozenset(),
    ) -> None:
        self.suffix = suffix
        self.record = record
        self.key = key  # natural key fields, encoded into _id by _key_id
        self.int64 = int64
        self.arrays = arrays  # tuple[str, ...] fields, stored as arrays
        # JSON documents stored as their text: their keys are anyone's (a source's settings),
        # and FerretDB (like MongoDB before 5.0) refuses field names with "." or "$". Such a
        # field written as a document by earlier code reads as it was.
        self.texts = texts
        # What a field reads as when its document lacks it: written before the field existed.
        # Such a default must be the field's null or empty value, which encode leaves out too.
        self.names, self.defaults = _fields_of(record)
        self.sort = [(name, ASCENDING) for name in key]

    def encode(self, record: R, values: Callable[[bytes], JsonDoc]) -> tuple[str, Doc]:
        doc: Doc = {}
        for name in self.names:
            x = getattr(record, name)
            # Nulls and empty arrays are left out: FerretDB v1's $setOnInsert, which earlier code
            # wrote with, drops such top-level fields, and leaving them out everywhere keeps
            # documents equal between the engines and to those already stored.
            if x is None or x == ():
                continue
            if name in self.int64:
                doc[name] = Int64(x)
            elif name == "value":
                doc[name] = values(x)
            elif name in self.arrays:
                doc[name] = list(x)
            elif name in self.texts:
                doc[name] = json.dumps(x, sort_keys=True, separators=(",", ":"))
            else:
                doc[name] = x
        return _key_id(tuple(doc[name] for name in self.key)), doc

    def replace(self, doc: Doc) -> Doc:
        """The update that makes a stored document `doc`: the fields `doc` leaves out (null or
        empty) are removed, or an older value would survive."""
        left_out = {name: "" for name in self.names if name not in doc}
        return {"$set": doc, "$unset": left_out} if left_out else {"$set": doc}

    def decode(self, doc: Doc) -> R:
        kwargs: Doc = {}
        for name in self.names:
            x = doc.get(name)
            if x is None:  # left out: null or empty (see encode), or older than the field
                kwargs[name] = self.defaults.get(name, () if name in self.arrays else None)
            elif name in self.int64:
                kwargs[name] = int(x)
            elif name == "value":
                kwargs[name] = _value_bytes(x)
            elif name in self.arrays:
                kwargs[name] = tuple(x)
            elif name in self.texts and isinstance(x, str):
                kwargs[name] = json.loads(x)
            else:
                kwargs[name] = x
        return self.record(**kwargs)


_VERSION_INT64 = frozenset(
    {"snap_us", "recorded_from_us", "recorded_to_us", "position_from", "position_to"}
)
_VERSION_KEY = ("series_id", "snap_us", "version")
_VERSIONS = _Kind(
    "versions", OfficialVersion, _VERSION_KEY, _VERSION_INT64, frozenset({"sources", "flags"})
)
_CURRENT = _Kind("current", OfficialVersion, _VERSION_KEY[:2], _VERSION_INT64, _VERSIONS.arrays)
_OBSERVATIONS = _Kind(
    "observations",
    Observation,
    ("position", "index"),
    frozenset({"snap_us", "recorded_at_us", "position"}),
    frozenset({"flags"}),
)
_AUDIT = _Kind(
    "audit",
    AuditEntry,
    ("position", "index"),
    frozenset({"position", "recorded_at_us", "snap_us"}),
    texts=frozenset({"details"}),  # a source's registration holds its settings
)
_CHANGES = _Kind(
    "changes",
    ChangeFeedEntry,
    ("position", "index"),
    frozenset({"position", "snap_us", "recorded_at_us"}),
    frozenset({"sources", "flags"}),
)
_ISSUES = _Kind(
    "issues",
    QualityIssue,
    ("series_id", "issue_id"),  # issue ids repeat across series
    frozenset({"snap_us", "raised_at_us", "position", "resolved_at_us"}),
)
_SERIES = _Kind("series", SeriesEntry, ("series_id",), frozenset({"updated_at_us", "position"}))
_METRICS = _Kind(
    "metrics",
    QualityMetrics,
    ("series_id", "window_start_us", "window_end_us"),
    frozenset({"window_start_us", "window_end_us", "calculated_at_us", "position"}),
    frozenset({"missing_sessions"}),
)
_SEGMENTS = _Kind(
    "segments",
    Segment,
    ("series_id", "bucket_us", "position_from"),
    frozenset(
        {
            "bucket_us",
            "first_snap_us",
            "last_snap_us",
            "recorded_from_us",
            "position_from",
            "recorded_to_us",
            "position_to",
        }
    ),
)
_POLICIES = _Kind(
    "policies",
    AccessPolicyEntry,
    ("policy_id",),
    frozenset({"stream_version", "updated_at_us", "position"}),
)
_SOURCES = _Kind(
    "sources",
    SourceEntry,
    ("source_id",),
    frozenset({"updated_at_us", "position"}),
    texts=frozenset({"config"}),
)
_SOURCE_HEALTH = _Kind(
    "source_health",
    SourceHealthEntry,
    ("source_id", "day_us"),
    frozenset({"day_us", "reported_at_us", "position"}),
)
_TOPICS = _Kind(
    "topics", TopicVersion, ("topic", "position"), frozenset({"position", "updated_at_us"})
)
_TOPIC_ENTRIES = _Kind(
    "topic_entries",
    TopicEntry,
    ("topic", "position", "index"),
    frozenset({"position", "recorded_at_us"}),
)
_CONSUMER_GROUPS = _Kind(
    "consumer_groups",
    ConsumerGroupEntry,
    ("topic", "group"),
    frozenset({"checkpoint_position", "updated_at_us", "position"}),
)
_PARKED = _Kind(
    "parked",
    ParkedEntry,
    ("topic", "group", "entry_position", "entry_index"),
    frozenset({"entry_position", "parked_at_us", "position"}),
)
# A read takes the first version of each bucket in this order: the newest of those it matches.
_NEWEST_FIRST = [("bucket_us", ASCENDING), ("position_from", DESCENDING)]
_KINDS: tuple[_Kind[Any], ...] = (
    _VERSIONS,
    _CURRENT,
    _OBSERVATIONS,
    _AUDIT,
    _CHANGES,
    _ISSUES,
    _SERIES,
    _METRICS,
    _SEGMENTS,
    _POLICIES,
    _SOURCES,
    _SOURCE_HEALTH,
    _TOPICS,
    _TOPIC_ENTRIES,
    _CONSUMER_GROUPS,
    _PARKED,
)


def _index(keys: Sequence[str], *, unique: bool = False, newest_first: bool = False) -> IndexModel:
    """An ascending index on `keys`; with `newest_first`, position_from descending in it, as
    segment reads sort (_NEWEST_FIRST)."""
    order = {k: ASCENDING for k in keys}
    if newest_first:
        order["position_from"] = DESCENDING
    return IndexModel(list(order.items()), unique=unique)


# Every index a query relies on; the contract suite checks them with list_indexes() (and, on a
# real MongoDB, that each form of a query is served by them without a sort: explain()).
_INDEXES: dict[str, list[IndexModel]] = {
    # latest range (current); as-of ranges and history (versions)
    "versions": [_index(_VERSION_KEY, unique=True)],
    "current": [_index(_VERSION_KEY[:2], unique=True)],
    "observations": [_index(("series_id", "snap_us", "position", "index"))],
    "audit": [
        _index(("position", "index"), unique=True),
        _index(("series_id", "position", "index")),
        _index(("series_id", "snap_us", "position", "index")),
        _index(("source_id", "position", "index")),
    ],
    "changes": [
        _index(("position", "index"), unique=True),
        _index(("series_id", "position", "index")),
    ],
    # list_issues: every series in (series_id, issue_id) order, all or in one status (the
    # first two); one series in issue_id order, all or in one status (the first and the last).
    "issues": [
        _index(_ISSUES.key, unique=True),
        _index(("status", *_ISSUES.key)),
        _index(("series_id", "status", "issue_id")),
    ],
    "series": [],  # served by _id
    "policies": [],  # served by _id (the policy id), read whole
    "sources": [],  # served by _id (the source id), listed in _id order
    "source_health": [_index(_SOURCE_HEALTH.key, unique=True)],
    "metrics": [_index(_METRICS.key, unique=True)],
    "topics": [_index(_TOPICS.key, unique=True)],  # read whole, in key order
    "topic_entries": [_index(_TOPIC_ENTRIES.key, unique=True)],
    "consumer_groups": [],  # served by _id
    # parked_entries in one state (the replay: parked ones; the dispatcher: replayed ones),
    # and in every state (the listing), both in entry order.
    "parked": [
        _index(_PARKED.key, unique=True),
        _index(("topic", "group", "state", "entry_position", "entry_index")),
    ],
    # The key is unique by _id. Each index holds every field its reads filter on, so that a
    # version is fetched (payload and all) only when it matches: as-of reads and last_segment
    # (the first), latest reads (the second: only open versions).
    "segments": [
        _index(
            (
                *_SEGMENTS.key,
                "position_to",
                "recorded_from_us",
                "recorded_to_us",
            ),
            newest_first=True,
        ),
        _index(("series_id", "position_to", "bucket_us", "position_from"), newest_first=True),
    ],
}


def _newest(
    records: Iterable[R], key: Callable[[R], Hashable], rank: Callable[[R], Any]
) -> list[R]:
    """One record per key, the highest-ranked (the last among equals, i.e. the newest in log order).

    An unordered bulk write may apply two writes of one document in any order; with one record
    per document per batch, only the stored state can be newer than what the batch writes.
    """
    best: dict[Hashable, R] = {}
    for record in records:
        k = key(record)
        kept = best.get(k)
        if kept is None or rank(record) >= rank(kept):
            best[k] = record
    return list(best.values())


def _point_key(v: OfficialVersion) -> tuple[str, int]:
    return v.series_id, v.snap_us


def _metrics_key(m: QualityMetrics) -> tuple[str, int, int]:
    return m.series_id, m.window_start_us, m.window_end_us


def _after(token: ResumeToken) -> Doc:
    """(position, index) strictly after the token, in a form the compound indexes can serve."""
    return {
        "$or": [
            {"position": Int64(token.position), "index": {"$gt": token.index}},
            {"position": {"$gt": Int64(token.position)}},
        ]
    }


def _snap_range(series_id: str, start_us: int, end_us: int) -> Doc:
    return {"series_id": series_id, "snap_us": {"$gte": Int64(start_us), "$lt": Int64(end_us)}}


class MongoReadStore:
    """ReadStore + GenerationAdmin on one MongoDB database. Build it with `await .open(...)`."""

    def __init__(
        self, client: AsyncMongoClient[Doc], database: str, generation: str | None
    ) -> None:
        self._client = client
        self._db: AsyncDatabase[Doc] = client[database]
        self._meta: Collection = self._db["meta"]
        self._generation = None if generation is None else validate_generation(generation)
        self._active_cache: str | None = None
        self._formats: dict[str, int] = {}
        self._active_expires = 0.0
        self._ops_per_command: int | None = None  # None: as many as the server takes

    @classmethod
    async def open(
        cls,
        uri: str,
        database: str,
        generation: str | None = None,
        *,
        event_listeners: Sequence[CommandListener] = (),
    ) -> MongoReadStore:
        """Connect. `generation`: the generation this instance writes, registered and indexed
        when absent (the projector); None for a reader (the query service), which only reads the
        active generation. `checkpoint()` reports the written generation's, else the active one's.
        `event_listeners`: PyMongo command monitoring of this store's client (tests, benchmarks).
        """
        store = cls(AsyncMongoClient(uri, event_listeners=event_listeners), database, generation)
        try:
            build = await store._db.command("buildInfo")
            if "ferretdbVersion" in build:
                # FerretDB v1 keeps each update statement's cursor open until its whole command
                # ends, from a pool of 100 SQLite connections per database: a command of 100
                # matching updates, or several such commands at once, waits forever.
                store._ops_per_command = _FERRETDB_OPS_PER_COMMAND
            if store._generation is not None:
                await store._register(store._generation)
                await store.ensure_indexes()
        except BaseException:
            await store._client.close()
            raise
        return store

    async def _register(self, generation: str) -> None:
        """Register the written generation, recording the format it is built with when this
        creates it; refuse one of another format (before touching its indexes: an older
        generation may hold an index of the same keys with other options)."""
        await self._meta.update_one(
            {"_id": GENERATION_KEY_PREFIX + generation},
            {"$setOnInsert": {"generation": generation, "format": READ_MODEL_FORMAT}},
            upsert=True,
        )
        found = await self.generation_format(generation)
        if found != READ_MODEL_FORMAT:
            raise GenerationFormatError(generation, found)

    def _collection(self, generation: str, kind: _Kind[Any]) -> Collection:
        return self._db[f"{generation}_{kind.suffix}"]

    def _writer(self) -> str:
        if self._generation is None:
            raise RuntimeError("this read store was opened without a generation to write")
        return self._generation

    async def ensure_indexes(self, generation: str | None = None) -> None:
        """Create every index the queries rely on (idempotent).

        One index per command: FerretDB v1 panics (and drops the connection) on a createIndexes
        of several indexes some of which exist, i.e. whenever a writer reopens its generation.
        """
        name = validate_generation(generation) if generation else self._writer()

        async def create(collection: Collection, indexes: list[IndexModel]) -> None:
            for index in indexes:
                await collection.create_indexes([index])

        await asyncio.gather(
            *(create(self._collection(name, kind), _INDEXES[kind.suffix]) for kind in _KINDS)
        )

    # --- ReadModelWriter ----------------------------------------------------------------------

    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        generation = self._writer()
        memo: dict[bytes, JsonDoc] = {}

        def values(raw: bytes) -> JsonDoc:
            # A version, its current record and its change-feed entry share one value.
            doc = memo.get(raw)
            if doc is None:
                doc = memo[raw] = _value_doc(raw)
            return doc

        def upserts(
            kind: _Kind[R], records: Iterable[R], older: Callable[[R], Doc | None] | None = None
        ) -> _Writes:
            """Insert each record if its document is absent (a duplicate key is skipped by
            _write); with `older`, also replace the document when the filter `older(record)`
            matches it (stored state strictly older; None when nothing stored can be older).

            Two plain operations, never an upsert whose filter can miss an existing _id: such an
            upsert fails with E11000, and FerretDB v1 then abandons the rest of an unordered batch.
            The two commute, so their order inside the unordered bulk does not matter.
            """
            ops: list[_Op] = []
            for record in records:
                key, doc = kind.encode(record, values)
                # Fields in name order, as $setOnInsert upserts of earlier code stored them.
                ops.append(InsertOne({"_id": key, **dict(sorted(doc.items()))}))
                guard = None if older is None else older(record)
                if guard is not None:
                    ops.append(UpdateOne({"_id": key, **guard}, kind.replace(doc)))
            return self._collection(generation, kind), ops

        # Lineage and the versions themselves first: what the second phase points at exists.
        await self._write(
            upserts(_VERSIONS, batch.versions),
            upserts(_SEGMENTS, batch.segments),
            upserts(_OBSERVATIONS, batch.observations),
            upserts(_AUDIT, batch.audit),
            upserts(
                _ISSUES,
                _newest(batch.issues, lambda i: (i.series_id, i.issue_id), lambda i: i.position),
                lambda i: {"position": {"$lt": Int64(i.position)}},
            ),
            upserts(
                _SERIES,
                _newest(
                    batch.series, lambda s: s.series_id, lambda s: (s.schema_version, s.position)
                ),
                lambda s: {
                    "$or": [
                        {"schema_version": {"$lt": s.schema_version}},
                        {
                            "schema_version": s.schema_version,
                            "position": {"$lt": Int64(s.position)},
                        },
                    ]
                },
            ),
            upserts(
                _METRICS,
                _newest(batch.metrics, _metrics_key, lambda m: m.position),
                lambda m: {"position": {"$lt": Int64(m.position)}},
            ),
            upserts(
                _POLICIES,
                _newest(batch.policies, lambda p: p.policy_id, lambda p: p.position),
                lambda p: {"position": {"$lt": Int64(p.position)}},
            ),
            upserts(
                _SOURCES,
                _newest(batch.sources, lambda e: e.source_id, lambda e: e.position),
                lambda e: {"position": {"$lt": Int64(e.position)}},
            ),
            upserts(
                _SOURCE_HEALTH,
                _newest(
                    batch.source_health, lambda e: (e.source_id, e.day_us), lambda e: e.position
                ),
                lambda e: {"position": {"$lt": Int64(e.position)}},
            ),
            upserts(
                _CONSUMER_GROUPS,
                _newest(batch.consumer_groups, lambda e: (e.topic, e.group), lambda e: e.position),
                lambda e: {"position": {"$lt": Int64(e.position)}},
            ),
            upserts(
                _PARKED,
                _newest(batch.parked, _parked_key, lambda e: e.position),
                lambda e: {"position": {"$lt": Int64(e.position)}},
            ),
        )
        await self._write(
            upserts(
                _CURRENT,
                _newest(batch.versions, _point_key, lambda v: v.version),
                # Versions start at 1: a first publication only ever inserts.
                lambda v: {"version": {"$lt": v.version}} if v.version > 1 else None,
            ),
            (
                self._collection(generation, _VERSIONS),
                [_closure_op((c.series_id, c.snap_us, c.version), c) for c in batch.closures],
            ),
            (
                self._collection(generation, _SEGMENTS),
                [
                    _closure_op((c.series_id, c.bucket_us, c.position_from), c)
                    for c in batch.segment_closures
                ],
            ),
            upserts(_CHANGES, batch.changes),
            upserts(_TOPICS, batch.topics),
            upserts(_TOPIC_ENTRIES, batch.topic_entries),
            (
                self._collection(generation, _ISSUES),
                [_resolution_op(r) for r in batch.resolutions],
            ),
            (
                self._collection(generation, _PARKED),
                [
                    _parked_state_op(c)
                    for c in _newest(batch.parked_states, _parked_key, lambda c: c.position)
                ],
            ),
        )
        await self._meta.update_one(
            {"_id": GENERATION_KEY_PREFIX + generation},
            {"$set": {"generation": generation, "checkpoint": Int64(checkpoint)}},
            upsert=True,
        )

    async def _write(self, *writes: _Writes) -> None:
        """Unordered bulk writes, one per collection, in parallel (sequential on FerretDB, with
        its updates in commands of at most _ops_per_command)."""
        writes = tuple((collection, ops) for collection, ops in writes if ops)
        if self._ops_per_command is None:
            await asyncio.gather(*(_bulk_write(c, ops) for c, ops in writes))
            return
        for collection, ops in writes:
            # An unordered bulk sends its inserts as one command whatever their number (PyMongo
            # splits only past the server's message limits) and its updates as another.
            inserts = [op for op in ops if isinstance(op, InsertOne)]
            updates = [op for op in ops if not isinstance(op, InsertOne)]
            await _bulk_write(collection, inserts)
            for start in range(0, len(updates), self._ops_per_command):
                await _bulk_write(collection, updates[start : start + self._ops_per_command])

    async def checkpoint(self) -> int | None:
        generation = self._generation or await self._reading()
        return None if generation is None else await self._checkpoint_of(generation)

    async def last_segment(self, series_id: str, bucket_us: int) -> Segment | None:
        query = {"series_id": series_id, "bucket_us": Int64(bucket_us)}
        found = await self._query(self._writer(), _SEGMENTS, query, _NEWEST_FIRST, 1)
        return found[0] if found else None

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        generation = self._generation or await self._reading()
        if generation is None:
            return []
        versions = await self._query(generation, _TOPICS, {}, _TOPICS.sort)
        return topics_in_force(versions, at_position)

    async def _checkpoint_of(self, generation: str) -> int | None:
        doc = await self._meta.find_one({"_id": GENERATION_KEY_PREFIX + generation})
        return None if doc is None or doc.get("checkpoint") is None else int(doc["checkpoint"])

    # --- ReadModelReader ----------------------------------------------------------------------

    async def _reading(self) -> str | None:
        """The active generation, re-read at most every POINTER_TTL_S (a round trip per query
        would double the latency of point reads)."""
        now = time.monotonic()
        if now >= self._active_expires:
            doc = await self._meta.find_one({"_id": ACTIVE_GENERATION_KEY})
            self._active_cache = None if doc is None else str(doc["generation"])
            self._active_expires = now + POINTER_TTL_S
        return self._active_cache

    async def _format(self, generation: str) -> int:
        """A generation's format, read once: it never changes."""
        known = self._formats.get(generation)
        if known is None:
            known = self._formats[generation] = await self.generation_format(generation)
        return known

    async def _find(
        self,
        kind: _Kind[R],
        query: Doc,
        sort: Sequence[tuple[str, int]],
        limit: int = 0,
    ) -> list[R]:
        """Query the active generation; no active generation reads as empty. limit 0: no limit."""
        generation = await self._reading()
        if generation is None:
            return []
        return await self._query(generation, kind, query, sort, limit)

    async def _query(
        self,
        generation: str,
        kind: _Kind[R],
        query: Doc,
        sort: Sequence[tuple[str, int]],
        limit: int = 0,
    ) -> list[R]:
        cursor = self._collection(generation, kind).find(query, sort=sort, limit=limit)
        return [kind.decode(doc) async for doc in cursor]

    async def _feed(self, kind: _Kind[R], query: Doc, after: ResumeToken, limit: int) -> list[R]:
        """Records strictly after `after` up to the checkpoint, in token order.

        Without transactions a reader can see position p+1 of a batch still being written before
        p; stopping at the checkpoint, written after the whole batch, keeps paging gap-free.
        """
        generation = await self._reading()
        bound = None if generation is None else await self._checkpoint_of(generation)
        if generation is None or bound is None:
            return []
        query = {**query, **_after(after)}
        query["position"] = {"$lte": Int64(bound)}
        return await self._query(generation, kind, query, kind.sort, limit)

    async def latest_range(
        self, series_id: str, start_us: int, end_us: int, limit: int
    ) -> list[OfficialVersion]:
        if limit <= 0:
            return []
        query = _snap_range(series_id, start_us, end_us)
        return await self._find(_CURRENT, query, [("snap_us", ASCENDING)], limit)

    async def as_of_time_range(
        self, series_id: str, start_us: int, end_us: int, known_at_us: int, limit: int
    ) -> list[OfficialVersion]:
        return await self._as_of(
            series_id, start_us, end_us, "recorded_from_us", "recorded_to_us", known_at_us, limit
        )

    async def as_of_position_range(
        self, series_id: str, start_us: int, end_us: int, position: int, limit: int
    ) -> list[OfficialVersion]:
        return await self._as_of(
            series_id, start_us, end_us, "position_from", "position_to", position, limit
        )

    async def _as_of(
        self,
        series_id: str,
        start_us: int,
        end_us: int,
        from_field: str,
        to_field: str,
        at: int,
        limit: int,
    ) -> list[OfficialVersion]:
        if limit <= 0:
            return []
        query = _snap_range(series_id, start_us, end_us)
        query[from_field] = {"$lte": Int64(at)}
        query[to_field] = {"$gt": Int64(at)}
        return await self._find(_VERSIONS, query, _VERSIONS.sort, limit)

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        generation = await self._reading()
        if generation is None:
            return []
        if await self._format(generation) < SEGMENTS_FORMAT:
            return None
        query: Doc = {"series_id": series_id}
        match as_of:
            case Latest():
                query["position_to"] = Int64(OPEN_END)
            case KnownAt(at_us=at):
                query["recorded_from_us"] = {"$lte": Int64(at)}
                query["recorded_to_us"] = {"$gt": Int64(at)}
            case AtPosition(position=at):
                query["position_from"] = {"$lte": Int64(at)}
                query["position_to"] = {"$gt": Int64(at)}
            case _:
                assert_never(as_of)
        # No $group with $first on FerretDB v1: the newest matching version of each bucket is
        # the first of its bucket in _NEWEST_FIRST order, and the older ones are skipped here
        # (two match only between a version's insert and its predecessor's closure). When they
        # took places within the limit, read on after the last bucket seen.
        chosen: list[Segment] = []
        low = from_bucket_us
        while len(chosen) < limit:
            wanted = limit - len(chosen)
            query["bucket_us"] = {"$gte": Int64(low), "$lt": Int64(end_us)}
            found = await self._query(generation, _SEGMENTS, query, _NEWEST_FIRST, wanted)
            for segment in found:
                if not chosen or chosen[-1].bucket_us != segment.bucket_us:
                    chosen.append(segment)
            if len(found) < wanted:
                break
            low = found[-1].bucket_us + 1
        return chosen

    async def history(self, series_id: str, snap_us: int) -> list[OfficialVersion]:
        query = {"series_id": series_id, "snap_us": Int64(snap_us)}
        return await self._find(_VERSIONS, query, _VERSIONS.sort)

    async def observations(self, series_id: str, snap_us: int) -> list[Observation]:
        query = {"series_id": series_id, "snap_us": Int64(snap_us)}
        return await self._find(_OBSERVATIONS, query, _OBSERVATIONS.sort)

    async def changes_after(
        self, after: ResumeToken, series_ids: Sequence[str], limit: int
    ) -> list[ChangeFeedEntry]:
        if limit <= 0:
            return []
        query = {"series_id": {"$in": list(series_ids)}} if series_ids else {}
        return await self._feed(_CHANGES, query, after, limit)

    async def topic_entries(self, topic: str, after: ResumeToken, limit: int) -> list[TopicEntry]:
        if limit <= 0:
            return []
        return await self._feed(_TOPIC_ENTRIES, {"topic": topic}, after, limit)

    async def consumer_group(self, topic: str, group: str) -> ConsumerGroupEntry | None:
        found = await self._find(_CONSUMER_GROUPS, {"_id": _key_id((topic, group))}, [])
        return found[0] if found else None

    async def parked_entries(
        self, topic: str, group: str, after: ResumeToken, limit: int, state: str = ""
    ) -> list[ParkedEntry]:
        if limit <= 0:
            return []
        query: Doc = {
            "topic": topic,
            "group": group,
            "state": state or {"$ne": SETTLED},
            "$or": [
                {"entry_position": Int64(after.position), "entry_index": {"$gt": after.index}},
                {"entry_position": {"$gt": Int64(after.position)}},
            ],
        }
        return await self._find(_PARKED, query, _PARKED.sort, limit)

    async def audit_trail(
        self, scope: AuditScope, after: ResumeToken | None, limit: int
    ) -> list[AuditEntry]:
        if limit <= 0:
            return []
        query: Doc = {}
        if scope.source_id:
            query["source_id"] = scope.source_id
        elif scope.series_id:
            query["series_id"] = scope.series_id
            if scope.snap_us is not None:
                query["snap_us"] = Int64(scope.snap_us)
        return await self._feed(_AUDIT, query, after or _BEFORE_ALL, limit)

    async def list_series(self, after_series_id: str, limit: int) -> list[SeriesEntry]:
        if limit <= 0:
            return []
        query = {"series_id": {"$gt": after_series_id}}
        return await self._find(_SERIES, query, _SERIES.sort, limit)

    async def get_series(self, series_id: str) -> SeriesEntry | None:
        found = await self._find(_SERIES, {"_id": series_id}, [])
        return found[0] if found else None

    async def list_issues(
        self,
        issue_filter: IssueFilter,
        after_issue_id: str,
        limit: int,
        *,
        after_series_id: str = "",
    ) -> list[QualityIssue]:
        after_series, after_issue = issue_page_key(issue_filter, after_series_id, after_issue_id)
        if limit <= 0:
            return []
        query: Doc = {"status": issue_filter.status} if issue_filter.status else {}
        if issue_filter.series_id:
            query["series_id"] = issue_filter.series_id
            query["issue_id"] = {"$gt": after_issue}
        elif after_series or after_issue:
            # (series_id, issue_id) after the key, in a form the compound indexes serve (as
            # _after): each branch is one range of the index, merged in index order.
            query["$or"] = [
                {"series_id": after_series, "issue_id": {"$gt": after_issue}},
                {"series_id": {"$gt": after_series}},
            ]
        return await self._find(_ISSUES, query, _ISSUES.sort, limit)

    async def metrics(self, series_id: str, start_us: int, end_us: int) -> list[QualityMetrics]:
        query = {
            "series_id": series_id,
            "window_start_us": {"$gte": Int64(start_us), "$lt": Int64(end_us)},
        }
        sort = [("window_start_us", ASCENDING), ("window_end_us", ASCENDING)]
        return await self._find(_METRICS, query, sort)

    async def access_policies(self) -> list[AccessPolicyEntry]:
        return await self._find(_POLICIES, {}, [("_id", ASCENDING)])

    async def list_sources(self, after_source_id: str, limit: int) -> list[SourceEntry]:
        if limit <= 0:
            return []
        # The _id is the source id: the listing is a range of the _id index.
        query = {"_id": {"$gt": after_source_id}}
        return await self._find(_SOURCES, query, [("_id", ASCENDING)], limit)

    async def get_source(self, source_id: str) -> SourceEntry | None:
        found = await self._find(_SOURCES, {"_id": source_id}, [])
        return found[0] if found else None

    async def source_health(self, source_id: str) -> list[SourceHealthEntry]:
        return await self._find(_SOURCE_HEALTH, {"source_id": source_id}, _SOURCE_HEALTH.sort)

    # --- GenerationAdmin ----------------------------------------------------------------------

    async def active_generation(self) -> str | None:
        doc = await self._meta.find_one({"_id": ACTIVE_GENERATION_KEY})
        return None if doc is None else str(doc["generation"])

    async def set_active_generation(self, name: str) -> None:
        validate_generation(name)
        if await self._meta.find_one({"_id": GENERATION_KEY_PREFIX + name}) is None:
            raise ValueError(f"unknown generation {name!r}")
        await self._meta.update_one(
            {"_id": ACTIVE_GENERATION_KEY},
            {"$set": {"generation": name, "switched_at_us": Int64(time.time_ns() // 1000)}},
            upsert=True,
        )
        self._active_expires = 0.0

    async def generation_format(self, name: str) -> int:
        doc = await self._meta.find_one({"_id": GENERATION_KEY_PREFIX + validate_generation(name)})
        if doc is None:
            raise ValueError(f"unknown generation {name!r}")
        return UNRECORDED_FORMAT if doc.get("format") is None else int(doc["format"])

    async def generation_checkpoint(self, name: str) -> int | None:
        doc = await self._meta.find_one({"_id": GENERATION_KEY_PREFIX + validate_generation(name)})
        if doc is None:
            raise ValueError(f"unknown generation {name!r}")
        return None if doc.get("checkpoint") is None else int(doc["checkpoint"])

    async def list_generations(self) -> list[str]:
        query = {"_id": {"$gt": GENERATION_KEY_PREFIX, "$lt": GENERATION_KEY_PREFIX[:-1] + ";"}}
        return [str(doc["generation"]) async for doc in self._meta.find(query, sort=[("_id", 1)])]

    async def drop_generation(self, name: str) -> None:
        validate_generation(name)
        active = await self._meta.find_one({"_id": ACTIVE_GENERATION_KEY})
        if active is not None:
            if active["generation"] == name:
                raise ValueError(f"generation {name!r} is active and cannot be dropped")
            since_switch_s = (time.time_ns() // 1000 - int(active["switched_at_us"])) / 1e6
            await asyncio.sleep(max(0.0, _DROP_GRACE_S - since_switch_s))
        for kind in _KINDS:
            await self._collection(name, kind).drop()
        await self._meta.delete_one({"_id": GENERATION_KEY_PREFIX + name})

    # --- tests and lifecycle --------------------------------------------------------------------

    async def dump_all(self, generation: str | None = None) -> dict[str, object]:
        """Every record of a generation (default: the written one, else the active one) as port
        records sorted by natural key, plus its checkpoint: equal dumps mean equal read models.
        """
        name = generation or self._generation or await self.active_generation()
        if name is None:
            raise ValueError("no generation to dump")
        dump: dict[str, object] = {"checkpoint": await self._checkpoint_of(name)}
        for kind in _KINDS:
            cursor = self._collection(name, kind).find({}, sort=kind.sort)
            dump[kind.suffix] = [kind.decode(doc) async for doc in cursor]
        return dump

    async def close(self) -> None:
        await self._client.close()


async def _bulk_write(collection: Collection, ops: Sequence[_Op]) -> None:
    """An unordered bulk write in which inserting a document whose _id is already stored is no
    error: the stored one is the same record written before (perhaps closed since: a batch
    replayed after a crash), or another version of a record that a guarded replacement in the
    same bulk judges (see `upserts` in `apply`). A duplicate of another unique key is one."""
    if not ops:
        return
    try:
        await collection.bulk_write(ops, ordered=False)
    except BulkWriteError as error:
        details = error.details
        errors = details["writeErrors"]
        if details.get("writeConcernErrors") or any(
            e["code"] != _DUPLICATE_KEY or not isinstance(ops[e["index"]], InsertOne)
            for e in errors
        ):
            raise
        # Every unique index answers 11000 (each collection has one on its natural key too): an
        # insert is "already written" only if a document holds its _id. Asked of the server,
        # FerretDB's error naming no index; replays alone pay for the query.
        ids = [e["op"]["_id"] for e in errors]
        held = {d["_id"] async for d in collection.find({"_id": {"$in": ids}}, {"_id": 1})}
        if not held.issuperset(ids):
            raise


def _resolution_op(r: IssueResolution) -> UpdateOne:
    resolved = {
        "status": r.status,
        "resolved_by": r.resolved_by,
        "resolution_reason": r.resolution_reason,
        "resolved_at_us": Int64(r.resolved_at_us),
        "position": Int64(r.position),
    }
    key = _key_id((r.series_id, r.issue_id))
    return UpdateOne({"_id": key, "position": {"$lte": Int64(r.position)}}, {"$set": resolved})


def _parked_key(e: ParkedEntry | ParkedState) -> tuple[str, str, int, int]:
    return e.topic, e.group, e.entry_position, e.entry_index


def _parked_state_op(c: ParkedState) -> UpdateOne:
    moved = {"state": c.state, "position": Int64(c.position)}
    key = _key_id(_parked_key(c))
    return UpdateOne({"_id": key, "position": {"$lte": Int64(c.position)}}, {"$set": moved})


def _closure_op(key: tuple[object, ...], c: VersionClosure | SegmentClosure) -> UpdateOne:
    """Close the version (a point's or a segment's) of natural key `key`."""
    closing = {"recorded_to_us": Int64(c.recorded_to_us), "position_to": Int64(c.position_to)}
    return UpdateOne({"_id": _key_id(key)}, {"$set": closing})
