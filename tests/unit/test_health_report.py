"""The health report of a process (qis_runtime.status): the worst component decides the
process's status, a check that fails or hangs is NOT_SERVING with the reason, and the
components' grpc.health.v1 names follow their status."""

from __future__ import annotations

import asyncio

import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio
from qis.data.v1 import status_pb2
from qis_runtime import status
from qis_runtime.status import DEGRADED, SERVING, ComponentReport, StatusServicer


async def serving() -> ComponentReport:
    return ComponentReport(SERVING, "", {"checkpoint": 12, "latency_ms": 0.25})


async def slow() -> ComponentReport:
    return ComponentReport(DEGRADED, "answered in 1.5 s")


async def failing() -> ComponentReport:
    raise ConnectionError("refused")


async def hanging() -> ComponentReport:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def test_the_worst_component_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "CHECK_TIMEOUT_S", 0.05)
    checks = {"a": serving, "b": slow}
    servicer = StatusServicer("qis-test", checks, clock_s=lambda: 1_700_000_000.5)
    report = await servicer.report()
    assert report.process == "qis-test"
    assert report.status == status_pb2.COMPONENT_STATUS_DEGRADED
    assert report.checked_at.ToNanoseconds() == 1_700_000_000_500_000_000
    a, b = report.components
    assert (a.name, a.health_service, dict(a.figures)) == (
        "a",
        "qis.component.a",
        {"checkpoint": "12", "latency_ms": "0.25"},
    )
    assert (b.status, b.reason) == (status_pb2.COMPONENT_STATUS_DEGRADED, "answered in 1.5 s")

    checks.update({"c": failing, "d": hanging})  # named later: read at each report
    report = await servicer.report()
    assert report.status == status_pb2.COMPONENT_STATUS_NOT_SERVING
    reasons = {c.name: c.reason for c in report.components if c.name in "cd"}
    assert reasons == {"c": "ConnectionError: refused", "d": "no answer within 0 s"}

    health = health_aio.HealthServicer()
    watcher = asyncio.create_task(servicer.watch(health, 3600))
    await asyncio.sleep(0.2)
    watcher.cancel()
    expected = {"a": "SERVING", "b": "SERVING", "c": "NOT_SERVING", "d": "NOT_SERVING"}
    for name, state in expected.items():
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service=f"qis.component.{name}"), None
        )
        assert health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) == state
