"""A command's steps on an idle SQLite event store run only their own statements: the busy
timeout is switched when a step of the other kind (inline or on the worker) comes, not around
every inline step (that a worker step after inline ones still waits for a lock held elsewhere:
test_sqlite_eventstore_inline.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qis_adapters.eventstore.port import NewEvent, StreamAppend, StreamState
from qis_adapters.eventstore.sqlite import SqliteEventStore


def new_event() -> NewEvent:
    return NewEvent(uuid.uuid4(), "Ingested", b"{}", b"{}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "store.db", busy_timeout_ms=2_000)
    try:
        yield opened
    finally:
        await opened.close()


async def test_inline_steps_set_no_busy_timeout_each(store: SqliteEventStore) -> None:
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event()])])
    await store.head_position()  # inline: the busy timeout switched to 0
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for version in range(3):  # a command's reads, each inline
        await store.read_many([("s", 0), (f"c{version}", 0)])
        await store.stream_version("s")
    assert not [s for s in statements if "busy_timeout" in s]
    # The append, on the worker, switches it back, once.
    await store.append([StreamAppend("s", 0, [new_event()])])
    store._db.set_trace_callback(None)
    assert [s for s in statements if "busy_timeout" in s] == ["PRAGMA busy_timeout = 2000"]
