"""The measuring store wrappers: the wrapped store's answers and errors unchanged, a duration per
call by operation (and error type), an append span only inside a traced call, and no wrapper at
all while the process's telemetry is off."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from qis_adapters.eventstore.factory import open_event_store
from qis_adapters.eventstore.instrumented import InstrumentedEventStore
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import NewEvent, StreamAppend, StreamState, WrongExpectedVersion
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.readstore.factory import open_read_store
from qis_adapters.readstore.instrumented import InstrumentedReadStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.sqlite import SqliteReadStore


def durations(reader: InMemoryMetricReader) -> dict[frozenset[tuple[str, Any]], int]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        frozenset((point.attributes or {}).items()): point.count
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name.endswith(".duration")
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    }


def event() -> NewEvent:
    return NewEvent(uuid.uuid4(), "Tested", b"{}", b"{}")


async def test_the_event_store_answers_as_before_and_is_measured() -> None:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    inner = InMemoryEventStore()
    store = InstrumentedEventStore(
        inner, MeterProvider(metric_readers=[reader]).get_meter("t"), tracing.get_tracer("t")
    )
    first = await store.append([StreamAppend("s", StreamState.NO_STREAM, [event(), event()])])
    with pytest.raises(WrongExpectedVersion) as refused:
        await store.append([StreamAppend("s", StreamState.NO_STREAM, [event()])])
    assert refused.value.stream == "s"
    with tracing.get_tracer("t").start_as_current_span("call"):
        await store.append([StreamAppend("s", first.stream_versions["s"], [event()])])
    assert await store.head_position() == await inner.head_position() == 3
    assert [r.position for r in await store.read_stream("s")] == [1, 2, 3]
    assert [r.position async for r in _first(store, 2)] == [1, 2]
    assert durations(reader) == {
        frozenset({("operation", "append")}): 2,
        frozenset({("operation", "append"), ("error.type", "WrongExpectedVersion")}): 1,
        frozenset({("operation", "head_position")}): 1,
        frozenset({("operation", "read_stream")}): 1,
    }
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["call", "eventstore append"]  # untraced: no span


async def _first(store: InstrumentedEventStore, n: int) -> Any:
    async for record in store.subscribe():
        yield record
        if record.position == n:
            return


async def test_the_read_store_times_every_call_by_name() -> None:
    reader = InMemoryMetricReader()
    inner = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    store: Any = InstrumentedReadStore(inner, MeterProvider(metric_readers=[reader]).get_meter("t"))
    await store.set_active_generation("g1")
    assert await store.checkpoint() is None
    assert await store.active_generation() == "g1"
    assert store.database is inner.database  # not a coroutine method: as it is
    with pytest.raises(AttributeError):
        _ = store.no_such_method
    assert durations(reader) == {
        frozenset({("operation", "set_active_generation")}): 1,
        frozenset({("operation", "checkpoint")}): 1,
        frozenset({("operation", "active_generation")}): 1,
    }


async def test_no_wrapper_while_telemetry_is_off(tmp_path: Path) -> None:
    events = await open_event_store(f"sqlite:///{tmp_path / 'events.db'}")
    reads = await open_read_store(f"sqlite:///{tmp_path / 'read.db'}", "g1")
    try:
        assert isinstance(events, SqliteEventStore)
        assert isinstance(reads, SqliteReadStore)
    finally:
        await reads.close()
        await events.close()
