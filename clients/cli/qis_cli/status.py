"""`qis status`: every qis process's health report (qis.data.v1.StatusService) in one table.

The processes are found where `qis up` starts them (their QIS_*_ADDRESS variables, else the
defaults). A process that does not answer is NOT_SERVING, except qis-feeds, which runs only
when feeds are configured: it is listed as not running. The exit code is EXIT_UNAVAILABLE when
anything is NOT_SERVING, 0 otherwise (DEGRADED included: it works, look at the reason)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
from qis.data.v1 import status_pb2, status_pb2_grpc

from qis_cli.connection import Metadata, open_channel
from qis_cli.errors import EXIT_OK, EXIT_UNAVAILABLE
from qis_cli.up import FEEDS, SERVICES, ServiceSpec, address_of

TIMEOUT_S = 5.0
"""A report checks every component, each within 3 s: this is the bound of the whole call."""
_STATUS = {
    status_pb2.COMPONENT_STATUS_SERVING: "SERVING",
    status_pb2.COMPONENT_STATUS_DEGRADED: "DEGRADED",
    status_pb2.COMPONENT_STATUS_NOT_SERVING: "NOT_SERVING",
}


@dataclass(frozen=True, slots=True)
class Row:
    process: str
    component: str
    status: str
    details: str


def targets(env: dict[str, str]) -> list[tuple[ServiceSpec, str]]:
    return [(spec, address_of(spec, env)) for spec in (*SERVICES, FEEDS)]


def report_of(address: str, metadata: Metadata) -> status_pb2.GetHealthReportResponse:
    with open_channel(address) as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        reply: status_pb2.GetHealthReportResponse = stub.GetHealthReport(
            status_pb2.GetHealthReportRequest(), metadata=metadata, timeout=TIMEOUT_S
        )
        return reply


def rows(spec: ServiceSpec, address: str, metadata: Metadata) -> list[Row]:
    try:
        report = report_of(address, metadata)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        if spec is FEEDS and code is grpc.StatusCode.UNAVAILABLE:
            return [Row(spec.script, "-", "-", f"not running at {address}")]
        details = f"{code.name} at {address}: {error.details()}"
        return [Row(spec.script, "-", "NOT_SERVING", details)]
    if not report.components:
        return [Row(report.process, "-", _STATUS.get(report.status, "?"), "")]
    return [
        Row(report.process, c.name, _STATUS.get(c.status, "?"), _details(c))
        for c in report.components
    ]


def _details(component: status_pb2.Component) -> str:
    figures = " ".join(f"{k}={v}" for k, v in sorted(component.figures.items()))
    return "; ".join(part for part in (component.reason, figures) if part)


def render(table: Sequence[Row]) -> str:
    header = Row("PROCESS", "COMPONENT", "STATUS", "DETAILS")
    lines = [header, *table]
    width = [max(len(getattr(r, f)) for r in lines) for f in ("process", "component", "status")]
    return "\n".join(
        f"{r.process:<{width[0]}}  {r.component:<{width[1]}}  {r.status:<{width[2]}}  {r.details}".rstrip()
        for r in lines
    )


def exit_code(table: Iterable[Row]) -> int:
    return EXIT_UNAVAILABLE if any(r.status == "NOT_SERVING" for r in table) else EXIT_OK


def run_status(metadata: Metadata, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    table = [row for spec, address in targets(env) for row in rows(spec, address, metadata)]
    print(render(table))
    return exit_code(table)
