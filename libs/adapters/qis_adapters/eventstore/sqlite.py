"""Embedded event store on one SQLite file: the default for a one-command run.

One writer process and any number of reader processes may share the file. WAL mode lets
readers run while a writer commits; every write transaction starts with BEGIN IMMEDIATE, so
writers from different processes are serialised by SQLite's write lock.

A command's reads run on the caller's (the event loop's) thread when the store's worker thread
is idle: for a small command a handoff to the worker and back costs more CPU than the read
itself. After such a read the caller still yields to the loop once, so other calls go on
between a command's steps as before. A read that meets a lock (a checkpoint's WAL reset) is
refused at once there (busy_timeout 0) and run again on the worker, which waits for the lock;
the subscriptions' page reads always run on the worker.

An append runs on the caller's thread too, when it is small (`_small`: a few milliseconds of
the loop at most) and this store released SQLite's write lock at least `_WRITER_GAP_S` before.
Handed to the worker, a thousand-point command's append kept the loop idle ~0.3 ms longer than
the write took (the worker's SQLite steps each wait for the GIL the loop holds, then the loop
waits to be woken): 1k-point BulkIngest chunks over gRPC ran 7-13 % faster inline. The gap is for writers
in other processes: an appender that takes the lock again at once starves one whose busy
handler sleeps between tries (1, 2, 5 ... ms). Two processes appending in tight loops, inline:
one ran to its end before the other got the lock. Appends that close together go through the
worker, whose hop leaves the others that room, as before.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from time import monotonic
from typing import TypeVar

from qis_adapters.eventstore.port import (
    AppendResult,
    EventFilter,
    EventStoreFull,
    EventStoreUnavailable,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)
from qis_adapters.faults import StoreFull, sqlite_fault
from qis_adapters.sqlite_wal import WalCheckpointer, hand_off_checkpoints

_T = TypeVar("_T")

# Small columns first: a filtered scan then decides on a row from its first page without
# reading the overflow pages that hold a large `data` blob.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    stream_version INTEGER NOT NULL,
    type TEXT NOT NULL,
    event_id BLOB NOT NULL,
    recorded_at_us INTEGER NOT NULL,
    metadata BLOB NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (stream, stream_version)
)
"""
# No other index: subscriptions walk the rowid b-tree in position order and test the filter
# on each row's leading columns, which is cheaper than an index on (stream|type, position)
# that would make SQLite sort every page of a wide prefix by position.

_COLUMNS = "position, stream, stream_version, type, event_id, recorded_at_us, metadata, data"
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_Row = tuple[int, str, int, str, bytes, int, bytes, bytes]

# Bounds the rows one subscription statement may examine, so a very selective filter
# catching up over a large store does not hold the store's worker thread for long.
_SCAN_WINDOW = 50_000


# An append runs inline (see the module's docstring) when it is small: its events hold at most
# this many bytes (a 10k-point chunk's are ~1 MiB, ~4 ms of writing), in at most this many
# streams and events (a command's are a few: each stream costs a version read and each event a
# row, so 5,000 one-event streams of 0.3 MB in all held the loop 50-70 ms) ...
_INLINE_APPEND_BYTES = 2 * 1024 * 1024
_INLINE_APPEND_STREAMS = 16
_INLINE_APPEND_EVENTS = 256
# ... and this store released the write lock at least this many seconds before.
_WRITER_GAP_S = 0.001

# SQLite's answers when a lock is held elsewhere and the busy handler is off.
_LOCK_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _small(appends: Sequence[StreamAppend]) -> bool:
    if len(appends) > _INLINE_APPEND_STREAMS:
        return False
    events = [e for a in appends for e in a.events]
    return len(events) <= _INLINE_APPEND_EVENTS and (
        sum(len(e.data) + len(e.metadata) for e in events) <= _INLINE_APPEND_BYTES
    )


def _to_event(row: _Row) -> RecordedEvent:
    position, stream, version, type_, event_id, recorded_at_us, metadata, data = row
    return RecordedEvent(
        stream=stream,
        stream_version=version,
        position=position,
        event_id=uuid.UUID(bytes=event_id),
        type=type_,
        data=data,
        metadata=metadata,
        recorded_at_us=recorded_at_us,
    )


def _validate(appends: Sequence[StreamAppend]) -> None:
    if not appends:
        raise ValueError("append needs at least one StreamAppend")
    streams = [a.stream for a in appends]
    if len(set(streams)) != len(streams):
        raise ValueError(f"a stream may appear only once per append: {streams}")
    for a in appends:
        if not a.events:
            raise ValueError(f"stream {a.stream!r}: an append must carry at least one event")
        if isinstance(a.expected_version, int) and a.expected_version < 0:
            raise ValueError(f"stream {a.stream!r}: expected version must be >= 0")


def _version_holds(expected: int | StreamState, actual: int | None) -> bool:
    if expected is StreamState.ANY:
        return True
    if expected is StreamState.NO_STREAM:
        return actual is None
    return actual == expected


def _filter_sql(event_filter: EventFilter | None) -> tuple[str, list[object]]:
    if event_filter is None:
        return "", []
    sql = ""
    params: list[object] = []
    if prefixes := event_filter.stream_prefixes:
        # substr compares characters exactly: no LIKE/GLOB escaping, no case folding.
        sql += " AND (" + " OR ".join("substr(stream, 1, ?) = ?" for _ in prefixes) + ")"
        for prefix in prefixes:
            params += [len(prefix), prefix]
    if event_filter.event_types:
        sql += " AND type IN (" + ", ".join("?" for _ in event_filter.event_types) + ")"
        params += event_filter.event_types
    return sql, params


def _begin(conn: sqlite3.Connection, statement: str) -> None:
    """`statement` (a BEGIN), after ending a transaction a failed ROLLBACK left open (the
    disk refused it): without that, every later BEGIN would fail ("cannot start a transaction
    within a transaction") and the store would never write again. What that transaction wrote
    is not committed: rolled back now."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute(statement)


class SqliteEventStore:
    """Event store on one SQLite file; its SQLite calls run on one worker thread, but for a
    command's reads and small appends on the caller's when the worker is idle (see the
    module's docstring)."""

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        poll_interval: float = 0.02,
        page_rows: int = 500,
        busy_timeout_ms: int = 5_000,
    ) -> None:
        self._path = Path(path)
        self._poll_interval = poll_interval
        self._page_rows = page_rows
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        # The connection's busy timeout now: 0 after an inline step, changed only when a step
        # of the other kind comes (a PRAGMA around every inline step was ~4 of a small
        # command's 14 statements).
        self._busy_now = busy_timeout_ms
        # When this store last ended a write transaction (time.monotonic), for _WRITER_GAP_S.
        self._released_at = -math.inf
        self._checkpointer: WalCheckpointer | None = None
        self._closed = False
        # The connection runs one statement sequence at a time, on the worker thread or, when
        # it is free, on the caller's (see the module's docstring): whoever holds this lock.
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-events")
        self._connected = self._executor.submit(self._locked, self._connect)

    @classmethod
    async def open(
        cls,
        path: str | PathLike[str],
        *,
        poll_interval: float = 0.02,
        page_rows: int = 500,
        busy_timeout_ms: int = 5_000,
    ) -> SqliteEventStore:
        store = cls(
            path,
            poll_interval=poll_interval,
            page_rows=page_rows,
            busy_timeout_ms=busy_timeout_ms,
        )
        try:
            await asyncio.wrap_future(store._connected)
        except BaseException:
            await store.close()
            raise
        return store

    def _connect(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves. Used from two
        # threads, never at once (self._lock).
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            # Only takes effect when the file is new. Measured on this kind of machine,
            # ~60 KB events append 1.3-1.6x faster than with the default 4 KB pages.
            conn.execute("PRAGMA page_size = 16384")
            conn.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL may lose the last commits on power loss or an OS crash,
            # never consistency; a crash of our process alone loses nothing.
            conn.execute("PRAGMA synchronous = NORMAL")
            hand_off_checkpoints(conn)
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._checkpointer = WalCheckpointer(self._path)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("SqliteEventStore is not open")
        return self._conn

    async def _run(self, fn: Callable[..., _T], *args: object, inline: bool = False) -> _T:
        """`fn` on the connection; `inline`: on this thread when the worker is idle and no lock
        is in the way, else (as without `inline`) on the worker."""
        if self._closed:
            raise RuntimeError("SqliteEventStore is closed")
        loop = asyncio.get_running_loop()
        try:
            if inline:
                try:
                    ran = self._inline(fn, *args)
                finally:
                    # The loop's turn, as a handoff would have given it, whatever the step's
                    # outcome: other calls (a health check) go on between a command's steps.
                    await asyncio.sleep(0)
                if ran is not None:
                    return ran[0]
            return await loop.run_in_executor(self._executor, self._on_worker, fn, *args)
        except sqlite3.OperationalError as e:
            # Faults of the place the log lives, not of the request: a transaction that hits
            # one rolls back whole, so the caller may retry.
            fault = sqlite_fault(e, self._path)
            if isinstance(fault, StoreFull):
                raise EventStoreFull(str(fault)) from e
            if fault is not None:
                raise EventStoreUnavailable(str(fault)) from e
            raise

    def _locked(self, fn: Callable[..., _T], *args: object) -> _T:
        with self._lock:
            return fn(*args)

    def _on_worker(self, fn: Callable[..., _T], *args: object) -> _T:
        """`fn` on the worker, waiting up to the busy timeout for a lock held elsewhere."""
        with self._lock:
            self._busy_timeout(self._busy_timeout_ms)
            return fn(*args)

    def _busy_timeout(self, ms: int) -> None:
        if self._busy_now != ms:
            self._db.execute(f"PRAGMA busy_timeout = {int(ms)}")
            self._busy_now = ms

    def _inline(self, fn: Callable[..., _T], *args: object) -> tuple[_T] | None:
        """`fn`'s answer, run on this thread when the worker is idle, with SQLite's busy handler
        off; None when it was not run: the worker was busy, or a lock was held elsewhere (a
        checkpoint's WAL reset) and `fn` ended the read it began, or the worker has not
        connected yet (its first task)."""
        if not self._connected.done() or not self._lock.acquire(blocking=False):
            return None
        try:
            self._busy_timeout(0)
            try:
                return (fn(*args),)
            except sqlite3.OperationalError as e:
                if getattr(e, "sqlite_errorcode", 0) & 0xFF in _LOCK_CODES:
                    return None
                raise
        finally:
            self._lock.release()

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        _validate(appends)
        inline = _small(appends) and monotonic() - self._released_at >= _WRITER_GAP_S
        # If the caller is cancelled while the worker runs (or at its turn after an inline
        # append), the transaction still commits or rolls back as a whole; the caller learns
        # nothing, as after a lost network reply.
        return await self._run(self._append_sync, appends, inline=inline)

    def _append_sync(self, appends: Sequence[StreamAppend]) -> AppendResult:
        conn = self._db
        # BEGIN IMMEDIATE takes the write lock before anything is read, so the versions
        # checked, the positions assigned and the commit are one serial step across all
        # processes: positions are handed out in commit order.
        _begin(conn, "BEGIN IMMEDIATE")
        try:
            last = conn.execute(
                "SELECT position, recorded_at_us FROM events ORDER BY position DESC LIMIT 1"
            ).fetchone()
            position, last_recorded_at_us = last if last is not None else (0, 0)
            recorded_at_us = max(time.time_ns() // 1_000, last_recorded_at_us)
            rows: list[_Row] = []
            versions: dict[str, int] = {}
            for a in appends:
                (actual,) = conn.execute(
                    "SELECT max(stream_version) FROM events WHERE stream = ?", (a.stream,)
                ).fetchone()
                if not _version_holds(a.expected_version, actual):
                    raise WrongExpectedVersion(a.stream, a.expected_version, actual)
                version = -1 if actual is None else actual
                for e in a.events:
                    position += 1
                    version += 1
                    rows.append(
                        (
                            position,
                            a.stream,
                            version,
                            e.type,
                            e.event_id.bytes,
                            recorded_at_us,
                            e.metadata,
                            e.data,
                        )
                    )
                versions[a.stream] = version
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._released_at = monotonic()
        return AppendResult(position=position, stream_versions=versions)

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        return await self._run(self._read_stream_sync, stream, from_version, inline=True)

    def _read_stream_sync(self, stream: str, from_version: int) -> list[RecordedEvent]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND stream_version >= ?"
            " ORDER BY stream_version",
            (stream, from_version),
        ).fetchall()
        return [_to_event(r) for r in rows]

    async def read_many(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        return await self._run(self._read_many_sync, reads, inline=True)

    def _read_many_sync(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        conn = self._db
        # One read transaction: the streams are read at one point in the log.
        _begin(conn, "BEGIN")
        try:
            read = [self._read_stream_sync(stream, version) for stream, version in reads]
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return read

    async def stream_version(self, stream: str) -> int | None:
        return await self._run(self._stream_version_sync, stream, inline=True)

    def _stream_version_sync(self, stream: str) -> int | None:
        (version,) = self._db.execute(
            "SELECT max(stream_version) FROM events WHERE stream = ?", (stream,)
        ).fetchone()
        return None if version is None else int(version)

    async def head_position(self) -> int:
        return await self._run(self._head_sync, inline=True)

    def _head_sync(self) -> int:
        (head,) = self._db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        return int(head)

    async def subscribe(
        self, after_position: int | None = None, event_filter: EventFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        filter_sql, filter_params = _filter_sql(event_filter)
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE position > ? AND position <= ?{filter_sql}"
            " ORDER BY position LIMIT ?"
        )
        last = after_position or 0
        while True:
            events, last, caught_up = await self._run(
                self._read_page_sync, sql, filter_params, last
            )
            for event in events:
                yield event
            if caught_up:
                # The writer is usually another process: nothing here can be notified.
                await asyncio.sleep(self._poll_interval)

    def _read_page_sync(
        self, sql: str, filter_params: list[object], last: int
    ) -> tuple[list[RecordedEvent], int, bool]:
        conn = self._db
        # Every row at or below the head seen here is already committed (positions are
        # assigned in commit order, see _append_sync), so a later statement bounded by it
        # sees all of them: no event can appear behind a position already passed.
        head = self._head_sync()
        upper = min(head, last + _SCAN_WINDOW)
        rows = conn.execute(sql, (last, upper, *filter_params, self._page_rows)).fetchall()
        events = [_to_event(r) for r in rows]
        if len(rows) == self._page_rows:
            return events, events[-1].position, False
        return events, upper, upper == head

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._locked, self._close_sync)
        self._executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
