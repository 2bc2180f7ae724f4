"""Range reads of many segments (qis_query.application.ranges): each store read's segments are
decoded together, off the query loop, into one table of one chunk (an export page cut from it
is one Arrow batch, or two where it spans reads), the next read runs ahead while the pages of
one are taken, and neither decodes nor reads past the values a call may take; a read ahead
that is let go of, even one that failed, leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import cast
from unittest import mock

import pyarrow as pa
import pytest
from qis.data.v1 import values_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import (
    OVERFLOW_ROWS,
    AsOf,
    OfficialVersion,
    ReadModelReader,
    Segment,
)
from qis_query.application import ranges
from qis_query.application.paging import PageTokens
from qis_query.application.ranges import SEGMENTS_PER_READ, RangePage, RangeQuery

S = "S"
BUCKET_US = 1_000
POINTS_PER_BUCKET = 10
BUCKETS = 2 * SEGMENTS_PER_READ + 3
"""Three store reads, the last one short."""
VALUE = values_pb2.DataValue(price=values_pb2.Price(value="1.5")).SerializeToString()


def version(snap_us: int, version: int = 1, position: int = 1) -> OfficialVersion:
    return OfficialVersion(
        S, snap_us, version, VALUE, 1.0, position, position, "", "u", "c", ("s",), "priority"
    )


def segment(bucket: int, overflow: bool = False) -> Segment:
    first = bucket * BUCKET_US
    snaps = range(first, first + POINTS_PER_BUCKET)
    if overflow:
        return Segment(S, first, snaps[0], snaps[-1], OVERFLOW_ROWS, b"", 1, 1)
    rows = segments.rows_from_versions([version(snap) for snap in snaps])
    return Segment(S, first, snaps[0], snaps[-1], len(snaps), segments.encode(rows), 1, 1)


class CountedSegments:
    """Stored segments read by bucket, counting the store reads: the read `block_at` (1, 2,
    ...) waits forever, the read `fail_at` fails; `reached` is set at either."""

    def __init__(
        self, stored: list[Segment], block_at: int | None = None, fail_at: int | None = None
    ) -> None:
        self.stored = stored
        self.reads = 0
        self.block_at = block_at
        self.fail_at = fail_at
        self.reached = asyncio.Event()

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment]:
        self.reads += 1
        if self.reads == self.block_at:
            self.reached.set()
            await asyncio.Event().wait()
        if self.reads == self.fail_at:
            self.reached.set()
            raise ConnectionError("the store went away")
        found = [s for s in self.stored if from_bucket_us <= s.bucket_us < end_us]
        return found[:limit]


class Reader(CountedSegments):
    """The segments of one series; a bucket in `overflowing` has its values in the per-point
    records."""

    def __init__(
        self, overflowing: frozenset[int] = frozenset(), fail_at: int | None = None
    ) -> None:
        super().__init__([segment(b, b in overflowing) for b in range(BUCKETS)], None, fail_at)

    async def latest_range(
        self, series_id: str, start_us: int, end_us: int, limit: int
    ) -> list[OfficialVersion]:
        return [version(snap, position=2) for snap in range(start_us, end_us)][:limit]


def pages(reader: Reader, page_size: int, max_points: int) -> AsyncIterator[RangePage]:
    columns = frozenset({"snap_us", "position_from"})
    return ranges.pages(
        cast(ReadModelReader, reader),
        RangeQuery(S),
        page_size,
        None,
        max_points,
        BUCKET_US,
        PageTokens.random(),
        columns,
    )


def counting_decodes() -> tuple[list[int], Callable[..., pa.Table]]:
    decoded: list[int] = []
    decode = segments.decode

    def counted(payload: bytes, columns: frozenset[str] | None = None) -> pa.Table:
        decoded.append(1)
        return decode(payload, columns)

    return decoded, counted


async def test_each_store_read_is_one_chunk_and_the_pages_hold_every_value_in_order() -> None:
    reader = Reader(overflowing=frozenset({SEGMENTS_PER_READ + 2}))
    page_size = 3 * POINTS_PER_BUCKET + 5
    taken = [page async for page in pages(reader, page_size, 10**9)]
    snaps = [s for page in taken for s in page.rows.column("snap_us").to_pylist()]
    assert snaps == [b * BUCKET_US + i for b in range(BUCKETS) for i in range(POINTS_PER_BUCKET)]
    assert reader.reads == 3
    # The overflowing bucket's values came from the per-point records (position 2).
    positions = [p for page in taken for p in page.rows.column("position_from").to_pylist()]
    overflow = (SEGMENTS_PER_READ + 2) * POINTS_PER_BUCKET
    assert set(positions[overflow : overflow + POINTS_PER_BUCKET]) == {2}
    assert set(positions) - {2} == {1}
    # A page spans a read's table and the next read's, but around the overflowing bucket
    # (a table before it, the records', a table after it).
    chunks = [
        page.rows.column("snap_us").num_chunks
        for page in taken
        if set(page.rows.column("position_from").to_pylist()) == {1}
    ]
    assert max(chunks) == 2
    assert taken[0].rows.column("snap_us").num_chunks == 1


async def test_a_call_decodes_and_reads_no_further_than_the_values_it_may_take() -> None:
    reader = Reader()
    decoded, counted = counting_decodes()
    max_points = 2 * POINTS_PER_BUCKET + 1  # into the third segment of the first read
    with mock.patch.object(segments, "decode", counted):
        taken = [page async for page in pages(reader, POINTS_PER_BUCKET, max_points)]
    assert sum(page.rows.num_rows for page in taken) == max_points
    assert taken[-1].next_page_token  # the next call continues
    assert len(decoded) == 3
    assert reader.reads == 2  # the first page's segment, then the two of the rest


async def test_a_small_read_is_decoded_on_the_loop_a_large_one_in_a_thread() -> None:
    threads: list[str] = []
    decode = segments.decode

    def where(payload: bytes, columns: frozenset[str] | None = None) -> pa.Table:
        threads.append(threading.current_thread().name)
        return decode(payload, columns)

    with mock.patch.object(segments, "decode", where):
        [page async for page in pages(Reader(), POINTS_PER_BUCKET, POINTS_PER_BUCKET)]
        loop_thread = threads[:]
        threads.clear()
        [page async for page in pages(Reader(), POINTS_PER_BUCKET, 10 * POINTS_PER_BUCKET)]
    assert loop_thread == ["MainThread"]
    # The first page's segment on the loop, the others ahead in a thread.
    assert len(threads) == 10
    assert threads[0] == "MainThread"
    assert "MainThread" not in threads[1:]


@pytest.mark.parametrize("wait_for_the_failure", [True, False])
async def test_a_read_ahead_let_go_of_leaves_no_task_and_no_unread_failure(
    caplog: pytest.LogCaptureFixture, wait_for_the_failure: bool
) -> None:
    reader = Reader(fail_at=2)
    read = pages(reader, POINTS_PER_BUCKET, 10**9)
    first = await anext(read)
    assert first.rows.num_rows == POINTS_PER_BUCKET
    if wait_for_the_failure:
        await reader.reached.wait()
        await asyncio.sleep(0)  # the read's task ends
    await read.aclose()  # type: ignore[attr-defined]
    for _ in range(3):  # a task cancelled ends at its next step
        await asyncio.sleep(0)
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_read_that_fails_ahead_fails_the_range_when_it_is_reached() -> None:
    # The first page's segment, the next read's 16, and the store read after them fails while
    # they are decoded.
    reader = Reader(fail_at=3)
    taken: list[RangePage] = []

    async def take() -> None:
        async for page in pages(reader, POINTS_PER_BUCKET, 10**9):
            taken.append(page)

    with pytest.raises(ConnectionError, match="went away"):
        await take()
    assert len(taken) == 1 + SEGMENTS_PER_READ
