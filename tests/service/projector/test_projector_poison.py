"""An event the projector cannot project halts it exactly there: everything before it is
projected, nothing after it; the report names the position, event type, stream and error, once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from qis_adapters.eventstore.port import EventStore
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_projector.application.projector import ProjectionHalted, Projector, ProjectorLimits

from tests.service.projector.projector_support import (
    BASE_US,
    append,
    encode,
    ingested,
    overflowing_snap,
    write_log,
)

POISON_STREAM = "series/P/points/0"
MAX_LAG = 1_000_000


async def snap_beyond_int64(events: EventStore) -> int:
    return await append(events, POISON_STREAM, overflowing_snap(POISON_STREAM, "P"))


async def undecodable_payload(events: EventStore) -> int:
    record = encode(POISON_STREAM, ingested("P", BASE_US, 3))
    return await append(events, POISON_STREAM, dataclasses.replace(record, data=record.data[:20]))


@pytest.mark.parametrize("poison", [snap_beyond_int64, undecodable_payload])
async def test_an_event_that_cannot_be_projected_halts_the_projector_right_before_it(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    poison: Callable[[EventStore], Awaitable[int]],
) -> None:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    try:
        before = await write_log(events, 7, 10)
        position = await poison(events)
        await write_log(events, 3, 10)
        # Batches of 4: the poison is the 8th event, in the middle of the second batch.
        projector = Projector(events, store, limits=ProjectorLimits(max_batch_events=4))
        with caplog.at_level(logging.INFO), pytest.raises(ProjectionHalted) as raised:
            await asyncio.wait_for(projector.run(), 30)

        halted = raised.value
        assert halted.record is not None
        assert (halted.record.position, halted.record.type, halted.record.stream) == (
            position,
            "DataIngested",
            POISON_STREAM,
        )
        assert projector.halted is halted
        # Everything before the poison is in the read model, nothing after it.
        assert projector.checkpoint == before[-1]
        assert await store.checkpoint() == before[-1]

        status = await projector.status(MAX_LAG)
        assert not status.serving
        for detail in (
            f"position {position}",
            "DataIngested",
            POISON_STREAM,
            type(halted.error).__name__,
        ):
            assert detail in status.reason

        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert errors[0].getMessage() == status.reason
        assert errors[0].exc_info is None  # the report, not a traceback
    finally:
        await store.close()
        await events.close()
