"""A grpc.aio server with what every qis process serves: health, reflection, authentication
(over TLS when configured), and a graceful stop on SIGTERM/SIGINT (health goes NOT_SERVING,
in-flight calls get a grace period)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from qis_runtime.auth import ServerSecurity, loopback_only
from qis_runtime.identity import IdentityInterceptor

log = logging.getLogger(__name__)

_MAX_SEND_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""gRPC's own default. A request beyond a process's limit is refused with RESOURCE_EXHAUSTED by
gRPC before it is parsed: parsing is where an oversized request costs memory (empty repeated
entries parse into about 28 times their size), so the limit is the only bound on it."""

KEEPALIVE_S = 60.0
"""A connection silent this long is pinged, and closed with its calls when the ping is not
answered within a third of it. A peer that vanished without closing its connection (a host
that died, a dropped NAT entry) would otherwise hold its calls forever, and with them the
caller's share of a per-caller limit: a stream that sends nothing never notices it."""


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
    ) -> None:
        """`max_request_bytes`: the largest request message this process accepts, from the
        largest valid request of its services (each process sets its own). `keepalive_s`: see
        KEEPALIVE_S. `security`: how callers are authenticated and the TLS credentials
        (qis_runtime.auth.server_security); none is development mode on a plaintext port.
        Development mode on an address other machines reach raises ConfigurationError."""
        security = security or ServerSecurity.development_mode()
        loopback_only(services, address, security)
        self._address = address
        self._services = services
        self._security = security
        self.health = health_aio.HealthServicer()
        self._server = grpc.aio.server(
            interceptors=[IdentityInterceptor(security.authenticator)],
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
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
        log.info("listening on %s: %s", self._address, self._security.summary)
        return self.port

    async def mark_serving(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
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


async def run_until_signalled(server: QisServer, grace_s: float) -> None:
    """Serve until SIGTERM or SIGINT, then drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: health NOT_SERVING, draining for up to %.1f s", grace_s)
    await server.stop(grace_s)
