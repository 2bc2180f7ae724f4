"""Range reads of official values with as-of dispatch (docs/architecture.md §3): the latest version of each
point, the version known at a past knowledge time, or the version current right after a commit
position (which reproduces any past answer exactly)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import (
    LATEST,
    OPEN_END,
    OVERFLOW_ROWS,
    AsOf,
    AtPosition,
    KnownAt,
    Latest,
    OfficialVersion,
    ReadModelReader,
    Segment,
    SeriesEntry,
)
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.snaps import BUCKET_SPAN_US, Frequency

from qis_query.application import paging

EARLIEST = -(2**63)
"""Start of a range without a lower bound."""
READ_SIZE = 1_000
"""Values per store read of per-point records."""


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """Official values of a series with snaps in [start_us, end_us), as of `as_of`."""

    series_id: str
    start_us: int = EARLIEST
    end_us: int = OPEN_END
    as_of: AsOf = LATEST


@dataclass(frozen=True, slots=True)
class RangePage:
    rows: pa.Table  # qis_adapters.readstore.segments rows, ascending by snap
    next_page_token: str  # "" on the last page
    block: pa.Table | None = None
    """The rows read ahead that `rows` were sliced from, from row `start` on, the same table for
    the pages cut from it (an encoder of pages encodes it once); None: `rows` themselves."""
    start: int = 0


Fetch = Callable[[int, int, int], Awaitable[list[OfficialVersion]]]
"""(start_us, end_us, limit) -> the values of one series as of one time, ascending by snap."""


def check_time_range(start_us: int, end_us: int) -> None:
    """An empty range [t, t) is a valid question; one that ends before it starts is a mistake."""
    if start_us > end_us:
        raise InvalidArgument(
            [
                FieldViolation("start_time", "must not be after end_time"),
                FieldViolation("end_time", "must not be before start_time"),
            ]
        )


def fetcher(reader: ReadModelReader, series_id: str, as_of: AsOf) -> Fetch:
    match as_of:
        case KnownAt(at_us):
            return lambda s, e, n: reader.as_of_time_range(series_id, s, e, at_us, n)
        case AtPosition(position):
            return lambda s, e, n: reader.as_of_position_range(series_id, s, e, position, n)
        case Latest():
            return lambda s, e, n: reader.latest_range(series_id, s, e, n)


async def pages(
    reader: ReadModelReader,
    query: RangeQuery,
    page_size: int,
    after_us: int | None,
    max_points: int,
    bucket_span_us: int | None,
    tokens: paging.PageTokens,
    columns: frozenset[str] | None = None,
    max_value_bytes: int | None = None,
) -> AsyncIterator[RangePage]:
    """The range in pages of `page_size` values, from just after the snap `after_us` (a page
    token's) when given, `max_points` values at most. A page that may be followed carries the
    token resuming after it (one cut short by its bytes, below, too); the last page of the range
    has none, and may be short or empty.
    At `max_points` the pages end with a token: the caller continues in another call; so they
    do when the read stops on the call's budget (its values, or its value and reason bytes
    counted by their buffers: `_Budget`), the last page maybe short.

    Pages holding the serialised values (the `value` column) or the reasons (`reason`) are
    bounded in their bytes too, what a client's receive limit bounds: a page ends at a whole
    snap before its value and reason bytes pass PAGE_VALUE_BYTES, but holds one snap at least (a
    larger snap goes whole); and the pages end with a token once a call's value and reason bytes
    reach `max_value_bytes` (None: no bound).
    The bytes are read from the columns' offsets, no value is parsed.

    The pages hold every column of the segments' rows, or `columns` and those the range is
    selected by (selection), in the segments' order: a reader that needs a few columns (an
    export) has the others neither decoded nor copied.

    Values come from the read model's segments (segments of `bucket_span_us`, the series'
    bucket span; None reads every bucket before the range too, to find the one holding its
    start), SEGMENTS_PER_READ at a time, each read's decoded in a thread into one table (see
    _read), cut into pages without an object per value."""
    start = query.start_us if after_us is None else max(query.start_us, after_us + 1)
    pending: list[pa.Table] = []
    count = 0
    # Where each row read ahead ends in the call's value and reason bytes (empty: rows without
    # either); the pages so far hold `paged_bytes`.
    ends = _NO_ENDS
    paged_bytes = 0
    left = max_points
    wanted = None if columns is None else columns | selection(query.as_of)
    sized = SIZED if wanted is None else tuple(c for c in SIZED if c in wanted)
    token = tokens.range_tokens(query)
    paged = 0  # rows of pending[0] already in pages
    # Closed with the pages, wherever they are let go of: its read ahead stops then.
    budget = _Budget(max_points, max_value_bytes, sized)
    ending = _Ending()
    read = _rows(reader, query, start, bucket_span_us, wanted, budget, page_size, ending)
    async with contextlib.aclosing(read):
        async for rows in read:
            if paged:
                pending, paged = [pending[0].slice(paged)], 0
            pending.append(rows)
            count += rows.num_rows
            if sized:
                ends = _byte_ends([rows.column(c) for c in sized], ends, paged_bytes)
            while size := _full_page(count, min(page_size, left), ends, paged_bytes):
                if len(pending) > 1:
                    pending = [pa.concat_tables(pending)]
                page = pending[0].slice(paged, size)
                yield RangePage(page, token(_last_snap(page)), pending[0], paged)
                left -= size
                if len(ends):
                    paged_bytes, ends = int(ends[size - 1]), ends[size:]
                if not left or (max_value_bytes is not None and paged_bytes >= max_value_bytes):
                    return
                paged += size
                count -= size
    if not pending:
        yield RangePage(_project(segments.EMPTY, wanted), "")
        return
    table = pa.concat_tables(pending)
    # Rows stopped by the call's budget before the range ends: the call goes on from the last.
    yield RangePage(
        table.slice(paged), token(_last_snap(table)) if ending.cut else "", table, paged
    )


def _full_page(count: int, size: int, ends: npt.NDArray[np.int64], paged_bytes: int) -> int:
    """The rows of the next page if the `count` rows read ahead fill one, else 0: `size` rows,
    or fewer within PAGE_VALUE_BYTES when the rows read ahead pass it (one row at least).
    `ends`: the rows' value ends (see pages; empty: pages without values)."""
    if len(ends):
        within = int(np.searchsorted(ends, paged_bytes + PAGE_VALUE_BYTES, side="right"))
        if within < count:
            return min(size, max(within, 1))
    return size if count >= size else 0


PAGE_VALUE_BYTES = 1 << 20
"""The bytes of serialised values and reasons a page holds at most (but for a larger snap, which
MAX_STRUCTURE_NODES bounds): gRPC clients receive 4 MiB a message by default, 50 snaps of a
realistic 2,000-node surface are 4.7 MB, and 4,000 restated prices' reasons of MAX_TEXT_LENGTH
are 4 MB. A page's other columns add some 100 bytes a snap."""
SIZED = ("value", "reason")
"""The columns of a page whose size per row has no small bound."""
_NO_ENDS: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)


def _byte_ends(
    columns: list[pa.ChunkedArray], ends: npt.NDArray[np.int64], paged_bytes: int
) -> npt.NDArray[np.int64]:
    """`ends` followed by where each row of `columns` (binary or string, of one length) ends in
    their bytes together, read from their offsets; `paged_bytes` end the rows before `ends`."""
    sizes = sum(map(_row_bytes, columns[1:]), _row_bytes(columns[0]))
    last = int(ends[-1]) if len(ends) else paged_bytes
    return np.concatenate([ends, np.cumsum(sizes) + last])


def _row_bytes(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """The bytes of each row of a binary or string column (read from its offsets by Arrow)."""
    lengths: npt.NDArray[np.int64] = pc.binary_length(column).to_numpy().astype(np.int64)
    return lengths


SEGMENTS_PER_READ = 16
"""Segments per store read: a few thousand values each at most (qis_domain.snaps)."""


def selection(as_of: AsOf) -> frozenset[str]:
    """The columns a range as of `as_of` is selected by (segments.select; snap_us for
    _last_snap too), in every page of some columns."""
    return segments.SELECTED_BY[type(as_of)]


async def _rows(
    reader: ReadModelReader,
    query: RangeQuery,
    start_us: int,
    bucket_span_us: int | None,
    columns: frozenset[str] | None,
    budget: _Budget,
    first_points: int,
    ending: _Ending,
) -> AsyncGenerator[pa.Table, None]:
    """The range's values from `start_us` on, ascending by snap, in tables of a store read's
    segments (see _read), of `columns` (None: all), what `budget` holds at least when the
    range holds it (the caller takes no more; `ending.cut` says the range went on). The first
    read decodes only what holds `first_points` (a first page comes as soon as it is read);
    while the caller takes one read's tables, the next read runs ahead while the budget is not
    spent (and its store read, while this one is decoded, when it is sure to be wanted)."""
    from_bucket = EARLIEST if bucket_span_us is None else start_us - start_us % bucket_span_us
    from_bucket = max(EARLIEST, from_bucket)
    ahead: asyncio.Future[_Read | None] | None = None
    read: _Read | None = None
    try:
        opening = budget.first(first_points)
        read = await _read(reader, query, from_bucket, None, start_us, columns, opening)
        if read is None:  # a read model built before segments, until its rebuild is done
            async for rows in _from_records(reader, query, start_us, query.end_us):
                yield _project(rows, columns)
            return
        while True:
            budget = budget.spent(read.points, read.value_bytes)
            ending.cut = read.continues and not budget.left
            if read.continues and budget.left:
                after, following = read.last_bucket_us + 1, read.following
                ahead = asyncio.ensure_future(
                    _read(reader, query, after, following, start_us, columns, budget)
                )
            for part in read.parts:
                if isinstance(part, pa.Table):
                    yield part
                    continue
                # A bucket too large for a segment: its values are in the per-point records.
                first = max(start_us, part.first_snap_us)
                last = min(query.end_us, part.last_snap_us + 1)
                async for rows in _from_records(reader, query, first, last):
                    yield _project(rows, columns)
            if ahead is None:
                return
            read, ahead = await ahead, None
            assert read is not None, "a read model keeps its segments"
    finally:
        if ahead is not None:
            _drop(ahead)
            # Done, the read ahead has started the store read after it: that goes too.
            if ahead.done() and not ahead.cancelled() and ahead.exception() is None:
                read = ahead.result()
        if read is not None and read.following is not None:
            _drop(read.following)


@dataclass(slots=True)
class _Ending:
    """How a range read ended: `cut`, by the call's budget, before the range did."""

    cut: bool = False


@dataclass(frozen=True, slots=True)
class _Budget:
    """What a call may still take of the range: values, and bytes of its `sized` columns
    (value_bytes None: no bound; see pages). No read is decoded once it is spent: for large
    values (curves, surfaces) a read is as large as the call's bytes."""

    points: int
    value_bytes: int | None
    sized: tuple[str, ...]

    @property
    def left(self) -> bool:
        return self.points > 0 and (self.value_bytes is None or self.value_bytes > 0)

    def first(self, points: int) -> _Budget:
        return _Budget(min(self.points, points), self.value_bytes, self.sized)

    def spent(self, points: int, value_bytes: int) -> _Budget:
        left = None if self.value_bytes is None else self.value_bytes - value_bytes
        return _Budget(self.points - points, left, self.sized)

    def spent_down_to(self, left: _Budget) -> tuple[int, int]:
        """The values and sized bytes spent from this budget to `left` (what it became)."""
        spent_bytes = 0
        if self.value_bytes is not None and left.value_bytes is not None:
            spent_bytes = self.value_bytes - left.value_bytes
        return self.points - left.points, spent_bytes

    def bytes_of(self, rows: pa.Table) -> int:
        """The bytes of `rows`' sized columns (their buffers: at least what pages count)."""
        return sum(rows.column(c).nbytes for c in self.sized if c in rows.column_names)


@dataclass(frozen=True, slots=True)
class _Read:
    parts: list[pa.Table | Segment]
    """In bucket order: the rows of consecutive segments, as of the query's as-of (one table
    for them all), and the segments too large to hold their rows (OVERFLOW_ROWS)."""
    points: int
    """The rows of the tables."""
    value_bytes: int
    """The bytes of their sized columns, segment by segment (_Budget.bytes_of)."""
    continues: bool
    """The store may hold more segments of the range after these, from the bucket after
    `last_bucket_us` on."""
    last_bucket_us: int
    following: asyncio.Future[list[Segment] | None] | None
    """The store read of the segments after these, started already."""


def _found(
    reader: ReadModelReader, query: RangeQuery, from_bucket: int
) -> Awaitable[list[Segment] | None]:
    """The store read of the range's segments from the bucket `from_bucket` on."""
    return reader.segments(
        query.series_id, from_bucket, query.end_us, query.as_of, SEGMENTS_PER_READ
    )


async def _read(
    reader: ReadModelReader,
    query: RangeQuery,
    from_bucket: int,
    started: asyncio.Future[list[Segment] | None] | None,
    start_us: int,
    columns: frozenset[str] | None,
    budget: _Budget,
) -> _Read | None:
    """The range's segments from the bucket `from_bucket` on (their store read, when `started`
    already), SEGMENTS_PER_READ at most, decoded and selected, as many as `budget` holds (more
    are not wanted); None for a read model without segments. When their rows are fewer than its
    values, the next read is wanted whatever they select: its store read starts at once, to run
    while these are decoded (_Read.following), if theirs was small (_EARLY_READ_BYTES).

    They are decoded in a thread of their own: Arrow decompresses, decodes and joins them
    without the GIL, so on the other core, beside the query loop (making pages, and an export's
    batches, of the read before) and a Flight thread (sending them). Not when the first segment
    may hold every value wanted: a hop to a thread costs about what decoding one segment does."""
    found = await (_found(reader, query, from_bucket) if started is None else started)
    if found is None:
        return None
    following = None
    if (
        len(found) == SEGMENTS_PER_READ
        and sum(max(0, s.rows) for s in found) < budget.points
        and sum(len(s.payload) for s in found) <= _EARLY_READ_BYTES
    ):
        following = asyncio.ensure_future(_found(reader, query, found[-1].bucket_us + 1))
    try:
        if len(found) > 1 and (found[0].rows == OVERFLOW_ROWS or found[0].rows < budget.points):
            decoded = await asyncio.to_thread(_decoded, found, query, start_us, columns, budget)
        else:
            decoded = _decoded(found, query, start_us, columns, budget)
    except BaseException:
        if following is not None:
            _drop(following)
        raise
    parts, used, left = decoded
    if used < len(found) and following is not None:  # it reads after the last one found
        _drop(following)
        following = None
    return _Read(
        parts,
        *budget.spent_down_to(left),
        used < len(found) or len(found) == SEGMENTS_PER_READ,
        found[used - 1].bucket_us if used else EARLIEST,  # none found: nothing follows
        following,
    )


def _decoded(
    found: Sequence[Segment],
    query: RangeQuery,
    start_us: int,
    columns: frozenset[str] | None,
    budget: _Budget,
) -> tuple[list[pa.Table | Segment], int, _Budget]:
    """The parts of a _Read of the first of `found` that `budget` holds, how many segments
    they are, and what is left of the budget. The rows of consecutive segments are joined into one table of one
    chunk: a page cut from it makes one record batch (a Flight stream's costs are per batch
    too), and the Arrow calls on a page's columns run once, not once per segment; the copy
    costs ~3 ns a point."""
    parts: list[pa.Table | Segment] = []
    run: list[pa.Table] = []
    used = 0
    for segment in found:
        if not budget.left:
            break
        used += 1
        if segment.rows == OVERFLOW_ROWS:
            parts += [_joined(run), segment]
            run = []
        elif segment.last_snap_us >= start_us:
            rows = segments.decode(segment.payload, columns)
            run.append(segments.select(rows, query.as_of, start_us, query.end_us))
            budget = budget.spent(run[-1].num_rows, budget.bytes_of(run[-1]))
    parts.append(_joined(run))
    kept = [part for part in parts if not isinstance(part, pa.Table) or part.num_rows]
    return kept, used, budget


_EARLY_READ_BYTES = 4 << 20
"""The payload bytes of a store read after which the next one may start before these are
decoded: beyond, a store read (of large values) would be held twice."""


def _joined(run: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(run).combine_chunks() if run else segments.EMPTY


def _drop(read: asyncio.Future[Any]) -> None:
    """Stops a read ahead no longer wanted; a failure it ended with is not reported."""
    if read.done() and not read.cancelled():
        read.exception()
    read.cancel()


async def _from_records(
    reader: ReadModelReader, query: RangeQuery, start_us: int, end_us: int
) -> AsyncIterator[pa.Table]:
    """The values with snaps in [start_us, end_us) from the per-point records: those of a bucket
    too large for a segment, or of a read model built before segments."""
    fetch = fetcher(reader, query.series_id, query.as_of)
    while start_us < end_us:
        values = await fetch(start_us, end_us, READ_SIZE)
        if values:
            yield segments.rows_from_versions([as_known(v) for v in values])
        if len(values) < READ_SIZE:
            return
        start_us = values[-1].snap_us + 1


def _project(rows: pa.Table, columns: frozenset[str] | None) -> pa.Table:
    """`rows` with `columns` only, in their order, as segments.decode gives them."""
    if columns is None:
        return rows
    return rows.select([name for name in rows.column_names if name in columns])


def _last_snap(rows: pa.Table) -> int:
    snaps = rows["snap_us"]
    return int(snaps[len(snaps) - 1].as_py())


def bucket_span(entry: SeriesEntry) -> int | None:
    """The bucket span of the series' frequency (qis_domain.snaps), from its catalogue entry;
    None when the entry names none this code knows."""
    name = str(entry.definition.get("frequency", ""))
    frequency = Frequency.__members__.get(name.removeprefix("FREQUENCY_"))
    return None if frequency is None else BUCKET_SPAN_US[frequency]


async def points(
    reader: ReadModelReader, series_id: str, snaps: Sequence[int], as_of: AsOf
) -> list[OfficialVersion]:
    """The value of each snap that had one as of `as_of`, in the order of `snaps`, as known
    then (see as_known)."""
    fetch = fetcher(reader, series_id, as_of)
    found: list[OfficialVersion] = []
    for snap_us in snaps:
        found.extend(as_known(v) for v in await fetch(snap_us, snap_us + 1, 1))
    return found


def as_known(version: OfficialVersion) -> OfficialVersion:
    """A version in an answer about one time (latest, or as of a knowledge time or position):
    official then, so superseded by nothing the answer knows of. (A point's history gives
    when each version was superseded.)"""
    if version.position_to == OPEN_END:
        return version
    return version._replace(recorded_to_us=OPEN_END, position_to=OPEN_END)
