"""An EventStore that measures its calls (docs/observability.md): exactly the port's semantics,
as it only delegates; what it adds is a duration per call, a count of appended events and,
within a traced call, a span per append (the trace goes client → command → append)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from opentelemetry import metrics, trace

from qis_adapters.eventstore.port import (
    AppendResult,
    EventFilter,
    EventStore,
    RecordedEvent,
    StreamAppend,
)
from qis_adapters.timing import OperationTimer

SCOPE = "qis.eventstore"
DURATION = "qis.eventstore.duration"
APPENDED = "qis.eventstore.appended"


class InstrumentedEventStore:
    def __init__(
        self,
        inner: EventStore,
        meter: metrics.Meter | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """`meter`, `tracer`: the OpenTelemetry globals' by default (no-op until a process
        configures its telemetry)."""
        self._inner = inner
        meter = meter or metrics.get_meter(SCOPE)
        self._tracer = tracer or trace.get_tracer(SCOPE)
        self._timer = OperationTimer(meter, DURATION, "Duration of event-store calls.")
        self._appended = meter.create_counter(
            APPENDED, unit="{event}", description="Events appended to the event store."
        )

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        if not trace.get_current_span().is_recording():  # untraced: no span to start
            return await self._append(appends)
        with self._tracer.start_as_current_span("eventstore append") as span:
            span.set_attribute("qis.streams", len(appends))
            result = await self._append(appends)
            span.set_attribute("qis.position", result.position)
            return result

    async def _append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        result = await self._timer.measure("append", self._inner.append(appends))
        self._appended.add(sum(len(a.events) for a in appends))
        return result

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        return await self._timer.measure(
            "read_stream", self._inner.read_stream(stream, from_version)
        )

    async def read_many(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        return await self._timer.measure("read_many", self._inner.read_many(reads))

    async def stream_version(self, stream: str) -> int | None:
        return await self._timer.measure("stream_version", self._inner.stream_version(stream))

    def subscribe(
        self, after_position: int | None = None, event_filter: EventFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        return self._inner.subscribe(after_position, event_filter)

    async def head_position(self) -> int:
        return await self._timer.measure("head_position", self._inner.head_position())

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        """What an adapter offers beyond the port (its own tools), unmeasured."""
        return getattr(self._inner, name)
