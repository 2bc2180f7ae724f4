"""The read store fails under the projector (a full disk, a read-only database): the projector
waits it out, says why in its status, and once the store recovers projects every event exactly
once: the read model then equals a clean rebuild of the same log."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from qis_adapters.eventstore.port import EventStoreUnavailable
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.faults import store_fault
from qis_adapters.readstore.port import OPEN_END, ProjectionBatch, Segment, TopicVersion
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_projector.application.faults import Backoff
from qis_projector.application.projector import Projector, ProjectorLimits

from tests.service.projector.projector_support import (
    SqliteFaults,
    open_faulty_read_store,
    write_log,
)

EVENTS = 40
POINTS = 100
MAX_LAG = 1_000_000
FAST = Backoff(first_s=0.01, cap_s=0.05)
T = TypeVar("T")


class FailsAfter:
    """The read store, whose fault switches on before its `applies`-th write: the failure then
    lands in the middle of a projection, while the next batch is already being prepared."""

    def __init__(self, store: SqliteReadStore, switch_on: Callable[[], None], applies: int) -> None:
        self.store = store
        self._switch_on = switch_on
        self._left = applies

    async def apply(self, batch: ProjectionBatch, checkpoint: int) -> None:
        if self._left == 0:
            self._switch_on()
        self._left -= 1
        await self.store.apply(batch, checkpoint)

    async def checkpoint(self) -> int | None:
        return await self.store.checkpoint()

    async def last_segment(self, series_id: str, bucket_us: int) -> Segment | None:
        return await self.store.last_segment(series_id, bucket_us)

    async def topics(self, at_position: int = OPEN_END) -> list[TopicVersion]:
        return await self.store.topics(at_position)


async def eventually(
    probe: Callable[[], Awaitable[T]], holds: Callable[[T], bool], timeout_s: float = 30.0
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if holds(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout_s} s"
        await asyncio.sleep(0.01)


async def rebuild(events: SqliteEventStore, path: Path, head: int) -> dict[str, object]:
    store = await SqliteReadStore.open(path, "g1")
    try:
        await Projector(events, store).run(until_position=head)
        return await store.dump_all()
    finally:
        await store.close()


def switch(faults: SqliteFaults, fault: str, on: bool) -> None:
    setattr(faults, fault, on)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("disk_full", "database or disk is full"),
        ("read_only", "attempt to write a readonly database"),
    ],
)
async def test_a_store_fault_is_waited_out_then_every_event_is_projected_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, message: str
) -> None:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    faults = SqliteFaults()
    store = await open_faulty_read_store(tmp_path / "read.db", "g1", faults, monkeypatch)
    try:
        head = (await write_log(events, EVENTS, POINTS))[-1]
        failing = FailsAfter(store, lambda: switch(faults, fault, True), applies=2)
        limits = ProjectorLimits(max_batch_events=5)
        projector = Projector(events, failing, limits=limits, backoff=FAST)
        task = asyncio.create_task(projector.run())
        try:
            status = await eventually(
                lambda: projector.status(MAX_LAG), lambda status: not status.serving
            )
            assert message in status.reason
            stuck = projector.checkpoint
            assert stuck is not None
            assert stuck < head

            async def retries() -> int:
                return projector.retries

            await eventually(retries, lambda n: n >= 5)
            assert projector.checkpoint == stuck
            assert not task.done()

            switch(faults, fault, False)

            async def checkpoint() -> int | None:
                return projector.checkpoint

            await eventually(checkpoint, lambda position: position == head)
            status = await projector.status(MAX_LAG)
            assert status.serving, status.reason
            assert projector.retries == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Each event was written by exactly one successful write...
        assert projector.events_projected == EVENTS
        # ...and the read model is the one a clean projection of the log builds.
        assert await store.dump_all() == await rebuild(events, tmp_path / "rebuilt.db", head)
    finally:
        await store.close()
        await events.close()


def _sqlite_error(path: Path, *statements: str, timeout: float = 5.0) -> sqlite3.Error:
    conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
    try:
        for statement in statements:
            conn.execute(statement)
    except sqlite3.Error as error:
        return error
    finally:
        conn.close()
    raise AssertionError(f"{statements} did not fail")


def disk_full(path: Path) -> BaseException:
    return _sqlite_error(
        path,
        "CREATE TABLE t (x BLOB)",
        "PRAGMA max_page_count = 1",
        "INSERT INTO t VALUES (zeroblob(100000))",
    )


def read_only(path: Path) -> BaseException:
    return _sqlite_error(path, "PRAGMA query_only = 1", "CREATE TABLE t (x)")


def locked(path: Path) -> BaseException:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        return _sqlite_error(path, "BEGIN IMMEDIATE", timeout=0)
    finally:
        holder.close()


def masked_by_a_failed_rollback(path: Path) -> BaseException:
    """What the SQLite read store raises when SQLite already rolled back a failed write: its
    ROLLBACK fails too, with the disk-full error as the context."""
    try:
        try:
            raise disk_full(path)
        except sqlite3.Error:
            raise _sqlite_error(path.with_suffix(".other"), "ROLLBACK")  # noqa: B904
    except sqlite3.Error as error:
        return error


def no_such_table(path: Path) -> BaseException:
    return _sqlite_error(path, "INSERT INTO missing VALUES (1)")


def int64_overflow(_: Path) -> BaseException:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        try:
            conn.execute("SELECT ?", (2**63,))
        except OverflowError as error:
            return error
    raise AssertionError("no overflow")


def closed_connection(_: Path) -> BaseException:
    conn = sqlite3.connect(":memory:")
    conn.close()
    try:
        conn.execute("SELECT 1")
    except sqlite3.Error as error:
        return error
    raise AssertionError("a closed connection ran a statement")


def mongo(name: str) -> Callable[[Path], BaseException]:
    def make(_: Path) -> BaseException:
        from pymongo import errors

        error: BaseException = getattr(errors, name)("test")
        return error

    return make


@pytest.mark.parametrize(
    ("make", "transient"),
    [
        (disk_full, True),
        (read_only, True),
        (locked, True),
        (masked_by_a_failed_rollback, True),
        (lambda _: EventStoreUnavailable("down"), True),
        (mongo("AutoReconnect"), True),
        (mongo("ServerSelectionTimeoutError"), True),
        (mongo("ConnectionFailure"), True),
        (mongo("ExecutionTimeout"), True),
        (mongo("DuplicateKeyError"), False),
        (no_such_table, False),
        (closed_connection, False),
        (int64_overflow, False),
        (lambda _: ValueError("bad"), False),
    ],
)
def test_store_failures_worth_waiting_out_are_told_apart_by_type(
    tmp_path: Path, make: Callable[[Path], BaseException], transient: bool
) -> None:
    error = make(tmp_path / "faults.db")
    assert (store_fault(error) is not None) == transient, repr(error)
