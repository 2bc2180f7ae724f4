"""Range reads bounded by a budget (qis_query.application.ranges._Budget), and what closing the
pages drops. A call that ends on its value bytes (max_value_bytes) must still end with a
token when the range goes on: a page without one tells the client the range is done.

- The budget counts a column's `nbytes` (offsets too: 4 bytes a row), the pages the values'
  own bytes: the budget is spent before the pages reach the call's bytes.
- Even counted alike, the rows of a read whose bytes spend the budget may not fill a page: the
  pages then hand them out as the range's last page.
Either way the read stops before the pages reach the call's bytes: the pages must still end
the call with a token, or a client that follows the tokens never reads the rest."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis.data.v1 import query_service_pb2 as pb
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import LATEST, KnownAt, Latest, OfficialVersion
from qis_domain.snaps import BUCKET_SPAN_US
from qis_query.application.consistency import ReadPosition
from qis_query.application.export import ExportRequest, open_export
from qis_query.application.handlers import QueryHandlers
from qis_query.application.limits import QueryLimits
from qis_query.application.ranges import SEGMENTS_PER_READ, RangeQuery
from qis_query.entrypoints.grpc_service import QueryService

from tests.service.query.conftest import FEED
from tests.service.query.test_query_columns import SERIES, History, calls, write_history
from tests.service.query.test_query_range_read_ahead_ends import (
    RANGE_PROPERTY,
    VALUE,
    Store,
    check_every_value_once,
    every_call,
    layouts,
    plain_buckets,
    read,
    stopping_at,
    stored_values,
)
from tests.service.query.test_query_structure_columns import CURVE, SNAP, curve, stored
from tests.service.query.test_query_structure_columns import LATEST as LATEST_QUERY
from tests.support.segmenting import FREQUENCY

S = "S"
WITH_VALUES = frozenset({"snap_us", "version", "value"})


# -- Calls ending on their bytes ---------------------------------------------------------------


async def test_a_call_whose_bytes_end_mid_page_ends_with_a_token() -> None:
    # 3 * 16 buckets of 10 values; the call may take one bucket's value bytes, its pages hold
    # 25 values. The pages end with a token after the page that reaches the bytes (25 values,
    # as before this commit); this commit stops reading after the first bucket, whose 10 values
    # do not fill a page, and hands them out as the range's last page.
    store = Store(plain_buckets(3 * SEGMENTS_PER_READ, 10))
    query = RangeQuery(S)
    done = await every_call(store, query, 25, 10**6, 10 * len(VALUE), WITH_VALUES)
    assert [v for call in done for v in call] == stored_values(store, query)


async def test_a_call_whose_bytes_are_not_reached_by_the_values_it_read_ends_with_a_token() -> None:
    # Pages of a bucket's 10 values: a page ends where the budget ends, so only the measures
    # differ. The first bucket's values are 10 * len(VALUE) bytes, one short of the call's bytes,
    # but their column's nbytes (offsets: 4 a row) pass them: the read stops, the pages have
    # not reached the call's bytes and end the range with ''.
    store = Store(plain_buckets(3 * SEGMENTS_PER_READ, 10))
    query = RangeQuery(S)
    done = await every_call(store, query, 10, 10**6, 10 * len(VALUE) + 1, WITH_VALUES)
    assert [v for call in done for v in call] == stored_values(store, query)
    assert len(done) > 1


@RANGE_PROPERTY
@given(
    layouts(),
    st.integers(1, 40),
    st.integers(1, 120),
    st.integers(1, 60 * len(VALUE)),
    st.sampled_from([LATEST, KnownAt(1), KnownAt(3)]),
)
def test_calls_bounded_by_their_bytes_resumed_from_their_tokens_give_every_value_once(
    layout: tuple[list[list[OfficialVersion]], frozenset[int]],
    page_size: int,
    max_points: int,
    max_value_bytes: int,
    as_of: Latest | KnownAt,
) -> None:
    # The read-ahead ends' property reads snap_us and version only: the budget's bytes are
    # never spent there. The same, reading the values too, with a call bound by their bytes.
    query = RangeQuery(S, as_of=as_of)
    check_every_value_once(layout, query, page_size, max_points, max_value_bytes, WITH_VALUES)


async def test_columns_without_sized_ones_are_not_bound_by_the_calls_bytes() -> None:
    # An export of decimals reads no `value` nor `reason`: nothing counts against its bytes.
    store = Store(plain_buckets(3 * SEGMENTS_PER_READ, 10))
    query = RangeQuery(S)
    done = await every_call(store, query, 25, 10**6, 1, frozenset({"snap_us", "version"}))
    assert len(done) == 1
    assert done[0] == stored_values(store, query)


# -- Through the service: curves a day apart (a segment each) -----------------------------------

DAY_US = BUCKET_SPAN_US[FREQUENCY]
CURVES = 3 * SEGMENTS_PER_READ


async def curves_a_day_apart() -> tuple[InMemoryReadStore, History, int]:
    value = curve(["1.5"] * 20, tuple(f"P{i + 1}D" for i in range(20)))
    snaps = [SNAP - SNAP % DAY_US + i * DAY_US for i in range(CURVES)]
    history = History(CURVE, False, snaps, [[stored(s, 1, value, 0) for s in snaps]])
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    return store, history, len(value.SerializeToString())


async def test_query_range_of_curves_ending_on_a_calls_bytes_reaches_the_last_curve() -> None:
    # Each call may take 5.5 curves' value bytes: it ends after its 6th curve, with a token.
    store, history, size = await curves_a_day_apart()
    limits = QueryLimits(max_value_bytes_per_call=11 * size // 2)
    service = QueryService(QueryHandlers(store, ReadPosition(store, 0.3), FEED, limits))
    done = await calls(service, LATEST_QUERY, pb.VALUE_VIEW_POINTS)
    snaps = [p.snap_time.ToMicroseconds() for call in done for m in call for p in m.values]
    assert snaps == history.snaps


async def test_an_export_of_curves_ending_on_the_calls_bytes_holds_every_curve() -> None:
    # An export's calls follow their tokens (export.py): one ending on its bytes with '' ends it.
    store, history, size = await curves_a_day_apart()
    limits = QueryLimits(max_value_bytes_per_call=11 * size // 2)
    queries = QueryHandlers(store, ReadPosition(store, 0.3), FEED, limits)
    export = await open_export(queries, ExportRequest((SERIES,)))
    snaps = [
        s for page in [p async for p in export.pages] for s in page.rows["snap_us"].to_pylist()
    ]
    assert snaps == history.snaps


# -- What closing the pages leaves behind -------------------------------------------------------


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0.02)


def left_running() -> set[asyncio.Task[Any]]:
    running = {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}
    for task in running:  # not to hang the test's loop
        task.cancel()
    return running


@pytest.mark.parametrize("ends", ["waiting", "failing"])
async def test_a_call_ending_on_its_bytes_leaves_no_store_read_running_nor_unretrieved(
    caplog: pytest.LogCaptureFixture, ends: str
) -> None:
    # The first read (pages of 1,000: all 16 segments wanted) starts the store read after it at
    # once; the bytes of its first segment spend the budget, so nothing reads ahead: the store
    # read started early is left to the finally alone.
    store = stopping_at(2, plain_buckets(3 * SEGMENTS_PER_READ, 10), ends == "waiting")
    pages = read(store, RangeQuery(S), 1_000, 10**6, None, 10 * len(VALUE), WITH_VALUES)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        taken = [page async for page in pages]
        await settle()
        assert store.reads == 2  # the early store read did start
        assert left_running() == set()
        del pages, taken
        gc.collect()
    assert "never retrieved" not in caplog.text


@pytest.mark.parametrize("state", ["pending", "failed"])
async def test_closing_the_pages_with_the_read_ahead_pending_or_failed_leaves_nothing(
    caplog: pytest.LogCaptureFixture, state: str
) -> None:
    # Store read 2 is the read ahead's own: it waits (the read ahead pending) or fails (the
    # read ahead failed, its failure not yet taken by the pages) when the caller goes away.
    store = stopping_at(2, plain_buckets(3 * SEGMENTS_PER_READ, 10), state == "pending")
    pages = read(store, RangeQuery(S), 10, 10**6)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        first = await anext(pages)
        await asyncio.wait_for(store.reached.wait(), 5)
        await settle()
        await pages.aclose()  # type: ignore[attr-defined]
        await settle()
        assert left_running() == set()
        del pages, first
        gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_failing_early_store_read_reaches_the_caller() -> None:
    # The store read started early (store read 3, by the read ahead) fails: the caller that goes
    # on reading is told, not handed a range cut short.
    store = Store(plain_buckets(3 * SEGMENTS_PER_READ, 10), fail_at=3)
    with pytest.raises(ConnectionError):
        async for _ in read(store, RangeQuery(S), 10, 10**6):
            pass
