"""QIS_PROJECTOR_BATCH_POINTS bounds the points of one read-model write (one transaction, one
checkpoint move) in the projector the process builds: a points event counts its snaps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_projector.bootstrap import build
from qis_projector.settings import ProjectorSettings

from tests.service.projector.projector_support import write_log

EVENTS = 6
POINTS = 100


async def batches_written(tmp_path: Path) -> int:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        head = (await write_log(events, EVENTS, POINTS))[-1]
    finally:
        await events.close()
    app = await build(ProjectorSettings(data_dir=tmp_path), "g1")
    try:
        await asyncio.wait_for(app.projector.run(until_position=head), 30)
        assert app.projector.checkpoint == head
        assert app.projector.events_projected == EVENTS
        assert app.projector.points_projected == EVENTS * POINTS
        return app.projector.batches
    finally:
        await app.close()


async def test_a_write_holds_no_more_points_than_the_batch_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each event fills a batch: a second would take a write past the bound.
    monkeypatch.setenv("QIS_PROJECTOR_BATCH_POINTS", str(POINTS))
    assert await batches_written(tmp_path) == EVENTS


async def test_an_event_larger_than_the_batch_points_is_written_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QIS_PROJECTOR_BATCH_POINTS", "1")
    # Every event holds more than one point: each is a write of its own, none is split or lost.
    assert await batches_written(tmp_path) == EVENTS


def test_the_batch_points_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIS_PROJECTOR_BATCH_POINTS", "0")
    with pytest.raises(ValueError, match="projector_batch_points"):
        ProjectorSettings()
