"""SetTopic and DeleteTopic through a real command server: every violation of a request in one
INVALID_ARGUMENT answer, the topic's changes as events of `routing/topics`, idempotent by
command id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import quality_pb2, routing_pb2
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_domain.events import TopicDefinition, TopicDeleted, TopicSet
from qis_domain.routing import ROUTING_STREAM

USER = (("x-qis-user", "ada"),)


@pytest.fixture
async def served() -> AsyncIterator[tuple[pb_grpc.CommandServiceAsyncStub, InMemoryEventStore]]:
    store = InMemoryEventStore()
    settings = CommandSettings(auth="dev", command_address="127.0.0.1:0", scheduler_enabled=False)
    app = await build(settings, store=store)
    port = await app.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.CommandServiceStub(channel), store
    finally:
        await app.server.stop(0)
        await app.close()


def alerts(**changes: object) -> routing_pb2.Topic:
    topic = routing_pb2.Topic(
        name="topics/ops-domain.quality-alert",
        event_types=[routing_pb2.ROUTED_EVENT_TYPE_QUALITY_ISSUE_DETECTED],
        series_patterns=["EQ.*"],
        min_severity=quality_pb2.SEVERITY_ERROR,
        ack_timeout=duration_pb2.Duration(seconds=10),
    )
    for name, value in changes.items():
        if isinstance(value, list):
            topic.ClearField(name)  # type: ignore[arg-type]
            getattr(topic, name).extend(value)
        elif isinstance(value, duration_pb2.Duration):
            getattr(topic, name).CopyFrom(value)
        else:
            setattr(topic, name, value)
    return topic


async def test_a_topic_is_set_changed_and_deleted_as_events(
    served: tuple[pb_grpc.CommandServiceAsyncStub, InMemoryEventStore],
) -> None:
    stub, store = served
    first = await stub.SetTopic(pb.SetTopicRequest(command_id="c1", topic=alerts()), metadata=USER)
    again = await stub.SetTopic(pb.SetTopicRequest(command_id="c1", topic=alerts()), metadata=USER)
    assert again.duplicate
    assert again.commit_position == first.commit_position
    wider = alerts(series_patterns=[], max_delivery_attempts=3)
    await stub.SetTopic(pb.SetTopicRequest(command_id="c2", topic=wider), metadata=USER)
    await stub.DeleteTopic(
        pb.DeleteTopicRequest(command_id="c3", name="topics/ops-domain.quality-alert"),
        metadata=USER,
    )
    codec = EventCodec()
    events = [codec.decode(r).event for r in await store.read_stream(ROUTING_STREAM)]
    definition = TopicDefinition(
        event_types=("QualityIssueDetected",),
        series_patterns=("EQ.*",),
        min_severity="error",
        ack_timeout_s=10,
    )
    assert events == [
        TopicSet(name="ops-domain.quality-alert", definition=definition),
        TopicSet(
            name="ops-domain.quality-alert",
            definition=definition.model_copy(update={"series_patterns": (), "max_attempts": 3}),
        ),
        TopicDeleted(name="ops-domain.quality-alert"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.DeleteTopic(
            pb.DeleteTopicRequest(command_id="c4", name="topics/ops-domain.quality-alert"),
            metadata=USER,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_every_violation_of_a_request_in_one_answer(
    served: tuple[pb_grpc.CommandServiceAsyncStub, InMemoryEventStore],
) -> None:
    stub, store = served
    bad = alerts(
        name="topics/Ops Alerts",
        event_types=[routing_pb2.ROUTED_EVENT_TYPE_UNSPECIFIED],
        series_patterns=["EQ.*", "with space"],
        max_delivery_attempts=101,
        ack_timeout=duration_pb2.Duration(seconds=1, nanos=5),
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SetTopic(pb.SetTopicRequest(command_id="c1", topic=bad), metadata=USER)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error.value)
    assert status is not None
    request = error_details_pb2.BadRequest()
    assert any(d.Unpack(request) for d in status.details)
    assert [v.field for v in request.field_violations] == [
        "topic.name",
        "topic.event_types[0]",
        "topic.ack_timeout",
    ]
    # With the edge's own checks passing, the domain's list every one of theirs.
    worse = alerts(series_patterns=["with space"], max_delivery_attempts=101)
    with pytest.raises(grpc.aio.AioRpcError) as domain:
        await stub.SetTopic(pb.SetTopicRequest(command_id="c2", topic=worse), metadata=USER)
    status = rpc_status.from_call(domain.value)
    assert status is not None
    assert any(d.Unpack(request) for d in status.details)
    assert [v.field for v in request.field_violations] == [
        "topic.series_patterns[0]",
        "topic.max_attempts",
    ]
    for name in ("ops.alerts", "topics/", "accessPolicies/ops.alerts"):
        with pytest.raises(grpc.aio.AioRpcError) as named:
            await stub.DeleteTopic(pb.DeleteTopicRequest(command_id="c3", name=name), metadata=USER)
        assert named.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await store.read_stream(ROUTING_STREAM) == []
