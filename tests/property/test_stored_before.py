"""A log stored before columns were written once (every column a full list) rebuilds to the
read model the same log stored now does: the compact form (qis_domain.events.points) changes
the bytes, never what they say."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

from hypothesis import example, given, settings
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import AppendResult, RecordedEvent, StreamAppend
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_projector.application.projector import Projector, ProjectorLimits

from tests.property.service import PROPERTY, RICH, Clock, Scenario, instant_us, scenarios, send
from tests.property.test_projection import catch_up

NOW_US = instant_us(2025)
# Batches of as many events either way: the projector sizes them by payload bytes too, and a
# segment version is made per batch.
BY_EVENTS = ProjectorLimits(max_batch_events=64, max_batch_points=10**12)


def written_out(data: bytes) -> bytes:
    """A payload as the encoder wrote it before: each column written once, {"all": entry},
    written out in full (at the JSON level: the decoder under test takes no part)."""
    if not data.startswith(b'{"snaps":'):
        return data
    payload: dict[str, Any] = json.loads(data)
    n = len(payload["snaps"])
    full = {
        name: [value["all"]] * n if isinstance(value, dict) and value.keys() == {"all"} else value
        for name, value in payload.items()
    }
    return json.dumps(full, ensure_ascii=False, separators=(",", ":")).encode()


class Tee(InMemoryEventStore):
    """The store the commands use; every append is made to `before` too, its payloads
    `written_out`: the same log, commit times and positions, stored before."""

    def __init__(self) -> None:
        super().__init__(clock=Clock(NOW_US))
        self.before = InMemoryEventStore(clock=Clock(NOW_US))

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        result = await super().append(appends)
        await self.before.append(
            [
                dataclasses.replace(
                    a,
                    events=[dataclasses.replace(e, data=written_out(e.data)) for e in a.events],
                )
                for a in appends
            ]
        )
        return result


async def now_and_before(scenario: Scenario) -> tuple[dict[str, object], dict[str, object], int]:
    """The read models of the log stored now and of it stored before, and how many of its
    payloads differ between the two."""
    store = Tee()
    handlers = CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars())
    for step in scenario.steps(NOW_US):
        await send(handlers, step)
    head = await store.head_position()
    assert await store.before.head_position() == head
    dumps = []
    for events in (store, store.before):
        read = InMemoryReadStore(generation="g")
        await catch_up(Projector(events, read, limits=BY_EVENTS), head)
        dumps.append(await read.dump_all())
    now, before = await _log(store, head), await _log(store.before, head)
    assert [(r.position, r.recorded_at_us) for r in now] == [
        (r.position, r.recorded_at_us) for r in before
    ]
    differ = sum(a.data != b.data for a, b in zip(now, before, strict=True))
    return dumps[0], dumps[1], differ


async def _log(store: InMemoryEventStore, head: int) -> list[RecordedEvent]:
    records = store.subscribe()
    try:
        return [await anext(records) for _ in range(head)]
    finally:
        await cast(AsyncGenerator[RecordedEvent, None], records).aclose()


@settings(PROPERTY)
@given(scenarios())
@example(RICH)
def test_a_log_stored_before_rebuilds_the_same_read_model(scenario: Scenario) -> None:
    now, before, differ = asyncio.run(now_and_before(scenario))
    assert differ  # columns written once: the two logs are not the same bytes
    assert now.keys() == before.keys()
    for kind in now:
        assert now[kind] == before[kind], kind
