"""One trace from a client's call through qis-command, the event append, the projector (a span
linked through the trace context stored in the events) and qis-query, with the real servers,
interceptors and projector in this process and the spans in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc.aio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from qis.data.v1 import command_service_pb2_grpc as c_grpc
from qis.data.v1 import query_service_pb2 as q
from qis_adapters.eventstore.instrumented import InstrumentedEventStore
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_projector.application.projector import Projector
from qis_query.settings import QuerySettings
from qis_runtime.telemetry import Telemetry, active, install

from tests.e2e.harness import US, Clients, ingest_request, price_series, setup_series
from tests.support.servers import query_service

SNAP = 1_704_229_200 * US


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = install(active())
    install(Telemetry(tracer_provider=provider))
    try:
        yield provider, exporter
    finally:
        install(previous)


def traced(user: str) -> tuple[tuple[str, str], ...]:
    """The caller's identity and the W3C context of the current (client) span."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return (("x-qis-user", user), *carrier.items())


def named(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


async def test_one_trace_from_the_client_to_the_query(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    client = provider.get_tracer("client")
    events = InstrumentedEventStore(InMemoryEventStore(), tracer=provider.get_tracer("store"))
    settings = CommandSettings(auth="dev", command_address="127.0.0.1:0", scheduler_enabled=False)
    command = await build(settings, store=events)
    port = await command.server.start()
    writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    query_settings = QuerySettings(auth="dev", query_address="127.0.0.1:0", flight_address="")
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
            query_service(InMemoryReadStore(writer.database), query_settings) as query_stub,
        ):
            c = Clients(c_grpc.CommandServiceStub(channel), query_stub)
            with client.start_as_current_span("client work") as root:
                await setup_series(c, "SPX", price_series([("bbg", 1)]))
                ingested = await c.command.IngestPoints(
                    ingest_request("ingest-1", "SPX", "bbg", [(SNAP, "4700.5")]),
                    metadata=traced("alice"),
                )
                projector = Projector(events, writer, tracer=provider.get_tracer("projector"))
                await asyncio.wait_for(projector.run(until_position=ingested.commit_position), 10)
                request = q.QueryRangeRequest(series="series/SPX")
                replies = [r async for r in c.query.QueryRange(request, metadata=traced("bob"))]
    finally:
        await command.server.stop(0)
        await command.close()
    assert [v.value.price.value for r in replies for v in r.values] == ["4700.5"]

    finished = exporter.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    (ingest,) = named(finished, "/qis.data.v1.CommandService/IngestPoints")
    assert ingest.kind == trace.SpanKind.SERVER
    assert ingest.context.trace_id == trace_id
    assert ingest.parent is not None
    assert ingest.parent.span_id == root.get_span_context().span_id
    appends = [
        s
        for s in named(finished, "eventstore append")
        if s.parent and s.parent.span_id == ingest.context.span_id
    ]
    assert len(appends) == 1
    assert appends[0].context.trace_id == trace_id
    # The projector ran later, in its own trace: linked to the events' trace, not a child of it.
    batches = named(finished, "projector batch")
    assert batches
    assert all(b.context.trace_id != trace_id for b in batches)
    linked = {link.context.trace_id for b in batches for link in b.links}
    assert trace_id in linked
    (query,) = named(finished, "/qis.data.v1.QueryService/QueryRange")
    assert query.context.trace_id == trace_id
    assert query.kind == trace.SpanKind.SERVER
