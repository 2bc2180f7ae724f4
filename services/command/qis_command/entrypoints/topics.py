"""Routing requests (routing.proto) to their commands: a topic to set or delete, a consumer
group's checkpoint or parked entry. Every field is
checked and every violation recorded, the domain's own checks of a definition
(qis_domain.routing.definition_violations) included, so that one answer lists them all."""

from __future__ import annotations

from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import routing_pb2
from qis_adapters.proto import enums
from qis_adapters.proto.times import seconds_from_proto
from qis_domain.errors import FieldViolation
from qis_domain.routing import (
    DEFAULT_ACK_TIMEOUT_S,
    DEFAULT_MAX_ATTEMPTS,
    MAX_TOPIC_NAME_LENGTH,
    TOPICS_COLLECTION,
    TopicDefinition,
    definition_violations,
    group_problem,
    name_problem,
)

from qis_command.application.commands import (
    CheckpointConsumerGroup,
    DeleteTopic,
    ParkTopicEntry,
    ReplayParkedEntries,
    SetTopic,
)

EVENT_TYPES = {number: kind for kind, number in enums.EVENT_TYPES.items()}
SEVERITIES = {number: name for name, number in enums.MIN_SEVERITIES.items()}
_PREFIX = f"{TOPICS_COLLECTION}/"


def set_topic(request: pb.SetTopicRequest, v: list[FieldViolation]) -> SetTopic | None:
    if not request.HasField("topic"):
        v.append(FieldViolation("topic", "the topic to set is required"))
        return None
    name = topic_from_name(request.topic.name, "topic.name", v)
    definition = definition_from_proto(request.topic, "topic", v)
    if name is None or definition is None:
        return None
    return SetTopic(name, definition)


def delete_topic(request: pb.DeleteTopicRequest, v: list[FieldViolation]) -> DeleteTopic | None:
    name = topic_from_name(request.name, "name", v)
    return None if name is None else DeleteTopic(name)


def checkpoint_group(
    request: pb.CheckpointConsumerGroupRequest, v: list[FieldViolation]
) -> CheckpointConsumerGroup | None:
    topic = topic_from_name(request.topic, "topic", v)
    group = group_from_request(request.group, "group", v)
    if topic is None or group is None:
        return None
    settled = tuple((ref.position, ref.index) for ref in request.settled)
    return CheckpointConsumerGroup(topic, group, request.position, request.index, settled)


def replay_parked(
    request: pb.ReplayParkedEntriesRequest, v: list[FieldViolation]
) -> ReplayParkedEntries | None:
    topic = topic_from_name(request.topic, "topic", v)
    group = group_from_request(request.group, "group", v)
    if topic is None or group is None:
        return None
    entries = tuple((ref.position, ref.index) for ref in request.entries)
    return ReplayParkedEntries(topic, group, entries)


def park_entry(request: pb.ParkTopicEntryRequest, v: list[FieldViolation]) -> ParkTopicEntry | None:
    topic = topic_from_name(request.topic, "topic", v)
    group = group_from_request(request.group, "group", v)
    if topic is None or group is None:
        return None
    return ParkTopicEntry(
        topic, group, request.position, request.index, request.attempts, request.last_error
    )


def group_from_request(group: str, path: str, v: list[FieldViolation]) -> str | None:
    if (why := group_problem(group)) is not None:
        v.append(FieldViolation(path, why))
        return None
    return group


def topic_from_name(name: str, path: str, v: list[FieldViolation]) -> str | None:
    """The topic inside "topics/{topic}"; a violation and None if it is not one."""
    topic = name.removeprefix(_PREFIX)
    if topic == name:
        shown = name if len(name) <= MAX_TOPIC_NAME_LENGTH else f"{name[:40]}..."
        v.append(FieldViolation(path, f"{shown!r} is not a resource name 'topics/{{topic}}'"))
        return None
    if (why := name_problem(topic)) is not None:
        v.append(FieldViolation(path, why))
        return None
    return topic


def definition_from_proto(
    msg: routing_pb2.Topic, path: str, v: list[FieldViolation]
) -> TopicDefinition | None:
    before = len(v)
    kinds: list[str] = []
    for i, number in enumerate(msg.event_types):
        kind = EVENT_TYPES.get(number)
        if kind is None:
            v.append(FieldViolation(f"{path}.event_types[{i}]", "an event type is required"))
        else:
            kinds.append(kind)
    severity = SEVERITIES.get(msg.min_severity)
    if severity is None:
        v.append(FieldViolation(f"{path}.min_severity", "SEVERITY_INFO, _WARNING or _ERROR"))
    timeout_s: int | None = DEFAULT_ACK_TIMEOUT_S
    if msg.HasField("ack_timeout"):
        timeout_s = seconds_from_proto(msg.ack_timeout, f"{path}.ack_timeout", v)
    if len(v) > before or severity is None or timeout_s is None:
        return None
    definition = TopicDefinition(
        # Sorted: the same topic sent with its types in another order is the same topic.
        event_types=tuple(sorted(kinds)),
        series_patterns=tuple(msg.series_patterns),
        min_severity=severity,
        max_attempts=msg.max_delivery_attempts or DEFAULT_MAX_ATTEMPTS,
        ack_timeout_s=timeout_s,
        description=msg.description,
    )
    problems = definition_violations(definition, path)
    v.extend(problems)
    return None if problems else definition
