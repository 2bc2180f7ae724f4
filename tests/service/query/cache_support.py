"""A log, the real projector and two sets of query handlers on one in-memory read model: one
with a QueryCache, one without (the reference: every answer read afresh). Events are written as
the command side writes them (publications on the points stream of their bucket), so the cache
is invalidated by what the projector really writes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import AsOf, OfficialVersion, Segment, SeriesEntry
from qis_domain.definitions import SeriesDefinition, SeriesSource
from qis_domain.events import (
    DataPublished,
    DataRestated,
    DomainEvent,
    SchemaEvolved,
    SeriesDefined,
)
from qis_domain.reference_data import definition_stream
from qis_domain.series_bucket import bucket_stream
from qis_domain.snaps import Frequency, bucket_of
from qis_domain.values import DataType
from qis_projector.application.projector import Projector
from qis_query.application.cache import DEFAULT_CACHE_LIMITS, CacheLimits, QueryCache, SharedCache
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.subscription import FeedSettings

from tests.service.projector.projector_support import append
from tests.service.query.conftest import TOKENS

DAY_US = 86_400_000_000
BASE_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
FEED = FeedSettings(poll_s=0.005, stall_timeout_s=0.3)
MAX_WAIT_S = 0.3


def definition(unit: str = "USD") -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.DAILY,
        unit=unit,
        sources=(SeriesSource(source_id="bbg", priority=1),),
    )


def snap(day: int) -> int:
    return BASE_US + day * DAY_US


@dataclass
class CacheWorld:
    """`cached` and `fresh` answer from the same read model; `project` makes the projector
    catch up with the log (until then, a new event is in the log only)."""

    database: InMemoryReadDatabase = field(default_factory=InMemoryReadDatabase)
    versions: dict[tuple[str, int], int] = field(default_factory=dict)
    schema_versions: dict[str, int] = field(default_factory=dict)
    head: int = 0
    projected: int = 0  # the head when the projector last caught up

    def __post_init__(self) -> None:
        self.now_us = BASE_US
        self.appends = 0
        self.events = InMemoryEventStore(clock=self._tick)
        self.writer = InMemoryReadStore(self.database, "g1")
        self.database.activate("g1")
        self.reader = CountingReader(self.database)
        self.projector = Projector(self.events, self.writer)

    def handlers(
        self,
        limits: CacheLimits = DEFAULT_CACHE_LIMITS,
        shared: SharedCache | None = None,
        *,
        max_age_s: float = 0.0,
    ) -> tuple[QueryHandlers, QueryCache]:
        cache = QueryCache(self.reader, limits, shared)
        position = ReadPosition(self.reader, MAX_WAIT_S, max_age_s=max_age_s)
        return QueryHandlers(self.reader, position, FEED, cache=cache), cache

    def fresh(self) -> QueryHandlers:
        reader = InMemoryReadStore(self.database)
        position = ReadPosition(reader, MAX_WAIT_S, max_age_s=0.0)
        return QueryHandlers(reader, position, FEED, tokens=TOKENS)

    async def define(self, series_id: str, unit: str = "USD") -> int:
        version = self.schema_versions.get(series_id)
        if version is None:
            self.schema_versions[series_id] = 1
            event: SeriesDefined | SchemaEvolved = SeriesDefined(
                series_id=series_id, definition=definition(unit)
            )
        else:
            self.schema_versions[series_id] = version + 1
            event = SchemaEvolved(
                series_id=series_id,
                definition=definition(unit),
                schema_version=version + 1,
                reason="unit",
            )
        return await self._append(definition_stream(series_id), event)

    async def publish(self, series_id: str, snaps: Sequence[int], price: str) -> int:
        """A first version of each snap without one, a restatement of the others (one event
        each kind, on the points stream of the snaps' bucket: keep `snaps` within a day)."""
        (bucket,) = {bucket_of(s, Frequency.DAILY) for s in snaps}
        stream = bucket_stream(series_id, bucket)
        position = 0
        known = [(series_id, s) in self.versions for s in snaps]
        for restated in (False, True):
            chosen = [s for s, seen in zip(snaps, known, strict=True) if seen == restated]
            if not chosen:
                continue
            numbers = [self.versions.get((series_id, s), 0) + 1 for s in chosen]
            columns: dict[str, Any] = {
                "series_id": series_id,
                "data_type": DataType.PRICE,
                "unit": "USD",
                "snaps": chosen,
                "versions": numbers,
                "values": [price] * len(chosen),
                "quality_scores": ["1"] * len(chosen),
                "sources": [["bbg"]] * len(chosen),
                "methods": ["priority"] * len(chosen),
                "flags": [[]] * len(chosen),
                "reasons": ["restated" if restated else ""] * len(chosen),
                "causes": ["corrected_source" if restated else ""] * len(chosen),
            }
            event = (
                DataRestated(**columns) if restated else DataPublished(**columns, mode="automatic")
            )
            position = await self._append(stream, event)
            for s, number in zip(chosen, numbers, strict=True):
                self.versions[(series_id, s)] = number
        return position

    async def _append(self, stream: str, event: DomainEvent) -> int:
        self.head = await append(self.events, stream, event)
        return self.head

    def _tick(self) -> int:
        """Commit times known to the test: every other one a millisecond after the one before,
        the others the same (as when a store clamps a clock that stepped back)."""
        self.appends += 1
        self.now_us += 1_000 * (self.appends % 2)
        return self.now_us

    async def project(self) -> None:
        await asyncio.wait_for(self.projector.run(until_position=self.head), 10)
        self.projected = self.head


class CountingReader(InMemoryReadStore):
    """The query side's reader, counting the reads of values, ranges and definitions (a hit
    reads none)."""

    def __init__(self, database: InMemoryReadDatabase) -> None:
        super().__init__(database)
        self.value_reads = 0
        self.range_reads = 0
        self.definition_reads = 0
        self.gate: asyncio.Event | None = None
        """When set, a latest read holds what it read until the gate opens: a slow read."""
        self.holding = asyncio.Event()  # set once a read is held at the gate

    async def latest_range(
        self, series_id: str, start_us: int, end_us: int, limit: int
    ) -> list[OfficialVersion]:
        self.value_reads += 1
        found = await super().latest_range(series_id, start_us, end_us, limit)
        if self.gate is not None:
            self.holding.set()
            await self.gate.wait()
        return found

    async def as_of_time_range(
        self, series_id: str, start_us: int, end_us: int, known_at_us: int, limit: int
    ) -> list[OfficialVersion]:
        self.value_reads += 1
        return await super().as_of_time_range(series_id, start_us, end_us, known_at_us, limit)

    async def as_of_position_range(
        self, series_id: str, start_us: int, end_us: int, position: int, limit: int
    ) -> list[OfficialVersion]:
        self.value_reads += 1
        return await super().as_of_position_range(series_id, start_us, end_us, position, limit)

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        self.range_reads += 1
        return await super().segments(series_id, from_bucket_us, end_us, as_of, limit)

    async def get_series(self, series_id: str) -> SeriesEntry | None:
        self.definition_reads += 1
        return await super().get_series(series_id)

    def reads(self) -> int:
        return self.value_reads + self.range_reads + self.definition_reads


async def two_series_world(s: str, t: str) -> CacheWorld:
    """Series `s` with three prices and `t` with one, published and projected (a fixture of the
    shared-cache tests)."""
    world = CacheWorld()
    await world.define(s)
    await world.define(t)
    await world.publish(s, [snap(d) for d in range(3)], "100.5")
    await world.publish(t, [snap(0)], "7")
    await world.project()
    return world
