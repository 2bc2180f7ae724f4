"""SQLite-only guarantees: several processes on one file, racing writers, the clock clamp."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import qis_adapters.eventstore.sqlite as sqlite_module
from qis_adapters.eventstore.port import (
    EventFilter,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)
from qis_adapters.eventstore.sqlite import SqliteEventStore

ID_NAMESPACE = uuid.UUID("5b0a3a52-5d3c-4d0e-9a43-8b1f6f0b7c11")

# Appends 1..4 events at a time to three streams of its own, with concrete expected versions;
# event ids are uuid5(stream/version) so the reader can check every event it receives. It
# starts appending on a line from stdin, so that the writers really overlap, and pauses
# between appends for the seconds given (as a process deciding commands between them does).
WRITER_SCRIPT = """
import asyncio, sys, uuid
from qis_adapters.eventstore.port import NewEvent, StreamAppend, StreamState
from qis_adapters.eventstore.sqlite import SqliteEventStore

async def main(path: str, tag: str, appends: int, pause: float) -> None:
    store = await SqliteEventStore.open(path)
    print("ready", flush=True)
    sys.stdin.readline()
    versions: dict[str, int] = {}
    for i in range(appends):
        stream = f"{tag}-{i % 3}"
        current = versions.get(stream)
        first = 0 if current is None else current + 1
        events = [
            NewEvent(uuid.uuid5(uuid.UUID(sys.argv[4]), f"{stream}/{v}"), "Ingested", b"{}", b"{}")
            for v in range(first, first + 1 + i % 4)
        ]
        expected = StreamState.NO_STREAM if current is None else current
        result = await store.append([StreamAppend(stream, expected, events)])
        versions[stream] = result.stream_versions[stream]
        if pause:
            await asyncio.sleep(pause)
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[5])))
"""


def new_event(n: int = 0) -> NewEvent:
    return NewEvent(uuid.uuid4(), "Ingested", b'{"n": %d}' % n, b"{}")


async def take(events: AsyncIterator[RecordedEvent], count: int) -> list[RecordedEvent]:
    got: list[RecordedEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            got.append(event)
            if len(got) == count:
                break
    if isinstance(events, AsyncGenerator):
        await events.aclose()
    return got


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "store.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_empty_store_has_head_zero_and_creates_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    store = await SqliteEventStore.open(path)
    try:
        assert path.exists()
        assert await store.head_position() == 0
    finally:
        await store.close()


async def test_positions_start_at_one_and_have_no_gaps(store: SqliteEventStore) -> None:
    await store.append([StreamAppend("a", StreamState.NO_STREAM, [new_event(), new_event()])])
    with pytest.raises(WrongExpectedVersion):
        await store.append([StreamAppend("a", StreamState.NO_STREAM, [new_event()])])
    result = await store.append([StreamAppend("b", StreamState.NO_STREAM, [new_event()])])

    assert result.position == 3
    assert [e.position for e in await store.read_stream("a")] == [1, 2]


async def test_subscription_pages_and_scan_windows_neither_skip_nor_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_SCAN_WINDOW", 4)
    store = await SqliteEventStore.open(tmp_path / "paged.db", page_rows=3)
    try:
        for i in range(20):
            stream = f"{'wanted' if i % 3 == 0 else 'other'}-{i}"
            await store.append([StreamAppend(stream, StreamState.NO_STREAM, [new_event(i)])])

        everything = await take(store.subscribe(), 20)
        wanted = await take(store.subscribe(None, EventFilter(stream_prefixes=("wanted",))), 7)
    finally:
        await store.close()

    assert [e.position for e in everything] == list(range(1, 21))
    assert [e.position for e in wanted] == list(range(1, 21, 3))


async def test_recorded_time_is_clamped_when_the_clock_steps_back(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SteppingClock:
        readings = iter([2_000_000_000_000, 1_000_000_000_000])

        @classmethod
        def time_ns(cls) -> int:
            return next(cls.readings)

    monkeypatch.setattr(sqlite_module, "time", SteppingClock)
    await store.append([StreamAppend("a", StreamState.NO_STREAM, [new_event()])])
    await store.append([StreamAppend("a", 0, [new_event()])])

    assert [e.recorded_at_us for e in await store.read_stream("a")] == [2_000_000_000] * 2


# Appending in tight loops, each writer goes through its store's worker; with pauses as long
# as a thousand-point command's decision, each append runs on the writer's loop first and,
# meeting the other's lock, on its worker.
@pytest.mark.parametrize("pause", [0.0, 0.0015], ids=["tight loops", "paused"])
async def test_reader_sees_every_event_from_writer_processes_exactly_once_in_order(
    tmp_path: Path, pause: float
) -> None:
    path = tmp_path / "shared.db"
    reader = await SqliteEventStore.open(path, poll_interval=0.005)
    appends_per_writer = 300
    per_writer = sum(1 + i % 4 for i in range(appends_per_writer))
    tags = ["w1", "w2"]
    received: list[RecordedEvent] = []

    async def read_all() -> None:
        async for event in reader.subscribe():
            received.append(event)
            if len(received) == per_writer * len(tags):
                return

    reading = asyncio.create_task(read_all())
    try:
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WRITER_SCRIPT,
                str(path),
                tag,
                str(appends_per_writer),
                str(ID_NAMESPACE),
                str(pause),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for tag in tags
        ]
        for w in writers:
            assert w.stdout is not None
            assert await asyncio.wait_for(w.stdout.readline(), 30) == b"ready\n"
        for w in writers:
            assert w.stdin is not None
            w.stdin.write(b"go\n")
            await w.stdin.drain()
        assert [await w.wait() for w in writers] == [0, 0]
        await asyncio.wait_for(reading, 30)
    finally:
        reading.cancel()
        await reader.close()

    total = per_writer * len(tags)
    assert [e.position for e in received] == list(range(1, total + 1))
    for stream in {e.stream for e in received}:
        events = [e for e in received if e.stream == stream]
        assert [e.stream_version for e in events] == list(range(len(events)))
        assert [e.event_id for e in events] == [
            uuid.uuid5(ID_NAMESPACE, f"{stream}/{e.stream_version}") for e in events
        ]
    recorded = [e.recorded_at_us for e in received]
    assert recorded == sorted(recorded)
    # Both writers really interleaved: otherwise this would test nothing about concurrency.
    switches = sum(a.stream[:2] != b.stream[:2] for a, b in itertools.pairwise(received))
    assert switches > 2


async def test_racing_appenders_on_one_stream_conflict_and_exactly_one_wins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "race.db"
    first, second = [await SqliteEventStore.open(path) for _ in range(2)]
    try:
        seen = [await first.stream_version("s"), await second.stream_version("s")]
        assert seen == [None, None]

        outcomes = await asyncio.gather(
            first.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(1)])]),
            second.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(2)])]),
            return_exceptions=True,
        )

        conflicts = [o for o in outcomes if isinstance(o, WrongExpectedVersion)]
        assert len(conflicts) == 1, outcomes
        assert conflicts[0].actual == 0
        assert len(await first.read_stream("s")) == 1
    finally:
        await first.close()
        await second.close()


async def test_optimistic_retries_lose_nothing_and_really_conflict(tmp_path: Path) -> None:
    path = tmp_path / "retry.db"
    stores = [await SqliteEventStore.open(path) for _ in range(2)]
    conflicts = 0
    per_task = 25

    async def increment(store: SqliteEventStore) -> None:
        nonlocal conflicts
        for _ in range(per_task):
            while True:
                version = await store.stream_version("counter")
                expected = StreamState.NO_STREAM if version is None else version
                try:
                    await store.append([StreamAppend("counter", expected, [new_event()])])
                    break
                except WrongExpectedVersion:
                    conflicts += 1

    try:
        await asyncio.gather(*(increment(s) for s in stores for _ in range(2)))
        events = await stores[0].read_stream("counter")
    finally:
        for s in stores:
            await s.close()

    assert conflicts > 0
    assert [e.stream_version for e in events] == list(range(4 * per_task))


async def test_read_many_reads_every_stream_in_one_read_transaction(
    store: SqliteEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.append(
        [
            StreamAppend("a", StreamState.NO_STREAM, [new_event(0)]),
            StreamAppend("b", StreamState.NO_STREAM, [new_event(1)]),
        ]
    )
    other = await SqliteEventStore.open(tmp_path / "store.db")
    read_one = store._read_stream_sync

    def read_then_let_another_writer_in(stream: str, version: int) -> list[RecordedEvent]:
        answer = read_one(stream, version)
        if stream == "a":  # between the two reads, from another thread and event loop
            write = other.append([StreamAppend("b", 0, [new_event(2)])])
            with ThreadPoolExecutor(1) as elsewhere:
                elsewhere.submit(asyncio.run, write).result(10)
        return answer

    monkeypatch.setattr(store, "_read_stream_sync", read_then_let_another_writer_in)
    try:
        a, b = await store.read_many([("a", 0), ("b", 0)])
    finally:
        await other.close()

    assert [e.stream_version for e in a + b] == [0, 0]  # b as it was when a was read
    assert len(await store.read_stream("b")) == 2  # and the other writer did commit


class _RollbackRefusedOnce:
    """The store's connection, but its first ROLLBACK fails as a disk error would make it, and
    the transaction stays open."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.refused = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "ROLLBACK" and not self.refused:
            self.refused += 1
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)


async def test_a_failed_rollback_does_not_stop_every_later_write(store: SqliteEventStore) -> None:
    """An append that fails (a version conflict), then whose ROLLBACK fails too, leaves the
    transaction open: the next append ends it first and writes, rather than failing for good
    with "cannot start a transaction within a transaction". Nothing of the failed one stays."""
    await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(0)])])
    conn = store._conn
    assert conn is not None
    refusing = _RollbackRefusedOnce(conn)
    store._conn = refusing  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        await store.append([StreamAppend("s", StreamState.NO_STREAM, [new_event(1)])])
    assert refusing.refused == 1
    assert conn.in_transaction
    done = await store.append([StreamAppend("s", 0, [new_event(2)])])
    assert done.stream_versions == {"s": 1}
    assert [e.data for e in await store.read_stream("s")] == [b'{"n": 0}', b'{"n": 2}']
