"""The data sources as the read side shows them: each one's configuration, its feed's latest
health report, and what its reports add up to (docs/data-sources.md), read from the sources'
read models (qis_adapters.readstore.port.SourceEntry, SourceHealthEntry)."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from qis_adapters.readstore.port import ReadModelReader, SourceEntry, SourceHealthEntry
from qis_domain.definitions import SourceUsage
from qis_domain.errors import NotFound
from qis_domain.names import series_name, source_name, source_resource

from qis_query.application import paging
from qis_query.application.access import SeriesGate
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import DEFAULT_LIST_PAGE, MAX_LIST_PAGE, Page
from qis_query.application.limits import DEFAULT_LIMITS, QueryLimits
from qis_query.application.scanning import scan

SOURCE_PAGES = "sources"
"""Token kind of source listings, keyed by source id."""


@dataclass(frozen=True, slots=True)
class SourceFilter:
    """Which sources a listing shows: of one provider ("" any), enabled or not (None both)."""

    provider: str = ""
    disabled: bool | None = None

    def keeps(self, entry: SourceEntry) -> bool:
        if self.provider and entry.config.get("provider") != self.provider:
            return False
        return self.disabled is None or self.disabled == (not entry.config.get("enabled", True))

    @property
    def everything(self) -> bool:
        return not self.provider and self.disabled is None


@dataclass(frozen=True, slots=True)
class SourceView:
    """A source with its health entries, one per UTC day its feed reported, ascending, and the
    series among the instruments of the latest report that the caller may not read: they are
    not shown, as the listings of series hold them back, nor is the feed's traffic
    (shows_traffic)."""

    entry: SourceEntry
    days: list[SourceHealthEntry]
    hidden: frozenset[str] = frozenset()

    @property
    def shows_traffic(self) -> bool:
        """Whether the caller is shown what the feed did: its counts of requests, failures,
        points and cost, of the latest report and added up, count the hidden series' traffic
        too, and its last error is the provider's free text, which may name one. Only when
        none is hidden (docs/security.md)."""
        return not self.hidden

    @property
    def latest(self) -> SourceHealthEntry | None:
        return self.days[-1] if self.days else None

    def total_usage(self) -> SourceUsage:
        """The sum of the days' usage (exact: the costs are decimals)."""
        usages = (SourceUsage.model_validate(d.health["day_usage"]) for d in self.days)
        return sum(usages, SourceUsage())


class SourceQueries:
    def __init__(
        self,
        reader: ReadModelReader,
        read_position: ReadPosition,
        limits: QueryLimits = DEFAULT_LIMITS,
        tokens: paging.PageTokens | None = None,
    ) -> None:
        """`tokens`: what seals the page tokens (the service's key; None: a key of this
        object's own, bound to no caller)."""
        self._tokens = paging.PageTokens.random() if tokens is None else tokens
        self._reader = reader
        self._read_position = read_position
        self._limits = limits

    async def source(
        self, source_id: str, min_position: int, *, readable: SeriesGate
    ) -> SourceView:
        await self._read_position.at_least(min_position)
        entry = await self._reader.get_source(source_id)
        if entry is None:
            raise NotFound(source_resource(source_id), "name")
        return await self._view(entry, readable)

    async def list_sources(
        self,
        page_size: int,
        page_token: str,
        min_position: int,
        source_filter: SourceFilter,
        *,
        readable: SeriesGate,
    ) -> Page[SourceView]:
        """The sources `readable` lets through that the filter keeps, in source id order, at
        most a bounded scan per call when some are held back (see scanning)."""
        size = paging.page_size(page_size, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        query = (source_filter.provider, source_filter.disabled)
        after = self._tokens.key_after(page_token, SOURCE_PAGES, query)
        await self._read_position.at_least(min_position)

        def keeps(entry: SourceEntry) -> bool:
            return source_filter.keeps(entry) and readable.allows_unclassified(
                source_name(entry.source_id)
            )

        everything = source_filter.everything and readable.everything
        keep = None if everything else keeps
        scanned = size if keep is None else self._limits.max_scanned_per_call
        page = await scan(
            self._reader.list_sources, attrgetter("source_id"), keep, after, size, scanned
        )
        views = [await self._view(entry, readable) for entry in page.items]
        return Page(views, self._tokens.key_token(SOURCE_PAGES, query, page.resume_after))

    async def _view(self, entry: SourceEntry, readable: SeriesGate) -> SourceView:
        days = await self._reader.source_health(entry.source_id)
        fed = (
            [i["series_id"] for i in days[-1].health["report"].get("instruments", ())]
            if days
            else []
        )
        if readable.everything or not fed:
            return SourceView(entry, days)
        await readable.learn(fed)
        hidden = frozenset(s for s in fed if not readable.allows(series_name(s), s))
        return SourceView(entry, days, hidden)
