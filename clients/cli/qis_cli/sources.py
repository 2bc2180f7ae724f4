"""`qis sources list` and `qis sources show ID`: the data sources, their configuration, their
feeds' latest health and what their requests cost (docs/data-sources.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from google.protobuf import duration_pb2, timestamp_pb2
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis.data.v1 import series_pb2

from qis_cli.connection import Metadata, call, identity, normalise_name
from qis_cli.enums import short_name

AddConnection = Callable[[argparse.ArgumentParser, str], None]
Stub = q_grpc.QueryServiceStub
_STATES = {
    "enabled": q.SOURCE_STATE_ENABLED,
    "disabled": q.SOURCE_STATE_DISABLED,
    "all": q.SOURCE_STATE_UNSPECIFIED,
}
_COLUMNS = ("source", "provider", "state", "health", "since", "requests", "failures", "cost")


def add_sources_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], add_connection: AddConnection
) -> None:
    """`qis sources list|show`, both asking the query service (`add_connection`: the
    --address and identity options of the CLI)."""
    sources = commands.add_parser(
        "sources", help="list the data sources, or show one: configuration, health and cost"
    )
    actions = sources.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="list or show"
    )
    listing = actions.add_parser("list", help="every data source, one line each")
    listing.add_argument("--provider", default="", help="only the sources of this provider")
    listing.add_argument(
        "--state", choices=sorted(_STATES), default="all", help="default: %(default)s"
    )
    add_connection(listing, "query")
    listing.set_defaults(run=cmd_list)
    show = actions.add_parser("show", help="one source: configuration, latest health, usage")
    show.add_argument("source", help="source id (or sources/ID)")
    add_connection(show, "query")
    show.set_defaults(run=cmd_show)


def cmd_list(args: argparse.Namespace) -> int:
    request = q.ListDataSourcesRequest(provider=args.provider, state=_STATES[args.state])
    metadata = identity(args.user, args.token)
    found = call(args.address, "query", Stub, lambda stub: list_sources(stub, request, metadata))
    render_table(found, sys.stdout)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    name = f"sources/{normalise_name(args.source, 'sources')}"
    request = q.GetDataSourceRequest(name=name)
    metadata = identity(args.user, args.token)
    source = call(
        args.address, "query", Stub, lambda stub: stub.GetDataSource(request, metadata=metadata)
    )
    render_source(source, sys.stdout)
    return 0


def list_sources(
    stub: Stub, request: q.ListDataSourcesRequest, metadata: Metadata
) -> list[series_pb2.DataSource]:
    """Every page, until the token is empty (a filtered page may hold fewer, even none)."""
    found: list[series_pb2.DataSource] = []
    page_request = q.ListDataSourcesRequest()
    page_request.CopyFrom(request)
    while True:
        page = stub.ListDataSources(page_request, metadata=metadata)
        found.extend(page.data_sources)
        if not page.next_page_token:
            return found
        page_request.page_token = page.next_page_token


def _row(s: series_pb2.DataSource) -> tuple[str, ...]:
    health = s.health if s.HasField("health") else None
    return (
        s.name.removeprefix("sources/"),
        s.provider,
        "disabled" if s.disabled else "enabled",
        "-" if health is None else _status(health.status),
        "-" if health is None else _time(health.status_change_time),
        str(s.total_usage.request_count),
        str(s.total_usage.failure_count),
        s.total_usage.cost or "0",
    )


def render_table(found: Sequence[series_pb2.DataSource], out: TextIO) -> None:
    if not found:
        print("(no data sources)", file=out)
        return
    rows = [_row(s) for s in found]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    for row in (_COLUMNS, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def render_source(s: series_pb2.DataSource, out: TextIO) -> None:
    lines = [
        ("source", s.name),
        ("provider", s.provider),
        ("state", "disabled" if s.disabled else "enabled"),
        ("description", s.description),
        ("rate limit", f"{s.rate_limit_per_minute}/min" if s.rate_limit_per_minute else "none"),
        ("cost per request", s.cost_per_request or "0"),
        ("credentials", s.credentials_ref or "none"),
        ("retries", _retry(s.retry_policy) if s.HasField("retry_policy") else "the feed's own"),
        *((f"setting {k}", v) for k, v in sorted(s.settings.items())),
    ]
    if s.HasField("health"):
        h = s.health
        lines += [
            ("health", f"{_status(h.status)} since {_time(h.status_change_time)}"),
            ("last report", f"{_time(h.start_time)} .. {_time(h.end_time)}"),
            (
                "  requests",
                f"{h.request_count} ({h.failure_count} failed, {h.rate_limited_count} rate"
                f" limited, {h.retry_count} retries)",
            ),
            ("  points", f"{h.points_received} received, {h.points_sent} sent"),
            ("  latency p50/p99", f"{_duration(h.latency_p50)} / {_duration(h.latency_p99)}"),
            ("  cost", h.cost),
            (
                "  last success",
                _time(h.last_success_time) if h.HasField("last_success_time") else "-",
            ),
            ("  last error", h.last_error or "-"),
            *((f"  {i.series.removeprefix('series/')}", _freshness(i)) for i in h.instruments),
        ]
    else:
        lines.append(("health", "no report yet"))
    if s.HasField("total_usage"):
        d = s.day_usage.day
        lines += [
            (f"usage of {d.year:04d}-{d.month:02d}-{d.day:02d}", _usage(s.day_usage)),
            ("  points", _points(s.day_usage)),
            ("usage in total", _usage(s.total_usage)),
            ("  points", _points(s.total_usage)),
        ]
    width = max(len(label) for label, _ in lines)
    for label, text in lines:
        print(f"{label.ljust(width)}  {text}".rstrip(), file=out)


def _usage(u: series_pb2.DataSourceUsage) -> str:
    return (
        f"{u.report_count} reports, {u.request_count} requests, {u.failure_count} failed,"
        f" cost {u.cost}"
    )


def _points(u: series_pb2.DataSourceUsage) -> str:
    return f"{u.points_received} received, {u.points_sent} sent"


def _retry(r: series_pb2.DataSourceRetryPolicy) -> str:
    return (
        f"{r.max_attempts} attempts, backoff {r.initial_backoff.ToMicroseconds() / 1_000:g} ms"
        f" up to {r.max_backoff.ToMicroseconds() / 1_000:g} ms"
    )


def _freshness(i: series_pb2.DataSourceInstrumentHealth) -> str:
    if not i.HasField("latest_value_time"):
        return "no value yet"
    age_s = i.staleness.ToMicroseconds() / 1_000_000
    return f"latest value {_time(i.latest_value_time)}, {age_s:g} s old"


def _status(status: series_pb2.DataSourceStatus.ValueType) -> str:
    return short_name(series_pb2.DataSourceStatus.DESCRIPTOR, status)


def _time(ts: timestamp_pb2.Timestamp) -> str:
    return ts.ToDatetime().isoformat() + "Z"


def _duration(d: duration_pb2.Duration) -> str:
    return "-" if d.ByteSize() == 0 else f"{d.ToMicroseconds() / 1_000:g} ms"
