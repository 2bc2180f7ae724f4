"""An official event of no points is valid by the event schema (_Columns checks only that its
columns share one length; the command side never writes one, an older tool or another writer
may): the projector takes it as nothing to add, to a bucket with a segment or without."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.events import DataPublished
from qis_domain.values import DataType
from qis_projector.application.projector import Projector

from tests.service.projector.projector_support import BASE_US, CODEC, append

STREAM = "series/S/points/0"


def published(snaps: list[int]) -> DataPublished:
    n = len(snaps)
    return DataPublished(
        series_id="S",
        data_type=DataType.PRICE,
        unit="USD",
        snaps=snaps,
        versions=[1] * n,
        values=["1.5"] * n,
        quality_scores=["1"] * n,
        sources=[["feed"]] * n,
        methods=["priority"] * n,
        flags=[[]] * n,
        reasons=[""] * n,
        causes=[""] * n,
        mode="manual",
    )


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteEventStore, SqliteReadStore]]:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    try:
        yield events, store
    finally:
        await store.close()
        await events.close()


async def projected(events: SqliteEventStore, store: SqliteReadStore) -> None:
    """A new projector's run up to the head, which its checkpoint must reach."""
    head = await events.head_position()
    projector = Projector(events, store, CODEC)
    await asyncio.wait_for(projector.run(until_position=head), 30)
    assert projector.checkpoint == head


async def test_an_official_event_of_no_points_adds_nothing_to_a_bucket(
    stores: tuple[SqliteEventStore, SqliteReadStore],
) -> None:
    events, store = stores
    await append(events, STREAM, published([BASE_US]))
    await projected(events, store)
    before = await store.latest_range("S", BASE_US - 1, BASE_US + 10, 10)
    # The bucket has its segment now; then an event of no points for the same bucket.
    await append(events, STREAM, published([]))
    await projected(events, store)
    assert await store.latest_range("S", BASE_US - 1, BASE_US + 10, 10) == before


async def test_an_official_event_of_no_points_makes_no_segment_of_a_new_bucket(
    stores: tuple[SqliteEventStore, SqliteReadStore],
) -> None:
    events, store = stores
    await append(events, STREAM, published([]))
    await projected(events, store)
    assert await store.last_segment("S", 0) is None
    assert await store.latest_range("S", BASE_US - 1, BASE_US + 10, 10) == []
