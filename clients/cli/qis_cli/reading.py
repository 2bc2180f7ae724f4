"""`qis query` and `qis subscribe`: official values as a readable table, and live changes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TextIO, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from qis.data.v1 import quality_pb2, series_pb2, values_pb2
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc

from qis_cli.connection import Metadata
from qis_cli.enums import short_name

Stub = q_grpc.QueryServiceStub
PROJECTION_WAIT_S = 2.0
"""How long a series the query service does not know is asked for again: one defined a moment
ago may not be in its read model yet (a few tens of milliseconds when the projector is idle)."""
_ASK_AGAIN_S = 0.1
_COLUMNS = (
    "snap",
    "value",
    "v",
    "quality",
    "known since",
    "method",
    "sources",
    "flags",
    "reason",
    "user",
)
Paged = TypeVar("Paged", q.QueryRangeRequest, q.GetPointHistoryRequest)


def parse_time(text: str) -> timestamp_pb2.Timestamp:
    """RFC 3339 with an offset, like snaps (a bare date means midnight UTC)."""
    moment = datetime.fromisoformat(text if "T" in text else f"{text}T00:00:00Z")
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset: add 'Z' or '+hh:mm'")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def value_text(value: values_pb2.DataValue) -> str:
    kind = value.WhichOneof("kind")
    if kind == "price":
        return f"{value.price.value} {value.price.currency}"
    if kind == "volume":
        return f"{value.volume.quantity} {value.volume.unit}"
    if kind == "bar":
        b = value.bar
        return f"O {b.open} H {b.high} L {b.low} C {b.close}"
    if kind == "options_chain":
        return f"{len(value.options_chain.quotes)} quotes"
    if kind == "term_structure":
        nodes = value.term_structure.nodes
        return f"{len(nodes)} nodes {nodes[0].tenor}..{nodes[-1].tenor}" if nodes else "0 nodes"
    if kind == "surface":
        tenors = {n.tenor for n in value.surface.nodes}
        coordinates = {n.coordinate for n in value.surface.nodes}
        return f"{len(value.surface.nodes)} nodes ({len(tenors)} tenors x {len(coordinates)})"
    if kind == "corporate_action":
        a = value.corporate_action
        action = short_name(values_pb2.CorporateActionType.DESCRIPTOR, a.type)
        return f"{action} ex {a.ex_date.year:04}-{a.ex_date.month:02}-{a.ex_date.day:02}"
    return ""


def _time(ts: timestamp_pb2.Timestamp) -> str:
    return ts.ToJsonString()


def rows_of(values: Iterable[q.OfficialValue]) -> list[tuple[str, ...]]:
    """One row per version. Sources as their ids, as they were given to define-series (a
    manual value has none: its method says "manual"); method and flags as short names."""
    return [
        (
            _time(v.snap_time),
            value_text(v.value),
            str(v.version),
            f"{v.quality_score:.2f}",
            _time(v.record_time),
            short_name(q.ValueMethod.DESCRIPTOR, v.method),
            ",".join(source.removeprefix("sources/") for source in v.sources),
            ",".join(short_name(quality_pb2.QualityRule.DESCRIPTOR, flag) for flag in v.flags),
            v.reason,
            v.user,
        )
        for v in values
    ]


def render_table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = (
        [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)] if rows else []
    )
    if not rows:
        print("(no official values)", file=out)
        return
    print("  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip(), file=out)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _at_token(request: Paged, token: str) -> Paged:
    """A copy of `request` for the page at `token`: the caller's request is left as it was."""
    following = type(request)()
    following.CopyFrom(request)
    following.page_token = token
    return following


def query(stub: Stub, request: q.QueryRangeRequest, metadata: Metadata) -> list[tuple[str, ...]]:
    """Every point of the range: a call streams a bounded number of them, the last message's
    next_page_token continues."""
    rows: list[tuple[str, ...]] = []
    while True:
        token = ""
        for response in stub.QueryRange(request, metadata=metadata):
            rows.extend(rows_of(response.values))
            token = response.next_page_token
        if not token:
            return rows
        request = _at_token(request, token)


def history(
    stub: Stub, request: q.GetPointHistoryRequest, metadata: Metadata
) -> list[tuple[str, ...]]:
    """Every version of the point: the service pages a history (versions and observations
    together, in commit order), so the pages are read to the last; versions stay ascending."""
    versions: list[q.OfficialValue] = []
    while True:
        page = stub.GetPointHistory(request, metadata=metadata)
        versions.extend(page.versions)
        if not page.next_page_token:
            return rows_of(versions)
        request = _at_token(request, page.next_page_token)


def subscribe(stub: Stub, request: q.SubscribeRequest, metadata: Metadata, out: TextIO) -> None:
    """Prints each change as it arrives, with the token to resume from, until interrupted."""
    for response in stub.Subscribe(request, metadata=metadata):
        for value in response.values:
            reason = f"  ({value.reason})" if value.reason else ""
            print(
                f"{value.series}  {_time(value.snap_time)}  v{value.version}  {value_text(value.value)}{reason}",
                file=out,
            )
        print(f"# resume token: {response.resume_token}", file=out, flush=True)


def get_series(
    stub: Stub, series_id: str, metadata: Metadata, wait_s: float = PROJECTION_WAIT_S
) -> series_pb2.Series:
    """The current definition of a series; NOT_FOUND only once it has been asked for wait_s."""
    request = q.GetSeriesRequest(name=f"series/{series_id}")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            series: series_pb2.Series = stub.GetSeries(request, metadata=metadata)
            return series
        except grpc.RpcError as error:
            not_found = isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.NOT_FOUND
            if not not_found or time.monotonic() >= deadline:
                raise
        time.sleep(_ASK_AGAIN_S)
