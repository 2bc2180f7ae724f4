"""No lost update: a writer that slips in at any await of a multi-bucket command is seen as a
conflict, never overwritten.

The interleaving found in review: deciding bucket j awaited a read that refreshed the shared
cached bucket i (already decided by the same command) with another writer's events; the
append then expected the new version and passed, with events decided on the old state: two
DataPublished version 1 for one point. Here the other writer runs at each store call of the
command in turn, in the same process and through the same handlers (as the scheduler and the
gRPC servicer share them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from functools import partial

from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import AppendResult, RecordedEvent, StreamAppend
from qis_domain.definitions import ValidationRules
from qis_domain.events import DataRestated

from tests.service.command.command_support import (
    NOW_US,
    App,
    close,
    daily_series,
    official_versions,
)
from tests.service.command.test_command_history import first_points_of_buckets, xnys_sessions


class InterleavingStore(InMemoryEventStore):
    """Runs `other` once, just before the `at`-th read or append made while armed."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW_US)
        self.other: Callable[[], Awaitable[object]] | None = None
        self.at = 0
        self.calls = 0

    async def _maybe_interleave(self) -> None:
        if self.other is None:
            return
        self.calls += 1
        if self.calls == self.at:
            other, self.other = self.other, None
            await other()

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        await self._maybe_interleave()
        return await super().read_stream(stream, from_version)

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        await self._maybe_interleave()
        return await super().append(appends)


async def test_a_writer_slipping_in_anywhere_is_a_counted_conflict_never_a_lost_update() -> None:
    days = xnys_sessions("2004-01-01", "2005-12-31")
    edge = first_points_of_buckets(days)[0]
    last_of_a, first_of_b = days[edge - 1], days[edge]
    rules = ValidationRules(max_jump_percent=Decimal(50))  # a look-back rule: reads back
    conflicts_at: list[int] = []
    at = 0
    while True:
        at += 1
        store = InterleavingStore()
        app = App.on(store)
        await app.define(daily_series("hi", "lo", rules=rules))
        store.other = partial(app.ingest, "lo", [(last_of_a, "100")], command_id="lo-1")
        store.at, store.calls = at, 0
        # the higher-priority source, on the last point of one bucket and the first of the next
        await app.ingest("hi", [(last_of_a, "101"), (first_of_b, "102")], command_id="hi-1")
        ran = store.other is None
        if not ran:
            break  # the command made fewer store calls than `at`: every interleaving was tried
        if (retried := app.handlers.conflicts_retried) > 0:
            conflicts_at.append(at)
        events = await app.events([last_of_a, first_of_b])
        versions = official_versions(events)[close(last_of_a).utc_us]
        assert [v for v, _, _ in versions] == list(range(1, len(versions) + 1)), (at, versions)
        assert versions[-1][1] == "101", (at, versions)  # the top source's value stands
        if retried and versions[0][1] == "100":
            # the lower source landed first: the retried command restates from the top source
            [restated] = [e for e in events if isinstance(e, DataRestated)]
            assert (restated.versions, restated.causes) == ([2], ["late_source"])
    assert at > 3
    assert conflicts_at, "no interleaving produced a conflict"
