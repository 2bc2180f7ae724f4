"""ListQualityIssues and ListAuditEntries over gRPC, in process, against a reference: for each
parent and filter the test selects the expected records from the whole data set with plain
Python, then pages through the RPC at several page sizes. Paging must neither lose nor repeat a
record, whatever the page size and however little one call may scan (a scan bound of 3 records
makes short and empty pages with a token, as the contract allows); with the default bound every
page but the last is full. Then the refusals: a malformed parent or filter names its field, an
unknown series is NOT_FOUND, a token of another parent or filter is refused."""

from __future__ import annotations

import base64
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis_adapters.readstore.factory import AdministeredReadStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    ISSUE_STATUSES,
    AuditEntry,
    ProjectionBatch,
    QualityIssue,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.snaps import format_snap
from qis_query.settings import QuerySettings

from tests.service.query.readmodel import catalogue_entry
from tests.support.servers import query_service

T0 = 1_700_000_000_000_000
SECOND = 1_000_000
SNAPS = [T0 + i * 60 * SECOND for i in range(6)]
RAISED_0 = T0 + 10 * SECOND
HEAD = 200  # the read model's checkpoint
PAGE_SIZES = [1, 2, 5, 0]  # 0: the default, 100, more than any answer here
SCAN_BOUND = 3
USERS = ["alice", "bob", 'carol "c" \\ d']


def iso(us: int) -> str:
    return format_snap(us)


def _issues() -> list[QualityIssue]:
    rng = random.Random(20240301)
    issues = []
    for n in range(60):
        snap = rng.choice(SNAPS)
        issues.append(
            QualityIssue(
                issue_id=f"{snap}-{rng.randrange(16**6):06x}",
                series_id=rng.choice(["S1", "S1", "S2"]),
                snap_us=snap,
                rule=rng.choice(["jump", "spike", "stale", "source_break"]),
                severity=rng.choice(["warning", "error"]),
                evidence={"n": n},
                status=rng.choice(ISSUE_STATUSES),
                raised_at_us=RAISED_0 + n * SECOND,
                position=10 + n,
                source_id=rng.choice(["bbg", "lseg", ""]),
            )
        )
    # Issue ids are unique within a series only: the same id in the other series is another
    # issue, and a listing of every series must keep both (it once lost one).
    twins = [
        dataclasses.replace(i, series_id="S2" if i.series_id == "S1" else "S1", position=80 + n)
        for n, i in enumerate(issues[:10])
    ]
    return issues + twins


def _audit() -> list[AuditEntry]:
    rng = random.Random(20240302)
    entries = []
    for position in range(10, 60):
        for index in range(rng.choice([1, 1, 3])):
            kind = rng.choice(["series", "point", "point", "source"])
            series_id = "" if kind == "source" else rng.choice(["S1", "S2"])
            entries.append(
                AuditEntry(
                    position=position,
                    index=index,
                    recorded_at_us=T0 + position * SECOND,
                    series_id=series_id,
                    snap_us=rng.choice(SNAPS) if kind == "point" else None,
                    action={
                        "series": "SchemaEvolved",
                        "point": rng.choice(["DataRestated", "QualityApproved"]),
                        "source": "DataSourceConfigured",
                    }[kind],
                    user_id=rng.choice(USERS),
                    command_id=f"cmd-{position}",
                    details={"index": index},
                    source_id=rng.choice(["bbg", "lseg"]) if kind == "source" else "",
                )
            )
    return entries


ISSUES = _issues()
AUDIT = _audit()
B = RAISED_0 + 20 * SECOND  # the raise time of one issue: < and <= differ there
C1, C2 = T0 + 20 * SECOND, T0 + 40 * SECOND  # commit times of some entries

IssueCheck = Callable[[QualityIssue], bool]
ISSUE_FILTERS: list[tuple[str, IssueCheck]] = [
    ("", lambda i: True),
    ("status = OPEN", lambda i: i.status == "open"),
    ("status != OPEN AND severity = ERROR", lambda i: i.status != "open" and i.severity == "error"),
    ("rule = JUMP", lambda i: i.rule == "jump"),
    (
        "rule != SPIKE AND rule != STALE AND status = APPROVED",
        lambda i: i.rule not in ("spike", "stale") and i.status == "approved",
    ),
    ('source = "sources/bbg"', lambda i: i.source_id == "bbg"),
    ('source != "sources/bbg"', lambda i: i.source_id != "bbg"),
    (
        f'snap_time >= "{iso(SNAPS[2])}" AND snap_time < "{iso(SNAPS[4])}"',
        lambda i: SNAPS[2] <= i.snap_us < SNAPS[4],
    ),
    (f'snap_time = "{iso(SNAPS[1])}"', lambda i: i.snap_us == SNAPS[1]),
    (f'raise_time < "{iso(B)}"', lambda i: i.raised_at_us < B),
    (f'raise_time <= "{iso(B)}"', lambda i: i.raised_at_us <= B),
    (
        f'raise_time > "{iso(B)}" AND raise_time != "{iso(B + 5 * SECOND)}"',
        lambda i: i.raised_at_us > B and i.raised_at_us != B + 5 * SECOND,
    ),
    (
        f'status = OPEN AND severity = ERROR AND raise_time < "{iso(B + 20 * SECOND)}"',
        lambda i: i.status == "open" and i.severity == "error" and i.raised_at_us < B + 20 * SECOND,
    ),
    ("status = OPEN AND status = REJECTED", lambda i: False),
]
ISSUE_PARENTS: list[tuple[str, IssueCheck]] = [
    ("series/-", lambda i: True),
    ("series/S1", lambda i: i.series_id == "S1"),
    ("series/S2", lambda i: i.series_id == "S2"),
    ("series/S3", lambda i: False),  # defined, without issues
]

AuditCheck = Callable[[AuditEntry], bool]
AUDIT_FILTERS: list[tuple[str, AuditCheck]] = [
    ("", lambda a: True),
    ('user = "alice"', lambda a: a.user_id == "alice"),
    (
        'user != "alice" AND action = "DataRestated"',
        lambda a: a.user_id != "alice" and a.action == "DataRestated",
    ),
    (r'user = "carol \"c\" \\ d"', lambda a: a.user_id == USERS[2]),
    (
        f'commit_time >= "{iso(C1)}" AND commit_time < "{iso(C2)}"',
        lambda a: C1 <= a.recorded_at_us < C2,
    ),
    (f'commit_time > "{iso(C1)}"', lambda a: a.recorded_at_us > C1),
    (f'commit_time <= "{iso(C1)}"', lambda a: a.recorded_at_us <= C1),
    (f'commit_time != "{iso(C1)}"', lambda a: a.recorded_at_us != C1),
    ('action = "DataSourceConfigured"', lambda a: a.action == "DataSourceConfigured"),
]
OF_POINT: list[tuple[str, AuditCheck]] = [
    (f'snap_time = "{iso(SNAPS[1])}"', lambda a: a.snap_us == SNAPS[1]),
    (
        f'snap_time = "{iso(SNAPS[1])}" AND user = "bob"',
        lambda a: a.snap_us == SNAPS[1] and a.user_id == "bob",
    ),
    (
        f'snap_time = "{iso(SNAPS[1])}" AND snap_time = "{iso(SNAPS[2])}"',
        lambda a: False,
    ),
]
AUDIT_PARENTS: list[tuple[str, AuditCheck]] = [
    ("-", lambda a: True),
    ("series/S1", lambda a: a.series_id == "S1"),
    ("series/S2", lambda a: a.series_id == "S2"),
    ("sources/bbg", lambda a: a.source_id == "bbg"),
    ("sources/nope", lambda a: False),  # sources have no catalogue: no entries
]


@pytest.fixture(params=["memory", "sqlite"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AdministeredReadStore]:
    writer: AdministeredReadStore
    if request.param == "memory":
        writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    else:
        writer = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await writer.set_active_generation("g1")
    catalogue = [catalogue_entry(s) for s in ("S1", "S2", "S3")]
    await writer.apply(ProjectionBatch(series=catalogue, issues=ISSUES, audit=AUDIT), HEAD)
    try:
        yield writer
    finally:
        await writer.close()


Stubs = dict[int | None, "pb_grpc.QueryServiceAsyncStub"]


@pytest.fixture
async def stubs(store: AdministeredReadStore) -> AsyncIterator[Stubs]:
    """A query service with the default scan bound (None), and one that scans 3 records a call."""
    base = QuerySettings(auth="dev", query_address="127.0.0.1:0")
    bounded = base.model_copy(update={"query_max_scanned_per_call": SCAN_BOUND})
    async with query_service(store, base) as default, query_service(store, bounded) as small:
        yield {None: default, SCAN_BOUND: small}


METADATA = (("x-qis-user", "reader"),)


class Listing(Protocol):
    page_token: str
    page_size: int


class Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


Q = TypeVar("Q", bound=Listing)
P = TypeVar("P", bound=Page)


async def page_through(
    call: Callable[[Q], Awaitable[P]], request: Q, keys: Callable[[P], list[str]], size: int
) -> list[list[str]]:
    """The keys of the records of each page, each page asked with the previous one's token."""
    pages: list[list[str]] = []
    request.page_size = size
    request.page_token = ""
    for _ in range(1_000):
        reply = await call(request)
        pages.append(keys(reply))
        request.page_token = reply.next_page_token
        if not request.page_token:
            return pages
    raise AssertionError("paging did not end")


def check_pages(
    pages: list[list[str]], expected: Sequence[str], size: int, bound: int | None
) -> None:
    assert [key for page in pages for key in page] == list(expected)  # none lost or repeated
    limit = size or 100
    assert all(len(page) <= limit for page in pages)
    if bound is None:  # nothing stops a page short but the end of the answer
        assert all(len(page) == limit for page in pages[:-1])


def issue_ids(reply: pb.ListQualityIssuesResponse) -> list[str]:
    return [f"{i.series}/{i.issue_id}" for i in reply.issues]


def entry_keys(reply: pb.ListAuditEntriesResponse) -> list[str]:
    return [f"{e.commit_position}/{e.details['index']:.0f}" for e in reply.entries]


@pytest.mark.parametrize("bound", [None, SCAN_BOUND])
@pytest.mark.parametrize(("filter_text", "check"), ISSUE_FILTERS, ids=[f for f, _ in ISSUE_FILTERS])
async def test_issues_of_a_parent_and_filter_page_as_the_reference_selects(
    stubs: Stubs, bound: int | None, filter_text: str, check: IssueCheck
) -> None:
    stub = stubs[bound]
    for parent, of_parent in ISSUE_PARENTS:
        # In (series, issue id) order: issue ids are unique within a series only.
        expected = [
            f"series/{i.series_id}/{i.issue_id}"
            for i in sorted(ISSUES, key=lambda i: (i.series_id, i.issue_id))
            if of_parent(i) and check(i)
        ]
        for size in PAGE_SIZES:
            request = pb.ListQualityIssuesRequest(parent=parent, filter=filter_text)
            pages = await page_through(
                lambda r: stub.ListQualityIssues(r, metadata=METADATA), request, issue_ids, size
            )
            check_pages(pages, expected, size, bound)


@pytest.mark.parametrize("bound", [None, SCAN_BOUND])
@pytest.mark.parametrize(
    ("parent", "of_parent", "filter_text", "check"),
    [(p, of_p, f, c) for p, of_p in AUDIT_PARENTS for f, c in AUDIT_FILTERS]
    + [(p, of_p, f, c) for p, of_p in AUDIT_PARENTS[1:3] for f, c in OF_POINT],
    ids=[f"{p} {f}" for p, _ in AUDIT_PARENTS for f, _ in AUDIT_FILTERS]
    + [f"{p} {f}" for p, _ in AUDIT_PARENTS[1:3] for f, _ in OF_POINT],
)
async def test_audit_entries_of_a_parent_and_filter_page_as_the_reference_selects(
    stubs: Stubs,
    bound: int | None,
    parent: str,
    of_parent: AuditCheck,
    filter_text: str,
    check: AuditCheck,
) -> None:
    stub = stubs[bound]
    expected = [f"{a.position}/{a.index}" for a in AUDIT if of_parent(a) and check(a)]
    for size in PAGE_SIZES:
        request = pb.ListAuditEntriesRequest(parent=parent, filter=filter_text)
        pages = await page_through(
            lambda r: stub.ListAuditEntries(r, metadata=METADATA), request, entry_keys, size
        )
        check_pages(pages, expected, size, bound)


async def test_the_audit_entries_carry_their_resource(stubs: Stubs) -> None:
    reply = await stubs[None].ListAuditEntries(
        pb.ListAuditEntriesRequest(parent="-", page_size=1_000), metadata=METADATA
    )
    assert [e.resource for e in reply.entries] == [
        f"series/{a.series_id}" if a.series_id else f"sources/{a.source_id}" for a in AUDIT
    ]
    assert {e.resource for e in reply.entries} == {
        "series/S1",
        "series/S2",
        "sources/bbg",
        "sources/lseg",
    }


async def test_a_call_scans_a_bounded_number_of_records(stubs: Stubs) -> None:
    """A selective filter under a scan bound of 3: each call reads at most 3 records, so its
    page holds at most 3 and may be empty, with a token that goes on."""
    request = pb.ListQualityIssuesRequest(parent="series/-", filter="rule = JUMP")
    pages = await page_through(
        lambda r: stubs[SCAN_BOUND].ListQualityIssues(r, metadata=METADATA),
        request,
        issue_ids,
        100,
    )
    assert len(pages) >= len(ISSUES) // SCAN_BOUND
    assert all(len(page) <= SCAN_BOUND for page in pages)
    assert any(not page for page in pages[:-1])


Call = grpc.aio.UnaryUnaryCall[Any, Any]


async def bad_request(call: Call) -> list[tuple[str, str]]:
    """The field violations of a call refused with INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    found = error_details_pb2.BadRequest()
    assert any(d.Unpack(found) for d in status.details)
    return [(v.field, v.description) for v in found.field_violations]


@pytest.mark.parametrize("parent", ["", "S1", "series/", "series/S 1", "sources/bbg", "-", "*"])
async def test_a_malformed_issues_parent_is_refused(stubs: Stubs, parent: str) -> None:
    call = stubs[None].ListQualityIssues(
        pb.ListQualityIssuesRequest(parent=parent), metadata=METADATA
    )
    assert [field for field, _ in await bad_request(call)] == ["parent"]


@pytest.mark.parametrize(
    "parent", ["", "series/-", "series/", "source/bbg", "sources/", "sources/a b", "*", "--"]
)
async def test_a_malformed_audit_parent_is_refused(stubs: Stubs, parent: str) -> None:
    call = stubs[None].ListAuditEntries(
        pb.ListAuditEntriesRequest(parent=parent), metadata=METADATA
    )
    assert [field for field, _ in await bad_request(call)] == ["parent"]


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"[" * 50_000).decode(),  # deeper than json can read
        base64.urlsafe_b64encode(
            b'{"k": "issue-pages", "first": "' + b"x" * 4_000 + b'"}'
        ).decode(),
        base64.urlsafe_b64encode(b'{"k": "issues", "after": "1-abc"}').decode(),  # the old kind
    ],
)
async def test_a_crafted_page_token_is_invalid_argument(stubs: Stubs, token: str) -> None:
    """Once INTERNAL: a token nesting deeper than json's recursion limit."""
    for call in (
        stubs[None].ListQualityIssues(
            pb.ListQualityIssuesRequest(parent="series/-", page_token=token), metadata=METADATA
        ),
        stubs[None].ListAuditEntries(
            pb.ListAuditEntriesRequest(parent="-", page_token=token), metadata=METADATA
        ),
    ):
        assert [field for field, _ in await bad_request(call)] == ["page_token"]


async def test_a_point_is_named_in_whole_microseconds(stubs: Stubs) -> None:
    """A lookup of a snap finer than the microsecond names no point: refused, as on the write
    side, where it once answered for the microsecond below."""
    snap = timestamp_pb2.Timestamp(seconds=SNAPS[0] // SECOND, nanos=1_500)
    calls: list[Call] = [
        stubs[None].GetValues(
            pb.GetValuesRequest(series="series/S1", snap_times=[snap]), metadata=METADATA
        ),
        stubs[None].GetPointHistory(
            pb.GetPointHistoryRequest(series="series/S1", snap_time=snap), metadata=METADATA
        ),
    ]
    fields = [[field for field, _ in await bad_request(call)] for call in calls]
    assert fields == [["snap_times[0]"], ["snap_time"]]


async def test_a_malformed_filter_is_refused_naming_what_and_where(stubs: Stubs) -> None:
    call: Call = stubs[None].ListQualityIssues(
        pb.ListQualityIssuesRequest(parent="series/-", filter="status = OPEN OR rule = JUMP"),
        metadata=METADATA,
    )
    ((field, description),) = await bad_request(call)
    assert field == "filter"
    assert "'OR'" in description
    assert description.endswith("(at character 14)")
    for parent in ("-", "sources/bbg"):
        call = stubs[None].ListAuditEntries(
            pb.ListAuditEntriesRequest(parent=parent, filter=f'snap_time = "{iso(SNAPS[0])}"'),
            metadata=METADATA,
        )
        ((field, description),) = await bad_request(call)
        assert field == "filter"
        assert "needs a series" in description


async def test_an_unknown_series_parent_is_not_found(stubs: Stubs) -> None:
    for call in (
        stubs[None].ListQualityIssues(
            pb.ListQualityIssuesRequest(parent="series/NOPE"), metadata=METADATA
        ),
        stubs[None].ListAuditEntries(
            pb.ListAuditEntriesRequest(parent="series/NOPE"), metadata=METADATA
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_page_token_is_tied_to_its_parent_and_filter(stubs: Stubs) -> None:
    stub = stubs[None]
    first = await stub.ListQualityIssues(
        pb.ListQualityIssuesRequest(parent="series/S1", filter="status = OPEN", page_size=1),
        metadata=METADATA,
    )
    token = first.next_page_token
    call: Call
    for parent, filter_text in (("series/-", "status = OPEN"), ("series/S1", "status = REJECTED")):
        call = stub.ListQualityIssues(
            pb.ListQualityIssuesRequest(parent=parent, filter=filter_text, page_token=token),
            metadata=METADATA,
        )
        assert [field for field, _ in await bad_request(call)] == ["page_token"]
    entries = await stub.ListAuditEntries(
        pb.ListAuditEntriesRequest(parent="-", page_size=1), metadata=METADATA
    )
    call = stub.ListAuditEntries(
        pb.ListAuditEntriesRequest(parent="sources/bbg", page_token=entries.next_page_token),
        metadata=METADATA,
    )
    assert [field for field, _ in await bad_request(call)] == ["page_token"]
