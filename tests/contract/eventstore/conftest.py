"""The event-store contract runs against every adapter through the `store` fixture."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qis_adapters.eventstore.kurrentdb import KurrentDbEventStore
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import EventStore
from qis_adapters.eventstore.sqlite import SqliteEventStore

KURRENTDB_URI_ENV = "QIS_TEST_KURRENTDB_URI"


@pytest.fixture(
    params=["sqlite", "memory", pytest.param("kurrentdb", marks=pytest.mark.kurrentdb)],
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    adapter: EventStore
    if request.param == "sqlite":
        adapter = await SqliteEventStore.open(tmp_path / "events" / "store.db")
    elif request.param == "memory":
        adapter = InMemoryEventStore()
    else:
        uri = os.environ.get(KURRENTDB_URI_ENV)
        if not uri:
            pytest.skip(
                f"{KURRENTDB_URI_ENV} not set: KurrentDB adapter not exercised against a live"
                " server"
            )
        adapter = await KurrentDbEventStore.connect(uri)
    try:
        yield adapter
    finally:
        await adapter.close()
