"""The health watcher's gauge (qis_runtime.status): each refresh records every component's
status in `qis.component.status` (0 serving, 1 degraded, 2 not serving), on the telemetry the
process configured, so that an alert sees a component NOT_SERVING while its process answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from grpc_health.v1.health import aio as health_aio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from qis_runtime.status import (
    COMPONENT_STATUS,
    DEGRADED,
    NOT_SERVING,
    SERVING,
    ComponentReport,
    Status,
    StatusServicer,
)
from qis_runtime.telemetry import Telemetry, active, install

WAIT_S = 5.0


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """The process's telemetry, with metrics read in memory (restored afterwards)."""
    previous = active()
    found = InMemoryMetricReader()
    install(Telemetry(meter_provider=MeterProvider(metric_readers=[found])))
    yield found
    install(previous)


def statuses(reader: InMemoryMetricReader) -> dict[str, float]:
    """The gauge's last value by component."""
    data = reader.get_metrics_data()
    found: dict[str, float] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != COMPONENT_STATUS:
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    assert set(point.attributes or {}) == {"component"}
                    found[str((point.attributes or {})["component"])] = point.value
    return found


async def until(reader: InMemoryMetricReader, expected: dict[str, float]) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if statuses(reader) == expected:
            return
        await asyncio.sleep(0.01)
    assert statuses(reader) == expected


async def test_each_refresh_records_every_component_s_status(
    reader: InMemoryMetricReader,
) -> None:
    now: dict[str, Status] = {"event-store": SERVING, "cache": SERVING}

    def check(name: str) -> ComponentReport:
        return ComponentReport(now[name], "" if now[name] == SERVING else "trouble")

    async def event_store() -> ComponentReport:
        return check("event-store")

    async def cache() -> ComponentReport:
        return check("cache")

    async def failing() -> ComponentReport:
        raise ConnectionError("refused")

    checks = {"event-store": event_store, "cache": cache}
    servicer = StatusServicer("qis-test", checks)
    watcher = asyncio.create_task(servicer.watch(health_aio.HealthServicer(), 0.01))
    try:
        await until(reader, {"event-store": 0, "cache": 0})
        now["event-store"] = NOT_SERVING
        now["cache"] = DEGRADED
        await until(reader, {"event-store": 2, "cache": 1})
        checks["read-store"] = failing  # named later, and its check raises: NOT_SERVING
        now["event-store"] = SERVING
        await until(reader, {"event-store": 0, "cache": 1, "read-store": 2})
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
