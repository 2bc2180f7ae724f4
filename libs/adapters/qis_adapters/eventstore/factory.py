"""Chooses the event-store adapter from a URI, so processes are configured by one setting. The
store it opens measures its calls (qis_adapters.eventstore.instrumented) when the process's
telemetry is on."""

from __future__ import annotations

from qis_adapters.eventstore.instrumented import InstrumentedEventStore
from qis_adapters.eventstore.port import EventStore
from qis_adapters.timing import telemetry_configured

_KURRENT_SCHEMES = (
    "kdb://",
    "kdb+discover://",
    "kurrentdb://",
    "kurrentdb+discover://",
    "esdb://",
    "esdb+discover://",
)
_SQLITE_SCHEME = "sqlite:///"


async def open_event_store(uri: str) -> EventStore:
    """`sqlite:///relative/or//absolute/path.db`, or a KurrentDB/EventStoreDB connection string."""
    store = await _open(uri)
    return InstrumentedEventStore(store) if telemetry_configured() else store


async def _open(uri: str) -> EventStore:
    if uri.startswith(_SQLITE_SCHEME):
        from qis_adapters.eventstore.sqlite import SqliteEventStore

        return await SqliteEventStore.open(uri[len(_SQLITE_SCHEME) :])
    if uri.startswith(_KURRENT_SCHEMES):
        from qis_adapters.eventstore.kurrentdb import KurrentDbEventStore

        return await KurrentDbEventStore.connect(uri)
    raise ValueError(f"unsupported event store URI {uri!r}: use sqlite:///PATH or kdb://HOST:PORT")
