"""The read side's use cases, one method per query, on plain values already parsed from the
transport. Each waits (bounded) for the read model to reach the caller's min_position before
reading, and an unknown series is NOT_FOUND where an empty answer would hide it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

from qis_adapters.readstore.port import (
    AuditEntry,
    IssueFilter,
    Observation,
    OfficialVersion,
    QualityIssue,
    QualityMetrics,
    ReadModelReader,
    ResumeToken,
    SeriesEntry,
)
from qis_domain.errors import InvalidArgument, NotFound
from qis_domain.names import point_resource, series_resource

from qis_query.application import paging, ranges, subscription
from qis_query.application.consistency import ReadPosition
from qis_query.application.limits import DEFAULT_LIMITS, QueryLimits, SubscriptionSlots
from qis_query.application.ranges import AsOf, RangePage, RangeQuery
from qis_query.application.subscription import FeedSettings, Send

T = TypeVar("T")

DEFAULT_RANGE_PAGE = 1_000
MAX_RANGE_PAGE = 10_000
DEFAULT_LIST_PAGE = 100
MAX_LIST_PAGE = 1_000
MAX_VALUES = 1_000


@dataclass(frozen=True, slots=True)
class Read(Generic[T]):
    """An answer and the commit position it reflects at least."""

    value: T
    read_position: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class PointHistory:
    versions: list[OfficialVersion]
    observations: list[Observation]


class QueryHandlers:
    def __init__(
        self,
        reader: ReadModelReader,
        read_position: ReadPosition,
        feed: FeedSettings,
        limits: QueryLimits = DEFAULT_LIMITS,
    ) -> None:
        self._reader = reader
        self._read_position = read_position
        self._feed = feed
        self._limits = limits
        self._subscriptions = SubscriptionSlots(limits)

    async def query_range(
        self, query: RangeQuery, page_size: int, page_token: str, min_position: int
    ) -> Read[AsyncIterator[RangePage]]:
        """The range in pages, as much of it as one call may stream (QueryLimits): then the
        last page's token continues. The first page is read here, so that every refusal (a bad
        argument, a read model behind, an unknown series) comes before the first page."""
        ranges.check_time_range(query.start_us, query.end_us)
        size = paging.page_size(page_size, DEFAULT_RANGE_PAGE, MAX_RANGE_PAGE)
        after_us = paging.range_after(page_token, query)
        read_position = await self._read_position.at_least(min_position)
        pages = ranges.pages(
            self._reader, query, size, after_us, self._limits.points_per_call(size)
        )
        first = await anext(pages)
        if not first.values:
            await self._require_series(query.series_id)
        return Read(_prepend(first, pages), read_position)

    async def values(
        self, series_id: str, snaps: Sequence[int], as_of: AsOf, min_position: int
    ) -> Read[list[OfficialVersion]]:
        if not 1 <= len(snaps) <= MAX_VALUES:
            raise InvalidArgument.single("snaps", f"1 to {MAX_VALUES} snaps")
        read_position = await self._read_position.at_least(min_position)
        found = await ranges.points(self._reader, series_id, snaps, as_of)
        if not found:
            await self._require_series(series_id)
        return Read(found, read_position)

    async def point_history(
        self, series_id: str, snap_us: int, min_position: int
    ) -> Read[PointHistory]:
        read_position = await self._read_position.at_least(min_position)
        versions = await self._reader.history(series_id, snap_us)
        observations = await self._reader.observations(series_id, snap_us)
        if not versions and not observations:
            await self._require_series(series_id)
            raise NotFound(point_resource(series_id, snap_us), "snap")
        return Read(PointHistory(versions, observations), read_position)

    async def series(self, series_id: str, min_position: int) -> SeriesEntry:
        await self._read_position.at_least(min_position)
        return await self._require_series(series_id)

    async def list_series(
        self, page_size: int, page_token: str, min_position: int
    ) -> Page[SeriesEntry]:
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        query = ()  # the catalogue has no filter
        after = paging.key_after(page_token, "series", query)
        await self._read_position.at_least(min_position)
        entries = await self._reader.list_series(after, size)
        keys = [e.series_id for e in entries]
        return Page(entries, paging.key_token("series", query, keys, size))

    async def audit_entries(
        self,
        series_id: str,
        snap_us: int | None,
        page_size: int,
        page_token: str,
        min_position: int,
    ) -> Page[AuditEntry]:
        """Entries of a series ("" for those tied to no series), or of one point. A series the
        read model does not know yet has none: a lagging projector is not a missing series."""
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        query = (series_id, snap_us)
        after = paging.log_after(page_token, paging.PAGE_TOKEN, "audit", query)
        await self._read_position.at_least(min_position)
        entries = await self._reader.audit_trail(series_id, snap_us, after, size)
        token = ""
        if len(entries) == size:
            last = ResumeToken(entries[-1].position, entries[-1].index)
            token = paging.log_token("audit", query, last)
        return Page(entries, token)

    async def quality_issues(
        self, issue_filter: IssueFilter, page_size: int, page_token: str, min_position: int
    ) -> Page[QualityIssue]:
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        after = paging.key_after(page_token, "issues", issue_filter)
        await self._read_position.at_least(min_position)
        issues = await self._reader.list_issues(issue_filter, after, size)
        keys = [i.issue_id for i in issues]
        return Page(issues, paging.key_token("issues", issue_filter, keys, size))

    async def quality_metrics(
        self,
        series_id: str,
        start_us: int,
        end_us: int,
        page_size: int,
        page_token: str,
        min_position: int,
    ) -> Page[QualityMetrics]:
        """Windows starting in [start, end), by (start, end), a page at a time. A series holds
        few windows (one a month, or a day for intraday series), so a page is cut from all of
        them."""
        ranges.check_time_range(start_us, end_us)
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        query = (series_id, start_us, end_us)
        after = paging.key_after(page_token, "metrics", query)
        await self._read_position.at_least(min_position)
        windows = await self._reader.metrics(series_id, start_us, end_us)
        if after:
            last = _window_key(after)
            windows = [m for m in windows if (m.window_start_us, m.window_end_us) > last]
        page = windows[:size]
        keys = [f"{m.window_start_us}/{m.window_end_us}" for m in page]
        return Page(page, paging.key_token("metrics", query, keys, size))

    def subscription_slot(self, caller: str) -> AbstractContextManager[None]:
        """Held by a subscription of `caller` while it is open (see QueryLimits); raises
        TooManySubscriptions when the caller, or the service, has none left."""
        return self._subscriptions.held(caller)

    async def subscribe(
        self,
        series_ids: Sequence[str],
        resume_token: str | None,
        after_position: int,
        send: Send,
    ) -> NoReturn:
        """Follows the change feed of `series_ids` (every series when empty) from a resume
        token or after a commit position; see `subscription.follow`."""
        after = subscription.start_after(resume_token, after_position)
        await self._require_subscribed(series_ids, after.position)
        await subscription.follow(self._reader, series_ids, after, self._feed, send)

    async def _require_subscribed(self, series_ids: Sequence[str], start_position: int) -> None:
        """Every named series exists. A series defined at or before the start position must be
        in the read model once it has projected that position, so before calling one unknown
        the read model is waited for (bounded), as for a min_position: a client subscribing
        right after defining a series is not told it does not exist."""
        missing = await self._unknown(series_ids)
        if missing:
            await self._read_position.at_least(start_position)
            missing = await self._unknown(missing)
        if missing:
            index = series_ids.index(missing[0])
            raise NotFound(series_resource(missing[0]), f"series[{index}]")

    async def _unknown(self, series_ids: Sequence[str]) -> list[str]:
        return [s for s in dict.fromkeys(series_ids) if await self._reader.get_series(s) is None]

    async def _require_series(self, series_id: str) -> SeriesEntry:
        entry = await self._reader.get_series(series_id)
        if entry is None:
            raise NotFound(series_resource(series_id), "series")
        return entry


async def _prepend(first: RangePage, rest: AsyncIterator[RangePage]) -> AsyncIterator[RangePage]:
    yield first
    async for page in rest:
        yield page


def _window_key(key: str) -> tuple[int, int]:
    """The (start, end) a metrics page token resumes after."""
    start, _, end = key.partition("/")
    try:
        return int(start), int(end)
    except ValueError:
        raise paging.refused_token(paging.PAGE_TOKEN, "metrics") from None
