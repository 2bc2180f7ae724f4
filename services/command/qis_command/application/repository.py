"""Loads aggregates from the event store and keeps recently used ones in memory.

A cached aggregate is brought up to date by reading only the events appended after its version,
so a command touching a warm bucket costs one small read. The cache never decides anything on
its own: every append states the expected version, and a stale cache shows up as a conflict.

The cache never hands out what it holds: `load` returns a copy, so a decision works on a state
that nothing else changes while it awaits, and its append expects exactly the version it
decided on. (Handing out the cached object let a concurrent refresh move a bucket's version
under a decision in flight: the append then passed the version check with events decided on
the older state, a lost update.)

Memory is bounded by the budget, not by history: the cache counts each aggregate's `size`
(for a bucket its points, remembered commands and issues: everything in it that grows with
its stream) and evicts the least recently used whenever one it holds is added or has grown,
after the new events are in, so between commands it holds at most the budget (or the one
aggregate used last, if that alone is larger). Nothing outside the aggregates keeps state per
point or per command (tests/service/command/test_aggregate_cache_memory.py measures it;
bench/ingest_memory.py measures the process).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol, Self, TypeVar

from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import AppendResult, EventStore, StreamAppend, StreamState
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.events import DomainEvent
from qis_domain.series_bucket import Recorded


class Aggregate(Protocol):
    version: int | None

    @property
    def stream(self) -> str: ...

    def apply(self, event: DomainEvent, meta: Recorded) -> None: ...

    def clone(self) -> Self:
        """A copy sharing no mutable state with the original."""
        ...

    def outcome_of(self, command_id: str) -> CommandOutcome | None: ...

    @property
    def size(self) -> int:
        """Roughly how much it holds, in units of about one point's state (a bucket's points,
        and its remembered commands and issues): what the cache budget counts."""
        ...


A = TypeVar("A", bound=Aggregate)


class Repository:
    def __init__(self, store: EventStore, codec: EventCodec, cache_points: int = 200_000) -> None:
        self._store = store
        self._codec = codec
        self._cache: OrderedDict[str, Aggregate] = OrderedDict()
        self._cache_points = cache_points

    async def load(self, stream: str, factory: Callable[[], A], *, cache: bool = True) -> A:
        """The aggregate as of now, a copy that is the caller's alone. `cache=False` for
        aggregates read once (a command's record): they would only push out warm buckets."""
        cached = self._cache.get(stream)
        aggregate: A
        if cached is None:
            aggregate = factory()
            if cache:
                self._cache[stream] = aggregate
        else:
            aggregate = cached  # type: ignore[assignment]  # one stream name, one aggregate type
            self._cache.move_to_end(stream)
        version = aggregate.version
        await self.refresh(aggregate)
        inserted = cached is None and cache
        grown = cached is not None and aggregate.version != version
        if inserted or grown:
            self._evict()
        return aggregate.clone()

    def forget(self, stream: str) -> None:
        """Drops the cached aggregate of `stream`: the next load reads it from the store."""
        self._cache.pop(stream, None)

    @property
    def held(self) -> int:
        """The sizes of the aggregates cached now (what the budget bounds)."""
        return sum(a.size for a in self._cache.values())

    def _evict(self) -> None:
        """Least recently used first, until the cache holds at most the budget (the aggregate
        used last always stays)."""
        total = self.held
        while total > self._cache_points and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            total -= evicted.size

    async def refresh(self, aggregate: Aggregate) -> None:
        start = 0 if aggregate.version is None else aggregate.version + 1
        for record in await self._store.read_stream(aggregate.stream, start):
            decoded = self._codec.decode(record)
            meta = Recorded(
                decoded.metadata.command_id,
                decoded.metadata.user_id,
                record.position,
                record.stream_version,
                record.recorded_at_us,
            )
            _apply_once(aggregate, decoded.event, meta)

    async def save(
        self,
        changes: Sequence[tuple[Aggregate, Sequence[DomainEvent]]],
        ctx: CommandContext,
    ) -> AppendResult:
        """Append every aggregate's new events in one atomic multi-stream append, at the versions
        the aggregates were loaded at, then apply them to those (the caller's copies), which
        become the cached state. Raises WrongExpectedVersion, leaving the cache as it was."""
        appends = [
            StreamAppend(
                aggregate.stream,
                StreamState.NO_STREAM if aggregate.version is None else aggregate.version,
                self._codec.encode(aggregate.stream, events, ctx),
            )
            for aggregate, events in changes
            if events
        ]
        result = await self._store.append(appends)
        for aggregate, events in changes:
            last = result.stream_versions.get(aggregate.stream)
            if last is None:
                continue
            first = last - len(events) + 1
            for offset, event in enumerate(events):
                meta = Recorded(ctx.command_id, ctx.user_id, result.position, first + offset)
                _apply_once(aggregate, event, meta)
            cached = self._cache.get(aggregate.stream)
            if cached is not None and (cached.version is None or cached.version < last):
                # The caller's copy becomes the cached state: it only reads its outcome from it
                # before its next await, and every later load hands out a copy again.
                self._cache[aggregate.stream] = aggregate
        self._evict()
        return result


def _apply_once(aggregate: Aggregate, event: DomainEvent, meta: Recorded) -> None:
    """Two reads of this process may bring the same cached aggregate up to date at the same
    time; each event is applied once."""
    if aggregate.version is not None and meta.stream_version <= aggregate.version:
        return
    aggregate.apply(event, meta)
