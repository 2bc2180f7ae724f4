"""A command service in this process over real gRPC, for the integration tests of its edge."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings

from tests.unit.adapters.test_edge_command_service import define_px


@dataclass(frozen=True)
class Running:
    stub: pb_grpc.CommandServiceAsyncStub
    channel: grpc.aio.Channel
    server: Any
    port: int


@contextlib.asynccontextmanager
async def command_service(store: SqliteEventStore, **settings: Any) -> AsyncIterator[Running]:
    """qis-command's composition over `store` (dev identities, no scheduler, `settings` beside)
    on a free loopback port, with the source `bbg` and its daily price series `PX` defined."""
    app = await build(
        CommandSettings(
            auth="dev", command_address="127.0.0.1:0", scheduler_enabled=False, **settings
        ),
        store=store,
    )
    port = await app.server.start()
    await app.server.mark_serving()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: pb_grpc.CommandServiceAsyncStub = pb_grpc.CommandServiceStub(channel)
            await define_px(stub)
            yield Running(stub, channel, app.server, port)
    finally:
        await app.server.stop(0)
        await app.close()
