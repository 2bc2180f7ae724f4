"""The SQLite event store runs a command's reads, and its small appends made a while after the
last, on the caller's thread when its worker is idle, and never lets the caller's event loop
wait for a lock; an append guarantees the same inline as on the worker (faults, a checkpoint's
lock, cancellation), on real SQLite files and real second connections."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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


def new_event(n: int = 0) -> NewEvent:
    return NewEvent(uuid.uuid4(), "Ingested", b'{"n": %d}' % n, b"{}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "store.db", busy_timeout_ms=2_000)
    try:
        yield opened
    finally:
        await opened.close()


class Clock:
    """The store's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sqlite_module, "monotonic", fake)
    return fake


def threads_of(store: SqliteEventStore, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads the store's step `name` runs on, one per call, from now on."""
    seen: list[int] = []
    step: Callable[..., object] = getattr(store, name)

    def recorded(*args: object) -> object:
        seen.append(threading.get_ident())
        return step(*args)

    monkeypatch.setattr(store, name, recorded)
    return seen


async def test_an_idle_store_reads_inline_and_a_busy_one_hops(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    appended = threads_of(store, "_append_sync", monkeypatch)
    read = threads_of(store, "_read_many_sync", monkeypatch)
    here = threading.get_ident()

    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])
    (events,) = await store.read_many([("s", 0)])
    assert [e.stream_version for e in events] == [0]
    assert read == [here]
    assert appended == [here]  # the store's first write: inline

    # While the worker runs something else, the next step waits its turn there.
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    held = asyncio.get_running_loop().run_in_executor(store._executor, store._locked, hold)
    await asyncio.to_thread(started.wait, 10)
    reading = asyncio.create_task(store.read_many([("s", 0)]))
    await asyncio.sleep(0.05)
    assert not reading.done()  # queued behind the worker's task, not run beside it
    release.set()
    await held
    assert [[e.stream_version for e in events] for events in await reading] == [[0]]
    assert len(read) == 2
    assert read[1] != here


async def test_a_small_append_runs_inline_unless_the_store_wrote_just_before(
    store: SqliteEventStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends that close together go to the worker, whose hop leaves writers in other
    processes room to take the write lock; so do large ones, which would hold the loop."""
    appended = threads_of(store, "_append_sync", monkeypatch)
    here = threading.get_ident()
    gap = sqlite_module._WRITER_GAP_S
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])
    clock.now += gap / 2
    await store.append([StreamAppend("s", 0, [new_event(1)])])
    clock.now += 2 * gap
    await store.append([StreamAppend("s", 1, [new_event(2)])])
    assert [t == here for t in appended] == [True, False, True]

    # Its events' bytes, data and metadata, against the bound.
    bytes_bound = sqlite_module._INLINE_APPEND_BYTES
    for bound, inline in ((16, True), (15, False)):
        monkeypatch.setattr(sqlite_module, "_INLINE_APPEND_BYTES", bound)
        clock.now += 2 * gap
        event = NewEvent(uuid.uuid4(), "Ingested", b"x" * 10, b"y" * 6)
        await store.append([StreamAppend(f"bound-{bound}", StreamState.NO_STREAM, [event])])
        assert (appended[-1] == here) is inline
    # ... over every stream's events
    monkeypatch.setattr(sqlite_module, "_INLINE_APPEND_BYTES", 30)
    clock.now += 2 * gap
    spread = [
        StreamAppend(
            f"spread-{i}", StreamState.NO_STREAM, [NewEvent(uuid.uuid4(), "I", b"x" * 10, b"y" * 6)]
        )
        for i in range(2)
    ]
    await store.append(spread)  # 16 bytes a stream, 32 in all
    assert appended[-1] != here
    monkeypatch.setattr(sqlite_module, "_INLINE_APPEND_BYTES", bytes_bound)
    # Its streams (a version read each) and events (a row each), however few their bytes.
    streams, events = sqlite_module._INLINE_APPEND_STREAMS, sqlite_module._INLINE_APPEND_EVENTS
    for shape, inline in (
        ((1,) * streams, True),
        ((1,) * (streams + 1), False),
        ((events,), True),
        ((events - 1, 2), False),
    ):
        clock.now += 2 * gap
        name = f"shape-{len(shape)}-{shape[0]}"
        await store.append(
            [
                StreamAppend(f"{name}-{i}", StreamState.NO_STREAM, [new_event(j) for j in range(k)])
                for i, k in enumerate(shape)
            ]
        )
        assert (appended[-1] == here) is inline, shape
    versions = [e.stream_version for e in await store.read_stream("s")]
    assert versions == [0, 1, 2]


@pytest.mark.parametrize("inline_first", [True, False], ids=["inline first", "on the worker"])
async def test_an_append_waiting_for_a_lock_leaves_the_loop_running(
    store: SqliteEventStore, tmp_path: Path, clock: Clock, inline_first: bool
) -> None:
    """Inline, the append meets the lock, is refused at once and waits on the worker."""
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])
    if inline_first:
        clock.now += 2 * sqlite_module._WRITER_GAP_S
    blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        append = asyncio.create_task(store.append([StreamAppend("s", 0, [new_event(1)])]))
        ticks = [time.monotonic()]
        for _ in range(20):  # the loop keeps running while the append waits for the lock
            await asyncio.sleep(0.01)
            ticks.append(time.monotonic())
        assert not append.done()
        # Waiting on the loop would have stopped it for the busy timeout (2 s).
        assert max(b - a for a, b in itertools.pairwise(ticks)) < 1.0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Once the lock is free, the append commits, once.
    assert (await append).stream_versions == {"s": 1}
    assert [e.stream_version for e in await store.read_stream("s")] == [0, 1]
    with pytest.raises(WrongExpectedVersion):
        await store.append([StreamAppend("s", 0, [new_event(2)])])


async def test_an_append_met_by_a_lock_times_out_as_unavailable_after_inline_reads(
    tmp_path: Path, clock: Clock
) -> None:
    store = await SqliteEventStore.open(tmp_path / "store.db", busy_timeout_ms=100)
    assert await store.head_position() == 0  # inline: the busy timeout is 0 there
    blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(EventStoreUnavailable):
            await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    try:
        # The refused append left no transaction open, and a step on the worker after inline
        # ones waits the busy timeout.
        await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])
        assert [e.stream_version for e in await store.read_stream("s")] == [0]
        assert store._executor.submit(store._on_worker, _busy_timeout, store).result(10) == 100
    finally:
        await store.close()


def _busy_timeout(store: SqliteEventStore) -> int:
    (timeout,) = store._db.execute("PRAGMA busy_timeout").fetchone()
    return int(timeout)


async def test_an_inline_step_gives_the_loop_its_turn_as_a_handoff_did(
    store: SqliteEventStore,
) -> None:
    """Other calls waiting for the loop (a health check during a bulk load) get a turn between a
    command's steps, as when each step went to the worker and back."""
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])
    turns: list[str] = []

    async def other_call() -> None:
        turns.append("other")

    for step in (
        lambda: store.read_many([("s", 0)]),
        lambda: store.append([StreamAppend("s", 0, [new_event(1)])]),
    ):
        waiting = asyncio.create_task(other_call())
        await step()
        assert waiting.done()
    assert turns == ["other", "other"]


async def test_a_store_used_before_its_worker_has_connected_waits_for_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The constructor queues the connection on the worker; a step must not find the lock free
    before the worker has taken it (a thread scheduled late on a loaded machine) and run inline
    on no connection."""
    locked: Callable[..., object] = SqliteEventStore._locked

    def scheduled_late(self: SqliteEventStore, fn: Callable[..., object], *args: object) -> object:
        if getattr(fn, "__name__", "") == "_connect":
            time.sleep(0.2)  # the worker thread, not yet run when the caller goes on
        return locked(self, fn, *args)

    # Before the lock is taken: the step the worker runs first, whoever holds the lock.
    monkeypatch.setattr(SqliteEventStore, "_locked", scheduled_late)
    store = SqliteEventStore(tmp_path / "store.db")
    try:
        assert await store.head_position() == 0
    finally:
        await store.close()


async def test_an_inline_step_that_fails_still_gives_the_loop_its_turn(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handoff gave calls waiting on the loop their turn whatever the step's outcome; an inline
    step that fails must too."""

    def failing(stream: str, version: int) -> list[object]:
        raise ValueError("a read that fails")

    monkeypatch.setattr(store, "_read_stream_sync", failing)
    turns: list[str] = []

    async def other_call() -> None:
        turns.append("other")

    waiting = asyncio.create_task(other_call())
    with pytest.raises(ValueError, match="a read that fails"):
        await store.read_stream("s")
    assert turns == ["other"]
    assert waiting.done()


async def test_inline_steps_set_no_busy_timeout_each(store: SqliteEventStore, clock: Clock) -> None:
    """The busy timeout is switched when a step of the other kind (inline or on the worker)
    comes, not around every inline step: a PRAGMA before and after each was ~4 of a small
    command's 14 statements."""
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])  # inline
    await store.head_position()  # inline: the busy timeout switched to 0
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for version in range(3):  # a command's reads, each inline
        await store.read_many([("s", 0), (f"c{version}", 0)])
        await store.stream_version("s")
    assert not [s for s in statements if "busy_timeout" in s]
    # An append right after another (the clock stood still), on the worker, switches it
    # back, once.
    await store.append([StreamAppend("s", 0, [new_event(1)])])
    await store.append([StreamAppend("s", 1, [new_event(2)])])
    store._db.set_trace_callback(None)
    assert [s for s in statements if "busy_timeout" in s] == ["PRAGMA busy_timeout = 2000"]


# --- what an append guarantees inline as on the worker: faults, a checkpoint's lock, cancellation


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
        await store.append(
            [StreamAppend("s", 0, [NewEvent(uuid.uuid4(), "Ingested", b"x" * 2**20, b"{}")])]
        )
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
