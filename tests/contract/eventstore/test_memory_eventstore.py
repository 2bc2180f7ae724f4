"""In-memory-only guarantees: the injected clock and its clamp, gap-free positions, close."""

from __future__ import annotations

import asyncio

import pytest
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import StreamAppend, StreamState, WrongExpectedVersion

from tests.contract.eventstore.test_eventstore_contract import new_event


async def test_commit_times_come_from_the_clock_clamped_and_positions_have_no_gaps() -> None:
    now_us = 2_000_000
    store = InMemoryEventStore(clock=lambda: now_us)
    await store.append([StreamAppend("a", StreamState.NO_STREAM, [new_event(), new_event()])])
    now_us = 1_000_000  # the clock steps back
    with pytest.raises(WrongExpectedVersion):
        await store.append([StreamAppend("a", StreamState.NO_STREAM, [new_event()])])
    await store.append([StreamAppend("b", StreamState.NO_STREAM, [new_event()])])
    now_us = 3_000_000
    await store.append([StreamAppend("b", 0, [new_event()])])

    events = [*await store.read_stream("a"), *await store.read_stream("b")]
    assert [e.position for e in events] == [1, 2, 3, 4]  # the conflict took no position
    assert [e.recorded_at_us for e in events] == [2_000_000, 2_000_000, 2_000_000, 3_000_000]


async def test_close_fails_waiting_subscriptions_and_later_calls() -> None:
    store = InMemoryEventStore()
    subscription = store.subscribe()
    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0.05)
    assert not waiting.done()

    await store.close()

    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(RuntimeError, match="closed"):
        await store.head_position()
    await store.close()  # closing twice is harmless
