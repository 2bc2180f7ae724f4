"""WAL checkpoints off the writer's path (qis_adapters.sqlite_wal) and the stores that use them."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from qis_adapters.eventstore.port import NewEvent, StreamAppend, StreamState
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_adapters.sqlite_wal import WalCheckpointer, hand_off_checkpoints

MIB = 2**20


def _writer(path: Path, threshold: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    hand_off_checkpoints(conn, threshold)
    conn.execute("CREATE TABLE t (b BLOB)")
    return conn


def _largest_wal(conn: sqlite3.Connection, path: Path, megabytes: int) -> int:
    """Commits `megabytes` of blobs in 20 kB transactions; the WAL's largest size meanwhile."""
    blob = os.urandom(20_000)
    largest = 0
    for _ in range(megabytes * 50):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (blob,))
        conn.execute("COMMIT")
        largest = max(largest, os.stat(f"{path}-wal").st_size)
        time.sleep(0.0005)  # a writer between commands, not one holding the lock for ever
    return largest


def _wal_left(path: Path) -> bool:
    # SQLite removes the WAL when the file's last connection closes.
    return Path(f"{path}-wal").exists()


def _checkpointer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sqlite-wal-")]


def test_wal_stays_bounded_while_writing_far_past_the_threshold(tmp_path: Path) -> None:
    threshold = 1 * MIB
    path = tmp_path / "bounded.db"
    conn = _writer(path, threshold)
    checkpointer = WalCheckpointer(path, threshold_bytes=threshold)
    try:
        largest = _largest_wal(conn, path, megabytes=48)
    finally:
        checkpointer.close()
        conn.close()
    # Loose: a loaded machine delays the thread's rounds while the writer goes on.
    assert largest < 12 * threshold, largest

    # The same writes without a checkpointer: nothing else bounds the WAL.
    unchecked = tmp_path / "unbounded.db"
    conn = _writer(unchecked, threshold)
    try:
        assert _largest_wal(conn, unchecked, megabytes=8) > 7 * MIB
    finally:
        conn.close()


def test_checkpointer_closes_its_thread_and_connection(tmp_path: Path) -> None:
    path = tmp_path / "closed.db"
    conn = _writer(path, MIB)
    checkpointer = WalCheckpointer(path, threshold_bytes=MIB)
    assert _checkpointer_threads() == ["sqlite-wal-closed.db"]
    checkpointer.close()
    assert _checkpointer_threads() == []
    conn.close()
    assert not _wal_left(path)


def _events(n: int) -> list[NewEvent]:
    return [
        NewEvent(event_id=uuid.uuid4(), type="Seen", data=b"{}", metadata=b"{}") for _ in range(n)
    ]


async def test_event_store_checkpoints_off_its_writer_and_closes_clean(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    await store.append([StreamAppend("s-1", StreamState.NO_STREAM, _events(3))])
    assert _checkpointer_threads() == ["sqlite-wal-events.db"]
    await store.close()
    assert _checkpointer_threads() == []
    assert not _wal_left(path)


async def test_read_store_checkpoints_off_its_path_and_closes_clean(tmp_path: Path) -> None:
    path = tmp_path / "read.db"
    reader = await SqliteReadStore.open(path)
    writer = await SqliteReadStore.open(path, "g1")
    assert _checkpointer_threads() == ["sqlite-wal-read.db"] * 2
    await writer.close()
    await reader.close()
    assert _checkpointer_threads() == []
    assert not _wal_left(path)


_APPENDER = """
import asyncio, sys, uuid
from qis_adapters.eventstore.port import NewEvent, StreamAppend, StreamState
from qis_adapters.eventstore.sqlite import SqliteEventStore

async def main() -> None:
    store = await SqliteEventStore.open(sys.argv[1])
    i = 0
    while True:
        data = i.to_bytes(4, "big") * 25_000
        event = NewEvent(event_id=uuid.uuid4(), type="Big", data=data, metadata=b"{}")
        result = await store.append([StreamAppend(f"s-{i}", StreamState.NO_STREAM, [event])])
        print(result.position, flush=True)
        i += 1

asyncio.run(main())
"""


def _append_until_killed(path: Path, count: int) -> int:
    """Runs an appender process and SIGKILLs it after `count` acknowledged appends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _APPENDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acknowledged = 0
    try:
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= count:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return acknowledged


async def test_kill_9_while_checkpointing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    # 100 kB events: 400 of them take the WAL well past the 16 MiB threshold.
    acknowledged = await asyncio.to_thread(_append_until_killed, path, 400)
    assert acknowledged >= 400
    store = await SqliteEventStore.open(path)
    try:
        assert await store.head_position() >= acknowledged
        for i in range(acknowledged):
            (event,) = await store.read_stream(f"s-{i}")
            assert event.data == i.to_bytes(4, "big") * 25_000
    finally:
        await store.close()


def test_checkpointer_outlives_a_file_it_cannot_open_and_never_creates_one(
    tmp_path: Path,
) -> None:
    """Its thread is the writer's only checkpointer: a fault (here, no file yet) is logged and
    retried, not the end of it; and it never makes an empty database where the file was."""
    threshold = 1 * MIB
    path = tmp_path / "later.db"
    checkpointer = WalCheckpointer(path, threshold_bytes=threshold, poll_seconds=0.001)
    try:
        # A WAL past the threshold without its database: every round fails to open it.
        Path(f"{path}-wal").write_bytes(b"\0" * (2 * threshold))
        time.sleep(0.2)
        assert not path.exists()
        assert _checkpointer_threads()
        Path(f"{path}-wal").unlink()
        conn = _writer(path, threshold)
        try:
            largest = _largest_wal(conn, path, megabytes=24)
        finally:
            conn.close()
    finally:
        checkpointer.close()
    assert largest < 12 * threshold, largest
