"""Chooses the read-store adapter from a URI, so processes are configured by one setting. The
store it opens measures its calls (qis_adapters.readstore.instrumented) when the process's
telemetry is on."""

from __future__ import annotations

from typing import Protocol

from qis_adapters.readstore.instrumented import InstrumentedReadStore
from qis_adapters.readstore.port import GenerationAdmin, ReadStore
from qis_adapters.timing import telemetry_configured

_SQLITE_SCHEME = "sqlite:///"
_MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
DEFAULT_MONGO_DATABASE = "qis"


class AdministeredReadStore(ReadStore, GenerationAdmin, Protocol):
    pass


async def open_read_store(
    uri: str, generation: str | None, database: str = DEFAULT_MONGO_DATABASE
) -> AdministeredReadStore:
    """`generation`: the one this instance writes (the projector), None to read the active one."""
    store = await _open(uri, generation, database)
    return InstrumentedReadStore(store) if telemetry_configured() else store


async def _open(uri: str, generation: str | None, database: str) -> AdministeredReadStore:
    if uri.startswith(_SQLITE_SCHEME):
        from qis_adapters.readstore.sqlite import SqliteReadStore

        return await SqliteReadStore.open(uri[len(_SQLITE_SCHEME) :], generation)
    if uri.startswith(_MONGO_SCHEMES):
        from qis_adapters.readstore.mongodb import MongoReadStore

        return await MongoReadStore.open(uri, database, generation)
    raise ValueError(f"unsupported read store URI {uri!r}: use sqlite:///PATH or mongodb://HOST")
