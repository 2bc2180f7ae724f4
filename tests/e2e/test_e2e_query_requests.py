"""Requests the query service must refuse with a precise status, over gRPC: a subscription to an
unknown series (NOT_FOUND), a page token sent with another request than the one it came from,
a time range that ends before it starts, and integers no store can hold or no calendar knows
(INVALID_ARGUMENT naming the field, never UNKNOWN or a silent empty answer).

The query service is built by its composition root on an SQLite read store (the default one,
whose int64 columns are what an out-of-range integer used to break) written through the port,
and served in this process on a free port: no command side or projector is needed to produce
these read models.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.bounds import MAX_POSITION, MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS
from qis_query.settings import QuerySettings

from tests.contract.readstore.test_readstore_contract import SNAPS
from tests.e2e.harness import as_user, timestamp
from tests.e2e.test_e2e_malformed_input import rich_status, violations
from tests.service.query.readmodel import HEAD, OTHER, SERIES, write_scenario
from tests.support.servers import query_service

NAME, OTHER_NAME = f"series/{SERIES}", f"series/{OTHER}"
MD = as_user("reader")
STREAMING = ("QueryRange", "Subscribe")
ANSWER_WITHIN_S = 5.0


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[q_grpc.QueryServiceAsyncStub]:
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await store.set_active_generation("g1")
    await write_scenario(store)
    settings = QuerySettings(
        auth="dev", query_address="127.0.0.1:0", query_max_wait_s=0.2, subscribe_poll_s=0.01
    )
    try:
        async with query_service(store, settings) as stub:
            yield stub
    finally:
        await store.close()


async def refused(
    stub: q_grpc.QueryServiceAsyncStub, rpc: str, request: Message
) -> tuple[grpc.StatusCode, dict[str, str]]:
    """The status a call ends with and its field violations (field -> description); fails the
    test when the call answers instead (for a stream: its first message)."""
    call = getattr(stub, rpc)(request, metadata=MD)
    try:
        if rpc in STREAMING:
            answer = await asyncio.wait_for(call.read(), ANSWER_WITHIN_S)
        else:
            answer = await asyncio.wait_for(call, ANSWER_WITHIN_S)
    except grpc.aio.AioRpcError as error:
        status = await rpc_status.aio.from_call(call)
        found = violations(status) if status is not None else []
        return error.code(), {v.field: v.description for v in found}
    finally:
        call.cancel()
    raise AssertionError(f"{rpc} answered {answer!r}")


def at(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def forged(**fields: object) -> str:
    """A token of the service's current shape, with content it never issued."""
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()


# --- Subscribe to an unknown series --------------------------------------------------------------


async def test_subscribing_to_an_unknown_series_is_not_found(
    stub: q_grpc.QueryServiceAsyncStub,
) -> None:
    request = q.SubscribeRequest(series=[NAME, "series/NOPE"], after_position=HEAD)
    call = stub.Subscribe(request, metadata=MD)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await asyncio.wait_for(call.read(), ANSWER_WITHIN_S)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    status = await rich_status(call)
    info = error_details_pb2.ResourceInfo()
    assert status.details[0].Unpack(info)
    assert (info.resource_name, info.description) == ("series/NOPE", "series[1]")


# --- a page token belongs to its request ---------------------------------------------------------


def rpc_of(request: Message) -> str:
    return type(request).__name__.removesuffix("Request")


async def first_page_token(stub: q_grpc.QueryServiceAsyncStub, request: Message) -> str:
    call = getattr(stub, rpc_of(request))(request, metadata=MD)
    first = await call.read() if rpc_of(request) in STREAMING else await call
    call.cancel()
    token: str = first.next_page_token
    return token


# (what the token was issued for, what it is sent with)
TOKEN_MISUSES = [
    ("range-of-another-series", q.QueryRangeRequest(series=NAME, page_size=1), q.QueryRangeRequest(series=OTHER_NAME)),
    ("range-with-another-start", q.QueryRangeRequest(series=NAME, page_size=1, start=timestamp(SNAPS[0])), q.QueryRangeRequest(series=NAME, start=timestamp(SNAPS[1]))),
    ("range-with-another-end", q.QueryRangeRequest(series=NAME, page_size=1, end=timestamp(SNAPS[4])), q.QueryRangeRequest(series=NAME)),
    ("latest-token-to-known-at", q.QueryRangeRequest(series=NAME, page_size=1), q.QueryRangeRequest(series=NAME, known_at=timestamp(2500))),
    ("range-at-another-position", q.QueryRangeRequest(series=NAME, page_size=1, at_position=20), q.QueryRangeRequest(series=NAME, at_position=30)),
    ("audit-of-another-series", q.ListAuditEntriesRequest(series=NAME, page_size=1), q.ListAuditEntriesRequest(series=OTHER_NAME)),
    ("audit-of-one-point", q.ListAuditEntriesRequest(series=NAME, page_size=1), q.ListAuditEntriesRequest(series=NAME, snap=timestamp(SNAPS[0]))),
    ("issues-with-another-filter", q.ListQualityIssuesRequest(page_size=1), q.ListQualityIssuesRequest(severity="error")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("issued_for", "sent_with"), [pytest.param(*case[1:], id=case[0]) for case in TOKEN_MISUSES]
)
async def test_a_page_token_is_refused_with_another_request(
    stub: q_grpc.QueryServiceAsyncStub, issued_for: Message, sent_with: Message
) -> None:
    token = await first_page_token(stub, issued_for)
    assert token
    request = type(sent_with)()
    request.CopyFrom(sent_with)
    # Each request type has its own page_token field; Message has none.
    setattr(request, "page_token", token)  # noqa: B010
    code, fields = await refused(stub, rpc_of(request), request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(fields) == ["page_token"]


async def test_a_page_token_resumes_its_own_request_with_another_page_size(
    stub: q_grpc.QueryServiceAsyncStub,
) -> None:
    request = q.QueryRangeRequest(series=NAME, page_size=1, known_at=timestamp(2500))
    token = await first_page_token(stub, request)
    rest = q.QueryRangeRequest(
        series=NAME, known_at=timestamp(2500), page_token=token, min_position=HEAD
    )
    values = [v async for reply in stub.QueryRange(rest, metadata=MD) for v in reply.values]
    assert [(v.snap.seconds, v.version) for v in values] == [
        (timestamp(s).seconds, 2 if i == 2 else 1) for i, s in enumerate(SNAPS[1:], 1)
    ]


# --- a time range that ends before it starts -----------------------------------------------------


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        pytest.param(
            "QueryRange",
            q.QueryRangeRequest(series=NAME, start=timestamp(SNAPS[3]), end=timestamp(SNAPS[1])),
            id="QueryRange",
        ),
        pytest.param(
            "ListQualityMetrics",
            q.ListQualityMetricsRequest(
                series=NAME, start=timestamp(SNAPS[3]), end=timestamp(SNAPS[1])
            ),
            id="ListQualityMetrics",
        ),
    ],
)
async def test_a_range_ending_before_it_starts_is_invalid(
    stub: q_grpc.QueryServiceAsyncStub, rpc: str, request_: Message
) -> None:
    code, fields = await refused(stub, rpc, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(fields) == ["end", "start"]


# --- integers out of range -----------------------------------------------------------------------

BEYOND_INT64 = MAX_POSITION + 1
FAR = 2**62  # seconds: its microseconds overflow int64
AFTER_9999 = MAX_TIMESTAMP_SECONDS + 1
BEFORE_0001 = MIN_TIMESTAMP_SECONDS - 1
ONE_SNAP = [timestamp(SNAPS[0])]

OUT_OF_RANGE = [
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=ONE_SNAP, at_position=BEYOND_INT64), "at_position"),
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=ONE_SNAP, min_position=2**64 - 1), "min_position"),
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=[*ONE_SNAP, at(FAR)]), "snaps[1].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=[at(-FAR)]), "snaps[0].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=[at(AFTER_9999)]), "snaps[0].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=[at(BEFORE_0001)]), "snaps[0].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=[at(0, 1_000_000_000)]), "snaps[0].nanos"),
    ("GetValues", q.GetValuesRequest(series=NAME, snaps=ONE_SNAP, known_at=at(FAR)), "known_at.seconds"),
    ("Subscribe", q.SubscribeRequest(series=[NAME], after_position=BEYOND_INT64), "after_position"),
    ("Subscribe", q.SubscribeRequest(resume_token=forged(k="feed", position=BEYOND_INT64, index=0)), "resume_token"),
    ("Subscribe", q.SubscribeRequest(resume_token=forged(k="feed", position=-1, index=0)), "resume_token"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, start=at(FAR)), "start.seconds"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, end=at(-FAR)), "end.seconds"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, known_at=at(AFTER_9999)), "known_at.seconds"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, at_position=2**64 - 1), "at_position"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, min_position=BEYOND_INT64), "min_position"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, page_token=forged(k="range", after=FAR * 10**6)), "page_token"),
    ("ListQualityMetrics", q.ListQualityMetricsRequest(series=NAME, end=at(FAR)), "end.seconds"),
    ("GetPointHistory", q.GetPointHistoryRequest(series=NAME, snap=at(-FAR)), "snap.seconds"),
    ("GetPointHistory", q.GetPointHistoryRequest(series=NAME, snap=at(AFTER_9999)), "snap.seconds"),
    ("ListQualityIssues", q.ListQualityIssuesRequest(raised_before=at(FAR)), "raised_before.seconds"),
    ("ListAuditEntries", q.ListAuditEntriesRequest(series=NAME, snap=at(FAR)), "snap.seconds"),
    ("ListAuditEntries", q.ListAuditEntriesRequest(series=NAME, page_token=forged(k="audit", position=BEYOND_INT64, index=0)), "page_token"),
    ("GetSeries", q.GetSeriesRequest(name=NAME, min_position=BEYOND_INT64), "min_position"),
    ("ListSeries", q.ListSeriesRequest(min_position=BEYOND_INT64), "min_position"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rpc", "request_", "field"),
    [pytest.param(*case, id=f"{case[0]}-{case[2]}-{i}") for i, case in enumerate(OUT_OF_RANGE)],
)
async def test_an_integer_out_of_range_is_invalid_argument_naming_its_field(
    stub: q_grpc.QueryServiceAsyncStub, rpc: str, request_: Message, field: str
) -> None:
    code, fields = await refused(stub, rpc, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(fields) == [field]


async def test_every_field_out_of_range_is_listed(stub: q_grpc.QueryServiceAsyncStub) -> None:
    request = q.QueryRangeRequest(
        series=NAME, start=at(FAR), end=at(AFTER_9999), at_position=BEYOND_INT64,
        min_position=BEYOND_INT64,
    )  # fmt: skip
    code, fields = await refused(stub, "QueryRange", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(fields) == ["at_position", "end.seconds", "min_position", "start.seconds"]
