"""Chooses the event-store adapter from a URI, so processes are configured by one setting. The
store it opens measures its calls (qis_adapters.eventstore.instrumented) when the process's
telemetry is on; with tracing on, a KurrentDB client also makes its own spans (kurrentdbclient's
OpenTelemetry instrumentation: appends, reads and subscriptions, with the server's details)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

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

        trace_kurrentdb_client()
        return await KurrentDbEventStore.connect(uri)
    raise ValueError(f"unsupported event store URI {uri!r}: use sqlite:///PATH or kdb://HOST:PORT")


def trace_kurrentdb_client() -> bool:
    """Turns on kurrentdbclient's own spans when this process traces (its instrumentor patches
    the client class once, for every client made after); whether they are on."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return False
    from kurrentdbclient.instrumentation.opentelemetry import AsyncKurrentDBClientInstrumentor

    instrumentor = AsyncKurrentDBClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    return True
