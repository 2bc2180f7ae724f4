"""`qis topics set NAME` and `qis topics delete NAME`: the topics other domains consume
(docs/routing.md), defined through the command service. Reading a topic's log (consumer
groups) is not built yet."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from google.protobuf import duration_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import quality_pb2, routing_pb2

from qis_cli.connection import call, identity, normalise_name
from qis_cli.definitions import duration_seconds, new_command_id, outcome_text

AddConnection = Callable[[argparse.ArgumentParser, str], None]
EVENT_TYPES = {
    "published": routing_pb2.ROUTED_EVENT_TYPE_DATA_PUBLISHED,
    "restated": routing_pb2.ROUTED_EVENT_TYPE_DATA_RESTATED,
    "issues": routing_pb2.ROUTED_EVENT_TYPE_QUALITY_ISSUE_DETECTED,
}
SEVERITIES = {
    "any": quality_pb2.SEVERITY_UNSPECIFIED,
    "info": quality_pb2.SEVERITY_INFO,
    "warning": quality_pb2.SEVERITY_WARNING,
    "error": quality_pb2.SEVERITY_ERROR,
}


def add_topics_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], add_connection: AddConnection
) -> None:
    """`qis topics set|delete`, both sent to the command service (`add_connection`: the
    --address and identity options of the CLI)."""
    topics = commands.add_parser("topics", help="define or delete a topic other domains consume")
    actions = topics.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="set or delete"
    )
    setting = actions.add_parser("set", help="define a topic, or replace its definition")
    setting.add_argument("topic", help="topic name, e.g. risk-domain.recalculate (or topics/NAME)")
    setting.add_argument(
        "--events",
        required=True,
        type=_events,
        help=f"comma-separated event types it holds: {', '.join(EVENT_TYPES)}",
    )
    setting.add_argument(
        "--series",
        action="append",
        default=[],
        metavar="GLOB",
        help="only series matching this glob, e.g. 'EQ.*' (repeatable; default: every series)",
    )
    setting.add_argument(
        "--min-severity", choices=list(SEVERITIES), default="any", help="of quality issues"
    )
    setting.add_argument(
        "--max-attempts", type=int, default=0, help="deliveries before parking (default: 5)"
    )
    setting.add_argument(
        "--ack-timeout", type=duration_seconds, default=0, help="e.g. 30s, 2m (default: 30s)"
    )
    setting.add_argument("--description", default="")
    setting.add_argument("--command-id", help="makes a scripted setup repeatable")
    add_connection(setting, "command")
    setting.set_defaults(run=cmd_set)
    deleting = actions.add_parser("delete", help="end a topic: it takes no more events")
    deleting.add_argument("topic", help="topic name (or topics/NAME)")
    deleting.add_argument("--command-id", help="makes a scripted setup repeatable")
    add_connection(deleting, "command")
    deleting.set_defaults(run=cmd_delete)


def _events(text: str) -> list[routing_pb2.RoutedEventType.ValueType]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EVENT_TYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"event types are {', '.join(EVENT_TYPES)}")
    return [EVENT_TYPES[n] for n in names]


def set_request(args: argparse.Namespace) -> pb.SetTopicRequest:
    topic = routing_pb2.Topic(
        name=f"topics/{normalise_name(args.topic, 'topics')}",
        event_types=args.events,
        series_patterns=args.series,
        min_severity=SEVERITIES[args.min_severity],
        max_delivery_attempts=args.max_attempts,
        description=args.description,
    )
    if args.ack_timeout:
        topic.ack_timeout.CopyFrom(duration_pb2.Duration(seconds=args.ack_timeout))
    return pb.SetTopicRequest(command_id=args.command_id or new_command_id(), topic=topic)


def cmd_set(args: argparse.Namespace) -> int:
    request = set_request(args)
    metadata = identity(args.user, args.token)
    response = call(
        args.address,
        "command",
        pb_grpc.CommandServiceStub,
        lambda stub: stub.SetTopic(request, metadata=metadata),
    )
    print(outcome_text(f"set {request.topic.name}", response))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    name = f"topics/{normalise_name(args.topic, 'topics')}"
    request = pb.DeleteTopicRequest(command_id=args.command_id or new_command_id(), name=name)
    metadata = identity(args.user, args.token)
    response = call(
        args.address,
        "command",
        pb_grpc.CommandServiceStub,
        lambda stub: stub.DeleteTopic(request, metadata=metadata),
    )
    print(outcome_text(f"deleted {name}", response))
    return 0
