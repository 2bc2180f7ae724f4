"""OpenTelemetry for a qis process: traces, metrics and the Prometheus scrape endpoint, all off
unless configured (docs/observability.md).

Off, the default, costs nothing on the hot paths: no interceptor is installed, no exporter runs,
and the instruments the components create through the OpenTelemetry API are no-op ones. On:

- traces when OTEL_TRACES_EXPORTER names exporters (`otlp`, `console`; comma-separated), sent
  where the standard OTEL_EXPORTER_OTLP_* variables say and sampled as OTEL_TRACES_SAMPLER says.
  Unlike the SDK's own default (`otlp`), unset means none: a process must not try to reach a
  collector nobody runs.
- metrics on the Prometheus endpoint when QIS_METRICS_ADDRESS is set, and over OTLP when
  OTEL_METRICS_EXPORTER names `otlp` (every OTEL_METRIC_EXPORT_INTERVAL ms).

OTEL_SDK_DISABLED=true turns everything off whatever the rest says; OTEL_SERVICE_NAME replaces
the process's own name (qis-command, ...). The providers become the OpenTelemetry globals, so a
meter any module obtains with `opentelemetry.metrics.get_meter(...)` is exported too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from qis_runtime.auth import ConfigurationError

log = logging.getLogger(__name__)

TRACE_HEADERS = ("traceparent", "tracestate")
"""The W3C trace context, as call metadata and as event metadata keys."""
DURATION_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
)  # fmt: skip
"""Histogram buckets of call durations in seconds; the SDK's defaults are meant for ms."""
RPC_DURATION = "rpc.server.call.duration"
_W3C = TraceContextTextMapPropagator()  # no baggage: events keep the trace context only
_TRUE = ("true", "1", "yes")


@dataclass
class Telemetry:
    """What a process exports; both providers None: nothing (the default)."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    metrics_port: int = 0
    """Where the Prometheus endpoint listens (0: none)."""
    _stops: list[Callable[[], object]] = field(default_factory=list)

    def tracer(self, name: str) -> trace.Tracer | None:
        """None when tracing is off: callers skip building what spans would carry."""
        return None if self.tracer_provider is None else self.tracer_provider.get_tracer(name)

    def meter(self, name: str) -> metrics.Meter:
        provider = self.meter_provider or metrics.NoOpMeterProvider()
        return provider.get_meter(name)

    def shutdown(self) -> None:
        """Flushes what is pending (spans, a last OTLP metrics export) and stops the endpoint."""
        for stop in reversed(self._stops):
            stop()
        self._stops.clear()


_active = Telemetry()


def active() -> Telemetry:
    """The process's telemetry (off until `configure_telemetry` or `install`)."""
    return _active


def install(telemetry: Telemetry) -> Telemetry:
    """Makes `telemetry` the process's, for servers built from now on (tests install their own
    providers this way, without touching the OpenTelemetry globals)."""
    global _active
    _active = telemetry
    return telemetry


def configure_telemetry(
    process: str, metrics_address: str, environ: Mapping[str, str] = os.environ
) -> Telemetry:
    """Reads the OTEL_* variables (and QIS_METRICS_ADDRESS as `metrics_address`), starts what
    they ask for, makes it the process's telemetry and the OpenTelemetry globals. Raises
    ConfigurationError for an exporter it does not know, OSError when the endpoint cannot
    listen."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return install(Telemetry())
    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or process})
    telemetry = Telemetry()
    span_exporters = [_span_exporter(n) for n in _names(environ, "OTEL_TRACES_EXPORTER")]
    readers = [_metric_reader(n) for n in _names(environ, "OTEL_METRICS_EXPORTER")]
    if metrics_address:
        reader, port, stop = _prometheus(metrics_address)
        readers.append(reader)
        telemetry.metrics_port = port
        telemetry._stops.append(stop)
        log.info("metrics on http://%s:%d/metrics", metrics_address.rpartition(":")[0], port)
    if span_exporters:
        tracer_provider = TracerProvider(resource=resource)
        for exporter in span_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        telemetry.tracer_provider = tracer_provider
        telemetry._stops.append(tracer_provider.shutdown)
    if readers:
        meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        metrics.set_meter_provider(meter_provider)
        telemetry.meter_provider = meter_provider
        telemetry._stops.append(meter_provider.shutdown)
    return install(telemetry)


def _names(environ: Mapping[str, str], variable: str) -> list[str]:
    names = [n.strip().lower() for n in environ.get(variable, "").split(",")]
    return [n for n in names if n and n != "none"]


def _span_exporter(name: str) -> SpanExporter:
    if name == "otlp":
        # Imported only when used: it loads the whole OTLP protobuf and gRPC exporter stack.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, TLS: OTEL_EXPORTER_OTLP_*
    if name == "console":
        return ConsoleSpanExporter()
    raise ConfigurationError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console)")


def _metric_reader(name: str) -> MetricReader:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return PeriodicExportingMetricReader(OTLPMetricExporter())
    raise ConfigurationError(
        f"OTEL_METRICS_EXPORTER: unknown exporter {name!r} (otlp; Prometheus is served on"
        " QIS_METRICS_ADDRESS)"
    )


def _prometheus(address: str) -> tuple[MetricReader, int, Callable[[], object]]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"QIS_METRICS_ADDRESS: {address!r} is not host:port")
    # A registry of the process's own: the OpenTelemetry metrics and the process's CPU, memory
    # and file descriptors, nothing that happened to register in prometheus_client's global one.
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry)
    server, _thread = start_http_server(int(port), host.strip("[]"), registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return reader, server.server_port, stop


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """What QisServer puts before its own interceptors; none when telemetry is off."""
    if _active.tracer_provider is None and _active.meter_provider is None:
        return []
    tracer = _active.tracer("qis.rpc")
    meter = None if _active.meter_provider is None else _active.meter("qis.rpc")
    return [CallTelemetry(tracer, meter)]


def current_trace_context(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> dict[str, str]:
    """The W3C trace context to store in the metadata of the events a call causes: the current
    span's (the call's server span, when tracing is on); else the caller's own headers as they
    came, so that a trace the caller started reaches the events even when this process traces
    nothing."""
    if trace.get_current_span().get_span_context().is_valid:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        return carrier
    return {k: v for k, v in metadata or () if k in TRACE_HEADERS and isinstance(v, str)}


def link_to(traceparent: str, tracestate: str = "") -> Link | None:
    """A span link to a stored trace context; None when there is none or it is malformed. A
    link, not a parent: the work it records happens later, and maybe many times (a replay)."""
    if not traceparent:
        return None
    context = _W3C.extract({"traceparent": traceparent, "tracestate": tracestate})
    span_context = trace.get_current_span(context).get_span_context()
    return Link(span_context) if span_context.is_valid else None


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""The codes that mark a server span as failed (OpenTelemetry's semantic conventions for gRPC):
the others are the caller's to fix (INVALID_ARGUMENT, NOT_FOUND, ...)."""


class CallTelemetry(grpc.aio.ServerInterceptor):
    """Per call to a method the server has (unknown methods would make the labels unbounded):
    a server span, child of the caller's W3C traceparent when it sends one (`tracer`), and its
    duration in `rpc.server.call.duration` (s) by rpc.service, rpc.method and
    rpc.grpc.status_code (`meter`).

    Not opentelemetry-instrumentation-grpc's aio interceptor: it fails every streaming method
    that writes with `context.write()` instead of yielding, as QueryRange does
    (open-telemetry/opentelemetry-python-contrib#3066, open)."""

    def __init__(self, tracer: trace.Tracer | None, meter: metrics.Meter | None) -> None:
        self._tracer = tracer
        self._duration = None
        if meter is not None:
            self._duration = meter.create_histogram(
                RPC_DURATION,
                unit="s",
                description="Duration of the calls this server answered, streams included.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        service, _, name = method.lstrip("/").partition("/")
        labels = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        return _observed(handler, _Call(method, labels, self._tracer, self._duration))


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    labels: dict[str, str]
    tracer: trace.Tracer | None
    duration: metrics.Histogram | None

    def start(self, context: grpc.aio.ServicerContext[Any, Any]) -> trace.Span | None:
        """The call's span, made current for the rest of the call's task (each call has a task
        of its own: nothing leaks, and nothing needs detaching from a stream's finaliser)."""
        if self.tracer is None:
            return None
        caller = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        span = self.tracer.start_span(
            self.method,
            context=_W3C.extract(caller),
            kind=trace.SpanKind.SERVER,
            attributes=self.labels,
        )
        otel_context.attach(trace.set_span_in_context(span))
        return span

    def end(
        self,
        started: float,
        span: trace.Span | None,
        context: grpc.aio.ServicerContext[Any, Any],
        error: BaseException | None,
    ) -> None:
        code = _code(context, error)
        if self.duration is not None:
            self.duration.record(
                time.perf_counter() - started,
                {**self.labels, "rpc.grpc.status_code": code.value[0]},
            )
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in _SERVER_FAULTS:
                span.set_status(trace.StatusCode.ERROR, code.name)
            span.end()


def _code(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
) -> grpc.StatusCode:
    code = context.code()  # what the call set or aborted with
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _observed(handler: Handler, observe: _Call) -> Handler:
    h: Any = handler

    def unary(behavior: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, span, error = time.perf_counter(), observe.start(context), None
            try:
                return await behavior(request, context)
            except BaseException as failure:
                error = failure
                raise
            finally:
                observe.end(started, span, context, error)

        return call

    def streaming(behavior: Any) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            return unary(behavior)  # streams with context.write()

        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            started, span, error = time.perf_counter(), observe.start(context), None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as failure:
                error = failure
                raise
            finally:
                observe.end(started, span, context, error)

        return call

    decode, encode = h.request_deserializer, h.response_serializer
    if h.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(h.unary_unary), decode, encode)
    if h.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(h.stream_unary), decode, encode)
    if h.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(h.unary_stream), decode, encode)
    return grpc.stream_stream_rpc_method_handler(streaming(h.stream_stream), decode, encode)
