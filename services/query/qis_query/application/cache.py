"""The query cache (docs/caching.md): an answer is reused only while it is still what the read
model would answer.

Every entry names the one series it covers and `read_at`, the read model's position the cache
had caught up with when the entry was read from the store: the read reflects at least every
change up to it. The cache follows the read model's audit trail (every projected event that
changes a series' values or catalogue entry writes an audit entry naming the series, at the
event's position and knowledge time; the trail stops at the checkpoint, so a change seen there
is fully written). An entry stays valid while its series has no change after `read_at`; when
the checkpoint moves, the entries of the series changed since are dropped, and the others are
kept. A query waits for its min_position first and then brings the cache up to the position it
got, capped at the active generation's checkpoint: a hit is valid at that position. It is at
least min_position except for a moment after a rebuild's switch to a generation behind the
position (ReadPosition may serve the old generation's checkpoint for up to its max_age_s), when
an answer read from the store is no newer either.

Some answers can no longer change, and are *final*: as of a commit position P once the read
model passed P, and as of a knowledge time T once it projected an event known after T (knowledge
time never steps back along the log). They are kept until evicted (LRU, bounded in bytes).

A rebuild's switch is noticed at the next generation check (at least every
GENERATION_CHECK_S), or at once when it goes back: a query's position below the horizon makes
the cache read the checkpoint, and a checkpoint below the horizon restarts it from there.

L2 (`SharedCache`, optional) shares entries between query instances, keyed by read-model
generation and format: a rebuild's switch starts from an empty key space. An instance takes an
L2 entry that is not final only when its own view of the log says the series did not change
after the entry's `read_at`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias, runtime_checkable

import pyarrow as pa
from opentelemetry import metrics
from qis_adapters.readstore.port import (
    READ_MODEL_FORMAT,
    AsOf,
    AtPosition,
    AuditScope,
    KnownAt,
    Latest,
    OfficialVersion,
    ReadModelReader,
    ResumeToken,
    SeriesEntry,
)
from qis_runtime.status import DEGRADED, SERVING, ComponentReport, timed_check

from qis_query.application import cache_codec
from qis_query.application.paging import EVENT_INDEX_LIMIT
from qis_query.application.ranges import PAGE_VALUE_BYTES, RangePage, RangeQuery

log = logging.getLogger("qis.query.cache")

METER = "qis.query.cache"


class _Counters:
    """Hits and misses by level (l1, l2) and kind (value, definition, range); evictions by
    reason: size (LRU), changed (their series changed), generation (a rebuild's switch)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.hits = meter.create_counter(
            "qis.query.cache.hits", unit="{entry}", description="Answers served from the cache"
        )
        self.misses = meter.create_counter(
            "qis.query.cache.misses", unit="{entry}", description="Answers the cache lacked"
        )
        self.evictions = meter.create_counter(
            "qis.query.cache.evictions", unit="{entry}", description="Entries dropped"
        )

        # Also kept here, for the health report (an exporter may be off).
        self.counts = {"l1": [0, 0], "l2": [0, 0]}  # level -> [hits, misses]

    def looked_up(self, hits: int, misses: int, level: str, kind: str) -> None:
        counts = self.counts[level]
        counts[0] += hits
        counts[1] += misses
        attributes = {"level": level, "kind": kind}
        if hits:
            self.hits.add(hits, attributes)
        if misses:
            self.misses.add(misses, attributes)

    def evicted(self, count: int, reason: str) -> None:
        if count:
            self.evictions.add(count, {"reason": reason})


SYNC_PAGE = 1_000
"""Audit entries per store read while the cache catches up with the checkpoint."""
MAX_SYNC_ENTRIES = 20_000
"""Beyond this many audit entries between two positions (a bulk load), the cache drops every
entry that is not final rather than read on: cheaper than following each change."""
MAX_TRACKED_SERIES = 100_000
"""Series whose last change position the cache remembers (to check L2 entries and races); the
changes of the ones it forgets are taken as recent as the newest forgotten one."""
GENERATION_CHECK_S = 1.0
"""How often, at least, the cache asks which read-model generation is active: a rebuild's
switch can keep the checkpoint where it was."""


@dataclass(frozen=True, slots=True)
class CacheLimits:
    max_bytes: int = 64 * 2**20
    """Memory of L1 at most (estimated); least recently used entries go first."""
    max_range_rows: int = 1_000
    """A range read is kept only when it is a single page of at most this many values."""
    ttl_realtime_s: int = 30
    """L2 time to live of answers that may still change (latest values, recent ranges)."""
    ttl_historical_s: int = 3_600
    """L2 time to live of final answers (as of a past position or knowledge time)."""
    ttl_reference_s: int = 3_600
    """L2 time to live of series definitions (reference data)."""


DEFAULT_CACHE_LIMITS = CacheLimits()


@runtime_checkable
class Generations(Protocol):
    """What a read store tells of its generations (port.GenerationAdmin): the one queries read."""

    async def active_generation(self) -> str | None: ...


class SharedCache(Protocol):
    """An L2 shared by query instances (adapters.redis_cache). It never raises: an entry it
    cannot read is missing, one it cannot write is not written."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def put_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        """(key, value, time to live in seconds) each."""
        ...

    async def ping(self) -> None:
        """Raises when the shared cache does not answer (the health report's check)."""
        ...


FetchPoints = Callable[[Sequence[int]], Awaitable[list[OfficialVersion]]]
"""The values of some snaps of one series (each snap's, in order, when it has one)."""
FetchDefinition = Callable[[], Awaitable[SeriesEntry | None]]
FetchPage = Callable[[], Awaitable[RangePage]]
"""A range's first page (the last when it has no token)."""


class AnswerCache(Protocol):
    """What the handlers ask of a cache (QueryCache, or NoCache when there is none)."""

    async def sync(self, position: int) -> None:
        """Catch up with the read model up to `position`, a checkpoint it has reached."""
        ...

    async def points(
        self, series_id: str, snaps: Sequence[int], as_of: AsOf, fetch: FetchPoints
    ) -> list[OfficialVersion]: ...

    async def definition(self, series_id: str, fetch: FetchDefinition) -> SeriesEntry | None: ...

    async def first_page(
        self, query: RangeQuery, page_size: int, fetch: FetchPage
    ) -> RangePage: ...

    async def report(self) -> ComponentReport:
        """The health report's `cache` component."""
        ...


class NoCache:
    """Every answer from the store (QIS_CACHE_MAX_BYTES=0)."""

    async def report(self) -> ComponentReport:
        return ComponentReport(SERVING, "off (QIS_CACHE_MAX_BYTES=0)")

    async def sync(self, position: int) -> None:
        return None

    async def points(
        self, series_id: str, snaps: Sequence[int], as_of: AsOf, fetch: FetchPoints
    ) -> list[OfficialVersion]:
        return await fetch(snaps)

    async def definition(self, series_id: str, fetch: FetchDefinition) -> SeriesEntry | None:
        return await fetch()

    async def first_page(self, query: RangeQuery, page_size: int, fetch: FetchPage) -> RangePage:
        return await fetch()


class _Missing:
    """The cache holds no answer (an answer may be None: a snap without a value)."""


MISSING: Final = _Missing()
CachedValue: TypeAlias = OfficialVersion | SeriesEntry | pa.Table | None
_EVERYTHING = AuditScope()
_NO_KNOWLEDGE_TIME = -(2**63)
_HEADER = struct.Struct(">qB")  # read_at, final: before an L2 value


@dataclass(slots=True)
class _Entry:
    value: CachedValue
    series_id: str
    read_at: int
    final: bool
    size: int


@dataclass(frozen=True, slots=True)
class _Ticket:
    """Taken before a store read: the position its answer reflects at least, and whether an
    answer as of `as_of` read from there can no longer change."""

    read_at: int
    final: bool


class QueryCache:
    def __init__(
        self,
        reader: ReadModelReader,
        limits: CacheLimits = DEFAULT_CACHE_LIMITS,
        shared: SharedCache | None = None,
        meter: metrics.Meter | None = None,
    ) -> None:
        """`meter`: where the counters go (default: the global provider's "qis.query.cache",
        a no-op until one is set up)."""
        self._reader = reader
        self._counters = _Counters(meter or metrics.get_meter(METER))
        self._limits = limits
        self._shared = shared
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_series: dict[str, set[str]] = {}  # keys of entries not final, per series
        self.bytes = 0
        self._lock = asyncio.Lock()
        self._origin: int | None = None  # where following the log began; None: not yet
        self._horizon = -1  # every change up to it is known
        self._changed: OrderedDict[str, int] = OrderedDict()  # series -> last change position
        self._forgotten = -1  # the changes of series not in _changed are at or below it
        self._known_us = _NO_KNOWLEDGE_TIME  # of the newest change seen up to the horizon
        self._generation: str | None = None
        self._generation_seen = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    async def report(self) -> ComponentReport:
        """The health report's `cache` component: L1's fill against its bound and hit rates;
        with an L2, whether it answers and how fast. An L2 that does not answer makes the cache
        DEGRADED, not NOT_SERVING: queries answer from the store meanwhile (docs/operations.md)."""
        figures: dict[str, int | float | str] = {
            "l1_entries": len(self._entries),
            "l1_bytes": self.bytes,
            "l1_max_bytes": self._limits.max_bytes,
        }
        for level, (hits, misses) in self._counters.counts.items():
            if level == "l2" and self._shared is None:
                continue
            figures[f"{level}_hits"] = hits
            figures[f"{level}_misses"] = misses
            figures[f"{level}_hit_rate"] = (
                round(hits / (hits + misses), 3) if hits + misses else 0.0
            )
        if self._shared is None:
            return ComponentReport(SERVING, "", figures)
        shared = self._shared
        try:
            report = await timed_check(lambda: _pinged(shared))
        except Exception as error:  # unreachable, refusing, timed out: its answer
            reason = f"shared cache (Redis) unreachable, answering from the store: {error}"
            return ComponentReport(DEGRADED, reason, figures)
        figures["l2_latency_ms"] = report.figures["latency_ms"]
        return ComponentReport(report.status, report.reason, figures)

    @property
    def horizon(self) -> int:
        return self._horizon

    # -- following the read model ------------------------------------------------------------

    async def sync(self, position: int) -> None:
        # `==` first: the common hit (nothing projected since) creates no coroutine.
        if position == self._horizon and not self._generation_due():
            return
        async with self._lock:
            due = self._generation_due()
            if position == self._horizon and not due:
                return
            went_back = False
            if position < self._horizon:
                # A position read before another query's (nothing to follow), or the read
                # model went back: a rebuild's switch to a generation behind the horizon,
                # which must not wait for the next generation check (answers read from the
                # new generation would be kept as read at the old horizon meanwhile).
                went_back = (await self._reader.checkpoint() or 0) < self._horizon
                if not (went_back or due):
                    return
            generation = await self._active_generation()
            if self._origin is None or generation != self._generation or went_back:
                self._restart(await self._reached(position), generation, "generation")
                return
            if (reached := await self._reached(position)) > self._horizon:
                await self._follow(reached)

    async def _reached(self, position: int) -> int:
        """`position`, or the read model's checkpoint when lower: the horizon must never pass
        what the active generation has projected, or the changes it projects later, below the
        horizon, are never followed. A position can be higher: a rebuild's switch can make
        active a generation behind the one it was seen on (`qis-projector rebuild` switches
        once the new generation reached the old one's checkpoint as read just before the
        switch; the running projector may have gone on in between)."""
        return min(position, await self._reader.checkpoint() or 0)

    def _generation_due(self) -> bool:
        return asyncio.get_running_loop().time() - self._generation_seen >= GENERATION_CHECK_S

    async def _active_generation(self) -> str | None:
        self._generation_seen = asyncio.get_running_loop().time()
        if isinstance(self._reader, Generations):
            return await self._reader.active_generation()
        return None

    async def _follow(self, position: int) -> None:
        after = ResumeToken(self._horizon, EVENT_INDEX_LIMIT)
        seen = 0
        while True:
            entries = await self._reader.audit_trail(_EVERYTHING, after, SYNC_PAGE)
            for entry in entries:
                if entry.series_id:
                    self._change(entry.series_id, entry.position, entry.recorded_at_us)
            if entries:
                after = ResumeToken(entries[-1].position, entries[-1].index)
            seen += len(entries)
            if len(entries) < SYNC_PAGE:
                # A short page: every entry up to the checkpoint the trail stopped at was read.
                self._horizon = max(position, after.position)
                return
            if seen >= MAX_SYNC_ENTRIES:
                self._restart(max(position, after.position), self._generation, "changed")
                return

    def _restart(self, position: int, generation: str | None, reason: str) -> None:
        """Follow the log from `position` on, with only the final entries of the same
        generation kept: those are true whatever happened before."""
        if generation != self._generation or position < self._horizon:
            # The changes `_known_us` was taken from may not be in the read model now (a
            # switch to a generation behind): an answer as of a knowledge time below it would
            # be taken as final before the change it lacks is projected.
            self._known_us = _NO_KNOWLEDGE_TIME
        if generation != self._generation:
            self._drop_where(lambda _entry: True, "generation")
        else:
            self._drop_where(lambda entry: not entry.final, reason)
        self._generation = generation
        self._origin = self._horizon = position
        self._changed.clear()
        self._forgotten = -1

    def _change(self, series_id: str, position: int, recorded_at_us: int) -> None:
        self._changed[series_id] = position
        self._changed.move_to_end(series_id)  # positions ascend: the oldest change first
        if len(self._changed) > MAX_TRACKED_SERIES:
            _, oldest = self._changed.popitem(last=False)
            self._forgotten = max(self._forgotten, oldest)
        self._known_us = max(self._known_us, recorded_at_us)
        keys = self._by_series.pop(series_id, ())
        for key in keys:
            self._remove(key)
        self._counters.evicted(len(keys), "changed")

    def _unchanged_since(self, series_id: str, read_at: int) -> bool:
        if self._origin is None or read_at < self._origin:
            return False
        last = self._changed.get(series_id)
        return read_at >= self._forgotten if last is None else last <= read_at

    def _ticket(self, as_of: AsOf | None) -> _Ticket:
        read_at = self._horizon
        match as_of:
            case AtPosition(position):
                final = position <= read_at
            case KnownAt(at_us):
                final = at_us < self._known_us
            case Latest() | None:
                final = False
        return _Ticket(read_at, final and self._origin is not None)

    # -- the answers ---------------------------------------------------------------------------

    async def points(
        self, series_id: str, snaps: Sequence[int], as_of: AsOf, fetch: FetchPoints
    ) -> list[OfficialVersion]:
        ticket = self._ticket(as_of)
        keys = {snap: _point_key(series_id, as_of, snap) for snap in snaps}
        found = await self._get_many(series_id, list(keys.values()), cache_codec.POINT, "value")
        answers: dict[int, CachedValue | _Missing] = dict(zip(keys, found, strict=True))
        missing = [snap for snap, answer in answers.items() if answer is MISSING]
        if missing:
            fetched = {v.snap_us: v for v in await fetch(missing)}
            items: list[tuple[str, CachedValue]] = []
            for snap in missing:
                version = answers[snap] = fetched.get(snap)
                items.append((keys[snap], version))
            await self._put_many(series_id, items, ticket, cache_codec.POINT, self._value_ttl)
        return [v for snap in snaps if isinstance(v := answers[snap], OfficialVersion)]

    async def definition(self, series_id: str, fetch: FetchDefinition) -> SeriesEntry | None:
        """The catalogue entry of a series; an unknown series is not remembered (it may be
        defined any time, and asking for one is rare)."""
        ticket = self._ticket(None)
        key = "d|" + series_id
        (found,) = await self._get_many(series_id, [key], cache_codec.DEFINITION, "definition")
        if isinstance(found, SeriesEntry):
            return found
        entry = await fetch()
        if entry is not None:
            items: list[tuple[str, CachedValue]] = [(key, entry)]
            await self._put_many(series_id, items, ticket, cache_codec.DEFINITION, self._ref_ttl)
        return entry

    async def first_page(self, query: RangeQuery, page_size: int, fetch: FetchPage) -> RangePage:
        """A range's first page: kept when it is the whole range (it has no token) and holds at
        most max_range_rows values."""
        ticket = self._ticket(query.as_of)
        # With the page bound: a page an instance bounding pages otherwise cached (in the shared
        # level, during a rollout) may not be the whole range here.
        key = f"r|{_as_of_key(query.as_of)}|{query.start_us}|{query.end_us}|{page_size}|"
        key += f"{PAGE_VALUE_BYTES}|"
        key += query.series_id
        (found,) = await self._get_many(query.series_id, [key], cache_codec.ROWS, "range")
        if isinstance(found, pa.Table):
            return RangePage(found, "")
        page = await fetch()
        if not page.next_page_token and page.rows.num_rows <= self._limits.max_range_rows:
            items: list[tuple[str, CachedValue]] = [(key, page.rows)]
            await self._put_many(query.series_id, items, ticket, cache_codec.ROWS, self._value_ttl)
        return page

    def _value_ttl(self, final: bool) -> int:
        return self._limits.ttl_historical_s if final else self._limits.ttl_realtime_s

    def _ref_ttl(self, _final: bool) -> int:
        return self._limits.ttl_reference_s

    # -- L1 and L2 -----------------------------------------------------------------------------

    async def _get_many(
        self, series_id: str, keys: list[str], codec: cache_codec.Codec, kind: str
    ) -> list[CachedValue | _Missing]:
        found: list[CachedValue | _Missing] = [self._get(key, series_id) for key in keys]
        missing = [i for i, value in enumerate(found) if value is MISSING]
        self._counters.looked_up(len(keys) - len(missing), len(missing), "l1", kind)
        if not missing or self._shared is None:
            return found
        payloads = await self._shared.get_many([self._shared_key(keys[i]) for i in missing])
        shared_hits = 0
        for i, payload in zip(missing, payloads, strict=True):
            if payload is None:
                continue
            read_at, final = _HEADER.unpack_from(payload)
            if not (final or self._unchanged_since(series_id, read_at)):
                continue
            value = codec.decode(series_id, memoryview(payload)[_HEADER.size :])
            found[i] = value
            entry = _Entry(value, series_id, read_at, bool(final), codec.size(value))
            self._store(keys[i], entry)
            shared_hits += 1
        self._counters.looked_up(shared_hits, len(missing) - shared_hits, "l2", kind)
        return found

    def _get(self, key: str, series_id: str) -> CachedValue | _Missing:
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        if not (entry.final or self._unchanged_since(series_id, entry.read_at)):
            self._remove(key)  # read before a change it was not dropped for (a race)
            return MISSING
        self._entries.move_to_end(key)
        return entry.value

    async def _put_many(
        self,
        series_id: str,
        items: list[tuple[str, CachedValue]],
        ticket: _Ticket,
        codec: cache_codec.Codec,
        ttl: Callable[[bool], int],
    ) -> None:
        if not self._unchanged_since(series_id, ticket.read_at) and not ticket.final:
            return  # the series changed while it was read: the answer may be older than that
        for key, value in items:
            entry = _Entry(value, series_id, ticket.read_at, ticket.final, codec.size(value))
            self._store(key, entry)
        if self._shared is not None:
            header = _HEADER.pack(ticket.read_at, ticket.final)
            seconds = ttl(ticket.final)
            await self._shared.put_many(
                [(self._shared_key(k), header + codec.encode(v), seconds) for k, v in items]
            )

    def _store(self, key: str, entry: _Entry) -> None:
        if entry.size > self._limits.max_bytes:
            return
        self._remove(key)
        self._entries[key] = entry
        self.bytes += entry.size
        if not entry.final:
            self._by_series.setdefault(entry.series_id, set()).add(key)
        evicted = 0
        while self.bytes > self._limits.max_bytes:
            old_key, _ = next(iter(self._entries.items()))
            self._remove(old_key)
            evicted += 1
        self._counters.evicted(evicted, "size")

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.bytes -= entry.size
        if not entry.final:
            keys = self._by_series.get(entry.series_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_series[entry.series_id]

    def _drop_where(self, drop: Callable[[_Entry], bool], reason: str) -> None:
        keys = [key for key, entry in self._entries.items() if drop(entry)]
        for key in keys:
            self._remove(key)
        self._counters.evicted(len(keys), reason)

    def _shared_key(self, key: str) -> str:
        """Namespaced by the read model's format and generation, and the cache's own format:
        a rebuild, or another encoding, never meets the answers of the one before."""
        generation = self._generation or "-"
        return f"qis:q:{READ_MODEL_FORMAT}.{cache_codec.FORMAT}:{generation}:{key}"


async def _pinged(shared: SharedCache) -> dict[str, int | float | str]:
    await shared.ping()
    return {}


def _as_of_key(as_of: AsOf) -> str:
    match as_of:
        case Latest():
            return "L"
        case KnownAt(at_us):
            return f"T{at_us}"
        case AtPosition(position):
            return f"P{position}"


def _point_key(series_id: str, as_of: AsOf, snap_us: int) -> str:
    # The series last: ids may hold any character, the fields before it none of "|".
    return f"v|{_as_of_key(as_of)}|{snap_us}|{series_id}"
