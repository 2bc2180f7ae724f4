"""qis.data.v1.TopicService over grpc.aio (docs/routing.md): consumer groups of topics.

Consume is a bidirectional stream: the first request subscribes, a task reads the later ones
(acks, nacks) while the call writes the deliveries the group's runner hands to this consumer.
Whatever a call raises becomes its status in the server's interceptor, as for QueryService."""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
from google.protobuf.duration_pb2 import Duration
from qis.data.v1 import routing_pb2
from qis.data.v1 import topic_service_pb2 as pb
from qis.data.v1 import topic_service_pb2_grpc as pb_grpc
from qis_adapters.proto.enums import EVENT_TYPES, MIN_SEVERITIES
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore.port import REPLAYED, ResumeToken
from qis_domain.bounds import quoted
from qis_domain.definitions import Permission
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.events import TopicDefinition
from qis_domain.routing import (
    MAX_ERROR_LENGTH,
    TOPICS_COLLECTION,
    group_problem,
    name_problem,
    topic_name,
)

from qis_query.application import paging
from qis_query.application.access import OpenAccess, ReadAccess
from qis_query.application.dispatch import Delivery
from qis_query.application.topics import Consumer, GroupRunner, TopicGroups
from qis_query.entrypoints.grpc_service import asker

Ctx = grpc.aio.ServicerContext[Any, Any]

DEFAULT_WINDOW = 10
MAX_WINDOW = 100
DEFAULT_PAGE = 100
MAX_PAGE = 1_000
MAX_REPLAY = 1_000_000
TOPIC_PAGES = "topics"
PARKED_PAGES = "parked"


class TopicService(pb_grpc.TopicServiceServicer):
    def __init__(
        self,
        groups: TopicGroups,
        access: ReadAccess | None = None,
        tokens: paging.PageTokens | None = None,
    ) -> None:
        """`tokens`: what seals the page tokens (the service's key; None: a key of this
        object's own, bound to no caller)."""
        self._groups = groups
        self._tokens = paging.PageTokens.random() if tokens is None else tokens
        self._access = access or OpenAccess()

    async def Consume(
        self, request_iterator: AsyncIterator[pb.ConsumeRequest], context: Ctx
    ) -> AsyncIterator[pb.ConsumeResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        v: list[FieldViolation] = []
        topic = _topic(first.topic, "topic", v)
        group = _group(first.group, "group", v)
        name = _group(first.consumer, "consumer", v)
        if not 0 <= first.max_in_flight <= MAX_WINDOW:
            v.append(FieldViolation("max_in_flight", f"0 to {MAX_WINDOW}"))
        if first.ack_ids or first.nacks:
            v.append(FieldViolation("ack_ids", "the first request subscribes, it settles nothing"))
        if v:
            raise InvalidArgument(v)
        await self._require(context, "Consume", topic, Permission.READ)
        runner, consumer = await self._groups.join(
            topic, group, name, first.max_in_flight or DEFAULT_WINDOW
        )
        settling = asyncio.create_task(_settle(request_iterator, runner, consumer))
        # A cancelled call (the client gone) ends neither of the above: its end does.
        ended = asyncio.Event()
        # The stubs type the callback as a class of their own, which no function is.
        context.add_done_callback(lambda _context: ended.set())  # type: ignore[arg-type]
        ending = asyncio.create_task(ended.wait())
        delivery: asyncio.Task[Delivery] | None = None
        try:
            while True:
                delivery = asyncio.create_task(consumer.deliveries.get())
                await asyncio.wait((delivery, settling, ending), return_when=FIRST_COMPLETED)
                if not delivery.done():
                    if settling.done():
                        settling.result()  # a refused request fails the call
                    return
                d = delivery.result()
                yield pb.ConsumeResponse(
                    delivery_id=d.delivery_id,
                    attempt=d.attempt,
                    message=routing_pb2.TopicMessage.FromString(d.entry.payload),
                )
        finally:
            for task in (delivery, settling, ending):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await settling
            await self._groups.leave(runner, consumer)

    async def ListTopics(
        self, request: pb.ListTopicsRequest, context: Ctx
    ) -> pb.ListTopicsResponse:
        size = paging.page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
        after = self._tokens.key_after(request.page_token, TOPIC_PAGES, ())
        readable = await self._access.gate(asker(context, "ListTopics"))
        topics = [
            version
            for version in await self._groups.topics()
            if version.definition is not None
            and version.topic > after
            and readable.allows_unclassified(topic_name(version.topic))
        ]
        page = topics[:size]
        more = len(topics) > size
        return pb.ListTopicsResponse(
            topics=[
                topic_message(v.topic, TopicDefinition.model_validate(v.definition)) for v in page
            ],
            next_page_token=self._tokens.key_token(
                TOPIC_PAGES, (), page[-1].topic if more else None
            ),
        )

    async def ListParked(
        self, request: pb.ListParkedRequest, context: Ctx
    ) -> pb.ListParkedResponse:
        v: list[FieldViolation] = []
        topic = _topic(request.topic, "topic", v)
        group = _group(request.group, "group", v)
        if v:
            raise InvalidArgument(v)
        size = paging.page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
        query = (topic, group)
        after = self._tokens.log_after(request.page_token, PARKED_PAGES, query)
        await self._require(context, "ListParked", topic, Permission.READ)
        start = (0, -1) if after is None else (after.position, after.index)
        found = await self._groups.parked(topic, group, start, size + 1)
        page = found[:size]
        last = page[-1] if len(found) > size else None
        token = None if last is None else ResumeToken(last.entry_position, last.entry_index)
        return pb.ListParkedResponse(
            parked=[
                pb.ParkedEntry(
                    topic=topic_name(e.topic),
                    commit_position=e.entry_position,
                    index=e.entry_index,
                    attempts=e.attempts,
                    last_error=e.last_error,
                    park_time=timestamp(e.parked_at_us),
                    replayed=e.state == REPLAYED,
                )
                for e in page
            ],
            next_page_token=self._tokens.log_token(PARKED_PAGES, query, token),
        )

    async def ReplayParked(
        self, request: pb.ReplayParkedRequest, context: Ctx
    ) -> pb.ReplayParkedResponse:
        v: list[FieldViolation] = []
        topic = _topic(request.topic, "topic", v)
        group = _group(request.group, "group", v)
        if not 1 <= request.max_count <= MAX_REPLAY:
            v.append(FieldViolation("max_count", f"1 to {MAX_REPLAY:,}"))
        if v:
            raise InvalidArgument(v)
        await self._require(context, "ReplayParked", topic, Permission.ADMIN)
        moved, position = await self._groups.replay(topic, group, request.max_count)
        return pb.ReplayParkedResponse(replayed_count=moved, commit_position=position)

    async def _require(self, context: Ctx, method: str, topic: str, need: Permission) -> None:
        await self._access.require(asker(context, method), topic_name(topic), permissions=(need,))


async def _settle(
    requests: AsyncIterator[pb.ConsumeRequest], runner: GroupRunner, consumer: Consumer
) -> None:
    """The later requests of a Consume call, until the client closes its side."""
    async for request in requests:
        v: list[FieldViolation] = []
        if request.topic or request.group or request.consumer or request.max_in_flight:
            v.append(FieldViolation("topic", "only the first request subscribes"))
        for i, nack in enumerate(request.nacks):
            if len(nack.reason) > MAX_ERROR_LENGTH:
                v.append(FieldViolation(f"nacks[{i}].reason", f"at most {MAX_ERROR_LENGTH}"))
        if v:
            raise InvalidArgument(v)
        runner.settle(
            consumer, list(request.ack_ids), [(n.delivery_id, n.reason) for n in request.nacks]
        )


def topic_message(name: str, d: TopicDefinition) -> routing_pb2.Topic:
    return routing_pb2.Topic(
        name=topic_name(name),
        event_types=[EVENT_TYPES[kind] for kind in d.event_types],
        series_patterns=d.series_patterns,
        min_severity=MIN_SEVERITIES[d.min_severity],
        max_delivery_attempts=d.max_attempts,
        ack_timeout=Duration(seconds=d.ack_timeout_s),
        description=d.description,
    )


def _topic(name: str, field: str, v: list[FieldViolation]) -> str:
    topic = name.removeprefix(f"{TOPICS_COLLECTION}/")
    if topic == name:
        v.append(FieldViolation(field, f"{quoted(name)} is not a resource name 'topics/{{topic}}'"))
        return ""
    if (why := name_problem(topic)) is not None:
        v.append(FieldViolation(field, why))
        return ""
    return topic


def _group(name: str, field: str, v: list[FieldViolation]) -> str:
    if (why := group_problem(name)) is not None:
        v.append(FieldViolation(field, why))
        return ""
    return name
