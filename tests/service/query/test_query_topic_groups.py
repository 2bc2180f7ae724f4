"""TopicService over loopback gRPC on the in-memory read store: consumer groups sharing a
topic's entries by series, moving a leaving consumer's series, resuming from the recorded
checkpoint, parking what keeps failing and replaying it. The command service is played by a
recorder that writes what the projector would make of its commands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
from qis.data.v1 import routing_pb2
from qis.data.v1 import topic_service_pb2 as pb
from qis.data.v1 import topic_service_pb2_grpc as pb_grpc
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    PARKED,
    REPLAYED,
    SETTLED,
    ConsumerGroupEntry,
    ParkedEntry,
    ParkedState,
    ProjectionBatch,
    TopicEntry,
    TopicVersion,
)
from qis_query.application.dispatch import Key, Parking
from qis_query.application.topics import Consumer, GroupRunner, GroupSettings, TopicGroups
from qis_query.entrypoints.topics import TopicService
from qis_runtime.server import QisServer, ServiceBinding

TOPIC = "strategy.data-updated"
DEFINITION = {
    "event_types": ["DataPublished"],
    "series_patterns": [],
    "min_severity": "",
    "max_attempts": 2,
    "ack_timeout_s": 30,
    "description": "",
}
WAIT_S = 5.0
BOB = (("x-qis-user", "bob"),)
FAST = GroupSettings(poll_s=0.01, checkpoint_every_s=0.02, replay_scan_s=0.02)


@dataclass
class Log:
    """The read model as the projector would write it, and the commands' records."""

    writer: InMemoryReadStore
    position: int = 0
    checkpoints: list[Key] = field(default_factory=list)
    joined: int = 0  # consumers that joined or left a group through the service
    left: int = 0

    async def write(self, batch: ProjectionBatch) -> int:
        self.position += 1
        await self.writer.apply(batch, self.position)
        return self.position

    async def entry(self, series_id: str) -> Key:
        message = routing_pb2.TopicMessage(
            topic=f"topics/{TOPIC}", commit_position=self.position + 1, series=f"series/{series_id}"
        )
        e = TopicEntry(
            TOPIC, self.position + 1, 0, series_id, "DataPublished", message.SerializeToString(), 0
        )
        await self.write(ProjectionBatch(topic_entries=[e]))
        return (e.position, 0)

    # GroupRecorder
    async def checkpoint(self, topic: str, group: str, at: Key, settled: Sequence[Key]) -> int:
        self.checkpoints.append(at)
        position = self.position + 1
        return await self.write(
            ProjectionBatch(
                consumer_groups=[ConsumerGroupEntry(topic, group, *at, 0, position)],
                parked_states=[ParkedState(topic, group, *k, SETTLED, position) for k in settled],
            )
        )

    async def park(self, topic: str, group: str, parking: Parking) -> int:
        p, i = parking.entry.key
        entry = ParkedEntry(
            topic, group, p, i, parking.attempts, parking.last_error, 0, PARKED, self.position + 1
        )
        return await self.write(ProjectionBatch(parked=[entry]))

    async def replay(self, topic: str, group: str, entries: Sequence[Key]) -> int:
        position = self.position + 1
        states = [ParkedState(topic, group, *k, REPLAYED, position) for k in entries]
        return await self.write(ProjectionBatch(parked_states=states))


class CountingGroups(TopicGroups):
    """Counts joins in the log, so that a test waits for its consumers to have joined (a
    group starts at the end of the log) instead of sleeping for a guessed time."""

    def __init__(self, log: Log, reader: InMemoryReadStore, settings: GroupSettings) -> None:
        super().__init__(reader, log, settings)
        self._log = log

    async def join(
        self, topic: str, group: str, name: str, window: int
    ) -> tuple[GroupRunner, Consumer]:
        joined = await super().join(topic, group, name, window)
        self._log.joined += 1
        return joined

    async def leave(self, runner: GroupRunner, consumer: Consumer) -> None:
        await super().leave(runner, consumer)
        self._log.left += 1


@contextlib.asynccontextmanager
async def serve(
    log: Log, reader: InMemoryReadStore, settings: GroupSettings = FAST
) -> AsyncIterator[pb_grpc.TopicServiceAsyncStub]:
    groups = CountingGroups(log, reader, settings)
    server = QisServer(
        "127.0.0.1:0",
        [
            ServiceBinding(
                "qis.data.v1.TopicService",
                pb_grpc.add_TopicServiceServicer_to_server,
                TopicService(groups),
            )
        ],
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.TopicServiceStub(channel)
    finally:
        await server.stop(0)
        await groups.close()


@pytest.fixture
async def log() -> tuple[Log, InMemoryReadStore]:
    database = InMemoryReadDatabase()
    writer = InMemoryReadStore(database, "g1")
    await writer.set_active_generation("g1")
    the_log = Log(writer)
    await the_log.write(ProjectionBatch(topics=[TopicVersion(TOPIC, 1, 0, DEFINITION)]))
    return the_log, InMemoryReadStore(database)


class Client:
    """One Consume call: its requests sent from a queue, its deliveries read as they come."""

    def __init__(
        self,
        stub: pb_grpc.TopicServiceAsyncStub,
        name: str,
        group: str = "g",
        topic: str = f"topics/{TOPIC}",
        metadata: tuple[tuple[str, str], ...] = BOB,
    ) -> None:
        self.requests: asyncio.Queue[pb.ConsumeRequest | None] = asyncio.Queue()
        self.requests.put_nowait(pb.ConsumeRequest(topic=topic, group=group, consumer=name))
        self.call = stub.Consume(self._requests(), metadata=metadata)

    async def _requests(self) -> AsyncIterator[pb.ConsumeRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    async def next(self) -> pb.ConsumeResponse:
        response = await asyncio.wait_for(self.call.read(), WAIT_S)
        assert isinstance(response, pb.ConsumeResponse)
        return response

    def ack(self, *deliveries: pb.ConsumeResponse) -> None:
        self.requests.put_nowait(pb.ConsumeRequest(ack_ids=[d.delivery_id for d in deliveries]))

    def nack(self, delivery: pb.ConsumeResponse, reason: str) -> None:
        nack = pb.ConsumeNack(delivery_id=delivery.delivery_id, reason=reason)
        self.requests.put_nowait(pb.ConsumeRequest(nacks=[nack]))

    async def close(self) -> None:
        self.requests.put_nowait(None)
        self.call.cancel()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the wait")


async def test_two_consumers_share_by_series_and_a_leaver_s_series_move(
    log: tuple[Log, InMemoryReadStore],
) -> None:
    the_log, reader = log
    async with serve(the_log, reader) as stub:
        a, b = Client(stub, "a"), Client(stub, "b")
        # The group starts at the end of the log (empty) once both joined.
        await eventually(lambda: _done(the_log.joined == 2))
        keys = [await the_log.entry(s) for s in ["S1", "S2", "S3", "S4"] * 3]
        got: dict[str, list[pb.ConsumeResponse]] = {"a": [], "b": []}

        async def take(client: Client, name: str) -> None:
            while True:
                d = await client.next()
                got[name].append(d)
                client.ack(d)

        takers = [asyncio.create_task(take(a, "a")), asyncio.create_task(take(b, "b"))]
        await eventually(lambda: _done(len(got["a"]) + len(got["b"]) == len(keys)))
        by_series = {
            name: {d.message.series for d in deliveries} for name, deliveries in got.items()
        }
        assert by_series["a"]  # shared
        assert by_series["b"]
        assert not by_series["a"] & by_series["b"]  # each series to one consumer
        for deliveries in got.values():
            for series in {d.message.series for d in deliveries}:
                positions = [
                    d.message.commit_position for d in deliveries if d.message.series == series
                ]
                assert positions == sorted(positions)
        await eventually(lambda: _done(the_log.checkpoints[-1:] == [keys[-1]]))
        # "a" leaves: every series goes to "b".
        takers[0].cancel()
        await a.close()
        await eventually(lambda: _done(the_log.left == 1))
        before = len(got["b"])
        more = [await the_log.entry(s) for s in ["S1", "S2", "S3", "S4"]]
        await eventually(lambda: _done(len(got["b"]) == before + len(more)))
        assert {d.message.series for d in got["b"][before:]} == {
            f"series/S{i}" for i in range(1, 5)
        }
        takers[1].cancel()
        await b.close()


async def test_consumption_resumes_from_the_recorded_checkpoint(
    log: tuple[Log, InMemoryReadStore],
) -> None:
    the_log, reader = log
    async with serve(the_log, reader) as stub:
        c = Client(stub, "c")
        await eventually(lambda: _done(the_log.joined == 1))
        first = [await the_log.entry("S1") for _ in range(3)]
        for _ in first:
            c.ack(await c.next())
        await eventually(lambda: _done(the_log.checkpoints[-1:] == [first[-1]]))
        await c.close()
    later = [await the_log.entry("S1") for _ in range(2)]  # while nobody serves the group
    async with serve(the_log, reader) as stub:  # another process, the same read model
        c = Client(stub, "c")
        resumed = [await c.next()]
        c.ack(resumed[0])  # one series: the next entry only once this one is settled
        resumed.append(await c.next())
        assert [(d.message.commit_position, d.attempt) for d in resumed] == [
            (k[0], 1) for k in later
        ]
        await c.close()


async def test_an_entry_nacked_until_parked_is_listed_and_replayed(
    log: tuple[Log, InMemoryReadStore],
) -> None:
    the_log, reader = log
    async with serve(the_log, reader) as stub:
        c = Client(stub, "c")
        await eventually(lambda: _done(the_log.joined == 1))
        bad, good = await the_log.entry("S1"), await the_log.entry("S1")
        first = await c.next()
        assert (first.message.commit_position, first.attempt) == (bad[0], 1)
        c.nack(first, "cannot parse")
        second = await c.next()
        assert (second.message.commit_position, second.attempt) == (bad[0], 2)
        c.nack(second, "still cannot parse")
        # Max attempts (2) reached: parked, and the series moves on.
        after = await c.next()
        assert (after.message.commit_position, after.attempt) == (good[0], 1)
        c.ack(after)
        request = pb.ListParkedRequest(topic=f"topics/{TOPIC}", group="g")
        listed = await stub.ListParked(request, metadata=BOB)
        assert [
            (p.commit_position, p.attempts, p.last_error, p.replayed) for p in listed.parked
        ] == [(bad[0], 2, "still cannot parse", False)]
        replay = pb.ReplayParkedRequest(topic=f"topics/{TOPIC}", group="g", max_count=10)
        assert (await stub.ReplayParked(replay, metadata=BOB)).replayed_count == 1
        again = await c.next()
        assert (again.message.commit_position, again.attempt) == (bad[0], 1)
        c.ack(again)
        await eventually(lambda: _no_parked(stub))
        assert (await stub.ReplayParked(replay, metadata=BOB)).replayed_count == 0
        await c.close()


async def test_requests_are_checked(log: tuple[Log, InMemoryReadStore]) -> None:
    the_log, reader = log
    async with serve(the_log, reader) as stub:
        bad = stub.Consume(
            iter([pb.ConsumeRequest(topic="strategy", group="g", consumer="c")]), metadata=BOB
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await bad.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        absent = stub.Consume(
            iter([pb.ConsumeRequest(topic="topics/no.such", group="g", consumer="c")]), metadata=BOB
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await absent.read()
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as zero:
            await stub.ReplayParked(
                pb.ReplayParkedRequest(topic=f"topics/{TOPIC}", group="g"), metadata=BOB
            )
        assert zero.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        listed = await stub.ListTopics(pb.ListTopicsRequest(), metadata=BOB)
        assert [t.name for t in listed.topics] == [f"topics/{TOPIC}"]
        assert listed.topics[0].max_delivery_attempts == 2


async def _done(value: bool) -> bool:
    return value


async def _no_parked(stub: pb_grpc.TopicServiceAsyncStub) -> bool:
    listed = await stub.ListParked(
        pb.ListParkedRequest(topic=f"topics/{TOPIC}", group="g"), metadata=BOB
    )
    return not listed.parked
