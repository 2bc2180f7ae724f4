"""The request size limit checked in the identity wrapper, on the query service's calls of every
shape (unary, server-streaming Subscribe, bidirectional Consume): REQUEST_TOO_LARGE naming
QIS_QUERY_MAX_REQUEST_BYTES, what came before answered, nothing held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import topic_service_pb2 as topic_pb
from qis.data.v1 import topic_service_pb2_grpc as topic_grpc
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_query.entrypoints.topics import TopicService
from qis_query.settings import QuerySettings
from qis_runtime.server import QisServer, ServiceBinding

from tests.service.query.readmodel import SERIES
from tests.service.query.test_query_limits import ANY_PORT, Serve, as_user, serve  # noqa: F401
from tests.service.query.test_query_topic_groups import (  # noqa: F401
    FAST,
    Client,
    CountingGroups,
    Log,
    eventually,
    log,
)

LIMIT = 64 * 1024
WAIT_S = 5.0


def reason_of(error: grpc.aio.AioRpcError) -> str | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            info = error_details_pb2.ErrorInfo()
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Unpack(info):
                    return str(info.reason)
    return None


def assert_too_large(error: grpc.aio.AioRpcError) -> None:
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert reason_of(error) == "REQUEST_TOO_LARGE", error.details()


def many_snaps(count: int) -> list[timestamp_pb2.Timestamp]:
    return [timestamp_pb2.Timestamp(seconds=s, nanos=999_999_999) for s in range(count)]


async def test_a_query_request_over_the_limit_names_qis_query_max_request_bytes(
    serve: Serve,  # noqa: F811
) -> None:
    """docs/errors.md: the message names the limit "with its setting (QIS_COMMAND_MAX_REQUEST_
    BYTES, QIS_QUERY_MAX_REQUEST_BYTES)". (Failed before qis_query.bootstrap named it.)"""
    stub = await serve(
        QuerySettings(auth="dev", query_address=ANY_PORT, query_max_request_bytes=LIMIT)
    )
    oversized = pb.GetValuesRequest(series=f"series/{SERIES}", snap_times=many_snaps(10_000))
    assert LIMIT < oversized.ByteSize() < 2 * LIMIT
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetValues(oversized, metadata=as_user("alice"))
    assert_too_large(refused.value)
    assert "QIS_QUERY_MAX_REQUEST_BYTES" in (refused.value.details() or "")


async def test_a_subscribe_request_over_the_limit_is_request_too_large(
    serve: Serve,  # noqa: F811
) -> None:
    """Server-streaming: refused before anything is streamed, never UNKNOWN; the service
    serves on (the caller's subscription slot is not held)."""
    stub = await serve(
        QuerySettings(
            auth="dev",
            query_address=ANY_PORT,
            query_max_request_bytes=LIMIT,
            query_max_subscriptions_per_caller=1,
        )
    )
    names = [f"series/{SERIES}-{i:06d}" for i in range(4_000)]
    oversized = pb.SubscribeRequest(series=names)
    assert LIMIT < oversized.ByteSize() < 2 * LIMIT
    for _ in range(2):  # a second one: no slot was taken by the first
        call = stub.Subscribe(oversized, metadata=as_user("alice"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), WAIT_S)
        assert_too_large(refused.value)


@pytest.fixture
async def topics(
    log: tuple[Log, InMemoryReadStore],  # noqa: F811
) -> AsyncIterator[tuple[topic_grpc.TopicServiceAsyncStub, Log]]:
    the_log, reader = log
    groups = CountingGroups(the_log, reader, FAST)
    server = QisServer(
        ANY_PORT,
        [
            ServiceBinding(
                "qis.data.v1.TopicService",
                topic_grpc.add_TopicServiceServicer_to_server,
                TopicService(groups),
            )
        ],
        max_request_bytes=LIMIT,
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield topic_grpc.TopicServiceStub(channel), the_log
    finally:
        await server.stop(0)
        await groups.close()


def huge_ack() -> topic_pb.ConsumeRequest:
    request = topic_pb.ConsumeRequest(ack_ids=[f"d-{i:08d}" for i in range(8_000)])
    assert LIMIT < request.ByteSize() < 2 * LIMIT
    return request


async def test_a_consume_message_over_the_limit_settles_the_ones_before_then_ends(
    topics: tuple[topic_grpc.TopicServiceAsyncStub, Log],
) -> None:
    """Bidirectional, read by a task of its own (topics._settle): the ack before the oversized
    message is applied, the call ends RESOURCE_EXHAUSTED REQUEST_TOO_LARGE (not UNKNOWN, not a
    hang), and the consumer leaves its group."""
    stub, the_log = topics
    c = Client(stub, "c")
    await eventually(lambda: _true(the_log.joined == 1))
    key = await the_log.entry("S1")
    c.ack(await c.next())
    c.requests.put_nowait(huge_ack())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(c.call.read(), WAIT_S)
    assert_too_large(refused.value)
    await eventually(lambda: _true(the_log.left == 1))
    await eventually(lambda: _true(the_log.checkpoints[-1:] == [key]))
    await c.close()


async def test_a_first_consume_message_over_the_limit_joins_nothing(
    topics: tuple[topic_grpc.TopicServiceAsyncStub, Log],
) -> None:
    stub, the_log = topics
    request = huge_ack()
    request.topic = "topics/x"
    call = stub.Consume(iter([request]), metadata=(("x-qis-user", "bob"),))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(call.read(), WAIT_S)
    assert_too_large(refused.value)
    assert the_log.joined == 0


async def _true(value: bool) -> bool:
    return value
