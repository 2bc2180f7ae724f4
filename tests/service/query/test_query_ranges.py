"""Range reads and point lookups: paging by token, and the as-of dispatch (latest, as known at a
knowledge time, as current after a commit position), on the restatement scenario: snap 2 of S1
is version 1 from position 10 (time 1000), 2 from 20 (time 2000) and 3 from 30 (time 3000)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from qis_adapters.readstore import segments
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    LATEST,
    OVERFLOW_ROWS,
    AsOf,
    AtPosition,
    KnownAt,
    OfficialVersion,
    ProjectionBatch,
    Segment,
)
from qis_domain.bounds import MAX_INSTANT_US
from qis_domain.errors import InvalidArgument, NotFound
from qis_projector.application import segments as segment_building
from qis_query.application.consistency import ReadModelBehind, ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import RangePage, RangeQuery

from tests.contract.readstore.test_readstore_contract import SNAPS, change, version
from tests.service.query.conftest import FEED, MAX_WAIT_S, TOKENS
from tests.service.query.readmodel import HEAD, OTHER, SERIES, write_scenario
from tests.support.segmenting import SegmentingStore

WHOLE = RangeQuery(SERIES)


async def pages_of(
    queries: QueryHandlers,
    query: RangeQuery,
    page_size: int = 0,
    page_token: str = "",
    min_position: int = 0,
) -> list[RangePage]:
    read = await queries.query_range(query, page_size, page_token, min_position)
    assert read.read_position >= max(min_position, HEAD)
    return [page async for page in read.value]


def versions(page: RangePage) -> list[tuple[int, int]]:
    return [(SNAPS.index(v.snap_us), v.version) for v in values_of(page)]


def values_of(page: RangePage) -> list[OfficialVersion]:
    return segments.versions_from_rows(SERIES, page.rows)


def fields_of(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


async def test_a_range_is_read_in_pages_that_each_token_resumes(queries: QueryHandlers) -> None:
    pages = await pages_of(queries, WHOLE, page_size=2)
    assert [versions(p) for p in pages] == [[(0, 1), (1, 1)], [(2, 3), (3, 1)], [(4, 1)]]
    assert all(p.next_page_token for p in pages[:-1])
    assert pages[-1].next_page_token == ""

    # Each token resumes right after its page, in a new call with any page size.
    resumed = await pages_of(queries, WHOLE, page_size=10, page_token=pages[0].next_page_token)
    assert [versions(p) for p in resumed] == [[(2, 3), (3, 1), (4, 1)]]
    resumed = await pages_of(queries, WHOLE, page_token=pages[1].next_page_token)
    assert [versions(p) for p in resumed] == [[(4, 1)]]


async def test_a_full_last_page_is_followed_by_an_empty_one(queries: QueryHandlers) -> None:
    pages = await pages_of(queries, WHOLE, page_size=5)
    assert [p.rows.num_rows for p in pages] == [5, 0]
    assert pages[1].next_page_token == ""


async def test_the_range_bounds_are_start_inclusive_end_exclusive(queries: QueryHandlers) -> None:
    pages = await pages_of(queries, RangeQuery(SERIES, SNAPS[1], SNAPS[3]))
    assert [versions(p) for p in pages] == [[(1, 1), (2, 3)]]
    assert [
        versions(p) for p in await pages_of(queries, RangeQuery(SERIES, SNAPS[1], SNAPS[1]))
    ] == [[]]


@pytest.mark.parametrize(
    ("as_of", "snap_versions"),
    [
        pytest.param(LATEST, [1, 1, 3, 1, 1], id="latest"),
        pytest.param(KnownAt(999), [], id="known-before-anything"),
        pytest.param(KnownAt(1000), [1, 1, 1, 1, 1], id="known-at-first-publication"),
        pytest.param(KnownAt(2500), [1, 1, 2, 1, 1], id="known-between-restatements"),
        pytest.param(KnownAt(3000), [1, 1, 3, 1, 1], id="known-at-last-restatement"),
        pytest.param(AtPosition(9), [], id="before-first-position"),
        pytest.param(AtPosition(19), [1, 1, 1, 1, 1], id="at-position-19"),
        pytest.param(AtPosition(20), [1, 1, 2, 1, 1], id="at-position-20"),
        pytest.param(AtPosition(HEAD), [1, 1, 3, 1, 1], id="at-head"),
    ],
)
async def test_as_of_dispatch_for_ranges_and_points(
    queries: QueryHandlers, as_of: AsOf, snap_versions: list[int]
) -> None:
    pages = await pages_of(queries, RangeQuery(SERIES, as_of=as_of), page_size=2)
    assert [v for p in pages for (_, v) in versions(p)] == snap_versions

    snaps = [SNAPS[4], SNAPS[2]]  # answered in the order asked
    read = await queries.values(SERIES, snaps, as_of, 0)
    expected = [(4, snap_versions[4]), (2, snap_versions[2])] if snap_versions else []
    assert [(SNAPS.index(v.snap_us), v.version) for v in read.value] == expected


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(RangeQuery(OTHER), id="another-series"),
        pytest.param(RangeQuery(SERIES, start_us=SNAPS[1]), id="another-start"),
        pytest.param(RangeQuery(SERIES, end_us=SNAPS[4]), id="another-end"),
        pytest.param(RangeQuery(SERIES, as_of=KnownAt(2500)), id="known-at"),
        pytest.param(RangeQuery(SERIES, as_of=AtPosition(HEAD)), id="at-position"),
    ],
)
async def test_a_page_token_resumes_only_its_own_query(
    queries: QueryHandlers, other: RangeQuery
) -> None:
    token = (await pages_of(queries, WHOLE, page_size=1))[0].next_page_token
    with pytest.raises(InvalidArgument) as refused:
        await queries.query_range(other, 0, token, 0)
    assert fields_of(refused) == ["page_token"]
    # Page size and min_position are free to change.
    assert await pages_of(queries, WHOLE, page_size=3, page_token=token, min_position=HEAD)


async def test_a_token_naming_a_snap_beyond_the_calendar_is_refused(
    queries: QueryHandlers,
) -> None:
    """A token sealed under the service's key, with the right digest, still has its numbers
    checked: the key may leak, or a bug seal a bad one."""
    token = TOKENS.range_token(WHOLE, MAX_INSTANT_US + 1)
    with pytest.raises(InvalidArgument) as refused:
        await queries.query_range(WHOLE, 0, token, 0)
    assert fields_of(refused) == ["page_token"]


async def test_a_range_ending_before_it_starts_is_refused(queries: QueryHandlers) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await queries.query_range(RangeQuery(SERIES, SNAPS[3], SNAPS[1]), 0, "", 0)
    assert sorted(fields_of(refused)) == ["end_time", "start_time"]
    with pytest.raises(InvalidArgument) as refused:
        await queries.quality_metrics(SERIES, SNAPS[3], SNAPS[1], 0, "", 0)
    assert sorted(fields_of(refused)) == ["end_time", "start_time"]


async def test_an_unknown_series_is_not_found_and_a_known_empty_one_is_empty(
    queries: QueryHandlers,
) -> None:
    with pytest.raises(NotFound):
        await queries.query_range(RangeQuery("NOPE"), 0, "", 0)
    with pytest.raises(NotFound):
        await queries.values("NOPE", [SNAPS[0]], LATEST, 0)
    assert [versions(p) for p in await pages_of(queries, RangeQuery(OTHER))] == [[]]
    assert (await queries.values(OTHER, [SNAPS[0]], LATEST, 0)).value == []


async def test_a_query_waits_for_its_min_position_then_says_how_far_behind(
    queries: QueryHandlers, writer: InMemoryReadStore
) -> None:
    with pytest.raises(ReadModelBehind) as behind:
        await queries.query_range(WHOLE, 0, "", HEAD + 10)
    assert (behind.value.wanted, behind.value.reached) == (HEAD + 10, HEAD)

    # A projection arriving during the wait is seen.
    late = version(SNAPS[4] + 1, 1, "105.00", at=4000, position=HEAD + 10)
    reading = asyncio.create_task(pages_of(queries, WHOLE, min_position=HEAD + 10))
    await asyncio.sleep(0.05)
    await writer.apply(ProjectionBatch(versions=[late], changes=[change(late, 0)]), HEAD + 10)
    assert values_of((await reading)[0])[-1] == late


@pytest.mark.parametrize(
    "as_of", [LATEST, KnownAt(2500), AtPosition(20)], ids=["latest", "known-at", "at-position"]
)
async def test_a_read_model_built_before_segments_answers_from_its_records(
    queries: QueryHandlers, as_of: AsOf
) -> None:
    """Until the projector's rebuild of an older read model switches over, the query service
    serves the old one: it has no segments, and its per-point records give the same pages."""
    old = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await old.set_active_generation("g1")
    await write_scenario(old)  # per-point records only, as format 2 had
    generation = old.database.generation("g1")
    assert generation is not None
    generation.format = 2
    reader = InMemoryReadStore(old.database)
    before = QueryHandlers(reader, ReadPosition(reader, MAX_WAIT_S), FEED)
    query = RangeQuery(SERIES, as_of=as_of)
    expected = [values_of(p) for p in await pages_of(queries, query, page_size=2)]
    assert [values_of(p) for p in await pages_of(before, query, page_size=2)] == expected
    assert any(expected)


@pytest.mark.parametrize(
    "as_of", [LATEST, KnownAt(2500), AtPosition(20)], ids=["latest", "known-at", "at-position"]
)
async def test_a_bucket_too_large_for_a_segment_is_read_from_its_records(
    queries: QueryHandlers, as_of: AsOf, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The projector stores an empty, overflowing segment for it (a MongoDB document has a
    size limit): the range reads its values from the per-point records, the same pages."""
    monkeypatch.setattr(segment_building, "MAX_SEGMENT_BYTES", 10)
    big = SegmentingStore(InMemoryReadDatabase(), "g1")
    await big.set_active_generation("g1")
    await write_scenario(big)
    dumped = await big.dump_all()
    stored = cast(list[Segment], dumped["segments"])
    assert stored
    assert {s.rows for s in stored} == {OVERFLOW_ROWS}
    reader = InMemoryReadStore(big.database)
    overflowing = QueryHandlers(reader, ReadPosition(reader, MAX_WAIT_S), FEED)
    query = RangeQuery(SERIES, as_of=as_of)
    expected = [values_of(p) for p in await pages_of(queries, query, page_size=2)]
    assert [values_of(p) for p in await pages_of(overflowing, query, page_size=2)] == expected
