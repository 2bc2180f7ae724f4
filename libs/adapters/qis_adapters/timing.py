"""How long store operations take, measured the same way for every store wrapper
(qis_adapters.eventstore.instrumented, qis_adapters.readstore.instrumented)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from opentelemetry import metrics, trace
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

T = TypeVar("T")
BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0
)  # fmt: skip
"""Store calls take from ~10 µs (an SQLite point read) to seconds (a large append on a busy
server): finer than the SDK's default buckets, which are meant for milliseconds."""


def telemetry_configured() -> bool:
    """Whether the process exports metrics or traces (qis_runtime.telemetry set the
    OpenTelemetry globals): the factories wrap their stores only then, so that measuring costs
    nothing (not even a wrapper's call, ~0.5 µs) when it is off."""
    return isinstance(metrics.get_meter_provider(), MeterProvider) or isinstance(
        trace.get_tracer_provider(), TracerProvider
    )


class OperationTimer:
    """A histogram of durations in seconds labelled by `operation`, and by `error.type` (the
    exception's class, a bounded set) for the calls that raised."""

    def __init__(self, meter: Meter, name: str, description: str) -> None:
        self._histogram = meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=BUCKETS_S
        )

    async def measure(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        labels = {"operation": operation}
        try:
            return await call
        except BaseException as error:
            labels["error.type"] = type(error).__name__
            raise
        finally:
            self._histogram.record(time.perf_counter() - started, labels)
