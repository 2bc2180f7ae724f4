"""Loads aggregates from the event store and keeps recently used ones in memory.

A cached aggregate is brought up to date by reading only the events appended after its version,
so a command touching a warm bucket costs one small read. The cache never decides anything on
its own: every append states the expected version, and a stale cache shows up as a conflict.

The cache never hands out what it holds: `load` returns a copy, so a decision works on a state
that nothing else changes while it awaits, and its append expects exactly the version it
decided on. (Handing out the cached object let a concurrent refresh move a bucket's version
under a decision in flight: the append then passed the version check with events decided on
the older state, a lost update.)

A command's aggregates are brought up to date together, in one read of the store
(`load_together`): each read has a fixed cost (a network round trip to KurrentDB; on SQLite,
its statements and a turn of the loop) as large as a small command's decision.

Memory is bounded by the budget, not by history: the cache counts each aggregate's `size`
(for a bucket its points, remembered commands and issues: everything in it that grows with
its stream) and evicts the least recently used whenever one it holds is added or has grown,
after the new events are in, so between commands it holds at most the budget (or the one
aggregate used last, if that alone is larger). The total is kept as aggregates come in, grow
and leave, not summed per command over everything cached. Nothing outside the aggregates
keeps state per point or per command (tests/service/command/test_aggregate_cache_memory.py
measures it; bench/ingest_memory.py measures the process).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

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
A_co = TypeVar("A_co", bound=Aggregate, covariant=True)


@dataclass(frozen=True, slots=True)
class Wanted(Generic[A_co]):
    """An aggregate to load: its stream, an empty one of its kind, and whether to cache it
    (False for aggregates read once, such as a command's record: they would only push out warm
    buckets)."""

    stream: str
    factory: Callable[[], A_co]
    cache: bool = True


_CACHED_HERE: ContextVar[list[tuple[str, Aggregate]] | None] = ContextVar(
    "cached_here", default=None
)
"""The streams the loads of the running task cached, with the aggregate each cached, inside
Repository.forgotten_on_failure (a context variable: the commands interleaved on the loop each
have their own)."""


class Repository:
    def __init__(self, store: EventStore, codec: EventCodec, cache_points: int = 200_000) -> None:
        self._store = store
        self._codec = codec
        self._cache: OrderedDict[str, Aggregate] = OrderedDict()
        # The size each cached aggregate was counted at, and their total: kept up to date as
        # aggregates come in, grow and leave, so a command does not sum over the whole cache.
        self._counted: dict[str, int] = {}
        self._held = 0
        self._cache_points = cache_points

    async def load(self, stream: str, factory: Callable[[], A], *, cache: bool = True) -> A:
        """The aggregate as of now, a copy that is the caller's alone."""
        (aggregate,) = await self.load_together(Wanted(stream, factory, cache))
        return aggregate  # type: ignore[no-any-return]  # made by `factory`

    async def load_together(self, *wanted: Wanted[Any]) -> list[Any]:
        """Several aggregates, in the order wanted, each as `load` gives it, brought up to date
        by one read of the store (EventStore.read_many): a command's fixed cost is a round
        trip per read. Each is of the type its `factory` makes."""
        loaded: list[tuple[Aggregate, int | None, bool]] = []
        for w in wanted:
            cached = self._cache.get(w.stream)
            if cached is None:
                aggregate: Aggregate = w.factory()
                if w.cache:
                    self._cache[w.stream] = aggregate
                    self._count(w.stream)
                    if (cached_here := _CACHED_HERE.get()) is not None:
                        cached_here.append((w.stream, aggregate))
            else:
                aggregate = cached
                self._cache.move_to_end(w.stream)
            loaded.append((aggregate, aggregate.version, cached is None and w.cache))
        await self._refresh([aggregate for aggregate, _, _ in loaded])
        changed = False
        for aggregate, version, inserted in loaded:
            # Another load may have evicted it, or cached another copy, while this one read.
            if (inserted or aggregate.version != version) and aggregate.stream in self._cache:
                self._count(aggregate.stream)
                changed = True
        if changed:
            self._evict()
        return [aggregate.clone() for aggregate, _, _ in loaded]

    def holds(self, stream: str) -> bool:
        """Whether the aggregate of `stream` is cached."""
        return stream in self._cache

    def forget(self, stream: str) -> None:
        """Drops the cached aggregate of `stream`: the next load reads it from the store."""
        if self._cache.pop(stream, None) is not None:
            self._held -= self._counted.pop(stream)

    @contextlib.contextmanager
    def forgotten_on_failure(self) -> Iterator[None]:
        """Within, what this task's loads (and those of tasks it starts) bring into the cache is
        forgotten if the block raises: a rejected command leaves the cache as it found it,
        not filled with what was read for a decision that was not made. What other commands
        cached meanwhile, interleaved on the loop, stays, and so does what this task cached
        and another command saved to since (its state then is that command's copy): an ingest
        reads the buckets after its own, which another source's commands may be writing."""
        cached: list[tuple[str, Aggregate]] = []
        token = _CACHED_HERE.set(cached)
        try:
            yield
        except Exception:
            for stream, aggregate in cached:
                if self._cache.get(stream) is aggregate:
                    self.forget(stream)
            raise
        finally:
            _CACHED_HERE.reset(token)

    @property
    def held(self) -> int:
        """The sizes of the aggregates cached now (what the budget bounds)."""
        return self._held

    def _count(self, stream: str) -> None:
        """Counts the cached aggregate of `stream` at its size now."""
        size = self._cache[stream].size
        self._held += size - self._counted.get(stream, 0)
        self._counted[stream] = size

    def _evict(self) -> None:
        """Least recently used first, until the cache holds at most the budget (the aggregate
        used last always stays)."""
        while self._held > self._cache_points and len(self._cache) > 1:
            stream, _ = self._cache.popitem(last=False)
            self._held -= self._counted.pop(stream)

    async def _refresh(self, aggregates: Sequence[Aggregate]) -> None:
        reads = [(a.stream, 0 if a.version is None else a.version + 1) for a in aggregates]
        for aggregate, records in zip(aggregates, await self._store.read_many(reads), strict=True):
            for record in records:
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
                self._count(aggregate.stream)
        self._evict()
        return result


def _apply_once(aggregate: Aggregate, event: DomainEvent, meta: Recorded) -> None:
    """Two reads of this process may bring the same cached aggregate up to date at the same
    time; each event is applied once."""
    if aggregate.version is not None and meta.stream_version <= aggregate.version:
        return
    aggregate.apply(event, meta)
