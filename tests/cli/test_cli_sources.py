"""`qis sources list|show`, called through add_sources_parser as main.py registers it, against
the real command, projector and query services in this process (the CLI's blocking calls run in
a thread, so that the services keep answering on the loop)."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from qis.data.v1 import query_service_pb2 as q
from qis_cli.main import _add_connection_options
from qis_cli.sources import add_sources_parser

from tests.service.query.test_query_sources import DEGRADED, FEEDER, register, report, stack


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qis")
    add_sources_parser(
        parser.add_subparsers(dest="command", required=True), _add_connection_options
    )
    return parser.parse_args(argv)


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    args = parse(*argv, "--user", "cli")
    assert await asyncio.to_thread(args.run, args) == 0
    return capsys.readouterr().out


async def test_sources_list_and_show_print_configuration_health_and_cost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with stack() as s:
        await register(s, "cg", "coingecko", "0.25")
        await register(s, "drop", "file", "0")
        reported = await s.command.ReportDataSourceHealth(
            report("cg", 0, DEGRADED, 8, failures=2), metadata=FEEDER
        )
        # Read-your-writes without a flag: wait here until the query side has the report.
        await s.query.GetDataSource(
            q.GetDataSourceRequest(name="sources/cg", min_position=reported.commit_position),
            metadata=FEEDER,
        )
        address = s.query_address
        listed = await run(capsys, "sources", "list", "--address", address)
        only_files = await run(
            capsys, "sources", "list", "--provider", "file", "--address", address
        )
        shown = await run(capsys, "sources", "show", "cg", "--address", address)
        never = await run(capsys, "sources", "show", "sources/drop", "--address", address)
    lines = listed.splitlines()
    assert lines[0].split() == [
        "source", "provider", "state", "health", "since", "requests", "failures", "cost"
    ]  # fmt: skip
    assert lines[1].split() == [
        "cg", "coingecko", "enabled", "degraded", "2026-01-01T00:00:30Z", "8", "2", "2.00"
    ]  # fmt: skip
    assert lines[2].split() == ["drop", "file", "enabled", "-", "-", "0", "0", "0"]
    assert [line.split()[0] for line in only_files.splitlines()] == ["source", "drop"]
    shown_lines = {" ".join(line.split()) for line in shown.splitlines()}
    assert {
        "health degraded since 2026-01-01T00:00:30Z",
        "requests 8 (2 failed, 2 rate limited, 2 retries)",
        "latency p50/p99 120 ms / 1000.5 ms",
        "cost 2.00",
        "last error HTTP 429",
        "usage of 2026-01-01 1 reports, 8 requests, 2 failed, cost 2.00",
        "usage in total 1 reports, 8 requests, 2 failed, cost 2.00",
        "setting coin.id bitcoin",
        "cost per request 0.25",
    } <= shown_lines
    assert "health no report yet" in {" ".join(line.split()) for line in never.splitlines()}


def test_an_unknown_state_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        parse("sources", "list", "--state", "broken")
    assert parse("sources", "list").state == "all"
