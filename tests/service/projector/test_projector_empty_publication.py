"""An official event of no points is valid by the event schema (_Columns checks only that its
columns share one length; the command side never writes one, an older tool or another writer
may): the projector takes it as nothing to add, to a bucket with a segment or without."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


async def test_an_official_event_of_no_points_adds_nothing_to_a_bucket(
    tmp_path: Path,
) -> None:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    try:
        await append(events, STREAM, published([BASE_US]))
        first = Projector(events, store, CODEC)
        await asyncio.wait_for(first.run(until_position=await events.head_position()), 30)
        before = await store.latest_range("S", BASE_US - 1, BASE_US + 10, 10)
        # The bucket has its segment now; then an event of no points for the same bucket.
        await append(events, STREAM, published([]))
        head = await events.head_position()
        again = Projector(events, store, CODEC)
        await asyncio.wait_for(again.run(until_position=head), 30)
        assert again.checkpoint == head
        assert await store.latest_range("S", BASE_US - 1, BASE_US + 10, 10) == before
    finally:
        await store.close()
        await events.close()


async def test_an_official_event_of_no_points_makes_no_segment_of_a_new_bucket(
    tmp_path: Path,
) -> None:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    try:
        await append(events, STREAM, published([]))
        head = await events.head_position()
        projector = Projector(events, store, CODEC)
        await asyncio.wait_for(projector.run(until_position=head), 30)
        assert projector.checkpoint == head
        assert await store.last_segment("S", 0) is None
        assert await store.latest_range("S", BASE_US - 1, BASE_US + 10, 10) == []
    finally:
        await store.close()
        await events.close()
