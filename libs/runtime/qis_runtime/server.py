"""A grpc.aio server with what every qis process serves: health, reflection, authentication
(over TLS when configured), a graceful stop on SIGTERM/SIGINT (health goes NOT_SERVING,
in-flight calls get a grace period), when the process's telemetry is on a server span and a
duration measure per call (qis_runtime.telemetry), and the process's health report with a
health service name per component when it names them (report_status, qis_runtime.status)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from qis.data.v1 import status_pb2_grpc

from qis_runtime.auth import ServerSecurity, loopback_only
from qis_runtime.identity import IdentityInterceptor, RequestLimit
from qis_runtime.status import SERVICE_NAME as STATUS_SERVICE
from qis_runtime.status import Check, StatusServicer, health_name
from qis_runtime.telemetry import server_interceptors

log = logging.getLogger(__name__)

_MAX_SEND_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""gRPC's own default. A request beyond a process's limit is refused with RESOURCE_EXHAUSTED
before it is parsed: parsing is where an oversized request costs memory (empty repeated entries
parse into about 28 times their size), so the limit is the only bound on it.

The limit is checked on the request's bytes, before they are decoded (identity.RequestLimit), not
by gRPC: gRPC's refusal cannot name the setting, and it fails the call the moment the request
is received, so a BulkIngest chunk read ahead (over the limit) took with it the answer of the
chunk still being written. gRPC's own limit stays, at twice the process's, as the bound on the
bytes received (`_GRPC_LIMIT_FACTOR`): beyond it, gRPC refuses the request as before. Health
checks and reflection, served without the identity wrapper, are bounded by that one alone:
their requests hold no repeated message, so a large one parses into about its own size."""
_GRPC_LIMIT_FACTOR = 2
_MAX_GRPC_LIMIT = 2**31 - 1  # gRPC's channel options are C ints

KEEPALIVE_S = 60.0
"""A connection silent this long is pinged, and closed with its calls when the ping is not
answered within a third of it. A peer that vanished without closing its connection (a host
that died, a dropped NAT entry) would otherwise hold its calls forever, and with them the
caller's share of a per-caller limit: a stream that sends nothing never notices it."""

STATUS_EVERY_S = 5.0
"""How often the components' health service names are checked again."""


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    full_name: str  # e.g. "qis.data.v1.CommandService"
    register: Callable[[Any, grpc.aio.Server], None]  # the generated add_..._to_server
    servicer: object


class QisServer:
    def __init__(
        self,
        address: str,
        services: Sequence[ServiceBinding],
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        keepalive_s: float = KEEPALIVE_S,
        security: ServerSecurity | None = None,
        max_request_setting: str = "its QIS_*_MAX_REQUEST_BYTES",
    ) -> None:
        """`max_request_bytes`: the largest request message this process accepts, from the
        largest valid request of its services (each process sets its own); a refusal names
        `max_request_setting`, what sets it. `keepalive_s`: see KEEPALIVE_S. `security`: how
        callers are authenticated and the TLS credentials (qis_runtime.auth.server_security);
        none is development mode on a plaintext port. Development mode on an address other
        machines reach raises ConfigurationError."""
        security = security or ServerSecurity.development_mode()
        loopback_only(services, address, security)
        self._address = address
        self._services = list(services)
        self._status: StatusServicer | None = None
        self._status_every_s = STATUS_EVERY_S
        self._watcher: asyncio.Task[None] | None = None
        self._security = security
        self.health = health_aio.HealthServicer()
        self._server = grpc.aio.server(
            # Telemetry first: the span and the duration cover refused calls too, and the
            # servicer runs inside the call's span.
            interceptors=[
                *server_interceptors(),
                IdentityInterceptor(
                    security.authenticator, RequestLimit(max_request_bytes, max_request_setting)
                ),
            ],
            options=[
                (
                    "grpc.max_receive_message_length",
                    min(max_request_bytes * _GRPC_LIMIT_FACTOR, _MAX_GRPC_LIMIT),
                ),
                ("grpc.max_send_message_length", _MAX_SEND_BYTES),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
                # Both: which of the two bounds the wait for a ping's answer depends on the
                # version of gRPC core (1.85 uses the second).
                ("grpc.keepalive_timeout_ms", int(keepalive_s * 1000 / 3)),
                ("grpc.http2.ping_timeout_ms", int(keepalive_s * 1000 / 3)),
            ],
        )
        self.port = 0

    def report_status(
        self, process: str, checks: Mapping[str, Check], every_s: float = STATUS_EVERY_S
    ) -> None:
        """Serves qis.data.v1.StatusService with these components and, from `start`, keeps a
        grpc.health.v1 name per component ("qis.component.NAME") up to date. Before `start`."""
        self._status = StatusServicer(process, checks)
        self._status_every_s = every_s
        self._services.append(
            ServiceBinding(
                STATUS_SERVICE, status_pb2_grpc.add_StatusServiceServicer_to_server, self._status
            )
        )

    async def start(self) -> int:
        for binding in self._services:
            binding.register(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [b.full_name for b in self._services]
        reflection.enable_server_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self._server,
        )
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        credentials = self._security.credentials
        if credentials is None:
            self.port = self._server.add_insecure_port(self._address)
        else:
            self.port = self._server.add_secure_port(self._address, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {self._address}")
        await self._server.start()
        if self._status is not None:
            self._watcher = asyncio.create_task(
                self._status.watch(self.health, self._status_every_s)
            )
        log.info("listening on %s: %s", self._address, self._security.summary)
        return self.port

    async def mark_serving(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(grace_s)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        await self.health.set("", status)
        for binding in self._services:
            await self.health.set(binding.full_name, status)
        if self._status is not None and status != health_pb2.HealthCheckResponse.SERVING:
            # Until the watcher's first round, and once stopping: a component of a process
            # that does not serve is not available either.
            for component in self._status.components:
                await self.health.set(health_name(component), status)


async def run_until_signalled(server: QisServer, grace_s: float) -> None:
    """Serve until SIGTERM or SIGINT, then drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: health NOT_SERVING, draining for up to %.1f s", grace_s)
    await server.stop(grace_s)
