"""Semantics every event-store adapter must share.

Stream names are unique per test (uuid) and subscriptions are filtered to them, so a live
KurrentDB server can be reused between runs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
from qis_adapters.eventstore.port import (
    EventFilter,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)


def new_event(type_: str = "DataIngested", n: int = 0) -> NewEvent:
    # Metadata values are strings: KurrentDB's multi-stream append accepts nothing else.
    return NewEvent(
        event_id=uuid.uuid4(),
        type=type_,
        data=json.dumps({"n": n, "points": [{"snap": n, "value": "1.25"}]}).encode(),
        metadata=json.dumps({"command_id": str(uuid.uuid4()), "schema_version": "1"}).encode(),
    )


def unique(tag: str = "") -> str:
    return f"contract-{uuid.uuid4().hex}{tag}"


async def take(
    events: AsyncIterator[RecordedEvent], count: int, within_s: float = 10.0
) -> list[RecordedEvent]:
    got: list[RecordedEvent] = []
    try:
        async with asyncio.timeout(within_s):
            async for event in events:
                got.append(event)
                if len(got) == count:
                    break
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()
    return got


def assert_same(recorded: RecordedEvent, sent: NewEvent, stream: str, version: int) -> None:
    assert (recorded.stream, recorded.stream_version) == (stream, version)
    assert recorded.event_id == sent.event_id
    assert recorded.type == sent.type
    assert recorded.data == sent.data


async def test_append_and_read_round_trip_every_field(store: EventStore) -> None:
    stream = unique()
    sent = [new_event("DataIngested", 1), new_event("DataValidated", 2)]
    before_us = time.time_ns() // 1_000

    result = await store.append([StreamAppend(stream, StreamState.NO_STREAM, sent)])

    read = await store.read_stream(stream)
    assert len(read) == 2
    for version, (recorded, event) in enumerate(zip(read, sent, strict=True)):
        assert_same(recorded, event, stream, version)
        assert recorded.metadata == event.metadata
        # Microseconds, not ms or ns: within a few minutes of this host's clock.
        assert abs(recorded.recorded_at_us - before_us) < 300 * 1_000_000
    assert result.position == read[-1].position
    assert result.stream_versions == {stream: 1}


async def test_versions_are_zero_based_and_continue(store: EventStore) -> None:
    stream = unique()
    first = await store.append(
        [StreamAppend(stream, StreamState.NO_STREAM, [new_event() for _ in range(3)])]
    )
    assert first.stream_versions[stream] == 2

    second = await store.append([StreamAppend(stream, 2, [new_event(), new_event()])])

    assert second.stream_versions[stream] == 4
    assert [e.stream_version for e in await store.read_stream(stream)] == [0, 1, 2, 3, 4]
    assert await store.stream_version(stream) == 4


async def test_no_stream_on_an_existing_stream_conflicts(store: EventStore) -> None:
    stream = unique()
    await store.append([StreamAppend(stream, StreamState.NO_STREAM, [new_event()])])

    with pytest.raises(WrongExpectedVersion) as info:
        await store.append([StreamAppend(stream, StreamState.NO_STREAM, [new_event()])])

    assert (info.value.stream, info.value.expected, info.value.actual) == (
        stream,
        StreamState.NO_STREAM,
        0,
    )
    assert await store.stream_version(stream) == 0


async def test_wrong_expected_version_writes_nothing(store: EventStore) -> None:
    stream = unique()
    await store.append([StreamAppend(stream, StreamState.NO_STREAM, [new_event(), new_event()])])
    head = await store.head_position()

    with pytest.raises(WrongExpectedVersion) as info:
        await store.append([StreamAppend(stream, 0, [new_event()])])

    assert (info.value.expected, info.value.actual) == (0, 1)
    assert len(await store.read_stream(stream)) == 2
    assert await store.head_position() == head


async def test_concrete_version_on_a_missing_stream_conflicts(store: EventStore) -> None:
    stream = unique()

    with pytest.raises(WrongExpectedVersion) as info:
        await store.append([StreamAppend(stream, 0, [new_event()])])

    assert info.value.actual is None
    assert await store.stream_version(stream) is None


async def test_any_skips_the_version_check(store: EventStore) -> None:
    stream = unique()
    first = await store.append([StreamAppend(stream, StreamState.ANY, [new_event()])])
    second = await store.append([StreamAppend(stream, StreamState.ANY, [new_event(), new_event()])])

    assert first.stream_versions == {stream: 0}
    assert second.stream_versions == {stream: 2}


async def test_multi_stream_append_writes_every_stream(store: EventStore) -> None:
    existing, fresh = unique("-a"), unique("-b")
    await store.append([StreamAppend(existing, StreamState.NO_STREAM, [new_event()])])
    to_existing, to_fresh = [new_event(), new_event()], [new_event()]

    result = await store.append(
        [
            StreamAppend(existing, 0, to_existing),
            StreamAppend(fresh, StreamState.NO_STREAM, to_fresh),
        ]
    )

    assert result.stream_versions == {existing: 2, fresh: 0}
    existing_events = (await store.read_stream(existing))[1:]
    fresh_events = await store.read_stream(fresh)
    for version, (recorded, sent) in enumerate(zip(existing_events, to_existing, strict=True)):
        assert_same(recorded, sent, existing, version + 1)
    assert_same(fresh_events[0], to_fresh[0], fresh, 0)
    # Compared as JSON: KurrentDB's multi-stream append keeps metadata as properties.
    assert json.loads(fresh_events[0].metadata) == json.loads(to_fresh[0].metadata)
    assert result.position == fresh_events[0].position
    assert existing_events[-1].position < fresh_events[0].position


async def test_multi_stream_append_is_all_or_nothing(store: EventStore) -> None:
    fresh, existing = unique("-a"), unique("-b")
    await store.append([StreamAppend(existing, StreamState.NO_STREAM, [new_event()])])
    head = await store.head_position()

    with pytest.raises(WrongExpectedVersion) as info:
        await store.append(
            [
                StreamAppend(fresh, StreamState.NO_STREAM, [new_event(), new_event()]),
                StreamAppend(existing, 5, [new_event()]),
            ]
        )

    assert (info.value.stream, info.value.expected, info.value.actual) == (existing, 5, 0)
    assert await store.stream_version(fresh) is None
    assert await store.read_stream(fresh) == []
    assert await store.stream_version(existing) == 0
    assert await store.head_position() == head


async def test_positions_strictly_increase_and_recorded_time_never_decreases(
    store: EventStore,
) -> None:
    streams = [unique(f"-{i}") for i in range(3)]
    results = []
    for round_ in range(4):
        for stream in streams:
            expected = StreamState.NO_STREAM if round_ == 0 else 2 * round_ - 1
            results.append(
                await store.append([StreamAppend(stream, expected, [new_event(), new_event()])])
            )

    assert all(a.position < b.position for a, b in itertools.pairwise(results))
    events = sorted(
        [e for s in streams for e in await store.read_stream(s)], key=lambda e: e.position
    )
    assert len({e.position for e in events}) == len(events) == 24
    assert [e.position for e in events][1::2] == [r.position for r in results]
    recorded = [e.recorded_at_us for e in events]
    assert recorded == sorted(recorded)


async def test_read_stream_from_version(store: EventStore) -> None:
    stream = unique()
    await store.append(
        [StreamAppend(stream, StreamState.NO_STREAM, [new_event() for _ in range(5)])]
    )

    assert [e.stream_version for e in await store.read_stream(stream, 2)] == [2, 3, 4]
    assert await store.read_stream(stream, 5) == []


async def test_missing_stream_has_no_version_and_no_events(store: EventStore) -> None:
    stream = unique()

    assert await store.stream_version(stream) is None
    assert await store.read_stream(stream) == []


async def test_read_many_answers_each_read_as_read_stream_does(store: EventStore) -> None:
    long, short, missing = unique("-long"), unique("-short"), unique("-missing")
    await store.append(
        [
            StreamAppend(long, StreamState.NO_STREAM, [new_event(n=n) for n in range(5)]),
            StreamAppend(short, StreamState.NO_STREAM, [new_event(n=9)]),
        ]
    )
    await store.append([StreamAppend(long, 4, [new_event(n=5)])])
    # In any order, a stream more than once, from its start, its middle, past its end.
    reads = [(short, 0), (long, 3), (missing, 0), (long, 0), (short, 1), (long, 6)]

    answers = await store.read_many(reads)

    assert answers == [await store.read_stream(stream, version) for stream, version in reads]
    assert [[e.stream_version for e in answer] for answer in answers] == [
        [0],
        [3, 4, 5],
        [],
        [0, 1, 2, 3, 4, 5],
        [],
        [],
    ]
    assert await store.read_many([]) == []


async def test_head_position_is_the_last_commit(store: EventStore) -> None:
    stream = unique()
    result = await store.append(
        [StreamAppend(stream, StreamState.NO_STREAM, [new_event() for _ in range(3)])]
    )

    assert await store.head_position() == result.position


@pytest.mark.parametrize(
    "appends",
    [
        [],
        [StreamAppend("s", StreamState.ANY, [])],
        [StreamAppend("s", StreamState.ANY, [new_event()])] * 2,
    ],
    ids=["no-appends", "no-events", "same-stream-twice"],
)
async def test_malformed_appends_are_rejected(
    store: EventStore, appends: list[StreamAppend]
) -> None:
    with pytest.raises(ValueError, match="append"):
        await store.append(appends)


async def test_subscribe_from_the_start_delivers_everything_in_order(store: EventStore) -> None:
    prefix = unique()
    sent = []
    for i in range(3):
        events = [new_event(n=i), new_event(n=i)]
        await store.append([StreamAppend(f"{prefix}-{i}", StreamState.NO_STREAM, events)])
        sent += [(f"{prefix}-{i}", v, e) for v, e in enumerate(events)]

    got = await take(store.subscribe(None, EventFilter(stream_prefixes=(prefix,))), 6)

    for recorded, (stream, version, event) in zip(got, sent, strict=True):
        assert_same(recorded, event, stream, version)
    assert [e.position for e in got] == sorted({e.position for e in got})


async def test_subscribe_after_a_position_starts_strictly_after_it(store: EventStore) -> None:
    stream = unique()
    sent = [new_event(n=i) for i in range(4)]
    await store.append([StreamAppend(stream, StreamState.NO_STREAM, sent)])
    recorded = await store.read_stream(stream)

    got = await take(
        store.subscribe(recorded[1].position, EventFilter(stream_prefixes=(stream,))), 2
    )

    assert [e.event_id for e in got] == [sent[2].event_id, sent[3].event_id]


async def test_subscribe_filters_by_stream_prefix(store: EventStore) -> None:
    base = unique()
    wanted, also_wanted = f"{base}.a+_", f"{base}-b"
    decoys = [
        f"{base}Xaa_",  # matches if the prefix were a raw regex
        f"{base}.a+Z",  # matches if it were a LIKE pattern
        f"{base.upper()}.A+_",  # matches if the comparison folded case
        f"x{wanted}",  # matches if the prefix were not anchored
    ]
    # Everything that must be filtered out is written before the last wanted stream.
    for stream in (*decoys, wanted, also_wanted):
        await store.append([StreamAppend(f"{stream}-1", StreamState.NO_STREAM, [new_event()])])

    got = await take(
        store.subscribe(None, EventFilter(stream_prefixes=(wanted, also_wanted))), 2, within_s=5
    )

    assert [e.stream for e in got] == [f"{wanted}-1", f"{also_wanted}-1"]


async def test_subscribe_filters_by_event_type(store: EventStore) -> None:
    stream = unique()
    types = ["Data.Ingested", "DataXIngested", "DataValidated", "Data.IngestedV2", "DataPublished"]
    await store.append([StreamAppend(stream, StreamState.NO_STREAM, [new_event(t) for t in types])])
    only = EventFilter(stream_prefixes=(stream,), event_types=("Data.Ingested", "DataPublished"))

    got = await take(store.subscribe(None, only), 2)

    assert [e.type for e in got] == ["Data.Ingested", "DataPublished"]


async def test_subscribe_filters_by_event_type_alone(store: EventStore) -> None:
    stream, wanted = unique(), f"Wanted{uuid.uuid4().hex}"
    await store.append(
        [StreamAppend(stream, StreamState.NO_STREAM, [new_event("Other"), new_event(wanted)])]
    )

    got = await take(store.subscribe(None, EventFilter(event_types=(wanted,))), 1)

    assert [(e.stream, e.type) for e in got] == [(stream, wanted)]


async def test_subscribe_goes_live_after_catching_up(store: EventStore) -> None:
    stream = unique()
    first = new_event(n=0)
    await store.append([StreamAppend(stream, StreamState.NO_STREAM, [first])])
    received: asyncio.Queue[RecordedEvent] = asyncio.Queue()

    async def consume() -> None:
        async for event in store.subscribe(None, EventFilter(stream_prefixes=(stream,))):
            await received.put(event)

    consumer = asyncio.create_task(consume())
    try:
        assert (await asyncio.wait_for(received.get(), 10)).event_id == first.event_id
        await asyncio.sleep(0.2)  # the subscription is now waiting for new events
        later = [new_event(n=1), new_event(n=2)]
        await store.append([StreamAppend(stream, 0, later)])
        live = [await asyncio.wait_for(received.get(), 10) for _ in later]
        assert [e.event_id for e in live] == [e.event_id for e in later]
    finally:
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer


async def test_subscription_stops_cleanly_when_cancelled_or_closed(store: EventStore) -> None:
    prefix = unique()

    async def consume() -> None:
        async for _ in store.subscribe(None, EventFilter(stream_prefixes=(prefix,))):
            pytest.fail("nothing was appended under this prefix")

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(consumer, 5)

    subscription = store.subscribe(None, EventFilter(stream_prefixes=(prefix,)))
    assert isinstance(subscription, AsyncGenerator)
    waiting = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0.2)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(subscription.aclose(), 5)
