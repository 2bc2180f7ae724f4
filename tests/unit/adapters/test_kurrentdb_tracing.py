"""kurrentdbclient's own spans (its OpenTelemetry instrumentation) are turned on with tracing,
and only then: off, the client class is left exactly as the library made it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kurrentdbclient import AsyncKurrentDBClient
from kurrentdbclient.instrumentation.opentelemetry import AsyncKurrentDBClientInstrumentor
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from qis_adapters.eventstore import factory

# What our adapter calls: the appends and the catch-up subscription.
TRACED = ("multi_append_to_stream", "append_to_stream", "subscribe_to_all")


@pytest.fixture
def untouched() -> Iterator[None]:
    assert not AsyncKurrentDBClientInstrumentor().is_instrumented_by_opentelemetry
    yield
    instrumentor = AsyncKurrentDBClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def test_without_tracing_the_client_is_not_patched(untouched: None) -> None:
    before = {name: getattr(AsyncKurrentDBClient, name) for name in TRACED}
    assert not factory.trace_kurrentdb_client()
    assert {name: getattr(AsyncKurrentDBClient, name) for name in TRACED} == before


def test_with_tracing_the_clients_calls_make_spans(
    untouched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = TracerProvider()
    # The process's provider, as qis_runtime.telemetry sets it (the global can be set only once
    # per process, so the lookup is replaced here).
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    before = {name: getattr(AsyncKurrentDBClient, name) for name in TRACED}
    assert factory.trace_kurrentdb_client()
    assert factory.trace_kurrentdb_client()  # a second store: instrumented once
    for name in TRACED:
        patched = getattr(AsyncKurrentDBClient, name)
        assert patched is not before[name], name
        assert getattr(patched, "__wrapped__", None) is before[name], name
