"""Two writers racing on one stream never lose an update: the loser re-loads and re-decides.

Two CommandHandlers (as two command processes would be: separate aggregate caches) share one
real SQLite event store. A barrier makes both decide on the same stream version before either
appends, so a conflict must happen; the test counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import AppendResult, StreamAppend
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.application.commands import DefineSeries, IngestPoints, RegisterSource
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_domain.commands import CommandContext
from qis_domain.definitions import DataSourceConfig, SeriesDefinition, SeriesSource
from qis_domain.series_bucket import SeriesBucket, bucket_stream
from qis_domain.snaps import Frequency, Snap, bucket_of
from qis_domain.values import DataType, Price

BASE_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z


class RacingStore:
    """The real store, except that the first `racers` appends wait for each other."""

    def __init__(self, inner: SqliteEventStore, racers: int) -> None:
        self.inner = inner
        self._barrier = asyncio.Barrier(racers)
        self._waiting = racers

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        if self._waiting:
            self._waiting -= 1
            await self._barrier.wait()
        return await self.inner.append(appends)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def handlers(store: object) -> CommandHandlers:
    return CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars())  # type: ignore[arg-type]


def ctx(command_id: str, user: str = "feed") -> CommandContext:
    return CommandContext(command_id, user, BASE_US)


def prices(first_second: int, count: int) -> list[tuple[Snap, Price]]:
    return [
        (Snap(BASE_US + (first_second + i) * 1_000_000), Price(Decimal(100 + i), ""))
        for i in range(count)
    ]


async def test_concurrent_ingests_into_one_bucket_conflict_and_lose_nothing(tmp_path: Path) -> None:
    inner = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        setup = handlers(inner)
        await setup.register_source(
            RegisterSource("feed", DataSourceConfig(provider="test")), ctx("s")
        )
        definition = SeriesDefinition(
            data_type=DataType.PRICE,
            frequency=Frequency.SECOND,
            unit="USD",
            sources=(SeriesSource(source_id="feed", priority=1),),
        )
        await setup.define_series(
            DefineSeries("PX", definition),
            ctx("d"),
        )
        racing = RacingStore(inner, racers=2)
        first, second = handlers(racing), handlers(racing)
        # Disjoint snaps in the same hourly bucket: both append to one stream.
        a, b = await asyncio.gather(
            first.ingest(IngestPoints("PX", "feed", prices(0, 100)), ctx("a")),
            second.ingest(IngestPoints("PX", "feed", prices(100, 100)), ctx("b")),
        )
        assert first.conflicts_retried + second.conflicts_retried >= 1  # the race happened
        assert (a.outcome.accepted, b.outcome.accepted) == (100, 100)
        assert not a.duplicate
        assert not b.duplicate

        fresh = SeriesBucket("PX", bucket_of(BASE_US, Frequency.SECOND))
        repository = Repository(inner, EventCodec())
        loaded = await repository.load(bucket_stream("PX", fresh.bucket_us), lambda: fresh)
        assert len(loaded.officials) == 200  # nothing lost
        assert {o.version for o in loaded.officials.values()} == {1}  # nothing doubled
    finally:
        await inner.close()


async def test_a_repeated_command_id_appends_nothing(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        h = handlers(store)
        await h.register_source(RegisterSource("feed", DataSourceConfig(provider="test")), ctx("s"))
        definition = SeriesDefinition(
            data_type=DataType.PRICE,
            frequency=Frequency.MINUTE,
            unit="USD",
            sources=(SeriesSource(source_id="feed", priority=1),),
        )
        await h.define_series(DefineSeries("PX", definition), ctx("d"))
        # 3,000 minutes: the batch spans three daily buckets, appended atomically
        points = [(Snap(BASE_US + i * 60_000_000), Price(Decimal(1 + i), "")) for i in range(3000)]
        first = await h.ingest(IngestPoints("PX", "feed", points), ctx("import-1"))
        head = await store.head_position()
        again = await handlers(store).ingest(IngestPoints("PX", "feed", points), ctx("import-1"))
        assert again.duplicate
        assert again.outcome == first.outcome  # the first outcome, summed over the buckets
        assert first.outcome.accepted == 3000
        assert await store.head_position() == head  # nothing appended
    finally:
        await store.close()
