"""The appends a command really makes (a 1k- and a 10k-point ingest, a publication, a
restatement) are small enough to run inline on the SQLite store (`_small`): the bounds are not
so tight that the common case goes to the worker after all."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest
import qis_adapters.eventstore.sqlite as sqlite_module
from qis_adapters.eventstore.port import StreamAppend
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.application.commands import PublishPoints, RestatePoint
from qis_domain.commands import CommandContext
from qis_domain.snaps import Snap
from qis_domain.values import Price

from tests.service.command.test_aggregate_cache_memory import START_US, Feed

Shape = tuple[int, int, int, bool]  # streams, events, bytes, small


@pytest.fixture
def shapes(monkeypatch: pytest.MonkeyPatch) -> list[Shape]:
    small = sqlite_module._small
    seen: list[Shape] = []

    def spy(appends: Sequence[StreamAppend]) -> bool:
        events = [e for a in appends for e in a.events]
        size = sum(len(e.data) + len(e.metadata) for e in events)
        seen.append((len(appends), len(events), size, small(appends)))
        return seen[-1][3]

    monkeypatch.setattr(sqlite_module, "_small", spy)
    return seen


async def test_a_commands_appends_are_small_enough_to_run_inline(
    tmp_path: Path, shapes: list[Shape]
) -> None:
    store = await SqliteEventStore.open(tmp_path / "store.db")
    try:
        feed = Feed(store, 1_000_000)
        await feed.define()
        shapes.clear()
        await feed.ingest(0, 1_000)  # one bucket
        await feed.ingest(1_000, 10_000)  # a 10k-point chunk across four hourly buckets
        snap = Snap(START_US + 5 * 1_000_000, 0)
        # By another user: the four-eyes rule.
        other = CommandContext("review-publish", "approver", 0)
        await feed.handlers.publish(PublishPoints("PX", [snap], "review"), other)
        await feed.handlers.restate(
            RestatePoint("PX", snap, Price(Decimal("1.23"), ""), "review"),
            CommandContext("review-restate", "approver", 0),
        )
    finally:
        await store.close()
    assert len(shapes) == 4, shapes
    assert all(small for *_, small in shapes), shapes
