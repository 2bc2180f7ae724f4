"""Range reads that read ahead (qis_query.application.ranges): what a range read hands out
and what it leaves behind once its caller lets go of it.

- The answer: every value of the range, once, in snap order, as of latest or a knowledge time,
  with restated points, overflowing buckets, any page size and call limit, resumed from the
  tokens, equals what the values stored say.
- What is left behind: a read ahead that finished while its caller was taking the read before
  holds the store read it started for the read after it; closing the pages must stop that too.
- What is read ahead: a call that ends on its value bytes (max_value_bytes) must not go on
  decoding store reads it will never send."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import cast
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import (
    LATEST,
    OVERFLOW_ROWS,
    KnownAt,
    Latest,
    OfficialVersion,
    ReadModelReader,
    Segment,
)
from qis_query.application import ranges
from qis_query.application.paging import PageTokens
from qis_query.application.ranges import SEGMENTS_PER_READ, RangePage, RangeQuery

from tests.service.query.test_query_range_read_ahead import CountedSegments, counting_decodes

S = "S"
BUCKET_US = 1_000
TOKENS = PageTokens.random()
VALUE = values_pb2.DataValue(price=values_pb2.Price(value="1.5")).SerializeToString()
SNAP_AND_VERSION = frozenset({"snap_us", "version"})


def version(snap_us: int, number: int = 1) -> OfficialVersion:
    """Version `number` of a point, published at knowledge time and position `number`."""
    return OfficialVersion(
        S, snap_us, number, VALUE, 1.0, number, number, "", "u", "c", ("s",), "priority"
    )


class Store(CountedSegments):
    """One series' segments (a bucket's rows, every version of them) and per-point records;
    the store read `block_at` (1, 2, ...) waits forever, `fail_at` fails."""

    def __init__(
        self,
        buckets: list[list[OfficialVersion]],
        overflowing: frozenset[int] = frozenset(),
        block_at: int | None = None,
        fail_at: int | None = None,
    ) -> None:
        self.versions = [v for bucket in buckets for v in bucket]
        stored: list[Segment] = []
        for index, bucket in enumerate(buckets):
            if not bucket:
                continue
            first, last = min(v.snap_us for v in bucket), max(v.snap_us for v in bucket)
            start = index * BUCKET_US
            if index in overflowing:
                stored.append(Segment(S, start, first, last, OVERFLOW_ROWS, b"", 1, 1))
                continue
            rows = segments.rows_from_versions([v for v in bucket if v.version == 1])
            restated = sorted((v for v in bucket if v.version > 1), key=lambda v: v.version)
            # One segment version for the whole log: every version is in its stretch.
            rows = segments.extend(rows, restated)
            payload = segments.encode(rows)
            stored.append(Segment(S, start, first, last, rows.num_rows, payload, 1, 1))
        super().__init__(stored, block_at, fail_at)

    def _official(self, start_us: int, end_us: int, at: int | None) -> list[OfficialVersion]:
        best: dict[int, OfficialVersion] = {}
        for v in self.versions:
            known = start_us <= v.snap_us < end_us and (at is None or v.recorded_from_us <= at)
            if known and (v.snap_us not in best or best[v.snap_us].version < v.version):
                best[v.snap_us] = v
        return [best[snap] for snap in sorted(best)]

    async def latest_range(
        self, series_id: str, start_us: int, end_us: int, limit: int
    ) -> list[OfficialVersion]:
        return self._official(start_us, end_us, None)[:limit]

    async def as_of_time_range(
        self, series_id: str, start_us: int, end_us: int, at_us: int, limit: int
    ) -> list[OfficialVersion]:
        return self._official(start_us, end_us, at_us)[:limit]


def read(
    store: Store,
    query: RangeQuery,
    page_size: int,
    max_points: int,
    after_us: int | None = None,
    max_value_bytes: int | None = None,
    columns: frozenset[str] | None = frozenset({"snap_us", "version"}),
) -> AsyncIterator[RangePage]:
    return ranges.pages(
        cast(ReadModelReader, store),
        query,
        page_size,
        after_us,
        max_points,
        BUCKET_US,
        TOKENS,
        columns,
        max_value_bytes,
    )


async def every_call(
    store: Store,
    query: RangeQuery,
    page_size: int,
    max_points: int,
    max_value_bytes: int | None,
    columns: frozenset[str] = SNAP_AND_VERSION,
) -> list[list[tuple[int, int]]]:
    """Each call's (snap, version)s, each call resuming from the previous one's last token;
    no page holds more than `page_size`."""
    out: list[list[tuple[int, int]]] = []
    after: int | None = None
    for _ in range(1_000):
        got: list[tuple[int, int]] = []
        token = ""
        pages = read(store, query, page_size, max_points, after, max_value_bytes, columns)
        async for page in pages:
            assert page.rows.num_rows <= page_size
            got += zip(
                page.rows.column("snap_us").to_pylist(),
                page.rows.column("version").to_pylist(),
                strict=True,
            )
            token = page.next_page_token
        out.append(got)
        if not token:
            return out
        after = TOKENS.range_after(token, query)
    raise AssertionError("the calls never end")


def stored_values(store: Store, query: RangeQuery, at: int | None = None) -> list[tuple[int, int]]:
    return [(v.snap_us, v.version) for v in store._official(query.start_us, query.end_us, at)]


def stopping_at(read: int, buckets: list[list[OfficialVersion]], waits: bool) -> Store:
    """A store of `buckets` whose store read number `read` waits (until cancelled) or fails."""
    return Store(buckets, block_at=read if waits else None, fail_at=None if waits else read)


def plain_buckets(count: int, points: int) -> list[list[OfficialVersion]]:
    return [[version(b * BUCKET_US + i) for i in range(points)] for b in range(count)]


async def others_settle(limit_s: float = 5.0) -> set[asyncio.Task[object]]:
    """The tasks besides this one, once none of them makes progress for a while."""
    for _ in range(int(limit_s / 0.02)):
        await asyncio.sleep(0.02)
        running = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        if all(t.done() for t in running) or len(running) == 1:
            await asyncio.sleep(0.1)  # a thread's decoding ends, and its task
            break
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


# -- The answer ------------------------------------------------------------------------------


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[list[OfficialVersion]], frozenset[int]]:
    count = draw(st.integers(0, 2 * SEGMENTS_PER_READ + 3))
    buckets: list[list[OfficialVersion]] = []
    for b in range(count):
        offsets = draw(st.lists(st.integers(0, BUCKET_US - 1), max_size=6, unique=True))
        bucket = [version(b * BUCKET_US + o) for o in sorted(offsets)]
        restated = draw(st.lists(st.sampled_from(sorted(offsets)), max_size=3)) if offsets else []
        for n, offset in enumerate(restated, start=2):
            bucket.append(version(b * BUCKET_US + offset, n))
        buckets.append(bucket)
    overflowing = draw(st.frozensets(st.integers(0, max(0, count - 1)), max_size=3))
    return buckets, overflowing


RANGE_PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
"""The settings of the range reads' property tests (some raise max_examples)."""


def check_every_value_once(
    layout: tuple[list[list[OfficialVersion]], frozenset[int]],
    query: RangeQuery,
    page_size: int,
    max_points: int,
    max_value_bytes: int | None = None,
    columns: frozenset[str] = SNAP_AND_VERSION,
) -> None:
    """Calls resumed from their tokens give every value of the range once, as of the query,
    as the values stored in `layout` say."""
    buckets, overflowing = layout
    store = Store(buckets, overflowing)
    at = query.as_of.at_us if isinstance(query.as_of, KnownAt) else None
    done = asyncio.run(every_call(store, query, page_size, max_points, max_value_bytes, columns))
    assert [v for call in done for v in call] == stored_values(store, query, at)


@RANGE_PROPERTY
@given(
    layouts(),
    st.integers(1, 40),
    st.integers(1, 120),
    st.integers(-BUCKET_US, 40 * BUCKET_US),
    st.integers(0, 40 * BUCKET_US),
    st.sampled_from([LATEST, KnownAt(1), KnownAt(2), KnownAt(3)]),
)
def test_calls_resumed_from_their_tokens_give_every_value_once_as_of_the_query(
    layout: tuple[list[list[OfficialVersion]], frozenset[int]],
    page_size: int,
    max_points: int,
    start_us: int,
    length_us: int,
    as_of: Latest | KnownAt,
) -> None:
    query = RangeQuery(S, start_us, start_us + length_us, as_of)
    check_every_value_once(layout, query, page_size, max_points)


# -- What is left behind ---------------------------------------------------------------------


@pytest.mark.parametrize("ends", ["waiting", "failing"])
async def test_closing_the_pages_stops_the_store_read_a_finished_read_ahead_started(
    caplog: pytest.LogCaptureFixture, ends: str
) -> None:
    # Store reads: 1, the first page's (one segment decoded); 2, the read ahead's 16, fewer
    # values than the call may take, so it starts 3, the store read after them, which waits (or
    # fails). The caller takes its first page, sends it (the read ahead finishes meanwhile:
    # its table and the running store read 3 are in its _Read), and then goes away.
    store = stopping_at(3, plain_buckets(3 * SEGMENTS_PER_READ + 2, 10), ends == "waiting")
    pages = read(store, RangeQuery(S), 10, 10**6)
    first = await anext(pages)
    assert first.rows.num_rows == 10
    # (Code that does not read ahead never reaches store read 3: then nothing to wait for.)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(store.reached.wait(), 1)
    await others_settle()
    await pages.aclose()  # type: ignore[attr-defined]
    for _ in range(3):  # a task cancelled ends at its next step
        await asyncio.sleep(0)
    left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}
    for task in left:  # not to hang the test's loop
        task.cancel()
    assert left == set(), "a store read still runs for a range nobody reads"
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del pages, first
        gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_client_cancelling_while_the_pages_wait_for_the_read_ahead_leaves_nothing() -> None:
    # The caller's task is cancelled while the pages wait for the read ahead's store read.
    store = Store(plain_buckets(3 * SEGMENTS_PER_READ + 2, 10), block_at=2)

    async def take() -> None:
        async for _ in read(store, RangeQuery(S), 10, 10**6):
            pass

    task = asyncio.ensure_future(take())
    await asyncio.wait_for(store.reached.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(3):
        await asyncio.sleep(0)
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


# -- What is read ahead ----------------------------------------------------------------------


async def test_a_call_ending_on_its_value_bytes_decodes_no_store_read_it_will_not_send() -> None:
    # One bucket's value bytes end the call (max_value_bytes): its first page is all it sends.
    # A gRPC servicer awaits the send of each page before it asks for the next one.
    store = Store(plain_buckets(3 * SEGMENTS_PER_READ, 10))
    decoded, counted = counting_decodes()
    with mock.patch.object(segments, "decode", counted):
        pages = read(
            store,
            RangeQuery(S),
            10,
            10**6,
            max_value_bytes=10 * len(VALUE),
            columns=frozenset({"snap_us", "value"}),
        )
        taken = [await anext(pages)]
        await others_settle()  # the page is sent
        taken += [page async for page in pages]
    assert [page.rows.num_rows for page in taken] == [10]
    assert taken[-1].next_page_token  # the next call continues
    # The first segment only. A read ahead that ignored the bytes decoded 16 more (and read the
    # store twice more), for a call that had ended: for large values (surfaces) that is 16
    # buckets of them held in memory per call.
    assert len(decoded) <= 2, f"{len(decoded)} segments decoded for a call sending one"


async def test_values_with_a_closing_version_outside_the_range_are_not_duplicated() -> None:
    # A restated point at the very end of a read (the 16th segment's last row) and the range's
    # end cutting through the next bucket.
    buckets = plain_buckets(SEGMENTS_PER_READ + 2, 3)
    last = buckets[SEGMENTS_PER_READ - 1][-1].snap_us
    buckets[SEGMENTS_PER_READ - 1].append(version(last, 2))
    store = Store(buckets)
    end_us = (SEGMENTS_PER_READ + 1) * BUCKET_US + 2
    got = [
        (s, v)
        for page in [p async for p in read(store, RangeQuery(S, 0, end_us), 7, 10**6)]
        for s, v in zip(
            page.rows.column("snap_us").to_pylist(),
            page.rows.column("version").to_pylist(),
            strict=True,
        )
    ]
    want = [(v.snap_us, v.version) for v in store._official(0, end_us, None)]
    assert got == want
    assert (last, 2) in got
    assert (last, 1) not in got
