"""grpc.health.v1 that also says why: health statuses have no room for a reason, so Check sends it
in a trailer (`grpcurl -v` prints it), e.g. which event halted the projector."""

from __future__ import annotations

import re

import grpc.aio
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

REASON_KEY = "qis-health-reason"
# Metadata values are printable ASCII, and the whole of it must stay well under gRPC's 8 KiB.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_REASON = 2_000


class ExplainedHealth(health_aio.HealthServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._reasons: dict[str, str] = {}
        self._statuses: dict[str, health_pb2.HealthCheckResponse.ServingStatus.ValueType] = {}

    async def explain(
        self,
        service: str,
        status: health_pb2.HealthCheckResponse.ServingStatus.ValueType,
        reason: str,
    ) -> None:
        printable = _UNPRINTABLE.sub(" ", reason.encode("ascii", "backslashreplace").decode())
        self._reasons[service] = printable[:_MAX_REASON]
        self._statuses[service] = status
        await self.set(service, status)

    def explained(
        self, service: str
    ) -> tuple[health_pb2.HealthCheckResponse.ServingStatus.ValueType, str]:
        """The last status `explain` set for `service` (SERVICE_UNKNOWN before), and why."""
        return (
            self._statuses.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN),
            self._reasons.get(service, ""),
        )

    async def Check(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> health_pb2.HealthCheckResponse:
        reason = self._reasons.get(request.service)
        if reason:
            context.set_trailing_metadata(((REASON_KEY, reason),))
        response: health_pb2.HealthCheckResponse = await super().Check(request, context)
        return response
