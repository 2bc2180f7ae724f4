"""An export reads only the columns its schema needs (issue 10): a segment decodes a subset of its
columns, a range read of a subset answers what the whole rows answer, restricted to it, for
generated histories and every as-of, from segments and from per-point records alike; and such a
read never fills the answer cache that whole-row readers (QueryRange) share."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis_adapters.readstore import segments
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    LATEST,
    OVERFLOW_ROWS,
    AsOf,
    AtPosition,
    KnownAt,
    Segment,
)
from qis_projector.application import segments as segment_building
from qis_query.application import ranges
from qis_query.application.consistency import ReadPosition
from qis_query.application.export import STORED_COLUMNS, ValueColumns
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import RangeQuery

from tests.contract.readstore.test_readstore_contract import version
from tests.service.query.cache_support import CacheWorld, snap
from tests.service.query.conftest import FEED, MAX_WAIT_S, TOKENS
from tests.service.query.readmodel import SERIES, write_scenario
from tests.support.segmenting import SegmentingStore

PRICES = STORED_COLUMNS[ValueColumns.DECIMAL]
DAYS = 6
S = "S"


def test_a_segment_decodes_only_the_columns_asked_for_in_its_own_order() -> None:
    rows = segments.rows_from_versions(
        [version(snap(day), 1, f"10{day}.5", at=1_000 + day, position=10 + day) for day in range(3)]
    )
    payload = segments.encode(rows)
    narrow = segments.decode(payload, frozenset({"text", "snap_us", "flags"}))
    assert narrow.column_names == ["snap_us", "text", "flags"]
    assert narrow == segments.decode(payload).select(["snap_us", "text", "flags"])
    assert segments.decode(payload, PRICES).column_names == [
        name for name in segments.SCHEMA.names if name in PRICES
    ]
    with pytest.raises(ValueError, match="not columns of a segment: texts"):
        segments.decode(payload, frozenset({"snap_us", "texts"}))


async def pages(
    handlers: QueryHandlers, query: RangeQuery, page_size: int, columns: frozenset[str] | None
) -> list[ranges.RangePage]:
    read = await handlers.query_range(query, page_size, "", 0, columns)
    return [page async for page in read.value]


publications = st.lists(
    st.tuples(
        st.lists(st.integers(0, DAYS - 1), min_size=1, max_size=4, unique=True),
        st.integers(1, 999),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    published=publications,
    as_of=st.integers(-6, 6),
    first=st.integers(0, DAYS),
    last=st.integers(0, DAYS),
    page_size=st.integers(1, 5),
)
def test_a_range_of_some_columns_is_the_whole_rows_range_restricted_to_them(
    published: list[tuple[list[int], int]], as_of: int, first: int, last: int, page_size: int
) -> None:
    async def run() -> None:
        world = CacheWorld()
        await world.define(S)
        for days, price in published:
            await world.publish(S, [snap(d) for d in days], f"{price}.25")
        await world.project()
        when: AsOf = LATEST
        if as_of > 0:  # around the head, where answers change
            when = AtPosition(max(1, world.head - as_of + 1))
        elif as_of < 0:
            when = KnownAt(world.now_us + as_of * 500)
        start, end = sorted((snap(first), snap(last)))
        query = RangeQuery(S, start, end, when)
        handlers = world.fresh()
        whole = await pages(handlers, query, page_size, None)
        narrow = await pages(handlers, query, page_size, PRICES)
        assert [p.next_page_token for p in narrow] == [p.next_page_token for p in whole]
        for page, full in zip(narrow, whole, strict=True):
            assert set(page.rows.column_names) == PRICES | ranges.selection(when)
            assert page.rows == full.rows.select(page.rows.column_names)

    asyncio.run(run())


async def test_a_range_of_some_columns_is_not_kept_for_readers_of_whole_rows() -> None:
    world = CacheWorld()
    await world.define(S)
    await world.publish(S, [snap(d) for d in range(3)], "100.5")
    await world.project()
    cached, _ = world.handlers()
    query = RangeQuery(S)
    (narrow,) = await pages(cached, query, 100, PRICES)
    assert set(narrow.rows.column_names) == PRICES | ranges.selection(LATEST)
    (whole,) = await pages(cached, query, 100, None)  # the cache keeps whole small ranges
    assert whole.rows.schema == segments.SCHEMA
    assert whole.rows.num_rows == 3


async def test_values_read_from_the_records_have_the_same_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bucket too large for a segment is read from its per-point records: its rows are
    restricted to the same columns, in the same order, as a segment's."""
    monkeypatch.setattr(segment_building, "MAX_SEGMENT_BYTES", 10)
    big = SegmentingStore(InMemoryReadDatabase(), "g1")
    await big.set_active_generation("g1")
    await write_scenario(big)
    stored = cast(list[Segment], (await big.dump_all())["segments"])
    assert {s.rows for s in stored} == {OVERFLOW_ROWS}
    reader = InMemoryReadStore(big.database)
    handlers = QueryHandlers(reader, ReadPosition(reader, MAX_WAIT_S), FEED, tokens=TOKENS)
    for as_of in (LATEST, KnownAt(2_500), AtPosition(20)):
        query = RangeQuery(SERIES, as_of=as_of)
        whole = await pages(handlers, query, 2, None)
        narrow = await pages(handlers, query, 2, PRICES)
        assert any(p.rows.num_rows for p in whole)
        for page, full in zip(narrow, whole, strict=True):
            narrow_columns = PRICES | ranges.selection(as_of)
            assert page.rows.column_names == [
                n for n in segments.SCHEMA.names if n in narrow_columns
            ]
            assert page.rows == full.rows.select(page.rows.column_names)
