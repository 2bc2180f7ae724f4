"""`qis topics set|delete NAME`: the topics other domains consume (docs/routing.md), defined
through the command service; `qis topics list|consume|parked|replay`: the topics in force and
their consumer groups, served by the query service (TopicService)."""

from __future__ import annotations

import argparse
import queue
from collections.abc import Callable, Iterator

from google.protobuf import duration_pb2, json_format
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import quality_pb2, routing_pb2
from qis.data.v1 import topic_service_pb2 as tpb
from qis.data.v1 import topic_service_pb2_grpc as tpb_grpc

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
    """`qis topics set|delete` (command service), `list|consume|parked|replay` (query
    service); `add_connection`: the --address and identity options of the CLI."""
    topics = commands.add_parser("topics", help="topics other domains consume, and their groups")
    actions = topics.add_subparsers(
        dest="action",
        required=True,
        metavar="ACTION",
        help="set, delete, list, consume, parked or replay",
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
    listing = actions.add_parser("list", help="the topics in force")
    add_connection(listing, "query")
    listing.set_defaults(run=cmd_list)
    consuming = actions.add_parser(
        "consume", help="consume a topic as a member of a group: print each entry, ack it"
    )
    consuming.add_argument("topic", help="topic name (or topics/NAME)")
    consuming.add_argument("--group", required=True, help="the consumer group")
    consuming.add_argument("--consumer", default="cli", help="this consumer's name in the group")
    consuming.add_argument(
        "--max", type=int, default=0, help="stop after this many entries (default: never)"
    )
    add_connection(consuming, "query")
    consuming.set_defaults(run=cmd_consume)
    parked = actions.add_parser("parked", help="the entries a group parked")
    parked.add_argument("topic", help="topic name (or topics/NAME)")
    parked.add_argument("--group", required=True)
    add_connection(parked, "query")
    parked.set_defaults(run=cmd_parked)
    replaying = actions.add_parser("replay", help="deliver a group's parked entries again")
    replaying.add_argument("topic", help="topic name (or topics/NAME)")
    replaying.add_argument("--group", required=True)
    replaying.add_argument("--max", type=int, default=1_000, help="entries at most (1,000)")
    add_connection(replaying, "query")
    replaying.set_defaults(run=cmd_replay)


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


def cmd_list(args: argparse.Namespace) -> int:
    metadata = identity(args.user, args.token)

    def pages(stub: tpb_grpc.TopicServiceStub) -> list[routing_pb2.Topic]:
        topics: list[routing_pb2.Topic] = []
        token = ""
        while True:
            page = stub.ListTopics(tpb.ListTopicsRequest(page_token=token), metadata=metadata)
            topics.extend(page.topics)
            if not (token := page.next_page_token):
                return topics

    for topic in call(args.address, "query", tpb_grpc.TopicServiceStub, pages):
        kinds = ",".join(k for k, n in EVENT_TYPES.items() if n in topic.event_types)
        series = " ".join(topic.series_patterns) or "*"
        print(f"{topic.name}\t{kinds}\t{series}")
    return 0


def consume_requests(
    first: tpb.ConsumeRequest, acks: queue.Queue[str | None]
) -> Iterator[tpb.ConsumeRequest]:
    """The subscription, then an ack of each entry printed, until None."""
    yield first
    while (delivery_id := acks.get()) is not None:
        yield tpb.ConsumeRequest(ack_ids=[delivery_id])


def cmd_consume(args: argparse.Namespace) -> int:
    metadata = identity(args.user, args.token)
    first = tpb.ConsumeRequest(
        topic=f"topics/{normalise_name(args.topic, 'topics')}",
        group=args.group,
        consumer=args.consumer,
    )
    acks: queue.Queue[str | None] = queue.Queue()

    def consume(stub: tpb_grpc.TopicServiceStub) -> int:
        seen = 0
        responses = stub.Consume(consume_requests(first, acks), metadata=metadata)
        try:
            for response in responses:
                print(json_format.MessageToJson(response, indent=None), flush=True)
                acks.put(response.delivery_id)
                seen += 1
                if seen == args.max:
                    break
        finally:
            acks.put(None)
            responses.cancel()
        return seen

    call(args.address, "query", tpb_grpc.TopicServiceStub, consume)
    return 0


def cmd_parked(args: argparse.Namespace) -> int:
    metadata = identity(args.user, args.token)
    name = f"topics/{normalise_name(args.topic, 'topics')}"

    def pages(stub: tpb_grpc.TopicServiceStub) -> list[tpb.ParkedEntry]:
        entries: list[tpb.ParkedEntry] = []
        token = ""
        while True:
            request = tpb.ListParkedRequest(topic=name, group=args.group, page_token=token)
            page = stub.ListParked(request, metadata=metadata)
            entries.extend(page.parked)
            if not (token := page.next_page_token):
                return entries

    for e in call(args.address, "query", tpb_grpc.TopicServiceStub, pages):
        state = "replayed" if e.replayed else "parked"
        print(f"{e.commit_position}.{e.index}\t{state}\t{e.attempts}\t{e.last_error}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    metadata = identity(args.user, args.token)
    name = f"topics/{normalise_name(args.topic, 'topics')}"
    request = tpb.ReplayParkedRequest(topic=name, group=args.group, max_count=args.max)
    response = call(
        args.address,
        "query",
        tpb_grpc.TopicServiceStub,
        lambda stub: stub.ReplayParked(request, metadata=metadata),
    )
    print(f"replayed {response.replayed_count} entries of {name} for group {args.group}")
    return 0
