"""The read-store contract runs against every adapter through the `backend` fixture.

- sqlite: always, on a fresh file per test;
- memory: always, on a fresh in-memory database per test;
- ferretdb: always, on a fresh database per test of one FerretDB process per session. A missing
  FerretDB binary FAILS the run (run scripts/setup_ferretdb.sh): a MongoDB adapter that silently
  went untested would look green;
- mongodb: a real server when QIS_TEST_MONGODB_URI is set, skipped with a warning otherwise.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest
from pymongo import AsyncMongoClient
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.mongodb import MongoReadStore
from qis_adapters.readstore.port import (
    FORMAT_KEY_PREFIX,
    GENERATION_KEY_PREFIX,
    GenerationAdmin,
    ReadStore,
)
from qis_adapters.readstore.sqlite import SqliteReadStore

from tests.support.ferretdb import start_ferretdb
from tests.support.mongo import drop_database

MONGODB_URI_ENV = "QIS_TEST_MONGODB_URI"


class Adapter(ReadStore, GenerationAdmin, Protocol):
    async def dump_all(self, generation: str | None = None) -> dict[str, object]: ...


@dataclass
class Backend:
    """Opens stores of one adapter on one fresh database; closes them all at teardown."""

    name: str
    connect: Callable[[str | None], Awaitable[Adapter]]
    unrecord: Callable[[str], Awaitable[None]]
    """Removes a generation's format record: it then looks built before formats were."""
    uri: str = ""  # MongoDB variants: where `database` lives
    database: str = ""
    opened: list[Adapter] = field(default_factory=list)

    async def open(self, generation: str | None = None) -> Adapter:
        """A writer of `generation`, or a reader (of the active generation) when None."""
        store = await self.connect(generation)
        self.opened.append(store)
        return store


@pytest.fixture(scope="session")
def ferretdb_uri() -> Iterator[str]:
    server = start_ferretdb()  # raises when the binary is missing: the suite must fail then
    try:
        yield server.uri
    finally:
        server.stop()


async def _mongo_backend(name: str, uri: str) -> AsyncIterator[Backend]:
    database = f"qis_contract_{uuid.uuid4().hex[:16]}"

    async def connect(generation: str | None) -> Adapter:
        return await MongoReadStore.open(uri, database, generation)

    async def unrecord(generation: str) -> None:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
        try:
            meta = client[database]["meta"]
            key = GENERATION_KEY_PREFIX + generation
            await meta.update_one({"_id": key}, {"$unset": {"format": ""}})
        finally:
            await client.close()

    backend = Backend(name, connect, unrecord, uri, database)
    try:
        yield backend
    finally:
        for store in backend.opened:
            await store.close()
        await drop_database(uri, database)


def _mongodb_uri() -> str:
    uri = os.environ.get(MONGODB_URI_ENV, "")
    if not uri:
        message = f"{MONGODB_URI_ENV} not set: MongoReadStore NOT run against a real MongoDB"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    return uri


@pytest.fixture(params=["ferretdb", "mongodb"])
async def mongo_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The MongoDB adapter only (FerretDB always, a real server when configured)."""
    name: str = request.param
    uri = request.getfixturevalue("ferretdb_uri") if name == "ferretdb" else _mongodb_uri()
    async for backend in _mongo_backend(name, uri):
        yield backend


def _local_backend(name: str, tmp_path: Path) -> Backend:
    """A backend of an adapter that needs no server, on this test's fresh database."""
    if name == "sqlite":
        path = tmp_path / "read.db"

        async def connect_sqlite(generation: str | None) -> Adapter:
            return await SqliteReadStore.open(path, generation)

        async def unrecord_sqlite(generation: str) -> None:
            conn = sqlite3.connect(path)
            try:
                with conn:
                    conn.execute(
                        "DELETE FROM meta WHERE key = ?", (FORMAT_KEY_PREFIX + generation,)
                    )
            finally:
                conn.close()

        return Backend(name, connect_sqlite, unrecord_sqlite)
    database = InMemoryReadDatabase()

    async def connect_memory(generation: str | None) -> Adapter:
        return InMemoryReadStore(database, generation)

    async def unrecord_memory(generation: str) -> None:
        built = database.generation(generation)
        assert built is not None
        built.format = None

    return Backend(name, connect_memory, unrecord_memory)


@pytest.fixture(params=["sqlite", "memory", "ferretdb", "mongodb"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    name: str = request.param
    if name in ("ferretdb", "mongodb"):
        uri = request.getfixturevalue("ferretdb_uri") if name == "ferretdb" else _mongodb_uri()
        async for mongo in _mongo_backend(name, uri):
            yield mongo
        return

    backend = _local_backend(name, tmp_path)
    try:
        yield backend
    finally:
        for store in backend.opened:
            await store.close()


@pytest.fixture
async def store(backend: Backend) -> Adapter:
    """A writer of generation g1, which is active: what most of the contract needs."""
    writer = await backend.open("g1")
    await writer.set_active_generation("g1")
    return writer
