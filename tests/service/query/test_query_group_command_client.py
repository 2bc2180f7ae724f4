"""The query service's one client of the command service (qis_query.adapters.command_client),
shared by the consumer groups' records and the access refusals: each call goes with the query
service's identity and its adapter's time bound, over a real loopback channel."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_query.adapters.command_client import open_command_channel
from qis_query.adapters.groups import CommandServiceGroups
from qis_runtime.server import QisServer, ServiceBinding

Ctx = grpc.aio.ServicerContext[Any, Any]


class Commands(pb_grpc.CommandServiceServicer):
    """Answers CheckpointConsumerGroup with position 42 after `delay_s`, noting who called."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.callers: list[str] = []
        self.requests: list[pb.CheckpointConsumerGroupRequest] = []

    async def CheckpointConsumerGroup(
        self, request: pb.CheckpointConsumerGroupRequest, context: Ctx
    ) -> pb.CommandResponse:
        self.callers.append(str(dict(context.invocation_metadata() or ())["x-qis-user"]))
        self.requests.append(request)
        await asyncio.sleep(self.delay_s)
        return pb.CommandResponse(commit_position=42)


async def _served(commands: Commands) -> tuple[QisServer, int]:
    server = QisServer(
        "127.0.0.1:0",
        [
            ServiceBinding(
                "qis.data.v1.CommandService",
                pb_grpc.add_CommandServiceServicer_to_server,
                commands,
            )
        ],
    )
    return server, await server.start()


async def test_a_record_is_sent_as_the_query_service_within_its_bound() -> None:
    commands = Commands()  # type: ignore[abstract]  # one RPC served
    server, port = await _served(commands)
    channel, metadata = open_command_channel(f"127.0.0.1:{port}", "qis-query", None)
    try:
        recorder = CommandServiceGroups(pb_grpc.CommandServiceStub(channel), metadata, 0.5)
        assert await recorder.checkpoint("ops.alerts", "g", (7, 1), [(3, 0)]) == 42
        assert commands.callers == ["qis-query"]
        sent = commands.requests[0]
        assert (sent.topic, sent.group, sent.position, sent.index) == (
            "topics/ops.alerts",
            "g",
            7,
            1,
        )
        assert [(e.position, e.index) for e in sent.settled] == [(3, 0)]
        commands.delay_s = 2.0  # longer than the bound: the call gives up
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await recorder.checkpoint("ops.alerts", "g", (8, 0), [])
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await channel.close()
        await server.stop(0)
