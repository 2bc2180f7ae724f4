"""The projector decodes the events something reads: the read models' types always, every event
when metrics or traces are taken (they read DataReconciled and every event's trace context).
An event passed over still moves knowledge time on, as one decoded would."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

from qis_adapters.eventstore.codec import DecodedEvent, EventCodec
from qis_adapters.eventstore.port import RecordedEvent
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.events import DataReconciled, EventMetadata
from qis_domain.values import DataType
from qis_projector.application.metrics import ProjectorMetrics
from qis_projector.application.projection import Projection
from qis_projector.application.projector import Projector

from tests.service.projector.projector_support import BASE_US, US, append, ingested

STREAM = "series/S/points/0"


class CountingCodec(EventCodec):
    def __init__(self) -> None:
        super().__init__()
        self.decoded: list[str] = []

    def decode(self, record: RecordedEvent) -> DecodedEvent:
        self.decoded.append(record.type)
        return super().decode(record)


def reconciled(first_us: int, count: int) -> DataReconciled:
    return DataReconciled(
        series_id="S",
        data_type=DataType.PRICE,
        unit="USD",
        snaps=[first_us + i * US for i in range(count)],
        values=["1.5"] * count,
        methods=["priority"] * count,
        contributions=[{"feed": "1.5"}] * count,
        excluded=[[]] * count,
        quality_scores=["1"] * count,
        statuses=["published"] * count,
    )


async def projected_types(tmp_path: Path, metrics: ProjectorMetrics | None) -> list[str]:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    store = await SqliteReadStore.open(tmp_path / f"read-{metrics is None}.db", "g1")
    try:
        if await events.head_position() == 0:
            await append(events, STREAM, ingested("S", BASE_US, 3))
            await append(events, STREAM, reconciled(BASE_US, 3))
        codec = CountingCodec()
        projector = Projector(events, store, codec, metrics=metrics)
        await asyncio.wait_for(projector.run(until_position=await events.head_position()), 30)
        assert projector.checkpoint == await events.head_position()
        return codec.decoded
    finally:
        await store.close()
        await events.close()


async def test_projector_decode_leaves_events_only_the_metrics_read_undecoded(
    tmp_path: Path,
) -> None:
    assert await projected_types(tmp_path, None) == ["DataIngested"]
    with_metrics = await projected_types(tmp_path, ProjectorMetrics())
    assert with_metrics == ["DataIngested", "DataReconciled"]


def test_projector_decode_an_event_passed_over_moves_knowledge_time_on() -> None:
    projection = Projection()
    passed_over = RecordedEvent(STREAM, 1, 1, uuid.uuid4(), "DataReconciled", b"", b"", BASE_US + 5)
    projection.advance(passed_over)
    # The next event's store clock stepped back: it is known no earlier than the one before.
    record = dataclasses.replace(
        passed_over, position=2, type="DataIngested", recorded_at_us=BASE_US
    )
    meta = EventMetadata(command_id="c", user_id="u", correlation_id="c", causation_id="c")
    projection.handle(DecodedEvent(ingested("S", BASE_US, 2), meta, record))
    batch, _ = projection.take()
    assert [o.recorded_at_us for o in batch.observations] == [BASE_US + 5] * 2
    assert projection.floor_us == BASE_US + 5
