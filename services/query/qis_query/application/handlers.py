"""The read side's use cases, one method per query, on plain values already parsed from the
transport. Each waits (bounded) for the read model to reach the caller's min_position before
reading, and an unknown series is NOT_FOUND where an empty answer would hide it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from operator import attrgetter
from typing import Generic, NoReturn, TypeVar

from qis_adapters.readstore.port import (
    AsOf,
    AuditEntry,
    AuditScope,
    OfficialVersion,
    QualityIssue,
    QualityMetrics,
    ReadModelReader,
    ResumeToken,
    SeriesEntry,
)
from qis_domain.access import issues_name
from qis_domain.errors import InvalidArgument, NotFound
from qis_domain.names import point_resource, series_name, series_resource

from qis_query.application import audit, history, issues, paging, ranges, subscription
from qis_query.application.access import Admit, SeriesGate
from qis_query.application.cache import AnswerCache, NoCache
from qis_query.application.consistency import ReadPosition
from qis_query.application.filtering import parse_filter
from qis_query.application.history import PointHistory
from qis_query.application.limits import DEFAULT_LIMITS, QueryLimits, SubscriptionSlots
from qis_query.application.ranges import RangePage, RangeQuery
from qis_query.application.scanning import scan
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


ISSUE_PAGES = "issue-pages"
"""Token kind of issue listings, keyed by (series, issue id): issue ids are unique within a
series only. (Tokens of the earlier kind, keyed by issue id alone, are refused.)"""


def _issue_key(issue: QualityIssue) -> tuple[str, str]:
    return (issue.series_id, issue.issue_id)


class QueryHandlers:
    def __init__(
        self,
        reader: ReadModelReader,
        read_position: ReadPosition,
        feed: FeedSettings,
        limits: QueryLimits = DEFAULT_LIMITS,
        cache: AnswerCache | None = None,
        tokens: paging.PageTokens | None = None,
    ) -> None:
        """`cache`: where latest and as-of values, small ranges and definitions are reused
        (qis_query.application.cache); None: every answer from the store. `tokens`: what seals
        the page tokens (the service's key; None: a key of this object's own, bound to no
        caller)."""
        self._tokens = paging.PageTokens.random() if tokens is None else tokens
        self._reader = reader
        self._cache = NoCache() if cache is None else cache
        self._read_position = read_position
        self._feed = feed
        self._limits = limits
        self._subscriptions = SubscriptionSlots(limits)

    async def query_range(
        self,
        query: RangeQuery,
        page_size: int,
        page_token: str,
        min_position: int,
        columns: frozenset[str] | None = None,
        max_page_size: int = MAX_RANGE_PAGE,
    ) -> Read[AsyncIterator[RangePage]]:
        """The range in pages, as much of it as one call may stream (QueryLimits): then the
        last page's token continues. The first page is read here, so that every refusal (a bad
        argument, a read model behind, an unknown series) comes before the first page.

        `columns`: the only columns the caller reads (see ranges.pages); such pages bypass the
        cache, which keeps whole rows. `max_page_size`: what `page_size` is cut to, that of a
        message of the gRPC API unless the pages are not sent as messages (an export's)."""
        ranges.check_time_range(query.start_us, query.end_us)
        size = paging.page_size(page_size, DEFAULT_RANGE_PAGE, max_page_size)
        after_us = self._tokens.range_after(page_token, query)
        read_position = await self._read_position.at_least(min_position)
        await self._cache.sync(read_position)
        entry = await self._require_series(query.series_id)
        pages = ranges.pages(
            self._reader,
            query,
            size,
            after_us,
            self._limits.points_per_call(size),
            ranges.bucket_span(entry),
            self._tokens,
            columns,
            self._limits.max_value_bytes_per_call,
        )
        # The cache keeps whole ranges, which start with the first page.
        if after_us is None and columns is None:
            first = await self._cache.first_page(query, size, lambda: anext(pages))
        else:
            first = await anext(pages)
        return Read(_prepend(first, pages), read_position)

    async def values(
        self, series_id: str, snaps: Sequence[int], as_of: AsOf, min_position: int
    ) -> Read[list[OfficialVersion]]:
        if not 1 <= len(snaps) <= MAX_VALUES:
            raise InvalidArgument.single("snap_times", f"1 to {MAX_VALUES} snaps")
        read_position = await self._read_position.at_least(min_position)
        await self._cache.sync(read_position)

        def fetch(missing: Sequence[int]) -> Awaitable[list[OfficialVersion]]:
            return ranges.points(self._reader, series_id, missing, as_of)

        found = await self._cache.points(series_id, snaps, as_of, fetch)
        if not found:
            await self._require_series(series_id)
        return Read(found, read_position)

    async def definition(self, series_id: str) -> SeriesEntry:
        """The catalogue entry of a series just read (its values' data type and unit), without
        waiting for the read model again; NOT_FOUND if it has none."""
        return await self._require_series(series_id)

    async def point_history(
        self, series_id: str, snap_us: int, page_size: int, page_token: str, min_position: int
    ) -> Read[PointHistory]:
        """A page of the point's versions and observations, in commit order (see history)."""
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        query = (series_id, snap_us)
        after = self._tokens.steps_after(page_token, history.HISTORY, query)
        read_position = await self._read_position.at_least(min_position)
        versions = await self._reader.history(series_id, snap_us)
        observations = await self._reader.observations(series_id, snap_us)
        if not versions and not observations:
            await self._require_series(series_id)
            raise NotFound(point_resource(series_id, snap_us), "snap_time")
        return Read(
            history.page(versions, observations, query, after, size, self._tokens), read_position
        )

    async def series(self, series_id: str, min_position: int) -> SeriesEntry:
        await self._cache.sync(await self._read_position.at_least(min_position))
        return await self._require_series(series_id)

    async def list_series(
        self, page_size: int, page_token: str, min_position: int, *, readable: SeriesGate
    ) -> Page[SeriesEntry]:
        """The catalogue entries of the series `readable` lets through, at most a bounded scan
        per call when it holds some back (see scanning)."""
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        query = ()  # the catalogue has no filter
        after = self._tokens.key_after(page_token, "series", query)
        await self._read_position.at_least(min_position)

        async def read(after: str, limit: int) -> list[SeriesEntry]:
            entries = await self._reader.list_series(after, limit)
            readable.learn_entries(entries)
            return entries

        keep = None if readable.everything else _readable_series(readable)
        scanned = size if keep is None else self._limits.max_scanned_per_call
        page = await scan(read, attrgetter("series_id"), keep, after, size, scanned)
        return Page(page.items, self._tokens.key_token("series", query, page.resume_after))

    async def audit_entries(
        self,
        parent: AuditScope,
        filter_text: str,
        page_size: int,
        page_token: str,
        min_position: int,
    ) -> Page[AuditEntry]:
        """Entries of a series, of a data source, or every entry (an empty scope), that meet
        the filter (see audit), at most a bounded scan per call (see scanning). A series the
        read model does not know is NOT_FOUND; sources have no catalogue in the read model, so
        an unknown one has no entries."""
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        comparisons = parse_filter(filter_text, audit.FIELDS)
        query = (parent, comparisons)
        after = self._tokens.log_after(page_token, "audit", query)
        await self._read_position.at_least(min_position)
        planned = audit.plan(parent, comparisons)

        async def read(after: ResumeToken | None, limit: int) -> list[AuditEntry]:
            return await self._reader.audit_trail(planned.scope, after, limit)

        scanned = self._limits.max_scanned_per_call
        page = await scan(read, _log_key, planned.keep, after, size, scanned)
        if not page.items and parent.series_id:
            await self._require_series(parent.series_id)
        return Page(page.items, self._tokens.log_token("audit", query, page.resume_after))

    async def quality_issues(
        self,
        series_id: str,
        filter_text: str,
        page_size: int,
        page_token: str,
        min_position: int,
        *,
        readable: SeriesGate,
    ) -> Page[QualityIssue]:
        """Issues of a series ("" for every series) that meet the filter (see issues) and whose
        exception queue `readable` lets through, at most a bounded scan per call (see
        scanning)."""
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        comparisons = parse_filter(filter_text, issues.FIELDS)
        query = (series_id, comparisons)
        after = self._tokens.pair_after(page_token, ISSUE_PAGES, query)
        await self._read_position.at_least(min_position)
        planned = issues.plan(series_id, comparisons)

        async def read(after: tuple[str, str], limit: int) -> list[QualityIssue]:
            series_after, issue_after = after
            found = await self._reader.list_issues(
                planned.pushed, issue_after, limit, after_series_id=series_after
            )
            await readable.learn({i.series_id for i in found})
            return found

        keep = planned.keep
        if not readable.everything:
            keep = _both(keep, _readable_queue(readable))
        scanned = self._limits.max_scanned_per_call
        page = await scan(read, _issue_key, keep, after, size, scanned)
        if not page.items and series_id:
            await self._require_series(series_id)
        return Page(page.items, self._tokens.pair_token(ISSUE_PAGES, query, page.resume_after))

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
        after = self._tokens.key_after(page_token, "metrics", query)
        await self._read_position.at_least(min_position)
        windows = await self._reader.metrics(series_id, start_us, end_us)
        if after:
            last = _window_key(after)
            windows = [m for m in windows if (m.window_start_us, m.window_end_us) > last]
        page = windows[:size]
        resume = None
        if len(windows) > size:
            resume = f"{page[-1].window_start_us}/{page[-1].window_end_us}"
        return Page(page, self._tokens.key_token("metrics", query, resume))

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
        *,
        admit: Admit,
        min_position: int = 0,
    ) -> NoReturn:
        """Follows the change feed of `series_ids` (every series when empty) from a resume
        token or after a commit position, each batch of it as `admit` lets it through; see
        `subscription.follow`."""
        after = subscription.start_after(resume_token, after_position)
        await self._require_subscribed(series_ids, max(after.position, min_position))
        await subscription.follow(self._reader, series_ids, after, self._feed, send, admit)

    async def _require_subscribed(self, series_ids: Sequence[str], start_position: int) -> None:
        """Every named series exists. A series defined at or before the start position (or the
        request's min_position) must be in the read model once it has projected that position,
        so before calling one unknown the read model is waited for (bounded): a client
        subscribing right after defining a series is not told it does not exist."""
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
        """Its catalogue entry as of the cache's last sync at least (the callers that answer
        with it sync first; the others only ask whether it exists, which a series never stops
        doing)."""
        entry = await self._cache.definition(series_id, lambda: self._reader.get_series(series_id))
        if entry is None:
            raise NotFound(series_resource(series_id), "series")
        return entry


def _readable_series(readable: SeriesGate) -> Callable[[SeriesEntry], bool]:
    def keep(entry: SeriesEntry) -> bool:
        return readable.allows(series_name(entry.series_id), entry.series_id)

    return keep


def _readable_queue(readable: SeriesGate) -> Callable[[QualityIssue], bool]:
    def keep(issue: QualityIssue) -> bool:
        return readable.allows(issues_name(issue.series_id), issue.series_id)

    return keep


def _both(first: Callable[[T], bool] | None, second: Callable[[T], bool]) -> Callable[[T], bool]:
    if first is None:
        return second
    return lambda record: first(record) and second(record)


def _log_key(entry: AuditEntry) -> ResumeToken:
    return ResumeToken(entry.position, entry.index)


async def _prepend(first: RangePage, rest: AsyncIterator[RangePage]) -> AsyncIterator[RangePage]:
    yield first
    if first.next_page_token:  # else the range ends there (a cached page has no reader behind)
        async for page in rest:
            yield page


def _window_key(key: str) -> tuple[int, int]:
    """The (start, end) a metrics page token resumes after."""
    start, _, end = key.partition("/")
    try:
        return int(start), int(end)
    except ValueError:
        raise paging.refused_token(paging.PAGE_TOKEN, "metrics") from None
