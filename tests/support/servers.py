"""A qis-query service served in this process on a free port, over any read store: for tests
that need the real servicer, interceptor and error policy, but no projector or command side."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc.aio
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis_adapters.readstore.factory import AdministeredReadStore
from qis_query.application.access import wall_clock_us
from qis_query.bootstrap import build
from qis_query.settings import QuerySettings


@contextlib.asynccontextmanager
async def query_service(
    store: AdministeredReadStore, settings: QuerySettings
) -> AsyncIterator[q_grpc.QueryServiceAsyncStub]:
    app = await build(settings, store)
    port = await app.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: q_grpc.QueryServiceAsyncStub = q_grpc.QueryServiceStub(channel)
            yield stub
    finally:
        await app.server.stop(0)
        await app.close()


@dataclass(frozen=True, slots=True)
class QueryPorts:
    stub: q_grpc.QueryServiceAsyncStub
    """The gRPC QueryService."""
    flight: str
    """The Arrow Flight endpoint's location, e.g. grpc+tcp://127.0.0.1:40123."""


@contextlib.asynccontextmanager
async def query_ports(
    store: AdministeredReadStore,
    settings: QuerySettings,
    clock_us: Callable[[], int] = wall_clock_us,
) -> AsyncIterator[QueryPorts]:
    """Both ports of one query service (settings.flight_address must name one, port 0 for a
    free one). The Flight server answers from this test's event loop: call it from another
    thread (asyncio.to_thread), never blocking the loop. `clock_us`: its tokens' (bootstrap.build)."""
    app = await build(settings, store, clock_us)
    assert app.flight is not None, "settings.flight_address is empty"
    port = await app.server.start()
    try:
        flight_port = await app.flight.start()
        scheme = app.flight.location.partition("://")[0]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: q_grpc.QueryServiceAsyncStub = q_grpc.QueryServiceStub(channel)
            yield QueryPorts(stub, f"{scheme}://127.0.0.1:{flight_port}")
    finally:
        await app.flight.stop(0)
        await app.server.stop(0)
        await app.close()
