"""qis_runtime.telemetry: off by default (no interceptor at all), the configuration refusals,
the trace context stored in events, and the call interceptor on a real grpc.aio server: the
duration by method and status, and a span per call for both ways of streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from qis_runtime.auth import ConfigurationError
from qis_runtime.telemetry import (
    RPC_DURATION,
    CallTelemetry,
    Telemetry,
    active,
    configure_telemetry,
    current_trace_context,
    install,
    link_to,
    server_interceptors,
)

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STREAM = "/test.Streams/Write"


@pytest.fixture(autouse=True)
def restore_telemetry() -> Iterator[None]:
    previous = active()
    yield
    install(previous)


def test_off_by_default_nothing_is_installed() -> None:
    telemetry = configure_telemetry("qis-test", "", {})
    assert (telemetry.tracer_provider, telemetry.meter_provider, telemetry.metrics_port) == (
        None,
        None,
        0,
    )
    assert server_interceptors() == []
    assert telemetry.tracer("x") is None


def test_sdk_disabled_wins_over_everything() -> None:
    environ = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
    telemetry = configure_telemetry("qis-test", "127.0.0.1:0", environ)
    assert telemetry.tracer_provider is None
    assert telemetry.meter_provider is None
    assert telemetry.metrics_port == 0


@pytest.mark.parametrize(
    ("environ", "address", "names"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "", "OTEL_TRACES_EXPORTER"),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, "", "QIS_METRICS_ADDRESS"),
        ({}, "9464", "QIS_METRICS_ADDRESS"),
    ],
)
def test_refuses_what_it_cannot_do(environ: dict[str, str], address: str, names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        configure_telemetry("qis-test", address, environ)


def test_events_keep_the_callers_context_when_nothing_traces() -> None:
    metadata = (("x-qis-user", "alice"), ("traceparent", CALLER), ("tracestate", "k=v"))
    assert current_trace_context(metadata) == {"traceparent": CALLER, "tracestate": "k=v"}
    assert current_trace_context(None) == {}


def test_events_carry_the_current_span_when_traced() -> None:
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("server") as span:
        stored = current_trace_context((("traceparent", CALLER),))
    ids = span.get_span_context()
    assert stored["traceparent"].startswith(f"00-{ids.trace_id:032x}-{ids.span_id:016x}-")


def test_links_only_to_a_valid_context() -> None:
    link = link_to(CALLER)
    assert link is not None
    assert link.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert link_to("") is None
    assert link_to("00-not-a-context") is None


class _Health(health_aio.HealthServicer):  # type: ignore[misc]
    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        if request.service == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such service")
        if request.service == "bug":
            raise RuntimeError("a bug")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def _written(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """A stream written with context.write(), as QueryRange does."""
    for chunk in (b"a", b"b"):
        await context.write(chunk)


async def test_calls_are_measured_and_traced_however_they_stream() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    server = grpc.aio.server(interceptors=[CallTelemetry(tracing.get_tracer("t"), meter)])
    health_pb2_grpc.add_HealthServicer_to_server(_Health(), server)
    streams = grpc.method_handlers_generic_handler(
        "test.Streams", {"Write": grpc.unary_stream_rpc_method_handler(_written)}
    )
    server.add_generic_rpc_handlers((streams,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            metadata = (("traceparent", CALLER),)
            await stub.Check(health_pb2.HealthCheckRequest(), metadata=metadata)
            await stub.Check(health_pb2.HealthCheckRequest())
            for service in ("missing", "bug"):
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Check(health_pb2.HealthCheckRequest(service=service))
            written: Any = channel.unary_stream(STREAM)(b"")  # type: ignore[arg-type]
            assert [m async for m in _messages(written)] == [b"a", b"b"]
    finally:
        await server.stop(0)

    counts = {
        (
            dict(p.attributes or {})["rpc.method"],
            dict(p.attributes or {})["rpc.grpc.status_code"],
        ): p.count
        for p in _points(reader)
    }
    assert counts == {("Check", 0): 2, ("Check", 5): 1, ("Check", 2): 1, ("Write", 0): 1}
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans].count("/grpc.health.v1.Health/Check") == 4
    (stream,) = [s for s in spans if s.name == STREAM]
    assert stream.kind == trace.SpanKind.SERVER
    (child,) = [s for s in spans if s.parent is not None]  # only the call that sent a context
    assert child.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    failed = {dict(s.attributes or {})["rpc.grpc.status_code"]: s.status.is_ok for s in spans}
    assert failed == {0: True, 5: True, 2: False}  # NOT_FOUND is the caller's; UNKNOWN ours


async def _messages(call: Any) -> AsyncIterator[bytes]:
    async for message in call:
        yield message


def _points(reader: InMemoryMetricReader) -> list[HistogramDataPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == RPC_DURATION
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    ]


def test_a_telemetry_without_providers_has_no_interceptor() -> None:
    install(Telemetry())
    assert server_interceptors() == []
    install(Telemetry(meter_provider=MeterProvider()))
    assert [type(i) for i in server_interceptors()] == [CallTelemetry]
