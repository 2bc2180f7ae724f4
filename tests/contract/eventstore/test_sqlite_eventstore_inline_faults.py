"""What an append must guarantee whether it runs inline, on the caller's loop, or on the store's
worker (faults, a checkpoint's lock, cancellation), on real SQLite files and real second
connections."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
import qis_adapters.eventstore.sqlite as sqlite_module
from qis_adapters.eventstore.port import (
    EventStoreFull,
    EventStoreUnavailable,
    NewEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)
from qis_adapters.eventstore.sqlite import SqliteEventStore


def new_event(data: bytes = b"{}") -> NewEvent:
    return NewEvent(uuid.uuid4(), "Ingested", data, b"{}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "store.db", busy_timeout_ms=2_000)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(params=["inline", "on the worker"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every append inline (the gap always long enough) or every append on the worker."""
    if request.param == "inline":
        monkeypatch.setattr(sqlite_module, "_WRITER_GAP_S", -1.0)
    else:
        monkeypatch.setattr(sqlite_module, "_INLINE_APPEND_BYTES", -1)
    return str(request.param)


async def longest_stall(step: Awaitable[object]) -> float:
    """The longest the loop went without a turn while `step` ran, in seconds."""
    ticks = [time.perf_counter()]
    done = False

    async def ticker() -> None:
        while not done:
            await asyncio.sleep(0)
            ticks.append(time.perf_counter())

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        await step
    finally:
        done = True
        await ticking
    return max(b - a for a, b in itertools.pairwise(ticks))


async def test_an_inline_append_met_by_a_checkpoint_restart_commits_once_on_the_worker(
    store: SqliteEventStore, tmp_path: Path, where: str
) -> None:
    """A RESTART checkpoint holds the write lock while it waits for readers to leave the WAL:
    inline, the append is refused at once, the loop runs on, and it commits once afterwards."""
    path = tmp_path / "store.db"
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event()])])
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # a snapshot in the WAL
    await store.append([StreamAppend("s", 0, [new_event()])])  # the reader is now behind

    holding = threading.Event()
    checkpoint_done: list[tuple[int, int, int]] = []

    def restart() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 600")
        holding.set()
        checkpoint_done.append(conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone())
        conn.close()

    checkpointer = threading.Thread(target=restart)
    checkpointer.start()
    try:
        assert holding.wait(5)
        await asyncio.sleep(0.05)  # the checkpoint now holds the writer, waiting for the reader
        await asyncio.sleep(2 * sqlite_module._WRITER_GAP_S)
        append = asyncio.create_task(store.append([StreamAppend("s", 1, [new_event()])]))
        stall = await longest_stall(asyncio.sleep(0.2))
        # Waiting for the lock on the loop would stop it until the checkpoint gives up (0.6 s).
        assert stall < 0.3
    finally:
        reader.execute("ROLLBACK")
        reader.close()
        await asyncio.to_thread(checkpointer.join, 5)
    assert (await append).stream_versions == {"s": 2}
    assert [e.stream_version for e in await store.read_stream("s")] == [0, 1, 2]
    assert await store.head_position() == 3
    assert checkpoint_done


async def test_a_full_store_is_reported_full_and_left_with_no_transaction_open(
    store: SqliteEventStore, where: str
) -> None:
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event()])])
    await asyncio.sleep(2 * sqlite_module._WRITER_GAP_S)

    def cap(pages: str) -> None:
        store._db.execute(f"PRAGMA max_page_count = {pages}")

    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    await asyncio.to_thread(store._locked, cap, str(pages))
    with pytest.raises(EventStoreFull):
        await store.append([StreamAppend("s", 0, [new_event(b"x" * 2**20)])])
    assert not store._db.in_transaction
    await asyncio.to_thread(store._locked, cap, "1073741823")
    await asyncio.sleep(2 * sqlite_module._WRITER_GAP_S)
    assert (await store.append([StreamAppend("s", 0, [new_event()])])).stream_versions == {"s": 1}
    assert await store.head_position() == 2


async def test_a_write_refused_as_read_only_is_unavailable_and_rolled_back(
    store: SqliteEventStore, where: str
) -> None:
    """query_only makes SQLite answer SQLITE_READONLY at the insert, mid-transaction, as a
    read-only file does."""
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event()])])
    await asyncio.sleep(2 * sqlite_module._WRITER_GAP_S)

    def query_only(on: bool) -> None:
        store._db.execute(f"PRAGMA query_only = {int(on)}")

    await asyncio.to_thread(store._locked, query_only, True)
    with pytest.raises(EventStoreUnavailable):
        await store.append([StreamAppend("s", 0, [new_event()])])
    assert not store._db.in_transaction
    await asyncio.to_thread(store._locked, query_only, False)
    await asyncio.sleep(2 * sqlite_module._WRITER_GAP_S)
    assert (await store.append([StreamAppend("s", 0, [new_event()])])).stream_versions == {"s": 1}


async def test_an_append_cancelled_after_its_inline_attempt_met_a_lock_is_never_written(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    """Cancelled at the loop's turn after the refused inline attempt, before it went to the
    worker: nothing was written and nothing is left queued to write it later."""
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event()])])
    await asyncio.sleep(2 * sqlite_module._WRITER_GAP_S)
    blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        append = asyncio.create_task(store.append([StreamAppend("s", 0, [new_event()])]))
        await asyncio.sleep(0)  # the task tries inline, is refused, and yields its turn
        append.cancel()
        with pytest.raises(asyncio.CancelledError):
            await append
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await asyncio.sleep(0.1)
    assert await store.head_position() == 1
    assert (await store.append([StreamAppend("s", 0, [new_event()])])).stream_versions == {"s": 1}


async def test_an_append_cancelled_at_its_turn_after_an_inline_commit_is_written_once(
    store: SqliteEventStore,
) -> None:
    """As after a lost reply: the caller learns nothing, the events are in, once, and a retry
    at the same expected version is refused."""
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event()])])
    await asyncio.sleep(2 * sqlite_module._WRITER_GAP_S)
    append = asyncio.create_task(store.append([StreamAppend("s", 0, [new_event()])]))
    await asyncio.sleep(0)  # the task commits inline and yields its turn
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    assert [e.stream_version for e in await store.read_stream("s")] == [0, 1]
    with pytest.raises(WrongExpectedVersion):
        await store.append([StreamAppend("s", 0, [new_event()])])
