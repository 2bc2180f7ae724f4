"""Requests the query service must refuse with a precise status, over gRPC: a subscription to an
unknown series (NOT_FOUND), a page token sent with another request than the one it came from,
a time range that ends before it starts, integers no store can hold or no calendar knows, and
AIP-160 filters outside the subset the list RPCs accept (INVALID_ARGUMENT naming the field,
never UNKNOWN or a silent empty answer); and the filters they accept, answered.

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
from qis_domain.bounds import MAX_POSITION, MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS
from qis_query.settings import QuerySettings

from tests.contract.readstore.test_readstore_contract import SNAPS
from tests.e2e.harness import as_user, rfc3339, timestamp
from tests.e2e.test_e2e_malformed_input import rich_status, violations
from tests.service.query.readmodel import HEAD, OTHER, SERIES, scenario_service

NAME, OTHER_NAME = f"series/{SERIES}", f"series/{OTHER}"
MD = as_user("reader")
STREAMING = ("QueryRange", "Subscribe")
ANSWER_WITHIN_S = 5.0


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[q_grpc.QueryServiceAsyncStub]:
    settings = QuerySettings(
        auth="dev", query_address="127.0.0.1:0", query_max_wait_s=0.2, subscribe_poll_s=0.01
    )
    async with scenario_service(tmp_path / "read.db", settings) as stub:
        yield stub


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
SNAP_0 = f'snap_time = "{rfc3339(SNAPS[0])}"'
TOKEN_MISUSES = [
    ("range-of-another-series", q.QueryRangeRequest(series=NAME, page_size=1), q.QueryRangeRequest(series=OTHER_NAME)),
    ("range-with-another-start", q.QueryRangeRequest(series=NAME, page_size=1, start_time=timestamp(SNAPS[0])), q.QueryRangeRequest(series=NAME, start_time=timestamp(SNAPS[1]))),
    ("range-with-another-end", q.QueryRangeRequest(series=NAME, page_size=1, end_time=timestamp(SNAPS[4])), q.QueryRangeRequest(series=NAME)),
    ("latest-token-to-as-of-time", q.QueryRangeRequest(series=NAME, page_size=1), q.QueryRangeRequest(series=NAME, as_of_time=timestamp(2500))),
    ("range-at-another-position", q.QueryRangeRequest(series=NAME, page_size=1, as_of_position=20), q.QueryRangeRequest(series=NAME, as_of_position=30)),
    ("audit-of-another-series", q.ListAuditEntriesRequest(parent=NAME, page_size=1), q.ListAuditEntriesRequest(parent=OTHER_NAME)),
    ("audit-of-every-entry", q.ListAuditEntriesRequest(parent=NAME, page_size=1), q.ListAuditEntriesRequest(parent="-")),
    ("audit-with-a-filter", q.ListAuditEntriesRequest(parent=NAME, page_size=1), q.ListAuditEntriesRequest(parent=NAME, filter=SNAP_0)),
    ("audit-with-another-filter", q.ListAuditEntriesRequest(parent=NAME, page_size=1, filter='user = "alice"'), q.ListAuditEntriesRequest(parent=NAME, filter='user != "bob"')),
    ("issues-with-another-filter", q.ListQualityIssuesRequest(parent="series/-", page_size=1), q.ListQualityIssuesRequest(parent="series/-", filter="severity = ERROR")),
    ("issues-of-another-parent", q.ListQualityIssuesRequest(parent=NAME, page_size=1), q.ListQualityIssuesRequest(parent="series/-")),
    ("history-of-another-point", q.GetPointHistoryRequest(series=NAME, snap_time=timestamp(SNAPS[2]), page_size=1), q.GetPointHistoryRequest(series=NAME, snap_time=timestamp(SNAPS[0]))),
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
    request = q.QueryRangeRequest(series=NAME, page_size=1, as_of_time=timestamp(2500))
    token = await first_page_token(stub, request)
    rest = q.QueryRangeRequest(
        series=NAME, as_of_time=timestamp(2500), page_token=token, min_position=HEAD
    )
    values = [v async for reply in stub.QueryRange(rest, metadata=MD) for v in reply.values]
    assert [(v.snap_time.seconds, v.version) for v in values] == [
        (timestamp(s).seconds, 2 if i == 2 else 1) for i, s in enumerate(SNAPS[1:], 1)
    ]


# --- a time range that ends before it starts -----------------------------------------------------


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        pytest.param(
            "QueryRange",
            q.QueryRangeRequest(
                series=NAME, start_time=timestamp(SNAPS[3]), end_time=timestamp(SNAPS[1])
            ),
            id="QueryRange",
        ),
        pytest.param(
            "ListQualityMetrics",
            q.ListQualityMetricsRequest(
                series=NAME, start_time=timestamp(SNAPS[3]), end_time=timestamp(SNAPS[1])
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
    assert sorted(fields) == ["end_time", "start_time"]


# --- integers out of range -----------------------------------------------------------------------

BEYOND_INT64 = MAX_POSITION + 1
FAR = 2**62  # seconds: its microseconds overflow int64
AFTER_9999 = MAX_TIMESTAMP_SECONDS + 1
BEFORE_0001 = MIN_TIMESTAMP_SECONDS - 1
ONE_SNAP = [timestamp(SNAPS[0])]

ONE_POINT = timestamp(SNAPS[2])  # three versions and an observation

OUT_OF_RANGE = [
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=ONE_SNAP, as_of_position=BEYOND_INT64), "as_of_position"),
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=ONE_SNAP, min_position=2**64 - 1), "min_position"),
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=[*ONE_SNAP, at(FAR)]), "snap_times[1].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=[at(-FAR)]), "snap_times[0].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=[at(AFTER_9999)]), "snap_times[0].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=[at(BEFORE_0001)]), "snap_times[0].seconds"),
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=[at(0, 1_000_000_000)]), "snap_times[0].nanos"),
    ("GetValues", q.GetValuesRequest(series=NAME, snap_times=ONE_SNAP, as_of_time=at(FAR)), "as_of_time.seconds"),
    ("Subscribe", q.SubscribeRequest(series=[NAME], after_position=BEYOND_INT64), "after_position"),
    ("Subscribe", q.SubscribeRequest(resume_token=forged(k="feed", position=BEYOND_INT64, index=0)), "resume_token"),
    ("Subscribe", q.SubscribeRequest(resume_token=forged(k="feed", position=-1, index=0)), "resume_token"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, start_time=at(FAR)), "start_time.seconds"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, end_time=at(-FAR)), "end_time.seconds"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, as_of_time=at(AFTER_9999)), "as_of_time.seconds"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, as_of_position=2**64 - 1), "as_of_position"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, min_position=BEYOND_INT64), "min_position"),
    ("QueryRange", q.QueryRangeRequest(series=NAME, page_token=forged(k="range", after=FAR * 10**6)), "page_token"),
    ("ListQualityMetrics", q.ListQualityMetricsRequest(series=NAME, end_time=at(FAR)), "end_time.seconds"),
    ("GetPointHistory", q.GetPointHistoryRequest(series=NAME, snap_time=at(-FAR)), "snap_time.seconds"),
    ("GetPointHistory", q.GetPointHistoryRequest(series=NAME, snap_time=at(AFTER_9999)), "snap_time.seconds"),
    ("GetPointHistory", q.GetPointHistoryRequest(series=NAME, snap_time=ONE_POINT, min_position=BEYOND_INT64), "min_position"),
    ("GetPointHistory", q.GetPointHistoryRequest(series=NAME, snap_time=ONE_POINT, page_size=-1), "page_size"),
    ("GetPointHistory", q.GetPointHistoryRequest(series=NAME, snap_time=ONE_POINT, page_token=forged(k="history", position=BEYOND_INT64, index=0)), "page_token"),
    ("ListQualityIssues", q.ListQualityIssuesRequest(parent="series/-", min_position=BEYOND_INT64), "min_position"),
    ("ListQualityIssues", q.ListQualityIssuesRequest(parent="series/-", page_size=-1), "page_size"),
    ("ListAuditEntries", q.ListAuditEntriesRequest(parent=NAME, min_position=BEYOND_INT64), "min_position"),
    ("ListAuditEntries", q.ListAuditEntriesRequest(parent=NAME, page_token=forged(k="audit", position=BEYOND_INT64, index=0)), "page_token"),
    ("ListAuditEntries", q.ListAuditEntriesRequest(parent="-", page_size=-1), "page_size"),
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
        series=NAME, start_time=at(FAR), end_time=at(AFTER_9999), as_of_position=BEYOND_INT64,
        min_position=BEYOND_INT64,
    )  # fmt: skip
    code, fields = await refused(stub, "QueryRange", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(fields) == [
        "as_of_position", "end_time.seconds", "min_position", "start_time.seconds"
    ]  # fmt: skip


# --- AIP-160 filters -----------------------------------------------------------------------------

ISSUES = ["I1", "I2", "I3"]  # of S1 at T0 (SNAPS[0]): spike warnings from bbg, open, raised at 5 ms
RAISED = "1970-01-01T00:00:00.005Z"
AUDITED = "1970-01-01T00:00:00.010Z"  # the commit time of S1's five DataPublished entries

ISSUE_FILTERS = [
    ("series/-", "", ISSUES),
    (NAME, "", ISSUES),
    (OTHER_NAME, "", []),
    (NAME, "status = OPEN", ISSUES),
    (NAME, "status=OPEN", ISSUES),
    (NAME, "  rule = SPIKE   AND severity = WARNING AND status != REJECTED ", ISSUES),
    (NAME, "rule = JUMP", []),
    (NAME, "status != OPEN", []),
    ("series/-", 'source = "sources/bbg"', ISSUES),
    ("series/-", 'source != "sources/bbg"', []),
    (NAME, f'snap_time = "{rfc3339(SNAPS[0])}"', ISSUES),
    (NAME, f'snap_time > "{rfc3339(SNAPS[0])}"', []),
    (NAME, f'raise_time < "{RAISED}"', []),
    (NAME, f'raise_time <= "{RAISED}"', ISSUES),
    (NAME, 'raise_time = "1970-01-01T01:00:00.005+01:00"', ISSUES),  # the same instant
    (NAME, f'status = OPEN AND severity = WARNING AND raise_time < "{rfc3339(10**6)}"', ISSUES),
]


@pytest.mark.parametrize(
    ("parent", "filter_", "expected"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}") for case in ISSUE_FILTERS],
)
async def test_a_quality_issue_filter_selects_the_issues_it_names(
    stub: q_grpc.QueryServiceAsyncStub, parent: str, filter_: str, expected: list[str]
) -> None:
    found: list[str] = []
    request = q.ListQualityIssuesRequest(parent=parent, filter=filter_, page_size=1)
    for _ in range(10):  # a page may hold fewer issues than asked while a token follows
        page = await stub.ListQualityIssues(request, metadata=MD)
        found += [i.issue_id for i in page.issues]
        request.page_token = page.next_page_token
        if not request.page_token:
            break
    assert sorted(found) == expected
    assert not request.page_token


AUDIT_FILTERS = [
    (NAME, "", 5),
    (NAME, 'user = "alice"', 5),
    (NAME, 'user = "alice" AND action = "DataPublished"', 5),
    (NAME, 'user != "alice"', 0),
    (NAME, r'user = "al\"ice\\"', 0),  # escapes: the user al"ice\
    (NAME, r'user != "al\"ice\\"', 5),
    (NAME, 'action = "DataRestated"', 0),
    (NAME, f'snap_time = "{rfc3339(SNAPS[1])}"', 1),
    (NAME, f'commit_time >= "{AUDITED}"', 5),
    (NAME, f'commit_time > "{AUDITED}"', 0),
    (NAME, f'commit_time != "{AUDITED}"', 0),
    (NAME, f'commit_time < "{AUDITED}" AND user = "alice"', 0),
    ("-", 'user = "alice"', 5),
    (OTHER_NAME, 'user = "alice"', 0),
]


@pytest.mark.parametrize(
    ("parent", "filter_", "expected"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}") for case in AUDIT_FILTERS],
)
async def test_an_audit_filter_selects_the_entries_it_names(
    stub: q_grpc.QueryServiceAsyncStub, parent: str, filter_: str, expected: int
) -> None:
    found: list[q.AuditEntry] = []
    request = q.ListAuditEntriesRequest(parent=parent, filter=filter_, page_size=2)
    for _ in range(20):
        page = await stub.ListAuditEntries(request, metadata=MD)
        found += page.entries
        request.page_token = page.next_page_token
        if not request.page_token:
            break
    assert len(found) == expected
    assert not request.page_token
    assert {e.resource for e in found} <= {NAME}


# (RPC, parent, filter, the character offset the description must name, or None)
MALFORMED_FILTERS = [
    ("ListQualityIssues", "series/-", "status = open", 9),  # enum values are upper case
    ("ListQualityIssues", "series/-", "status = OPEN OR rule = SPIKE", 14),
    ("ListQualityIssues", "series/-", "NOT status = OPEN", 0),
    ("ListQualityIssues", "series/-", "(status = OPEN)", 0),
    ("ListQualityIssues", "series/-", "status = OPEN and severity = ERROR", 14),
    ("ListQualityIssues", "series/-", "status = OPEN AND", None),
    ("ListQualityIssues", "series/-", "status = OPEN AND AND rule = JUMP", 18),
    ("ListQualityIssues", "series/-", "status = OPEN status = OPEN", 14),
    ("ListQualityIssues", "series/-", "colour = RED", 0),
    ("ListQualityIssues", "series/-", "status < OPEN", 7),  # no order on an enum
    ("ListQualityIssues", "series/-", "status == OPEN", None),
    ("ListQualityIssues", "series/-", "status =", None),
    ("ListQualityIssues", "series/-", "rule = NOT_A_RULE", 7),
    ("ListQualityIssues", "series/-", "rule = QUALITY_RULE_JUMP", 7),  # without the prefix
    ("ListQualityIssues", "series/-", 'severity = "ERROR"', 11),  # a string, not an enum
    ("ListQualityIssues", "series/-", "source = sources/bbg", None),  # unquoted
    ("ListQualityIssues", "series/-", 'source = "sources/bbg', None),  # unterminated
    ("ListQualityIssues", "series/-", 'source < "sources/bbg"', 7),
    ("ListQualityIssues", "series/-", 'raise_time < "yesterday"', 13),
    ("ListQualityIssues", "series/-", 'raise_time < "2024-03-01T00:00:00"', 13),  # no offset
    ("ListQualityIssues", "series/-", "raise_time < 2024-03-01T00:00:00Z", None),
    ("ListQualityIssues", "series/-", 'raise_time < "10000-01-01T00:00:00Z"', 13),
    ("ListQualityIssues", "series/-", 'user = "alice"', 0),  # a field of the audit trail
    ("ListAuditEntries", NAME, "user = alice", 7),
    ("ListAuditEntries", NAME, 'user = "alice" OR user = "bob"', 15),
    ("ListAuditEntries", NAME, 'action > "DataPublished"', 7),
    ("ListAuditEntries", NAME, f'snap_time < "{rfc3339(SNAPS[1])}"', 10),  # = only
    ("ListAuditEntries", NAME, 'commit_time >= "2024-01-01"', 15),
    ("ListAuditEntries", NAME, "commit_time >= 5", 15),
    ("ListAuditEntries", NAME, "rule = JUMP", 0),  # a field of the quality issues
    ("ListAuditEntries", "-", 'user = "alice" AND', None),
]


@pytest.mark.parametrize(
    ("rpc", "parent", "filter_", "offset"),
    [pytest.param(*case, id=f"{case[0]}:{case[2]}") for case in MALFORMED_FILTERS],
)
async def test_a_filter_outside_the_subset_is_invalid_and_says_where(
    stub: q_grpc.QueryServiceAsyncStub, rpc: str, parent: str, filter_: str, offset: int | None
) -> None:
    request: Message = (
        q.ListQualityIssuesRequest(parent=parent, filter=filter_)
        if rpc == "ListQualityIssues"
        else q.ListAuditEntriesRequest(parent=parent, filter=filter_)
    )
    code, fields = await refused(stub, rpc, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(fields) == ["filter"]
    assert fields["filter"]
    if offset is not None:
        assert str(offset) in fields["filter"], fields["filter"]
