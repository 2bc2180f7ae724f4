"""The aggregate health report of a process (qis.data.v1.StatusService) and the per-component
grpc.health.v1 service names ("qis.component.NAME") an orchestrator probes.

A process names its components and how to check each (an async function returning a
ComponentReport); GetHealthReport runs every check at the call, bounded in time, and a watcher
refreshes the components' health names every few seconds (QisServer.report_status), and with
them the gauge `qis.component.status` per component (0 SERVING, 1 DEGRADED, 2 NOT_SERVING): an
alert reads the report the watcher made anyway, so no check runs for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import grpc.aio
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio
from qis.data.v1 import status_pb2, status_pb2_grpc
from qis_adapters.eventstore.port import EventStore
from qis_adapters.readstore.port import ReadModelReader

from qis_runtime.telemetry import active

SERVICE_NAME = status_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name
HEALTH_PREFIX = "qis.component."
CHECK_TIMEOUT_S = 3.0
SLOW_S = 1.0
"""A store that takes longer than this to answer a check is DEGRADED."""

SERVING = status_pb2.COMPONENT_STATUS_SERVING
DEGRADED = status_pb2.COMPONENT_STATUS_DEGRADED
NOT_SERVING = status_pb2.COMPONENT_STATUS_NOT_SERVING
Status: TypeAlias = status_pb2.ComponentStatus.ValueType
_WORST = (SERVING, DEGRADED, NOT_SERVING)
"""Best first: a status's index is its value in COMPONENT_STATUS, so `max` is the worst."""
COMPONENT_STATUS = "qis.component.status"


@dataclass(frozen=True, slots=True)
class ComponentReport:
    status: Status
    reason: str = ""
    figures: Mapping[str, int | float | str] = field(default_factory=dict)


Check = Callable[[], Awaitable[ComponentReport]]


def health_name(component: str) -> str:
    return HEALTH_PREFIX + component


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(
        self,
        process: str,
        checks: Mapping[str, Check],
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        """`checks`: read at each report (a process may name components once it knows them)."""
        self._process = process
        self._checks = checks
        self._clock_s = clock_s

    @property
    def components(self) -> list[str]:
        return list(self._checks)

    async def GetHealthReport(
        self,
        request: status_pb2.GetHealthReportRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> status_pb2.GetHealthReportResponse:
        return await self.report()

    async def report(self) -> status_pb2.GetHealthReportResponse:
        checked_at = timestamp_pb2.Timestamp()
        checked_at.FromNanoseconds(int(self._clock_s() * 1e9))
        checks = dict(self._checks)
        reports = await asyncio.gather(*(_run(check) for check in checks.values()))
        components = [
            status_pb2.Component(
                name=name,
                status=report.status,
                health_service=health_name(name),
                reason=report.reason,
                figures={k: _text(v) for k, v in report.figures.items()},
            )
            for name, report in zip(checks, reports, strict=True)
        ]
        worst = max((c.status for c in components), key=_WORST.index, default=SERVING)
        return status_pb2.GetHealthReportResponse(
            process=self._process, status=worst, components=components, checked_at=checked_at
        )

    async def watch(self, health: health_aio.HealthServicer, every_s: float) -> None:
        """Keeps the components' grpc.health.v1 names and their COMPONENT_STATUS gauge up to
        date, forever. The gauge is the process's telemetry's when the watcher starts (with
        the server: telemetry is configured by then)."""
        gauge = (
            active()
            .meter("qis.status")
            .create_gauge(
                COMPONENT_STATUS,
                description="Each component's health: 0 serving, 1 degraded, 2 not serving.",
            )
        )
        while True:
            report = await self.report()
            for component in report.components:
                # No `process` label: the scrape target's names the process, and a label of
                # the same name would come out as `exported_process`.
                gauge.set(_WORST.index(component.status), {"component": component.name})
                serving = component.status in (SERVING, DEGRADED)
                await health.set(
                    component.health_service,
                    health_pb2.HealthCheckResponse.SERVING
                    if serving
                    else health_pb2.HealthCheckResponse.NOT_SERVING,
                )
            await asyncio.sleep(every_s)


async def _run(check: Check) -> ComponentReport:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await check()
    except TimeoutError:
        return ComponentReport(NOT_SERVING, f"no answer within {CHECK_TIMEOUT_S:.0f} s")
    except Exception as error:  # a check that fails says why: that is its answer
        return ComponentReport(NOT_SERVING, f"{type(error).__name__}: {error}")


def _text(value: int | float | str) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


async def timed_check(
    call: Callable[[], Awaitable[Mapping[str, int | float | str]]],
) -> ComponentReport:
    """A store's check: `call` reads something cheap and returns its figures; the answer's
    latency is one more (`latency_ms`), and a slow one makes the store DEGRADED."""
    started = time.perf_counter()
    figures = dict(await call())
    elapsed = time.perf_counter() - started
    figures["latency_ms"] = round(elapsed * 1000, 3)
    if elapsed > SLOW_S:
        return ComponentReport(DEGRADED, f"answered in {elapsed:.1f} s", figures)
    return ComponentReport(SERVING, "", figures)


async def event_store_check(store: EventStore) -> ComponentReport:
    """The event store answers, how fast, and where its log ends."""

    async def figures() -> dict[str, int | float | str]:
        return {"head_position": await store.head_position()}

    return await timed_check(figures)


async def read_store_check(store: ReadModelReader) -> ComponentReport:
    """The read store answers, how fast, and the position its read model is at."""

    async def figures() -> dict[str, int | float | str]:
        return {"checkpoint": await store.checkpoint() or 0}

    return await timed_check(figures)
