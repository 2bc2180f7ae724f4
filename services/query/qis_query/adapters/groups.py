"""The consumer groups' records, made through the command service
(CommandService.CheckpointConsumerGroup, ParkTopicEntry, ReplayParkedEntries), as the query
service itself (qis_query.adapters.command_client)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from qis.data.v1 import command_service_pb2 as pb
from qis_domain.routing import topic_name

from qis_query.adapters.command_client import CommandClient
from qis_query.application.dispatch import Key, Parking

RECORD_TIMEOUT_S = 5.0
"""A record not made within it is tried again at the runner's next step (with a new id: the
checkpoint never goes backwards and a parking twice parks once)."""


class CommandServiceGroups(CommandClient):
    default_timeout_s = RECORD_TIMEOUT_S

    async def checkpoint(self, topic: str, group: str, at: Key, settled: Sequence[Key]) -> int:
        request = pb.CheckpointConsumerGroupRequest(
            command_id=_command_id("checkpoint"),
            topic=topic_name(topic),
            group=group,
            position=at[0],
            index=at[1],
            settled=[pb.TopicEntryRef(position=p, index=i) for p, i in settled],
        )
        response = await self._call(self._stub.CheckpointConsumerGroup, request)
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
        response = await self._call(self._stub.ParkTopicEntry, request)
        return response.commit_position

    async def replay(self, topic: str, group: str, entries: Sequence[Key]) -> int:
        request = pb.ReplayParkedEntriesRequest(
            command_id=_command_id("replay"),
            topic=topic_name(topic),
            group=group,
            entries=[pb.TopicEntryRef(position=p, index=i) for p, i in entries],
        )
        response = await self._call(self._stub.ReplayParkedEntries, request)
        return response.commit_position


def _command_id(kind: str) -> str:
    return f"group-{kind}:{uuid.uuid4().hex}"
