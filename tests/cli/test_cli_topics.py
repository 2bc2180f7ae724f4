"""`qis topics set|delete` against the real command service, `list|parked|replay` against
the real query service: the request a person's options make, and the answers they see."""

from __future__ import annotations

import argparse
import time
import uuid

import pytest
from google.protobuf import duration_pb2
from qis.data.v1 import quality_pb2, routing_pb2
from qis_cli.topics import (
    add_topics_parser,
    cmd_delete,
    cmd_list,
    cmd_parked,
    cmd_replay,
    cmd_set,
    set_request,
)

from tests.e2e.harness import Cluster


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qis")

    def connection(sub: argparse.ArgumentParser, service: str) -> None:
        sub.add_argument("--address", default="")
        sub.add_argument("--user", default="ada")
        sub.add_argument("--token")

    add_topics_parser(parser.add_subparsers(dest="command"), connection)
    return parser.parse_args(argv)


def test_options_make_the_topic() -> None:
    args = parse(
        "topics", "set", "topics/ops-domain.quality-alert", "--events", "issues,restated",
        "--series", "EQ.*", "--series", "IDX.?", "--min-severity", "error",
        "--max-attempts", "3", "--ack-timeout", "2m", "--command-id", "c1",
    )  # fmt: skip
    request = set_request(args)
    assert request.command_id == "c1"
    assert request.topic == routing_pb2.Topic(
        name="topics/ops-domain.quality-alert",
        event_types=[
            routing_pb2.ROUTED_EVENT_TYPE_QUALITY_ISSUE_DETECTED,
            routing_pb2.ROUTED_EVENT_TYPE_DATA_RESTATED,
        ],
        series_patterns=["EQ.*", "IDX.?"],
        min_severity=quality_pb2.SEVERITY_ERROR,
        max_delivery_attempts=3,
        ack_timeout=duration_pb2.Duration(seconds=120),
    )
    # Defaults are left to the server (5 attempts, 30 s).
    plain = set_request(parse("topics", "set", "a.b", "--events", "published"))
    assert not plain.topic.HasField("ack_timeout")
    assert plain.topic.max_delivery_attempts == 0


def test_unknown_event_types_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("topics", "set", "a.b", "--events", "published,ingested")
    assert "event types are published, restated, issues" in capsys.readouterr().err


def test_set_and_delete_a_topic(services: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"cli-test.{uuid.uuid4().hex[:8]}"
    address = services.address("command")
    setting = ["topics", "set", name, "--events", "published", "--command-id", f"set-{name}"]
    assert cmd_set(parse(*setting, "--address", address)) == 0
    assert cmd_set(parse(*setting, "--address", address)) == 0  # the same command again
    assert cmd_delete(parse("topics", "delete", name, "--address", address)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"set topics/{name} (commit position ")
    assert out[1].startswith(f"set topics/{name}: already done by this command id")
    assert out[2].startswith(f"deleted topics/{name} (commit position ")


def test_list_parked_and_replay_through_the_query_service(
    services: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"cli-list.{uuid.uuid4().hex[:8]}"
    setting = ["topics", "set", name, "--events", "published,restated", "--series", "EQ.*"]
    assert cmd_set(parse(*setting, "--address", services.address("command"))) == 0
    query = services.address("query")
    for _ in range(200):  # projected
        capsys.readouterr()
        assert cmd_list(parse("topics", "list", "--address", query)) == 0
        if f"topics/{name}\t" in capsys.readouterr().out:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the topic was never listed")
    lines = [line for line in _listed(query, capsys) if line.startswith(f"topics/{name}\t")]
    assert lines == [f"topics/{name}\tpublished,restated\tEQ.*"]
    assert cmd_parked(parse("topics", "parked", name, "--group", "g", "--address", query)) == 0
    assert capsys.readouterr().out == ""  # nothing parked
    replay = ["topics", "replay", name, "--group", "g", "--max", "10", "--address", query]
    assert cmd_replay(parse(*replay)) == 0
    assert capsys.readouterr().out == f"replayed 0 entries of topics/{name} for group g\n"


def _listed(address: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert cmd_list(parse("topics", "list", "--address", address)) == 0
    return capsys.readouterr().out.splitlines()
