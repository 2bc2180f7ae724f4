"""The consumer groups' records, made through the command service
(CommandService.CheckpointConsumerGroup, ParkTopicEntry, ReplayParkedEntries): the read side
cannot append events. The query service calls as itself, as for its refusals
(qis_query.adapters.denials): the command service must list it in QIS_SERVICE_PRINCIPALS."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_domain.routing import topic_name

from qis_query.adapters.denials import Metadata
from qis_query.application.dispatch import Key, Parking

RECORD_TIMEOUT_S = 5.0
"""A record not made within it is tried again at the runner's next step (with a new id: the
checkpoint never goes backwards and a parking twice parks once)."""


class CommandServiceGroups:
    def __init__(
        self,
        stub: pb_grpc.CommandServiceAsyncStub,
        metadata: Metadata,
        timeout_s: float = RECORD_TIMEOUT_S,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._timeout_s = timeout_s

    async def checkpoint(self, topic: str, group: str, at: Key, settled: Sequence[Key]) -> int:
        request = pb.CheckpointConsumerGroupRequest(
            command_id=_command_id("checkpoint"),
            topic=topic_name(topic),
            group=group,
            position=at[0],
            index=at[1],
            settled=[pb.TopicEntryRef(position=p, index=i) for p, i in settled],
        )
        response = await self._stub.CheckpointConsumerGroup(
            request, metadata=self._metadata, timeout=self._timeout_s
        )
        return response.commit_position

    async def park(self, topic: str, group: str, parking: Parking) -> int:
        position, index = parking.entry.key
        request = pb.ParkTopicEntryRequest(
            command_id=_command_id("park"),
            topic=topic_name(topic),
            group=group,
            position=position,
            index=index,
            attempts=parking.attempts,
            last_error=parking.last_error,
        )
        response = await self._stub.ParkTopicEntry(
            request, metadata=self._metadata, timeout=self._timeout_s
        )
        return response.commit_position

    async def replay(self, topic: str, group: str, entries: Sequence[Key]) -> int:
        request = pb.ReplayParkedEntriesRequest(
            command_id=_command_id("replay"),
            topic=topic_name(topic),
            group=group,
            entries=[pb.TopicEntryRef(position=p, index=i) for p, i in entries],
        )
        response = await self._stub.ReplayParkedEntries(
            request, metadata=self._metadata, timeout=self._timeout_s
        )
        return response.commit_position


def _command_id(kind: str) -> str:
    return f"group-{kind}:{uuid.uuid4().hex}"
