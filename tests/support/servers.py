"""A qis-query service served in this process on a free port, over any read store: for tests
that need the real servicer, interceptor and error policy, but no projector or command side."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc.aio
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis_adapters.readstore.factory import AdministeredReadStore
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
