"""Listings paged by token (catalogue, audit trail, issue queue) and the lookups of one series or
point, without gRPC. Filters and parents against a reference, over gRPC: test_query_filtered."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import AuditScope, ProjectionBatch
from qis_domain.errors import InvalidArgument, NotFound
from qis_domain.snaps import format_snap
from qis_query.application.access import EVERY_SERIES
from qis_query.application.filtering import FilterError
from qis_query.application.handlers import Page, QueryHandlers

from tests.contract.readstore.test_readstore_contract import SNAPS, metric
from tests.service.query.readmodel import HEAD, OTHER, SERIES

T = TypeVar("T")
DAY = 86_400_000_000
OF_SERIES = AuditScope(series_id=SERIES)


async def every_page(fetch: Callable[[str], Awaitable[Page[T]]]) -> list[list[T]]:
    """The pages of a listing, each fetched with the previous page's token."""
    pages: list[list[T]] = []
    token = ""
    while True:
        page = await fetch(token)
        pages.append(page.items)
        token = page.next_page_token
        if not token:
            return pages


async def test_the_catalogue_in_pages(queries: QueryHandlers) -> None:
    pages = await every_page(
        lambda token: queries.list_series(1, token, HEAD, readable=EVERY_SERIES)
    )
    assert [[e.series_id for e in p] for p in pages] == [[SERIES], [OTHER], []]


async def test_the_audit_trail_in_pages_tied_to_their_parent_and_filter(
    queries: QueryHandlers,
) -> None:
    pages = await every_page(lambda token: queries.audit_entries(OF_SERIES, "", 2, token, 0))
    assert [[(e.position, e.index) for e in p] for p in pages] == [
        [(10, 0), (10, 1)],
        [(10, 2), (10, 3)],
        [(10, 4)],
    ]
    token = (await queries.audit_entries(OF_SERIES, "", 2, "", 0)).next_page_token
    of_point = f'snap_time = "{format_snap(SNAPS[0])}"'
    for parent, filter_text in ((AuditScope(series_id=OTHER), ""), (OF_SERIES, of_point)):
        with pytest.raises(InvalidArgument) as refused:
            await queries.audit_entries(parent, filter_text, 2, token, 0)
        assert [v.field for v in refused.value.violations] == ["page_token"]
    # The same filter spaced otherwise is the same query.
    token = (await queries.audit_entries(OF_SERIES, of_point, 1, "", 0)).next_page_token
    spaced = f'  snap_time="{format_snap(SNAPS[0])}" '
    assert (await queries.audit_entries(OF_SERIES, spaced, 1, token, 0)).items == []


async def test_the_audit_trail_filtered_by_the_resource_acted_on(queries: QueryHandlers) -> None:
    everything = AuditScope()
    of_s1 = await queries.audit_entries(everything, 'resource = "series/S1"', 10, "", 0)
    assert len(of_s1.items) == 5
    assert (
        await queries.audit_entries(everything, 'resource != "series/S1"', 10, "", 0)
    ).items == []
    nothing = await queries.audit_entries(everything, 'resource = "accessPolicies/ops"', 10, "", 0)
    assert nothing.items == []


async def test_a_point_of_the_audit_trail_needs_a_series_as_parent(
    queries: QueryHandlers,
) -> None:
    of_point = f'user = "alice" AND snap_time = "{format_snap(SNAPS[0])}"'
    for parent in (AuditScope(), AuditScope(source_id="bbg")):
        with pytest.raises(FilterError) as refused:
            await queries.audit_entries(parent, of_point, 2, "", 0)
        assert refused.value.offset == 19
        assert "snap_time needs a series as parent" in refused.value.problem


async def test_the_issue_queue_in_pages_tied_to_their_parent_and_filter(
    queries: QueryHandlers,
) -> None:
    pages = await every_page(
        lambda token: queries.quality_issues(SERIES, "", 2, token, 0, readable=EVERY_SERIES)
    )
    assert [[i.issue_id for i in p] for p in pages] == [["I1", "I2"], ["I3"]]
    token = (
        await queries.quality_issues(SERIES, "", 2, "", 0, readable=EVERY_SERIES)
    ).next_page_token
    for series_id, filter_text in ((SERIES, "severity = ERROR"), ("", "")):
        with pytest.raises(InvalidArgument) as refused:
            await queries.quality_issues(series_id, filter_text, 2, token, 0, readable=EVERY_SERIES)
        assert [v.field for v in refused.value.violations] == ["page_token"]


async def test_an_unknown_series_as_parent_is_not_found(queries: QueryHandlers) -> None:
    with pytest.raises(NotFound) as missing:
        await queries.quality_issues("NOPE", "", 2, "", 0, readable=EVERY_SERIES)
    assert missing.value.resource.name == "series/NOPE"
    with pytest.raises(NotFound):
        await queries.audit_entries(AuditScope(series_id="NOPE"), "", 2, "", 0)
    # A known series without any is an empty page; so is a source, which has no catalogue.
    assert (await queries.quality_issues(OTHER, "", 2, "", 0, readable=EVERY_SERIES)).items == []
    assert (await queries.audit_entries(AuditScope(series_id=OTHER), "", 2, "", 0)).items == []
    assert (await queries.audit_entries(AuditScope(source_id="nope"), "", 2, "", 0)).items == []


async def test_a_token_of_another_listing_is_refused(queries: QueryHandlers) -> None:
    token = (await queries.list_series(1, "", 0, readable=EVERY_SERIES)).next_page_token
    with pytest.raises(InvalidArgument):
        await queries.quality_issues("", "", 1, token, 0, readable=EVERY_SERIES)


async def test_a_negative_page_size_is_refused(queries: QueryHandlers) -> None:
    with pytest.raises(InvalidArgument):
        await queries.list_series(-1, "", 0, readable=EVERY_SERIES)


async def test_the_history_of_a_point(queries: QueryHandlers) -> None:
    read = await queries.point_history(SERIES, SNAPS[2], 0, "", 0)
    assert [v.version for v in read.value.versions] == [1, 2, 3]
    assert [o.source_id for o in read.value.observations] == ["bbg"]
    assert read.value.next_page_token == ""
    assert read.read_position == HEAD


@pytest.mark.parametrize(
    ("series_id", "field"),
    [
        pytest.param(SERIES, "snap_time", id="no-such-point"),
        pytest.param("NOPE", "series", id="no-such-series"),
    ],
)
async def test_the_history_of_nothing_is_not_found(
    queries: QueryHandlers, series_id: str, field: str
) -> None:
    with pytest.raises(NotFound) as missing:
        await queries.point_history(series_id, SNAPS[0] + 1, 0, "", 0)
    assert missing.value.field == field


async def test_one_series(queries: QueryHandlers) -> None:
    assert (await queries.series(OTHER, HEAD)).series_id == OTHER
    with pytest.raises(NotFound):
        await queries.series("NOPE", 0)


async def test_quality_metrics_in_pages_of_their_series_and_range(
    writer: InMemoryReadStore, queries: QueryHandlers
) -> None:
    # Two windows start together (a day and a month, both asked for on demand): the page token
    # resumes after (start, end), so neither is skipped nor repeated.
    windows = [(DAY * d, DAY * (d + 1)) for d in range(4)] + [(0, DAY * 30)]
    metrics = [
        dataclasses.replace(metric(start, HEAD), series_id=SERIES, window_end_us=end)
        for start, end in windows
    ]
    await writer.apply(ProjectionBatch(metrics=metrics), HEAD)
    pages = await every_page(
        lambda token: queries.quality_metrics(SERIES, 0, DAY * 10, 2, token, HEAD)
    )
    seen = [(m.window_start_us, m.window_end_us) for page in pages for m in page]
    assert seen == sorted(windows)
    assert [len(p) for p in pages] == [2, 2, 1]
    token = (await queries.quality_metrics(SERIES, 0, DAY * 10, 2, "", HEAD)).next_page_token
    with pytest.raises(InvalidArgument) as refused:
        await queries.quality_metrics(SERIES, 0, DAY * 5, 2, token, HEAD)  # another range
    assert [v.field for v in refused.value.violations] == ["page_token"]
