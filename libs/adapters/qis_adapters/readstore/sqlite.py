"""Embedded read store on SQLite: the default for a one-command run and where read speed is measured.

Layout of one database file:
- `meta(key, value)`: `active` → the generation queries read; `generation:<name>` → that
  generation's checkpoint (NULL before its first batch); `format:<name>` → the read-model format
  it was built with (absent: built before formats were recorded). A `generation:` row per
  generation is also the registry that `list_generations` reads.
- per generation `<name>_versions`, `_current`, `_observations`, `_audit`, `_changes`, `_issues`,
  `_series`, `_metrics`, `_policies`, `_sources`, `_source_health`, `_topics`,
  `_consumer_groups`, `_parked`: WITHOUT ROWID
  tables clustered on their natural key, so every query of the port is one index range scan in
  the order it returns. Segments are split in two: `_segments` holds what reads filter and
  choose on (clustered on its key like the others), and `_segment_payloads` the payloads, a
  rowid table (see _Table.rowid) read only for the versions a read returns. A closure then rewrites a row of ~100 bytes: SQLite rewrites a whole row on
  UPDATE, and closing versions whose payload sat in the same row cost ~80% of inserting their
  successors (300 of 100 kB: 80 ms next to 100 ms; 1.5 ms split). `_topic_entries`, whose
  payloads are messages of up to 1,000 values, is a rowid table too.
  Opening a store adds to the tables of every registered generation the columns this code
  declares and they lack (the tables, when they lack those), and to those of the current
  read-model format the indexes (`_Table.migrate`: no row is copied), so a file written by
  earlier code reads on.

One instance owns one connection used only by its own worker thread, so the event loop never blocks
on disk and the connection never needs locking. An instance built with a generation name writes
that generation (the projector); reads always follow the active pointer, which is re-read inside
every call (measured ~5 µs, next to ~90 µs for the worker-thread hop every call pays anyway), so
a rebuild switch is seen on the very next query. Token-ordered reads (change feed, audit trail)
stop at the checkpoint of the generation they read.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from itertools import groupby, islice, starmap
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple, assert_never

from qis_adapters.readstore.port import (
    ACTIVE_GENERATION_KEY,
    FORMAT_KEY_PREFIX,
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
    SeriesEntry,
    SourceEntry,
    SourceHealthEntry,
    TopicEntry,
    TopicVersion,
    issue_page_key,
    topics_in_force,
    validate_generation,
)
from qis_adapters.sqlite_wal import WalCheckpointer, hand_off_checkpoints

_BEFORE_ALL = ResumeToken(-1, -1)


class _NoSegments(Exception):
    """The generation read predates segments (port.SEGMENTS_FORMAT)."""


_SEGMENT_FIELDS = tuple(f.name for f in fields(Segment))

# Unit separator: never part of a source id or rule name, so joining needs no escaping.
_SEP = "\x1f"

Row = tuple[Any, ...]
_Query = Callable[[sqlite3.Connection, "_Sql", str], list[Row]]
"""A read: (connection, the active generation's statements, its name) → rows."""
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(_SEP)) if text else ()


def _json(doc: JsonDoc) -> str:
    # Sorted keys: the same document always yields the same text, so dumps compare byte for byte.
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


_TEXT, _INT, _REAL, _BLOB = "TEXT NOT NULL", "INTEGER NOT NULL", "REAL NOT NULL", "BLOB NOT NULL"
# A column added to a table that may already hold rows needs a default (or to allow NULL): the
# old rows read with it (see _Table.migrate).
_TEXT_EMPTY, _INT_0 = "TEXT NOT NULL DEFAULT ''", "INTEGER NOT NULL DEFAULT 0"


@dataclass(frozen=True, slots=True)
class _Table:
    """One table per generation: columns in the record's field order (a row maps to a record
    positionally), clustered on `key` (WITHOUT ROWID), plus secondary indexes. On a WITHOUT ROWID
    table an index carries the primary key, so e.g. (series_id, position, idx) is a covering
    range scan in resume-token order.

    With `rowid`, a rowid table with a UNIQUE index on `key` instead: for rows of large blobs,
    which a table clustered on its key would carry through the b-tree's interior pages (SQLite
    advises WITHOUT ROWID only for small rows). Its indexes carry the rowid instead of the key."""

    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    rowid: bool = False

    @property
    def names(self) -> str:
        return ", ".join(name for name, _ in self.columns)

    def ddl(self, table: str) -> tuple[str, ...]:
        return (self._create_table(table), *self._create_indexes(table))

    def _create_table(self, table: str) -> str:
        columns = ", ".join(f"{name} {type_}" for name, type_ in self.columns)
        if self.rowid:
            return f"CREATE TABLE IF NOT EXISTS {table} ({columns})"
        return (
            f"CREATE TABLE IF NOT EXISTS {table} ({columns}, PRIMARY KEY ({', '.join(self.key)}))"
            " WITHOUT ROWID"
        )

    def _create_indexes(self, table: str) -> tuple[str, ...]:
        key = (
            (f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_key ON {table} ({', '.join(self.key)})",)
            if self.rowid
            else ()
        )
        return key + tuple(
            f"CREATE INDEX IF NOT EXISTS {table}_by_{'_'.join(index)}"
            f" ON {table} ({', '.join(index)})"
            for index in self.indexes
        )

    def migrate(self, c: sqlite3.Connection, table: str, *, indexes: bool = True) -> None:
        """Create `table`, or give one created by earlier code the columns it lacks and, with
        `indexes`, the indexes, inside the caller's transaction.

        Never a copy of the rows: both processes open the file, and one that holds the write
        lock longer than the other waits for it (busy_timeout) fails the other's open.
        `ALTER TABLE ... ADD COLUMN` only changes the schema (old rows read with the column's
        default; WITHOUT ROWID tables allow it). Statements name their columns, so where a
        column sits in the table does not matter.

        A new index is one pass over the table under the lock (~1.7 s per million audit rows),
        so the caller asks for indexes only in a generation of the current read-model format
        (created with them, so in practice it finds them there). An older generation only
        needs to read on until the projector's rebuild replaces it: it gets the columns, and
        what ADD COLUMN cannot change (another key, a NOT NULL dropped) stays as it is
        (writers refuse such a generation: see READ_MODEL_FORMAT).
        """
        found = {row[1] for row in c.execute(f"PRAGMA table_info({table})")}
        if not found:
            c.execute(self._create_table(table))
        for name, type_ in self.columns:
            if found and name not in found:
                if "NOT NULL" in type_ and "DEFAULT" not in type_:
                    raise ValueError(f"{table}.{name} cannot be added: declare a default")
                c.execute(f"ALTER TABLE {table} ADD COLUMN {name} {type_}")
        if indexes or not found:
            for statement in self._create_indexes(table):
                c.execute(statement)

    def insert(self, table: str, verb: str = "INSERT OR IGNORE", rows: str = "") -> str:
        """One row of parameters, or the rows of the SELECT `rows` (the columns in order)."""
        rows = rows or f"VALUES ({', '.join('?' * len(self.columns))})"
        return f"{verb} INTO {table} ({self.names}) {rows}"

    def upsert(self, table: str, newer: str, rows: str = "") -> str:
        """Insert, or replace every non-key column when the WHERE condition `newer` holds. A
        SELECT as `rows` needs a WHERE clause of its own: without one, SQLite would read the
        ON of ON CONFLICT as the start of a join constraint."""
        updates = ", ".join(
            f"{name} = excluded.{name}" for name, _ in self.columns if name not in self.key
        )
        return (
            f"{self.insert(table, 'INSERT', rows)} ON CONFLICT ({', '.join(self.key)})"
            f" DO UPDATE SET {updates} WHERE {newer}"
        )


_SEGMENT_KEY = ("series_id", "bucket_us", "position_from")
_VERSION_COLUMNS = (
    ("series_id", _TEXT),
    ("snap_us", _INT),
    ("version", _INT),
    ("value", _BLOB),
    ("quality_score", _REAL),
    ("recorded_from_us", _INT),
    ("position_from", _INT),
    ("reason", _TEXT),
    ("user_id", _TEXT),
    ("command_id", _TEXT),
    ("sources", _TEXT),
    ("method", _TEXT),
    ("flags", _TEXT),
    ("recorded_to_us", _INT),
    ("position_to", _INT),
)
_TABLES = {
    "versions": _Table(_VERSION_COLUMNS, ("series_id", "snap_us", "version")),
    "current": _Table(_VERSION_COLUMNS, ("series_id", "snap_us")),
    "observations": _Table(
        (
            ("series_id", _TEXT),
            ("snap_us", _INT),
            ("source_id", _TEXT),
            ("value", _BLOB),
            ("snap_offset_s", _INT),
            ("recorded_at_us", _INT),
            ("position", _INT),
            ("idx", _INT),
            ("command_id", _TEXT),
            ("user_id", _TEXT),
            ("flags", _TEXT),
        ),
        ("position", "idx"),
        (("series_id", "snap_us", "position", "idx"),),
    ),
    "audit": _Table(
        (
            ("position", _INT),
            ("idx", _INT),
            ("recorded_at_us", _INT),
            ("series_id", _TEXT),
            ("snap_us", "INTEGER"),  # NULL for series-level entries
            ("action", _TEXT),
            ("user_id", _TEXT),
            ("command_id", _TEXT),
            ("details", _TEXT),
            ("source_id", _TEXT_EMPTY),
            ("resource", _TEXT_EMPTY),
        ),
        ("position", "idx"),
        (
            ("series_id", "position", "idx"),
            ("series_id", "snap_us", "position", "idx"),
            ("source_id", "position", "idx"),
        ),
    ),
    "changes": _Table(
        (
            ("position", _INT),
            ("idx", _INT),
            ("series_id", _TEXT),
            ("snap_us", _INT),
            ("version", _INT),
            ("value", _BLOB),
            ("quality_score", _REAL),
            ("recorded_at_us", _INT),
            ("reason", _TEXT),
            ("user_id", _TEXT),
            ("sources", _TEXT),
            ("method", _TEXT),
            ("flags", _TEXT),
        ),
        ("position", "idx"),
        (("series_id", "position", "idx"),),
    ),
    "issues": _Table(
        (
            ("issue_id", _TEXT),
            ("series_id", _TEXT),
            ("snap_us", _INT),
            ("rule", _TEXT),
            ("severity", _TEXT),
            ("evidence", _TEXT),
            ("status", _TEXT),
            ("raised_at_us", _INT),
            ("position", _INT),
            ("source_id", _TEXT),
            ("resolved_by", _TEXT),
            ("resolution_reason", _TEXT),
            ("resolved_at_us", _INT),
        ),
        # Issue ids repeat across series: the key is the pair, which also orders the listing
        # of every series; a status narrows it with the first index, a series with the second.
        ("series_id", "issue_id"),
        (("status", "series_id", "issue_id"), ("series_id", "status", "issue_id")),
    ),
    "series": _Table(
        (
            ("series_id", _TEXT),
            ("schema_version", _INT),
            ("definition", _TEXT),
            ("updated_at_us", _INT),
            ("position", _INT),
        ),
        ("series_id",),
    ),
    "metrics": _Table(
        (
            ("series_id", _TEXT),
            ("window_start_us", _INT),
            ("window_end_us", _INT),
            ("accuracy", _REAL),
            ("completeness", "REAL"),  # NULL: unknown
            ("timeliness", _REAL),
            ("consistency", _REAL),
            ("calculated_at_us", _INT),
            ("position", _INT),
            ("expected_snaps", _INT_0),
            ("received_snaps", _INT_0),
            ("missing_sessions", _TEXT_EMPTY),
            ("uncovered_days", _INT_0),
        ),
        ("series_id", "window_start_us", "window_end_us"),
    ),
    "policies": _Table(
        (
            ("policy_id", _TEXT),
            ("revision", _INT),
            ("stream_version", _INT),
            ("updated_at_us", _INT),
            ("position", _INT),
            ("policy", "TEXT"),  # JSON; NULL: deleted
        ),
        ("policy_id",),
    ),
    "sources": _Table(
        (
            ("source_id", _TEXT),
            ("config", _TEXT),  # JSON
            ("updated_at_us", _INT),
            ("position", _INT),
        ),
        ("source_id",),
    ),
    "source_health": _Table(
        (
            ("source_id", _TEXT),
            ("day_us", _INT),
            ("health", _TEXT),  # JSON
            ("reported_at_us", _INT),
            ("position", _INT),
        ),
        ("source_id", "day_us"),
    ),
    "topics": _Table(
        (
            ("topic", _TEXT),
            ("position", _INT),
            ("updated_at_us", _INT),
            ("definition", "TEXT"),  # JSON; NULL: deleted
        ),
        ("topic", "position"),
    ),
    # A rowid table: payloads are up to 1,000 values (see _Table.rowid).
    "topic_entries": _Table(
        (
            ("topic", _TEXT),
            ("position", _INT),
            ("idx", _INT),
            ("series_id", _TEXT),
            ("event_type", _TEXT),
            ("payload", _BLOB),
            ("recorded_at_us", _INT),
        ),
        ("topic", "position", "idx"),
        rowid=True,
    ),
    # "grp": GROUP is a keyword.
    "consumer_groups": _Table(
        (
            ("topic", _TEXT),
            ("grp", _TEXT),
            ("checkpoint_position", _INT),
            ("checkpoint_idx", _INT),
            ("updated_at_us", _INT),
            ("position", _INT),
        ),
        ("topic", "grp"),
    ),
    "parked": _Table(
        (
            ("topic", _TEXT),
            ("grp", _TEXT),
            ("entry_position", _INT),
            ("entry_idx", _INT),
            ("attempts", _INT),
            ("last_error", _TEXT),
            ("parked_at_us", _INT),
            ("state", _TEXT),
            ("position", _INT),
        ),
        ("topic", "grp", "entry_position", "entry_idx"),
        # The replay reads only parked ones, the dispatcher only replayed ones.
        (("topic", "grp", "state", "entry_position", "entry_idx"),),
    ),
    # Every field of Segment but its payload, in field order.
    "segments": _Table(
        (
            ("series_id", _TEXT),
            ("bucket_us", _INT),
            ("first_snap_us", _INT),
            ("last_snap_us", _INT),
            ("rows", _INT),
            ("recorded_from_us", _INT),
            ("position_from", _INT),
            ("recorded_to_us", _INT),
            ("position_to", _INT),
        ),
        _SEGMENT_KEY,
        # Latest reads: only the open versions of the range, in bucket order, and everything
        # else they return (a covering index: no lookup into the table per version).
        (
            (
                "series_id",
                "position_to",
                "bucket_us",
                "position_from",
                "first_snap_us",
                "last_snap_us",
                "rows",
                "recorded_from_us",
                "recorded_to_us",
            ),
        ),
    ),
    "segment_payloads": _Table(
        (
            ("series_id", _TEXT),
            ("bucket_us", _INT),
            ("position_from", _INT),
            ("payload", _BLOB),
        ),
        _SEGMENT_KEY,
        rowid=True,
    ),
}


@dataclass(frozen=True, slots=True)
class _Sql:
    """Every statement of one generation, formatted once per generation name."""

    create: tuple[str, ...]
    drop: tuple[str, ...]
    insert_version: str
    current_from_versions: str
    close_version: str
    insert_observation: str
    insert_audit: str
    insert_change: str
    upsert_issue: str
    resolve_issue: str
    upsert_series: str
    upsert_metric: str
    upsert_policy: str
    upsert_source: str
    upsert_source_health: str
    insert_topic: str
    insert_topic_entry: str
    upsert_consumer_group: str
    upsert_parked: str
    set_parked_state: str
    insert_segment: str
    insert_segment_payload: str
    close_segment: str
    raw_inserts: dict[str, str]
    latest_range: str
    as_of_time_range: str
    as_of_position_range: str
    history: str
    observations: str
    changes_after: str
    changes_after_series: str
    audit_all: str
    audit_series: str
    audit_point: str
    audit_source: str
    list_series: str
    get_series: str
    list_issues: dict[tuple[bool, bool], str]
    metrics: str
    access_policies: str
    list_sources: str
    get_source: str
    source_health: str
    topics: str
    topic_entries: str
    consumer_group: str
    parked_in_state: str
    parked_unsettled: str
    segments_latest: str
    segments_known_at: str
    segments_at_position: str
    last_segment: str
    dump: dict[str, str]

    @classmethod
    def for_generation(cls, generation: str) -> _Sql:
        g = validate_generation(generation)
        t = _TABLES

        def select(table: str) -> str:
            return f"SELECT {t[table].names} FROM {g}_{table}"

        range_ = "series_id = ? AND snap_us >= ? AND snap_us < ?"
        # A token-ordered read stops at the checkpoint (bound as a parameter): see _feed.
        after = "(position, idx) > (?, ?) AND position <= ? ORDER BY position, idx LIMIT ?"

        # Segments as Segment fields in order: the payload from the table of payloads.
        meta = [name for name, _ in t["segments"].columns]
        segment = ", ".join("p.payload" if f == "payload" else f"s.{f}" for f in _SEGMENT_FIELDS)
        payload_of_s = (
            f"JOIN {g}_segment_payloads AS p ON"
            f" {' AND '.join(f'p.{k} = s.{k}' for k in _SEGMENT_KEY)}"
        )

        def segments(valid: str) -> str:
            """The segment version of each bucket of a range that is `valid`, with the greatest
            position_from, then its payload: only those of the versions returned are read.
            SQLite takes the bare columns of a max() aggregate from the row holding the max.
            The rows come in bucket order in practice, but no ORDER BY promises it without a
            sort of the payloads: `segments` sorts them."""
            chosen = ", ".join(
                "max(position_from) AS position_from" if n == "position_from" else n for n in meta
            )
            return (
                f"SELECT {segment} FROM (SELECT {chosen} FROM {g}_segments"
                f" WHERE series_id = ? AND bucket_us >= ? AND bucket_us < ? AND {valid}"
                f" GROUP BY bucket_us ORDER BY bucket_us LIMIT ?) AS s {payload_of_s}"
            )

        return cls(
            create=tuple(sql for name, table in t.items() for sql in table.ddl(f"{g}_{name}")),
            drop=tuple(f"DROP TABLE IF EXISTS {g}_{name}" for name in t),
            insert_version=t["versions"].insert(f"{g}_versions"),
            # The versions one event wrote (or wrote before, on a replay: the same rows), read
            # back inside SQLite: no second binding of their columns from Python. The range
            # lies within the event's bucket, so the scan is bounded by a bucket's versions.
            current_from_versions=t["current"].upsert(
                f"{g}_current",
                f"excluded.version > {g}_current.version",
                f"SELECT {t['versions'].names} FROM {g}_versions"
                " WHERE series_id = ? AND snap_us >= ? AND snap_us <= ? AND position_from = ?",
            ),
            close_version=(
                f"UPDATE {g}_versions SET recorded_to_us = ?, position_to = ?"
                " WHERE series_id = ? AND snap_us = ? AND version = ?"
            ),
            insert_observation=t["observations"].insert(f"{g}_observations"),
            insert_audit=t["audit"].insert(f"{g}_audit"),
            insert_change=t["changes"].insert(f"{g}_changes"),
            # Conditional on the event position: replaying an older write never undoes a newer one.
            upsert_issue=t["issues"].upsert(
                f"{g}_issues", f"excluded.position >= {g}_issues.position"
            ),
            resolve_issue=(
                f"UPDATE {g}_issues SET status = ?, resolved_by = ?, resolution_reason = ?,"
                " resolved_at_us = ?, position = ?"
                " WHERE series_id = ? AND issue_id = ? AND position <= ?"
            ),
            upsert_series=t["series"].upsert(
                f"{g}_series",
                f"(excluded.schema_version, excluded.position)"
                f" >= ({g}_series.schema_version, {g}_series.position)",
            ),
            upsert_metric=t["metrics"].upsert(
                f"{g}_metrics", f"excluded.position >= {g}_metrics.position"
            ),
            upsert_policy=t["policies"].upsert(
                f"{g}_policies", f"excluded.position >= {g}_policies.position"
            ),
            upsert_source=t["sources"].upsert(
                f"{g}_sources", f"excluded.position >= {g}_sources.position"
            ),
            upsert_source_health=t["source_health"].upsert(
                f"{g}_source_health", f"excluded.position >= {g}_source_health.position"
            ),
            insert_topic=t["topics"].insert(f"{g}_topics"),
            insert_topic_entry=t["topic_entries"].insert(f"{g}_topic_entries"),
            upsert_consumer_group=t["consumer_groups"].upsert(
                f"{g}_consumer_groups", f"excluded.position >= {g}_consumer_groups.position"
            ),
            upsert_parked=t["parked"].upsert(
                f"{g}_parked", f"excluded.position >= {g}_parked.position"
            ),
            set_parked_state=(
                f"UPDATE {g}_parked SET state = ?, position = ?"
                " WHERE topic = ? AND grp = ? AND entry_position = ? AND entry_idx = ?"
                " AND position <= ?"
            ),
            insert_segment=t["segments"].insert(f"{g}_segments"),
            insert_segment_payload=t["segment_payloads"].insert(f"{g}_segment_payloads"),
            close_segment=(
                f"UPDATE {g}_segments SET recorded_to_us = ?, position_to = ?"
                " WHERE series_id = ? AND bucket_us = ? AND position_from = ?"
            ),
            # Plain inserts into empty tables: the same rows with none of the conflict handling.
            raw_inserts={name: table.insert(f"{g}_{name}", "INSERT") for name, table in t.items()},
            latest_range=f"{select('current')} WHERE {range_} ORDER BY snap_us LIMIT ?",
            as_of_time_range=(
                f"{select('versions')} WHERE {range_}"
                " AND recorded_from_us <= ? AND recorded_to_us > ?"
                " ORDER BY snap_us, version LIMIT ?"
            ),
            as_of_position_range=(
                f"{select('versions')} WHERE {range_} AND position_from <= ? AND position_to > ?"
                " ORDER BY snap_us, version LIMIT ?"
            ),
            history=f"{select('versions')} WHERE series_id = ? AND snap_us = ? ORDER BY version",
            observations=(
                f"{select('observations')} WHERE series_id = ? AND snap_us = ?"
                " ORDER BY position, idx"
            ),
            changes_after=f"{select('changes')} WHERE {after}",
            changes_after_series=f"{select('changes')} WHERE series_id = ? AND {after}",
            audit_all=f"{select('audit')} WHERE {after}",
            audit_series=f"{select('audit')} WHERE series_id = ? AND {after}",
            audit_point=f"{select('audit')} WHERE series_id = ? AND snap_us = ? AND {after}",
            audit_source=f"{select('audit')} WHERE source_id = ? AND {after}",
            list_series=f"{select('series')} WHERE series_id > ? ORDER BY series_id LIMIT ?",
            get_series=f"{select('series')} WHERE series_id = ?",
            # By (series filtered, status filtered): every series in (series_id, issue_id)
            # order after a (series_id, issue_id) key, one series in issue_id order.
            list_issues={
                (False, False): f"{select('issues')} WHERE (series_id, issue_id) > (?, ?)"
                " ORDER BY series_id, issue_id LIMIT ?",
                (False, True): f"{select('issues')} WHERE status = ?"
                " AND (series_id, issue_id) > (?, ?) ORDER BY series_id, issue_id LIMIT ?",
                (True, False): f"{select('issues')} WHERE series_id = ? AND issue_id > ?"
                " ORDER BY issue_id LIMIT ?",
                (True, True): f"{select('issues')} WHERE series_id = ? AND status = ?"
                " AND issue_id > ? ORDER BY issue_id LIMIT ?",
            },
            metrics=(
                f"{select('metrics')} WHERE series_id = ?"
                " AND window_start_us >= ? AND window_start_us < ?"
                " ORDER BY window_start_us, window_end_us"
            ),
            access_policies=f"{select('policies')} ORDER BY policy_id",
            list_sources=f"{select('sources')} WHERE source_id > ? ORDER BY source_id LIMIT ?",
            get_source=f"{select('sources')} WHERE source_id = ?",
            source_health=f"{select('source_health')} WHERE source_id = ? ORDER BY day_us",
            topics=f"{select('topics')} ORDER BY topic, position",
            topic_entries=f"{select('topic_entries')} WHERE topic = ? AND {after}",
            consumer_group=f"{select('consumer_groups')} WHERE topic = ? AND grp = ?",
            parked_in_state=(
                f"{select('parked')} WHERE topic = ? AND grp = ? AND state = ?"
                " AND (entry_position, entry_idx) > (?, ?)"
                " ORDER BY entry_position, entry_idx LIMIT ?"
            ),
            parked_unsettled=(
                f"{select('parked')} WHERE topic = ? AND grp = ? AND state != '{SETTLED}'"
                " AND (entry_position, entry_idx) > (?, ?)"
                " ORDER BY entry_position, entry_idx LIMIT ?"
            ),
            # A literal, not a parameter: the planner then sees the equality the index serves.
            segments_latest=segments(f"position_to = {OPEN_END}"),
            segments_known_at=segments("recorded_from_us <= ? AND recorded_to_us > ?"),
            segments_at_position=segments("position_from <= ? AND position_to > ?"),
            last_segment=(
                f"SELECT {segment} FROM {g}_segments AS s {payload_of_s}"
                " WHERE s.series_id = ? AND s.bucket_us = ? ORDER BY s.position_from DESC LIMIT 1"
            ),
            dump={
                **{
                    name: f"{select(name)} ORDER BY {', '.join(table.key)}"
                    for name, table in t.items()
                    if name not in ("segments", "segment_payloads")
                },
                "segments": f"SELECT {segment} FROM {g}_segments AS s {payload_of_s}"
                " ORDER BY s.series_id, s.bucket_us, s.position_from",
            },
        )


# Record → row. Comprehensions with attribute access are the cheapest conversion CPython offers;
# attrgetter returns the whole tuple in C where no field needs converting.
def _version_rows(versions: Sequence[OfficialVersion]) -> list[Row]:
    sep = _SEP
    return [
        (
            v.series_id,
            v.snap_us,
            v.version,
            v.value,
            v.quality_score,
            v.recorded_from_us,
            v.position_from,
            v.reason,
            v.user_id,
            v.command_id,
            sep.join(v.sources),
            v.method,
            sep.join(v.flags),
            v.recorded_to_us,
            v.position_to,
        )
        for v in versions
    ]


def _observation_rows(observations: Sequence[Observation]) -> list[Row]:
    sep = _SEP
    return [
        (
            o.series_id,
            o.snap_us,
            o.source_id,
            o.value,
            o.snap_offset_s,
            o.recorded_at_us,
            o.position,
            o.index,
            o.command_id,
            o.user_id,
            sep.join(o.flags),
        )
        for o in observations
    ]


def _change_row(c: ChangeFeedEntry) -> Row:
    return (
        c.position,
        c.index,
        c.series_id,
        c.snap_us,
        c.version,
        c.value,
        c.quality_score,
        c.recorded_at_us,
        c.reason,
        c.user_id,
        _SEP.join(c.sources),
        c.method,
        _SEP.join(c.flags),
    )


def _written_ranges(versions: Sequence[OfficialVersion]) -> list[Row]:
    """(series_id, lowest snap, highest snap, position) of each event's versions: an event's
    versions are consecutive in a batch (any split only adds a range)."""
    ranges = []
    for (series_id, position), run in groupby(versions, _event_of_version):
        snaps = [v.snap_us for v in run]
        ranges.append((series_id, min(snaps), max(snaps), position))
    return ranges


_event_of_version = attrgetter("series_id", "position_from")
_closure_row = attrgetter("recorded_to_us", "position_to", "series_id", "snap_us", "version")
_segment_row = attrgetter(*(name for name, _ in _TABLES["segments"].columns))
_segment_payload_row = attrgetter(*(name for name, _ in _TABLES["segment_payloads"].columns))
_segment_closure_row = attrgetter(
    "recorded_to_us", "position_to", "series_id", "bucket_us", "position_from"
)


def _metric_row(m: QualityMetrics) -> Row:
    return (
        m.series_id,
        m.window_start_us,
        m.window_end_us,
        m.accuracy,
        m.completeness,
        m.timeliness,
        m.consistency,
        m.calculated_at_us,
        m.position,
        m.expected_snaps,
        m.received_snaps,
        _SEP.join(m.missing_sessions),
        m.uncovered_days,
    )


def _audit_rows(entries: Sequence[AuditEntry]) -> list[Row]:
    return [
        (
            a.position,
            a.index,
            a.recorded_at_us,
            a.series_id,
            a.snap_us,
            a.action,
            a.user_id,
            a.command_id,
            _json(a.details),
            a.source_id,
            a.resource,
        )
        for a in entries
    ]


def _policy_rows(entries: Sequence[AccessPolicyEntry]) -> list[Row]:
    return [
        (
            p.policy_id,
            p.revision,
            p.stream_version,
            p.updated_at_us,
            p.position,
            None if p.policy is None else _json(p.policy),
        )
        for p in entries
    ]


def _resolution_row(r: IssueResolution) -> Row:
    return (
        r.status,
        r.resolved_by,
        r.resolution_reason,
        r.resolved_at_us,
        r.position,
        r.series_id,
        r.issue_id,
        r.position,
    )


def _issue_rows(issues: Sequence[QualityIssue]) -> list[Row]:
    return [
        (
            i.issue_id,
            i.series_id,
            i.snap_us,
            i.rule,
            i.severity,
            _json(i.evidence),
            i.status,
            i.raised_at_us,
            i.position,
            i.source_id,
            i.resolved_by,
            i.resolution_reason,
            i.resolved_at_us,
        )
        for i in issues
    ]


def _series_rows(entries: Sequence[SeriesEntry]) -> list[Row]:
    return [
        (s.series_id, s.schema_version, _json(s.definition), s.updated_at_us, s.position)
        for s in entries
    ]


def _source_rows(entries: Sequence[SourceEntry]) -> list[Row]:
    return [(e.source_id, _json(e.config), e.updated_at_us, e.position) for e in entries]


def _topic_rows(versions: Sequence[TopicVersion]) -> list[Row]:
    return [
        (
            t.topic,
            t.position,
            t.updated_at_us,
            None if t.definition is None else _json(t.definition),
        )
        for t in versions
    ]


def _topic_entry_rows(entries: Sequence[TopicEntry]) -> list[Row]:
    return [
        (e.topic, e.position, e.index, e.series_id, e.event_type, e.payload, e.recorded_at_us)
        for e in entries
    ]


def _consumer_group_rows(entries: Sequence[ConsumerGroupEntry]) -> list[Row]:
    return [
        (
            e.topic,
            e.group,
            e.checkpoint_position,
            e.checkpoint_index,
            e.updated_at_us,
            e.position,
        )
        for e in entries
    ]


def _parked_rows(entries: Sequence[ParkedEntry]) -> list[Row]:
    return [
        (
            e.topic,
            e.group,
            e.entry_position,
            e.entry_index,
            e.attempts,
            e.last_error,
            e.parked_at_us,
            e.state,
            e.position,
        )
        for e in entries
    ]


def _parked_state_rows(changes: Sequence[ParkedState]) -> list[Row]:
    return [
        (c.state, c.position, c.topic, c.group, c.entry_position, c.entry_index, c.position)
        for c in changes
    ]


def _source_health_rows(entries: Sequence[SourceHealthEntry]) -> list[Row]:
    return [(e.source_id, e.day_us, _json(e.health), e.reported_at_us, e.position) for e in entries]


# Row → record.
def _versions(rows: list[Row]) -> list[OfficialVersion]:
    return [
        OfficialVersion(
            s, t, v, val, q, rf, pf, why, who, cmd, _split(src), how, _split(fl), rt, pt
        )
        for s, t, v, val, q, rf, pf, why, who, cmd, src, how, fl, rt, pt in rows
    ]


def _observations(rows: list[Row]) -> list[Observation]:
    return [
        Observation(s, t, src, val, off, at, p, i, cmd, who, _split(fl))
        for s, t, src, val, off, at, p, i, cmd, who, fl in rows
    ]


def _audit(rows: list[Row]) -> list[AuditEntry]:
    return [
        AuditEntry(p, i, at, s, t, action, who, cmd, json.loads(details), src, res)
        for p, i, at, s, t, action, who, cmd, details, src, res in rows
    ]


def _changes(rows: list[Row]) -> list[ChangeFeedEntry]:
    return [
        ChangeFeedEntry(p, i, s, t, v, val, q, at, why, who, _split(src), how, _split(fl))
        for p, i, s, t, v, val, q, at, why, who, src, how, fl in rows
    ]


def _issues(rows: list[Row]) -> list[QualityIssue]:
    return [
        QualityIssue(iid, s, t, rule, sev, json.loads(ev), st, at, p, src, by, why, res)
        for iid, s, t, rule, sev, ev, st, at, p, src, by, why, res in rows
    ]


def _series(rows: list[Row]) -> list[SeriesEntry]:
    return [SeriesEntry(s, sv, json.loads(d), up, p) for s, sv, d, up, p in rows]


def _metrics(rows: list[Row]) -> list[QualityMetrics]:
    return [
        QualityMetrics(s, a, z, acc, com, tim, con, at, p, exp, rec, _split(miss), unc)
        for s, a, z, acc, com, tim, con, at, p, exp, rec, miss, unc in rows
    ]


def _policies(rows: list[Row]) -> list[AccessPolicyEntry]:
    return [
        AccessPolicyEntry(i, r, sv, at, p, None if doc is None else json.loads(doc))
        for i, r, sv, at, p, doc in rows
    ]


def _sources(rows: list[Row]) -> list[SourceEntry]:
    return [SourceEntry(s, json.loads(doc), at, p) for s, doc, at, p in rows]


def _source_health(rows: list[Row]) -> list[SourceHealthEntry]:
    return [SourceHealthEntry(s, d, json.loads(doc), at, p) for s, d, doc, at, p in rows]


def _topics(rows: list[Row]) -> list[TopicVersion]:
    return [
        TopicVersion(t, p, at, None if doc is None else json.loads(doc)) for t, p, at, doc in rows
    ]


def _topic_entries(rows: list[Row]) -> list[TopicEntry]:
    return list(starmap(TopicEntry, rows))


def _consumer_groups(rows: list[Row]) -> list[ConsumerGroupEntry]:
    return list(starmap(ConsumerGroupEntry, rows))


def _parked(rows: list[Row]) -> list[ParkedEntry]:
    return list(starmap(ParkedEntry, rows))


def _segments(rows: list[Row]) -> list[Segment]:
    return list(starmap(Segment, rows))


class SqliteReadStore:
    """ReadStore + GenerationAdmin on one SQLite file. Build it with `await SqliteReadStore.open`."""

    def __init__(self, path: Path, generation: str | None) -> None:
        self._path = path
        self._generation = None if generation is None else validate_generation(generation)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qis-readstore")
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: WalCheckpointer | None = None
        self._sql: dict[str, _Sql] = {}

    @classmethod
    async def open(cls, path: str | Path, generation: str | None = None) -> SqliteReadStore:
        """Open (creating when absent) the file.

        `generation`: the generation this instance writes, created when absent (the projector);
        None for a reader (the query service), which only reads the active generation.
        `checkpoint()` reports the written generation's checkpoint, or the active one's.
        """
        store = cls(Path(path), generation)
        try:
            await store._run(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    async def _run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- worker-thread side -------------------------------------------------------------------

    def _connect(self) -> None:
        # Autocommit mode: transactions are explicit, so a reader never holds a snapshot open.
        conn = sqlite3.connect(self._path, isolation_level=None, cached_statements=256)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA mmap_size = 268435456")
        conn.execute("PRAGMA temp_store = MEMORY")
        hand_off_checkpoints(conn)
        self._checkpointer = WalCheckpointer(self._path)
        self._conn = conn
        try:
            with self._transaction() as c:
                c.execute(
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID"
                )
                if self._generation is not None:
                    self._register(c, self._generation)
                # Every generation, not only the one written: a reader may open a store written
                # by earlier code before its projector does, and reads the active one at once.
                for generation in self._list_generations():
                    current = self._format_of(generation) == READ_MODEL_FORMAT
                    for name, table in _TABLES.items():
                        table.migrate(c, f"{generation}_{name}", indexes=current)
        except BaseException:
            self._close()
            raise

    def _register(self, c: sqlite3.Connection, generation: str) -> None:
        """Register the written generation, recording the format it is built with when this
        creates it; refuse one of another format."""
        created = c.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, NULL)",
            (GENERATION_KEY_PREFIX + generation,),
        ).rowcount
        if created:
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (FORMAT_KEY_PREFIX + generation, READ_MODEL_FORMAT),
            )
        found = self._format_of(generation)
        if found != READ_MODEL_FORMAT:
            raise GenerationFormatError(generation, found)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("read store is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT. Immediate takes the write lock up front, so a busy writer is
        waited for (busy_timeout) instead of failing a deferred lock upgrade halfway through."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            # A full disk has SQLite roll back on its own: a second ROLLBACK would fail and
            # hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _statements(self, generation: str) -> _Sql:
        sql = self._sql.get(generation)
        if sql is None:
            sql = self._sql[generation] = _Sql.for_generation(generation)
        return sql

    def _writer(self) -> str:
        if self._generation is None:
            raise RuntimeError("this read store was opened without a generation to write")
        return self._generation

    def _active(self) -> str | None:
        row = (
            self._db()
            .execute("SELECT value FROM meta WHERE key = ?", (ACTIVE_GENERATION_KEY,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def _read(self, query: _Query) -> list[Row]:
        """Run `query` against the active generation; no active generation reads as empty."""
        try:
            return self._read_active(query)
        except sqlite3.OperationalError as e:
            # The pointer moved and the old generation was dropped between our statements.
            if "no such table" not in str(e):
                raise
            return self._read_active(query)

    def _read_active(self, query: _Query) -> list[Row]:
        generation = self._active()
        if generation is None:
            return []
        return query(self._db(), self._statements(generation), generation)

    def _format_of(self, generation: str) -> int:
        row = (
            self._db()
            .execute("SELECT value FROM meta WHERE key = ?", (FORMAT_KEY_PREFIX + generation,))
            .fetchone()
        )
        return UNRECORDED_FORMAT if row is None else int(row[0])

    def _generation_format(self, name: str) -> int:
        if self._generation_record(name) is None:
            raise ValueError(f"unknown generation {name!r}")
        return self._format_of(name)

    def _checkpoint_of(self, generation: str) -> int | None:
        row = self._generation_record(generation)
        return None if row is None or row[0] is None else int(row[0])

    def _generation_checkpoint(self, name: str) -> int | None:
        row = self._generation_record(name)
        if row is None:
            raise ValueError(f"unknown generation {name!r}")
        return None if row[0] is None else int(row[0])

    def _generation_record(self, generation: str) -> Row | None:
        """The generation's meta record (its checkpoint), None for an unknown generation."""
        row: Row | None = (
            self._db()
            .execute("SELECT value FROM meta WHERE key = ?", (GENERATION_KEY_PREFIX + generation,))
            .fetchone()
        )
        return row

    def _apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        generation = self._writer()
        sql = self._statements(generation)
        with self._transaction() as c:
            if batch.versions:
                c.executemany(sql.insert_version, _version_rows(batch.versions))
                c.executemany(sql.current_from_versions, _written_ranges(batch.versions))
            if batch.closures:
                c.executemany(sql.close_version, map(_closure_row, batch.closures))
            if batch.observations:
                c.executemany(sql.insert_observation, _observation_rows(batch.observations))
            if batch.audit:
                c.executemany(sql.insert_audit, _audit_rows(batch.audit))
            if batch.changes:
                c.executemany(sql.insert_change, map(_change_row, batch.changes))
            if batch.issues:
                c.executemany(sql.upsert_issue, _issue_rows(batch.issues))
            if batch.resolutions:
                c.executemany(sql.resolve_issue, map(_resolution_row, batch.resolutions))
            if batch.series:
                c.executemany(sql.upsert_series, _series_rows(batch.series))
            if batch.metrics:
                c.executemany(sql.upsert_metric, map(_metric_row, batch.metrics))
            if batch.policies:
                c.executemany(sql.upsert_policy, _policy_rows(batch.policies))
            if batch.sources:
                c.executemany(sql.upsert_source, _source_rows(batch.sources))
            if batch.source_health:
                c.executemany(sql.upsert_source_health, _source_health_rows(batch.source_health))
            if batch.segments:
                c.executemany(sql.insert_segment, map(_segment_row, batch.segments))
                c.executemany(sql.insert_segment_payload, map(_segment_payload_row, batch.segments))
            if batch.segment_closures:
                c.executemany(sql.close_segment, map(_segment_closure_row, batch.segment_closures))
            if batch.topics:
                c.executemany(sql.insert_topic, _topic_rows(batch.topics))
            if batch.topic_entries:
                c.executemany(sql.insert_topic_entry, _topic_entry_rows(batch.topic_entries))
            if batch.consumer_groups:
                rows = _consumer_group_rows(batch.consumer_groups)
                c.executemany(sql.upsert_consumer_group, rows)
            if batch.parked:
                c.executemany(sql.upsert_parked, _parked_rows(batch.parked))
            if batch.parked_states:
                c.executemany(sql.set_parked_state, _parked_state_rows(batch.parked_states))
            c.execute(
                "UPDATE meta SET value = ? WHERE key = ?",
                (checkpoint, GENERATION_KEY_PREFIX + generation),
            )

    def _raw_bulk_insert(self, batch: ProjectionBatch, generation: str) -> int:
        sql = self._statements(generation)
        with self._transaction() as c:
            for statement in sql.drop:
                c.execute(statement)
            for statement in sql.create:
                c.execute(statement)
        raw = sql.raw_inserts
        with self._transaction() as c:
            if batch.versions:
                # The current records as `apply` writes them (from the versions, inside SQLite):
                # the baseline must not bind rows the projector no longer binds.
                c.executemany(raw["versions"], _version_rows(batch.versions))
                c.executemany(sql.current_from_versions, _written_ranges(batch.versions))
            if batch.closures:
                c.executemany(sql.close_version, map(_closure_row, batch.closures))
            c.executemany(raw["observations"], _observation_rows(batch.observations))
            c.executemany(raw["audit"], _audit_rows(batch.audit))
            c.executemany(raw["changes"], map(_change_row, batch.changes))
            c.executemany(raw["issues"], _issue_rows(batch.issues))
            c.executemany(sql.resolve_issue, map(_resolution_row, batch.resolutions))
            c.executemany(raw["series"], _series_rows(batch.series))
            c.executemany(raw["metrics"], map(_metric_row, batch.metrics))
            c.executemany(raw["policies"], _policy_rows(batch.policies))
            c.executemany(raw["sources"], _source_rows(batch.sources))
            c.executemany(raw["source_health"], _source_health_rows(batch.source_health))
            c.executemany(raw["segments"], map(_segment_row, batch.segments))
            c.executemany(raw["segment_payloads"], map(_segment_payload_row, batch.segments))
            c.executemany(sql.close_segment, map(_segment_closure_row, batch.segment_closures))
            c.executemany(raw["topics"], _topic_rows(batch.topics))
            c.executemany(raw["topic_entries"], _topic_entry_rows(batch.topic_entries))
            c.executemany(raw["consumer_groups"], _consumer_group_rows(batch.consumer_groups))
            c.executemany(raw["parked"], _parked_rows(batch.parked))
            c.executemany(sql.set_parked_state, _parked_state_rows(batch.parked_states))
        # Current records and payloads are rows of their own.
        return len(batch) + len(batch.versions) + len(batch.segments)

    def _checkpoint(self) -> int | None:
        generation = self._generation or self._active()
        return None if generation is None else self._checkpoint_of(generation)

    def _set_active(self, name: str) -> None:
        with self._transaction() as c:
            known = c.execute(
                "SELECT 1 FROM meta WHERE key = ?", (GENERATION_KEY_PREFIX + name,)
            ).fetchone()
            if known is None:
                raise ValueError(f"unknown generation {name!r}")
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (ACTIVE_GENERATION_KEY, name),
            )

    def _list_generations(self) -> list[str]:
        rows = self._db().execute(
            "SELECT key FROM meta WHERE key > ? AND key < ? ORDER BY key",
            (GENERATION_KEY_PREFIX, GENERATION_KEY_PREFIX[:-1] + ";"),
        )
        return [key[len(GENERATION_KEY_PREFIX) :] for (key,) in rows]

    def _drop(self, name: str) -> None:
        sql = self._statements(name)
        # One write transaction: the active check and the drop cannot interleave with a switch.
        with self._transaction() as c:
            if self._active() == name:
                raise ValueError(f"generation {name!r} is active and cannot be dropped")
            for statement in sql.drop:
                c.execute(statement)
            c.execute(
                "DELETE FROM meta WHERE key IN (?, ?)",
                (GENERATION_KEY_PREFIX + name, FORMAT_KEY_PREFIX + name),
            )

    def _dump(self, generation: str | None) -> dict[str, object]:
        name = generation or self._generation or self._active()
        if name is None:
            raise ValueError("no generation to dump")
        c = self._db()
        c.execute("BEGIN")  # one snapshot for the whole dump
        try:
            dump = self._statements(name).dump
            rows = {table: c.execute(sql).fetchall() for table, sql in dump.items()}
            checkpoint = c.execute(
                "SELECT value FROM meta WHERE key = ?", (GENERATION_KEY_PREFIX + name,)
            ).fetchone()
        finally:
            c.execute("COMMIT")
        return {
            "checkpoint": None if checkpoint is None else checkpoint[0],
            "versions": _versions(rows["versions"]),
            "current": _versions(rows["current"]),
            "observations": _observations(rows["observations"]),
            "audit": _audit(rows["audit"]),
            "changes": _changes(rows["changes"]),
            "issues": _issues(rows["issues"]),
            "series": _series(rows["series"]),
            "metrics": _metrics(rows["metrics"]),
            "policies": _policies(rows["policies"]),
            "sources": _sources(rows["sources"]),
            "source_health": _source_health(rows["source_health"]),
            "segments": _segments(rows["segments"]),
            "topics": _topics(rows["topics"]),
            "topic_entries": _topic_entries(rows["topic_entries"]),
            "consumer_groups": _consumer_groups(rows["consumer_groups"]),
            "parked": _parked(rows["parked"]),
        }

    def _close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- ReadModelWriter ----------------------------------------------------------------------

    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        await self._run(self._apply, batch, checkpoint)

    async def checkpoint(self) -> int | None:
        return await self._run(self._checkpoint)

    async def last_segment(self, series_id: str, bucket_us: int) -> Segment | None:
        def query() -> list[Row]:
            sql = self._statements(self._writer()).last_segment
            return self._db().execute(sql, (series_id, bucket_us)).fetchall()

        rows = await self._run(query)
        return _segments(rows)[0] if rows else None

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        def query() -> list[Row]:
            generation = self._generation or self._active()
            if generation is None:
                return []
            return self._db().execute(self._statements(generation).topics).fetchall()

        return topics_in_force(_topics(await self._run(query)), at_position)

    async def raw_bulk_insert(self, batch: ProjectionBatch, generation: str = "raw_scratch") -> int:
        """Benchmark baseline: the rows `apply` would write, by plain `executemany` in one
        transaction into freshly emptied tables of `generation` (never registered, so never
        readable), without conflict handling or checkpoint; the current records by `apply`'s
        own statement, which copies them from the versions inside SQLite. Returns the number of
        rows written (current records count separately from versions).
        """
        return await self._run(self._raw_bulk_insert, batch, validate_generation(generation))

    # --- ReadModelReader ----------------------------------------------------------------------

    async def _select(self, pick: Callable[[_Sql], str], params: Sequence[object]) -> list[Row]:
        def query(c: sqlite3.Connection, sql: _Sql, _generation: str) -> list[Row]:
            return c.execute(pick(sql), params).fetchall()

        return await self._run(self._read, query)

    async def _feed(
        self,
        pick: Callable[[_Sql], str],
        keys: Sequence[Sequence[object]],
        after: ResumeToken,
        limit: int,
    ) -> list[Row]:
        """Rows strictly after `after` up to the checkpoint, in token order: one index range scan
        per key prefix in `keys`, merged.

        Stopping at the checkpoint keeps token paging gap-free however the rows were written:
        every row at or below it was committed before it was. One bound for all scans, so
        scans seeing different commits still agree on what the page covers.
        """

        def query(c: sqlite3.Connection, sql: _Sql, generation: str) -> list[Row]:
            bound = self._checkpoint_of(generation)
            if bound is None:
                return []
            statement = pick(sql)
            pages = [
                c.execute(statement, (*key, after.position, after.index, bound, limit)).fetchall()
                for key in keys
            ]
            if len(pages) == 1:
                return pages[0]
            return list(islice(heapq.merge(*pages, key=itemgetter(0, 1)), limit))

        return await self._run(self._read, query)

    async def latest_range(
        self, series_id: str, start_us: int, end_us: int, limit: int
    ) -> list[OfficialVersion]:
        if limit <= 0:
            return []
        params = (series_id, start_us, end_us, limit)
        return _versions(await self._select(lambda q: q.latest_range, params))

    async def as_of_time_range(
        self, series_id: str, start_us: int, end_us: int, known_at_us: int, limit: int
    ) -> list[OfficialVersion]:
        if limit <= 0:
            return []
        params = (series_id, start_us, end_us, known_at_us, known_at_us, limit)
        return _versions(await self._select(lambda q: q.as_of_time_range, params))

    async def as_of_position_range(
        self, series_id: str, start_us: int, end_us: int, position: int, limit: int
    ) -> list[OfficialVersion]:
        if limit <= 0:
            return []
        params = (series_id, start_us, end_us, position, position, limit)
        return _versions(await self._select(lambda q: q.as_of_position_range, params))

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        if limit <= 0:
            return []
        pick: Callable[[_Sql], str]
        valid: tuple[int, ...]
        match as_of:
            case Latest():
                pick, valid = (lambda q: q.segments_latest), ()
            case KnownAt(at_us=at):
                pick, valid = (lambda q: q.segments_known_at), (at, at)
            case AtPosition(position=at):
                pick, valid = (lambda q: q.segments_at_position), (at, at)
            case _:
                assert_never(as_of)
        params = (series_id, from_bucket_us, end_us, *valid, limit)

        def query(c: sqlite3.Connection, sql: _Sql, generation: str) -> list[Row]:
            if self._format_of(generation) < SEGMENTS_FORMAT:
                raise _NoSegments
            return c.execute(pick(sql), params).fetchall()

        try:
            rows = await self._run(self._read, query)
        except _NoSegments:
            return None
        rows.sort(key=itemgetter(1))  # by bucket: see segments in _Sql.for_generation
        return _segments(rows)

    async def history(self, series_id: str, snap_us: int) -> list[OfficialVersion]:
        return _versions(await self._select(lambda q: q.history, (series_id, snap_us)))

    async def observations(self, series_id: str, snap_us: int) -> list[Observation]:
        rows = await self._select(lambda q: q.observations, (series_id, snap_us))
        return _observations(rows)

    async def changes_after(
        self, after: ResumeToken, series_ids: Sequence[str], limit: int
    ) -> list[ChangeFeedEntry]:
        if limit <= 0:
            return []
        if series_ids:
            # One scan per series in index order, never a sort of a series' whole tail.
            keys = [(s,) for s in dict.fromkeys(series_ids)]
            rows = await self._feed(lambda q: q.changes_after_series, keys, after, limit)
        else:
            rows = await self._feed(lambda q: q.changes_after, [()], after, limit)
        return _changes(rows)

    async def audit_trail(
        self, scope: AuditScope, after: ResumeToken | None, limit: int
    ) -> list[AuditEntry]:
        if limit <= 0:
            return []
        pick: Callable[[_Sql], str]
        key: tuple[object, ...]
        if scope.source_id:
            pick, key = (lambda q: q.audit_source), (scope.source_id,)
        elif scope.snap_us is not None:
            pick, key = (lambda q: q.audit_point), (scope.series_id, scope.snap_us)
        elif scope.series_id:
            pick, key = (lambda q: q.audit_series), (scope.series_id,)
        else:
            pick, key = (lambda q: q.audit_all), ()
        return _audit(await self._feed(pick, [key], after or _BEFORE_ALL, limit))

    async def list_series(self, after_series_id: str, limit: int) -> list[SeriesEntry]:
        if limit <= 0:
            return []
        params = (after_series_id, limit)
        return _series(await self._select(lambda q: q.list_series, params))

    async def get_series(self, series_id: str) -> SeriesEntry | None:
        rows = await self._select(lambda q: q.get_series, (series_id,))
        return _series(rows)[0] if rows else None

    async def list_issues(
        self,
        issue_filter: IssueFilter,
        after_issue_id: str,
        limit: int,
        *,
        after_series_id: str = "",
    ) -> list[QualityIssue]:
        after = issue_page_key(issue_filter, after_series_id, after_issue_id)
        if limit <= 0:
            return []
        series, status = issue_filter.series_id, issue_filter.status
        params: list[object] = [p for p in (series, status) if p]
        params += [after[1]] if series else list(after)
        params.append(limit)
        shape = (bool(series), bool(status))
        return _issues(await self._select(lambda sql: sql.list_issues[shape], params))

    async def metrics(self, series_id: str, start_us: int, end_us: int) -> list[QualityMetrics]:
        params = (series_id, start_us, end_us)
        return _metrics(await self._select(lambda q: q.metrics, params))

    async def access_policies(self) -> list[AccessPolicyEntry]:
        return _policies(await self._select(lambda q: q.access_policies, ()))

    async def list_sources(self, after_source_id: str, limit: int) -> list[SourceEntry]:
        if limit <= 0:
            return []
        rows = await self._select(lambda q: q.list_sources, (after_source_id, limit))
        return _sources(rows)

    async def get_source(self, source_id: str) -> SourceEntry | None:
        rows = await self._select(lambda q: q.get_source, (source_id,))
        return _sources(rows)[0] if rows else None

    async def source_health(self, source_id: str) -> list[SourceHealthEntry]:
        return _source_health(await self._select(lambda q: q.source_health, (source_id,)))

    async def topic_entries(self, topic: str, after: ResumeToken, limit: int) -> list[TopicEntry]:
        if limit <= 0:
            return []
        return _topic_entries(await self._feed(lambda q: q.topic_entries, [(topic,)], after, limit))

    async def consumer_group(self, topic: str, group: str) -> ConsumerGroupEntry | None:
        rows = await self._select(lambda q: q.consumer_group, (topic, group))
        return _consumer_groups(rows)[0] if rows else None

    async def parked_entries(
        self, topic: str, group: str, after: ResumeToken, limit: int, state: str = ""
    ) -> list[ParkedEntry]:
        if limit <= 0:
            return []
        token = (after.position, after.index, limit)
        if state:
            rows = await self._select(lambda q: q.parked_in_state, (topic, group, state, *token))
        else:
            rows = await self._select(lambda q: q.parked_unsettled, (topic, group, *token))
        return _parked(rows)

    # --- GenerationAdmin ----------------------------------------------------------------------

    async def active_generation(self) -> str | None:
        return await self._run(self._active)

    async def set_active_generation(self, name: str) -> None:
        await self._run(self._set_active, validate_generation(name))

    async def list_generations(self) -> list[str]:
        return await self._run(self._list_generations)

    async def generation_format(self, name: str) -> int:
        return await self._run(self._generation_format, validate_generation(name))

    async def generation_checkpoint(self, name: str) -> int | None:
        return await self._run(self._generation_checkpoint, validate_generation(name))

    async def drop_generation(self, name: str) -> None:
        await self._run(self._drop, validate_generation(name))

    # --- tests and lifecycle --------------------------------------------------------------------

    async def dump_all(self, generation: str | None = None) -> dict[str, object]:
        """Every record of a generation (default: the written one, else the active one) as port
        records sorted by natural key, plus its checkpoint: equal dumps mean equal read models.
        """
        return await self._run(self._dump, generation)

    async def close(self) -> None:
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=True)
