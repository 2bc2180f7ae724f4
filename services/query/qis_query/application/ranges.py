"""Range reads of official values with as-of dispatch (docs/architecture.md §3): the latest version of each
point, the version known at a past knowledge time, or the version current right after a commit
position (which reproduces any past answer exactly)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from qis_adapters.readstore.port import OPEN_END, OfficialVersion, ReadModelReader
from qis_domain.errors import FieldViolation, InvalidArgument

from qis_query.application import paging

EARLIEST = -(2**63)
"""Start of a range without a lower bound."""
READ_SIZE = 1_000
"""Values per store read of a range whose pages are smaller."""


@dataclass(frozen=True, slots=True)
class Latest:
    """The current version of each point."""


@dataclass(frozen=True, slots=True)
class KnownAt:
    """The versions that were official at this knowledge time."""

    at_us: int


@dataclass(frozen=True, slots=True)
class AtPosition:
    """The versions that were official right after this commit position."""

    position: int


AsOf = Latest | KnownAt | AtPosition
LATEST = Latest()


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """Official values of a series with snaps in [start_us, end_us), as of `as_of`."""

    series_id: str
    start_us: int = EARLIEST
    end_us: int = OPEN_END
    as_of: AsOf = LATEST


@dataclass(frozen=True, slots=True)
class RangePage:
    values: list[OfficialVersion]
    next_page_token: str  # "" on the last page


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
) -> AsyncIterator[RangePage]:
    """The range in pages of `page_size` values, from just after the snap `after_us` (a page
    token's) when given, `max_points` values at most. A page that may be followed carries the
    token resuming after it; the last page of the range is short, possibly empty, and has none.
    At `max_points` the pages end with a token: the caller continues in another call."""
    start = query.start_us if after_us is None else max(query.start_us, after_us + 1)
    fetch = fetcher(reader, query.series_id, query.as_of)
    # Small pages are cut from larger reads: a store read costs far more than a message.
    read_size = page_size * max(1, READ_SIZE // page_size)
    left = max_points
    while left:
        want = min(read_size, left)
        values = await fetch(start, query.end_us, want)
        ended = len(values) < want
        cut = [values[i : i + page_size] for i in range(0, len(values), page_size)]
        if ended and len(values) % page_size == 0:
            cut.append([])  # the range ends right after a full page: an empty one says so
        for page in cut:
            if ended and len(page) < page_size:
                yield RangePage(page, "")
                return
            yield RangePage(page, paging.range_token(query, page[-1].snap_us))
        left -= want
        start = values[-1].snap_us + 1


async def points(
    reader: ReadModelReader, series_id: str, snaps: Sequence[int], as_of: AsOf
) -> list[OfficialVersion]:
    """The value of each snap that had one as of `as_of`, in the order of `snaps`."""
    fetch = fetcher(reader, series_id, as_of)
    found: list[OfficialVersion] = []
    for snap_us in snaps:
        found.extend(await fetch(snap_us, snap_us + 1, 1))
    return found
