"""An export of prices or volumes read straight from the read model's segments: the rows
qis_query.application.export's pages hold, without the pages.

The pages of an export (QueryRange's use case, call after call) cost the query loop a Python
step per page and a hand-off between threads per store read and per page; a long price export
over Flight spent most of its time waiting on those hand-offs, not on a core. Here a store
read's segments (a series' first SEGMENTS_PER_READ buckets, then about ROWS_PER_READ rows a
read) are decoded together, as one IPC stream
(segments.decode_many), in a thread, and selected as of the export's as-of and within its range
with the same filter as a range read (segments.select): one hand-off a store read. The rows are
the ones the pages would hold, in the same order, and the export's batches
(qis_query.application.arrow_batches) are made of them by the same code.

What this does not read, the pages do: bars, term structures and surfaces (their rows are made
into batches with more Python: not SEGMENT_COLUMNS), a read model built before segments
(`segments` answers None), and a bucket too large for a segment (OVERFLOW_ROWS), whose values
are in the per-point records (see `parts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import OVERFLOW_ROWS, ReadModelReader, Segment

from qis_query.application.export import (
    STORED_COLUMNS,
    ExportedSeries,
    ExportRequest,
    ValueColumns,
)
from qis_query.application.ranges import EARLIEST, SEGMENTS_PER_READ, selection

ROWS_PER_READ = 250_000
"""The rows a store read after a series' first aims at: its number of segments is set by the
rows of the segments the read before found. Each store read costs a round trip, a hand-off to a
thread and back, and a batch to send, so fewer, larger reads stream faster: 1M second prices
(hour buckets of 3,600) read 16 buckets a read cost qis-query ~110 ns CPU a point, against ~100
at ~250,000 rows a read (125,000 to 500,000 measured alike). While one read's batch is sent,
the next two are read and decoded (ReadsAhead): three reads' rows are held at once at most
(~20 MB each of prices at this size, 80 bytes a row)."""

MAX_SEGMENTS_PER_READ = 4 * SEGMENTS_PER_READ
"""At most, whatever the rows: the rows of the read before only guess at the next one's, and a
series' sparse start (a value an hour) followed by full buckets would otherwise have its next
read take thousands of them. So a read holds at most 64 segments (of second prices, 230,400
values; a segment holds 12 MiB at most, MAX_SEGMENT_BYTES)."""


@dataclass(frozen=True, slots=True)
class StoreRead:
    """One store read of an export: the segments of the series `series_index` (of the
    request) from the bucket `from_bucket_us` on, `limit` at most: SEGMENTS_PER_READ for a
    series' first read (its batch is sent soon), then as many as make about ROWS_PER_READ."""

    series_index: int
    from_bucket_us: int
    limit: int

    @staticmethod
    def first(series: Sequence[ExportedSeries], index: int, start_us: int) -> StoreRead | None:
        """The first read of the series `index` of an export of `series` from `start_us` (as
        ranges reads: from the bucket holding the start; every bucket before it too when the
        span is unknown); None past the last series."""
        if index == len(series):
            return None
        span = series[index].bucket_span_us
        return StoreRead(
            index,
            EARLIEST if span is None else max(EARLIEST, start_us - start_us % span),
            SEGMENTS_PER_READ,
        )

    def following(
        self, found: Sequence[Segment] | None, series: Sequence[ExportedSeries], start_us: int
    ) -> StoreRead | None:
        """The read after this one, which found `found` (None: a read model built before
        segments, whose series is read by pages); None after the last."""
        if found is None or len(found) < self.limit:
            return StoreRead.first(series, self.series_index + 1, start_us)
        # A segment too large to hold its rows counts as a read's worth: read by pages, its
        # rows are many (and unknown here).
        rows = sum(ROWS_PER_READ if s.rows == OVERFLOW_ROWS else max(1, s.rows) for s in found)
        limit = min(MAX_SEGMENTS_PER_READ, max(1, ROWS_PER_READ * len(found) // rows))
        return StoreRead(self.series_index, found[-1].bucket_us + 1, limit)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a store read found, and its parts (see `parts`)."""

    found: list[Segment] | None
    """None: a read model built before segments, whose values only the pages read."""
    parts: list[pa.Table | Segment]


async def read(
    reader: ReadModelReader,
    series: Sequence[ExportedSeries],
    request: ExportRequest,
    store_read: StoreRead,
    columns: frozenset[str],
) -> Decoded:
    """A store read of an export of `series`, its segments decoded in a thread of their own
    (Arrow decodes them without the GIL, beside whoever sends the read before)."""
    found = await _found(reader, series, request, store_read)
    return await _decoded(found, request, columns)


async def _found(
    reader: ReadModelReader,
    series: Sequence[ExportedSeries],
    request: ExportRequest,
    store_read: StoreRead,
) -> list[Segment] | None:
    return await reader.segments(
        series[store_read.series_index].series_id,
        store_read.from_bucket_us,
        request.end_us,
        request.as_of,
        store_read.limit,
    )


async def _decoded(
    found: list[Segment] | None, request: ExportRequest, columns: frozenset[str]
) -> Decoded:
    if found is None:
        return Decoded(None, [])
    return Decoded(found, await asyncio.to_thread(parts, found, request, columns))


_Taken = tuple[StoreRead, Decoded]


class ReadsAhead:
    """The store reads of an export after the one it starts from, on the loop, each started as
    soon as the one before has found its segments (a read starts at the bucket after the last
    one found before it), and each decoded in a thread as soon as it is found: a read's
    decoding (most of its cost, in Arrow without the GIL) runs beside the next one's store read
    and beside the sending of the one before. Chained through their decodings, one read ahead
    of the sender kept its two cores half idle: 1M second prices over Flight streamed at a
    median 9.2M points/s, 11.0M this way (interleaved, on a quiet 2-core machine). The reads
    wait in order for the sender, AHEAD found at most beyond the one it holds; a failed store
    read is the sender's error in its turn. Made and used on the loop; `close` when done."""

    AHEAD = 1
    """Reads waiting for the sender beside the one read next (the second's store read is
    under way or done, its decoding too): with the one the sender holds, three reads' rows
    at most."""

    def __init__(
        self,
        reader: ReadModelReader,
        series: Sequence[ExportedSeries],
        request: ExportRequest,
        columns: frozenset[str],
        first: StoreRead,
    ) -> None:
        self._reader = reader
        self._series = series
        self._request = request
        self._columns = columns
        self._waiting: asyncio.Queue[asyncio.Future[_Taken] | None] = asyncio.Queue(self.AHEAD)
        self._reading = asyncio.ensure_future(self._read_from(first))

    async def next(self) -> _Taken | None:
        """The next read and what it found, decoded; None after the last."""
        decoding = await self._waiting.get()
        return None if decoding is None else await decoding

    def close(self) -> None:
        """Stops the reads; decodings under way finish in their threads, unused."""
        self._reading.cancel()
        while not self._waiting.empty():
            decoding = self._waiting.get_nowait()
            if decoding is not None:
                decoding.cancel()

    async def _read_from(self, store_read: StoreRead | None) -> None:
        start_us = self._request.start_us
        while store_read is not None:
            try:
                found = await _found(self._reader, self._series, self._request, store_read)
            except Exception as error:  # the sender's, after the reads before
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(error)
                await self._waiting.put(failed)
                return
            taken = asyncio.ensure_future(self._taken(store_read, found))
            try:
                await self._waiting.put(taken)
            except asyncio.CancelledError:
                taken.cancel()
                raise
            store_read = store_read.following(found, self._series, start_us)
        await self._waiting.put(None)

    async def _taken(self, store_read: StoreRead, found: list[Segment] | None) -> _Taken:
        return store_read, await _decoded(found, self._request, self._columns)


def columns_read(request: ExportRequest) -> frozenset[str]:
    """The columns of the segments a price or volume export decodes: those its batches send,
    and those its as-of selects by."""
    return STORED_COLUMNS[ValueColumns.DECIMAL] | selection(request.as_of)


def parts(
    found: Sequence[Segment], request: ExportRequest, columns: frozenset[str]
) -> list[pa.Table | Segment]:
    """In bucket order, the rows of consecutive segments of `found` that the export returns
    (one table for them, non-empty), and the segments too large to hold their rows, whose
    values are read from the per-point records (as ranges does)."""
    out: list[pa.Table | Segment] = []
    run: list[Segment] = []
    for segment in found:
        if segment.rows == OVERFLOW_ROWS:
            out += [*_rows(run, request, columns), segment]
            run = []
        elif segment.last_snap_us >= request.start_us:
            run.append(segment)
    out += _rows(run, request, columns)
    return out


def _rows(
    run: Sequence[Segment], request: ExportRequest, columns: frozenset[str]
) -> list[pa.Table]:
    if not run:
        return []
    rows = segments.decode_many([s.payload for s in run], columns)
    # The segments' rows are ascending by snap, bucket after bucket: select slices the range
    # of them all at once.
    chosen = segments.select(rows, request.as_of, request.start_us, request.end_us)
    # One chunk, one record batch a store read: a Flight stream's costs are per batch (1M
    # prices sent as a batch a bucket took the sender twice the time), the copy ~3 ns a row.
    return [chosen.combine_chunks()] if chosen.num_rows else []
