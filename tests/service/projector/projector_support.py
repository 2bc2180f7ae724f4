"""Helpers of the projector tests: events written straight into an event store (as the command
service would have), and faults of the read store's own SQLite connection."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import EventStore, NewEvent, StreamAppend, StreamState
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.commands import CommandContext
from qis_domain.events import DataIngested, DomainEvent
from qis_domain.values import DataType

US = 1_000_000
BASE_US = 1_704_067_200 * US  # 2024-01-01T00:00:00Z
POISON_SNAP_US = 2**62 * US
"""A snap 2^62 seconds after the epoch, in microseconds: beyond int64, so no read store can hold it."""

CODEC = EventCodec()


def ingested(series_id: str, first_us: int, count: int) -> DataIngested:
    """`count` prices one second apart from `first_us`."""
    return DataIngested(
        series_id=series_id,
        source_id="feed",
        data_type=DataType.PRICE,
        unit="USD",
        snaps=[first_us + i * US for i in range(count)],
        offsets=[0] * count,
        values=[f"{100 + i % 97}.25" for i in range(count)],
    )


def encode(stream: str, event: DomainEvent) -> NewEvent:
    context = CommandContext(f"cmd-{uuid.uuid4().hex}", "tester", BASE_US)
    (record,) = CODEC.encode(stream, [event], context)
    return record


def overflowing_snap(stream: str, series_id: str) -> NewEvent:
    """An ingest of one point at POISON_SNAP_US, written as a bug of the command side would (the
    domain may refuse to build such an event, but the log can hold one all the same)."""
    record = encode(stream, ingested(series_id, BASE_US, 1))
    payload = json.loads(record.data)
    payload["snaps"] = [POISON_SNAP_US]
    return dataclasses.replace(record, data=json.dumps(payload).encode())


async def append(events: EventStore, stream: str, record: DomainEvent | NewEvent) -> int:
    """Appends one event; returns its commit position."""
    new = record if isinstance(record, NewEvent) else encode(stream, record)
    result = await events.append([StreamAppend(stream, StreamState.ANY, [new])])
    return result.position


async def write_log(events: EventStore, count: int, points: int) -> list[int]:
    """`count` ingest events of `points` points each, over two series; returns their positions."""
    return [
        await append(
            events,
            f"series/S{i % 2}/points/{i // 2}",
            ingested(f"S{i % 2}", BASE_US + (i // 2) * points * US, points),
        )
        for i in range(count)
    ]


@dataclass
class SqliteFaults:
    """Faults of one SQLite connection, switched on and off while it is in use.

    `PRAGMA max_page_count` (a full disk) and `PRAGMA query_only` (a read-only database) act on
    the connection that sets them, not on the file: they have to be set on the read store's own
    connection, in the thread that owns it. The connection class below does so before each
    statement it runs once a switch has changed; the store opens a transaction with `execute`
    before any write, so every write sees the current switches.
    """

    disk_full: bool = False
    read_only: bool = False

    def connection_class(self) -> type[sqlite3.Connection]:
        faults = self

        class FaultyConnection(sqlite3.Connection):
            applied = (False, False)
            unlimited_pages = 0

            def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
                if not self.unlimited_pages:
                    (self.unlimited_pages,) = super().execute("PRAGMA max_page_count").fetchone()
                wanted = (faults.disk_full, faults.read_only)
                if wanted != self.applied:
                    self.applied = wanted
                    # Below the file's size SQLite keeps the size: nothing more fits.
                    pages = 1 if faults.disk_full else self.unlimited_pages
                    super().execute(f"PRAGMA max_page_count = {pages}")
                    super().execute(f"PRAGMA query_only = {int(faults.read_only)}")
                return super().execute(sql, parameters)

        return FaultyConnection


async def open_faulty_read_store(
    path: Path, generation: str, faults: SqliteFaults, monkeypatch: pytest.MonkeyPatch
) -> SqliteReadStore:
    """A real SqliteReadStore whose connection obeys `faults`."""
    connect = sqlite3.connect

    def faulty_connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(database, *args, factory=faults.connection_class(), **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", faulty_connect)
        return await SqliteReadStore.open(path, generation)
