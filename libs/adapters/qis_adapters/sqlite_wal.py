"""WAL checkpoints of a SQLite file off the writer's path.

By default the connection that commits a transaction which takes the WAL past 1,000 pages
copies the whole WAL into the database file before its commit returns: with 16 KB pages, a
~75 ms stall (copy and fsyncs) every 16 MB appended, measured at 0.83M points/s raw append
against 2.0-2.26M with automatic checkpoints off. So a writing connection turns them off
(`hand_off_checkpoints`) and a `WalCheckpointer` runs them on a connection and a thread of its
own:

- every `poll_seconds` (10 ms) it reads the WAL file's size, a `stat` and nothing else while
  the WAL is small;
- past `threshold_bytes` (16 MiB: SQLite's default of 1,000 pages at the event store's page
  size), PASSIVE checkpoints copy what the WAL holds while the writer goes on committing;
- then a RESTART checkpoint copies the rest committed meanwhile with the writer held and waits
  (at most `_BUSY_TIMEOUT_MS`) for readers to leave the WAL; the writer's next commit starts
  the WAL over and `journal_size_limit` truncates the file to the threshold. The writer waits
  only for that short rest, and the WAL stays bounded by the threshold plus what is committed
  during one round. When readers keep the WAL from being started over, the next try waits
  until it has grown by another threshold.

Durability is unchanged: commits are made durable by the writer's own `synchronous` setting,
and a checkpoint, whoever runs it, is crash-safe (SQLite recovers the WAL at the next open).
Every open store runs one, readers too (their own writes, e.g. a rebuild switch or the
benchmark's raw writes, are not checkpointed otherwise). Another checkpoint at the same time, in
this process or another, is harmless: a PASSIVE checkpoint that finds one running returns at
once, and the round is tried again at the next poll.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import urllib.parse
from pathlib import Path

log = logging.getLogger(__name__)

WAL_THRESHOLD_BYTES = 16 * 2**20
POLL_SECONDS = 0.01
# How long a RESTART checkpoint waits for the writer's transaction and then, holding the write
# lock, for readers to leave the WAL before it gives up until the next round: the longest it
# holds the writer beyond the copy (SQLite's own checkpoint held commits ~75 ms per 16 MB).
_BUSY_TIMEOUT_MS = 200
# A writer faster than the copy never leaves a small rest: bounds the passes before RESTART.
_PASSIVE_PASSES = 4


def hand_off_checkpoints(
    conn: sqlite3.Connection, threshold_bytes: int = WAL_THRESHOLD_BYTES
) -> None:
    """Turn off `conn`'s automatic checkpoints: a `WalCheckpointer` of the same threshold runs
    them."""
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    # The writer starts the WAL over after a complete checkpoint; this truncates the file back
    # then (by default it keeps its largest size), so its size tells what awaits copying.
    conn.execute(f"PRAGMA journal_size_limit = {int(threshold_bytes)}")


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite file at `path` on its own thread until `close`."""

    def __init__(
        self,
        path: Path,
        *,
        threshold_bytes: int = WAL_THRESHOLD_BYTES,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._path = path
        self._wal = Path(f"{path}-wal")
        self._threshold = threshold_bytes
        self._poll = poll_seconds
        self._page_size = 4096
        self._stop = threading.Event()
        # Daemon: a store nobody closed must not keep the interpreter from exiting.
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-wal-{path.name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close its connection (a round under way finishes first)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # Nothing but this thread checkpoints the writer's WAL, so it must outlive every error:
        # one that ends it would let the WAL grow without bound.
        conn: sqlite3.Connection | None = None
        failing = False
        # Raised past the size a round failed at: a reader holding the WAL for long, or a fault
        # (a full disk, a read-only file), would otherwise hold writes or fail at every poll.
        trigger = self._threshold
        try:
            while not self._stop.wait(self._poll):
                size = 0
                try:
                    size = self._wal_bytes()
                    if size <= self._threshold:
                        trigger = self._threshold
                    elif size > trigger:
                        conn = conn or self._connect()
                        # Done, the file keeps its size until the writer's next commit
                        # starts it over and truncates it.
                        done = self._checkpoint(conn)
                        trigger = size if done else size + self._threshold
                        failing = False
                except (sqlite3.Error, OSError) as e:
                    # The writer meets the same fault and reports it; here, say it once a
                    # streak and try again once the WAL has grown by another threshold.
                    if not failing:
                        log.warning("WAL checkpoint of %s failed: %s", self._path, e)
                    failing = True
                    trigger = size + self._threshold
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: a file moved or deleted since the store opened it is not made anew, empty.
        uri = f"file:{urllib.parse.quote(str(self._path))}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            (self._page_size,) = conn.execute("PRAGMA page_size").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self._wal).st_size
        except FileNotFoundError:
            return 0

    def _checkpoint(self, conn: sqlite3.Connection) -> bool:
        """Copy the WAL into the database so that the next commit starts it over; False when
        readers or another checkpoint kept it from that."""
        # A pass copies the frames committed before it began while the writer goes on
        # committing, so passes repeat while each leaves half the rest of the one before, and
        # RESTART then copies a short rest with the writer held and waits for readers to leave
        # the WAL. Against a writer that commits faster than passes copy, the rest grows:
        # RESTART at once.
        copied, moved = None, None
        for _ in range(_PASSIVE_PASSES):
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy:
                return False  # another connection is checkpointing
            if copied is not None:
                rest = frames - copied
                if rest * self._page_size < self._threshold // 8 or (
                    moved is not None and rest > moved // 2
                ):
                    break
                moved = rest
            copied = done
        (busy, _, _) = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        return not busy
