"""The store reads of a Flight price export after its first (qis_query.application
.segment_export.ReadsAhead): each starts once the one before has found its segments and is
decoded meanwhile; they come to the sender in order, at most AHEAD waiting beside the one read
next, and a store read that fails is the sender's error in its turn, after the reads before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import AsOf, Segment
from qis_query.application import segment_export
from qis_query.application.export import ExportedSeries, ExportRequest, ValueColumns
from qis_query.application.segment_export import ReadsAhead, StoreRead, columns_read

from tests.service.query.test_query_flight_fast_path import DAY, History, write

BUCKETS = 24  # 80 points 7 h apart: 24 day buckets, a store read each


class CountedReads(InMemoryReadStore):
    """Counts the segment reads; the read `fail_at` (1-based) fails."""

    def __init__(self, store: InMemoryReadStore, fail_at: int = 0) -> None:
        super().__init__(store.database)
        self.reads = 0
        self.fail_at = fail_at

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        self.reads += 1
        if self.reads == self.fail_at:
            raise ConnectionError("the store went away")
        return await super().segments(series_id, from_bucket_us, end_us, as_of, limit)


async def reads_ahead(store: CountedReads) -> ReadsAhead:
    request = ExportRequest(("S0",))
    series = [ExportedSeries("S0", "price", "USD", ValueColumns.DECIMAL, DAY)]
    first = StoreRead.first(series, 0, request.start_us)
    assert first is not None
    return ReadsAhead(store, series, request, columns_read(request), first)


@pytest.fixture(autouse=True)
def one_segment_a_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_export, "SEGMENTS_PER_READ", 1)
    monkeypatch.setattr(segment_export, "ROWS_PER_READ", 1)


async def store(fail_at: int = 0) -> CountedReads:
    return CountedReads(await write(History([("price", "USD", 80)], [], True)), fail_at)


async def test_the_reads_come_in_order_and_wait_for_the_sender() -> None:
    counted = await store()
    reads = await reads_ahead(counted)
    try:
        await asyncio.sleep(0.2)
        # One waiting, and the next found (decoding) until the sender takes one.
        assert counted.reads == ReadsAhead.AHEAD + 1
        taken: list[Any] = []
        while (read := await reads.next()) is not None:
            taken.append(read)
        starts = [store_read.from_bucket_us for store_read, _ in taken]
        assert starts == sorted(starts)
        assert len(taken) == BUCKETS + 1  # the last finds none
        assert sum(p.num_rows for _, d in taken for p in d.parts) == 80
    finally:
        reads.close()


async def test_a_failed_store_read_is_the_senders_error_after_the_reads_before() -> None:
    reads = await reads_ahead(await store(fail_at=3))
    try:
        assert await reads.next() is not None
        assert await reads.next() is not None
        with pytest.raises(ConnectionError, match="the store went away"):
            await reads.next()
    finally:
        reads.close()


async def test_closed_the_reads_stop() -> None:
    counted = await store()
    reads = await reads_ahead(counted)
    await asyncio.sleep(0.1)
    reads.close()
    await asyncio.sleep(0.1)
    so_far = counted.reads
    await asyncio.sleep(0.2)
    assert counted.reads == so_far < BUCKETS
