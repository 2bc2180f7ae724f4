"""Consumer groups with the three real processes: two consumers of one group share a topic by
series, one leaves and its series move, the query process restarts and the group resumes from
its checkpoint without loss, and an entry nacked until parked is listed and comes back when
replayed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from google.protobuf import duration_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import routing_pb2
from qis.data.v1 import topic_service_pb2 as pb
from qis.data.v1 import topic_service_pb2_grpc as pb_grpc

from tests.e2e.harness import (
    DAY_US,
    QUERY,
    Clients,
    MakeCluster,
    as_user,
    ingest_request,
    price_series,
    setup_series,
    unique,
)
from tests.service.query.test_query_topic_groups import Client

TOPIC = "topics/strategy-domain.data-updated"
ADMIN = as_user("admin")
T0_US = 1_704_067_200 * 1_000_000  # 2024-01-01


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the wait")


async def publish(c: Clients, series_id: str, day: int) -> int:
    request = ingest_request(unique("ing"), series_id, "src", [(T0_US + day * DAY_US, "10")])
    return (await c.command.IngestPoints(request, metadata=ADMIN)).commit_position


class Member:
    """A consumer of group "g" that acks every delivery, but nacks those of `failing`."""

    def __init__(self, stub: pb_grpc.TopicServiceAsyncStub, name: str, failing: str = "") -> None:
        self.client = Client(stub, name, "g", TOPIC, ADMIN)
        self.failing = failing
        self.got: list[pb.ConsumeResponse] = []
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            d = await self.client.call.read()
            if not isinstance(d, pb.ConsumeResponse):
                return
            self.got.append(d)
            if d.message.series == self.failing:
                self.client.nack(d, "cannot use it")
            else:
                self.client.ack(d)

    def series(self) -> set[str]:
        return {d.message.series for d in self.got}

    def positions(self, series: str) -> list[int]:
        return [d.message.commit_position for d in self.got if d.message.series == series]

    async def leave(self) -> None:
        self.task.cancel()
        await self.client.close()


A, B = "series/EQ.A", "series/EQ.B"


async def test_a_group_shares_by_series_resumes_after_a_restart_and_replays(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    async with cluster.clients() as c:
        topic = routing_pb2.Topic(
            name=TOPIC,
            event_types=[routing_pb2.ROUTED_EVENT_TYPE_DATA_PUBLISHED],
            max_delivery_attempts=2,
            ack_timeout=duration_pb2.Duration(seconds=30),
        )
        await c.command.SetTopic(
            cmd.SetTopicRequest(command_id=unique("t"), topic=topic), metadata=ADMIN
        )
        await setup_series(c, "EQ.A", price_series([("src", 1)]))
        await setup_series(c, "EQ.B", price_series([("src", 1)]), register_sources=False)
        async with cluster.channel(QUERY) as channel:
            stub = pb_grpc.TopicServiceStub(channel)

            async def in_force() -> bool:
                return bool((await stub.ListTopics(pb.ListTopicsRequest(), metadata=ADMIN)).topics)

            await until(in_force)
            a, b = Member(stub, "a"), Member(stub, "b")
            await asyncio.sleep(1.0)  # both joined before the first entry
            for day in (1, 2):
                for series_id in ("EQ.A", "EQ.B"):
                    await publish(c, series_id, day)

            async def four() -> bool:
                return len(a.got) + len(b.got) == 4

            await until(four)
            assert not a.series() & b.series()  # each series to one consumer
            for m in (a, b):
                for s in m.series():
                    assert len(m.positions(s)) == 2
                    assert m.positions(s) == sorted(m.positions(s))
            # One leaves: its series move to the other, which now fails every EQ.A entry.
            await a.leave()
            await b.leave()
            b2 = Member(stub, "b", failing=A)
            await asyncio.sleep(1.0)
            await publish(c, "EQ.A", 3)
            await publish(c, "EQ.B", 3)

            # The new EQ.A entry gets parked; so may an older one whose ack was lost as "a"
            # left (at least once: delivered again, to "b", which fails every EQ.A entry).
            old_a = max(a.positions(A) + b.positions(A))

            async def parked_new() -> bool:
                listed = await stub.ListParked(
                    pb.ListParkedRequest(topic=TOPIC, group="g"), metadata=ADMIN
                )
                return any(p.commit_position > old_a for p in listed.parked)

            await until(parked_new)
            listed = await stub.ListParked(
                pb.ListParkedRequest(topic=TOPIC, group="g"), metadata=ADMIN
            )
            [new] = [p for p in listed.parked if p.commit_position > old_a]
            bad = new.commit_position
            assert {p.attempts for p in listed.parked} == {2}
            assert {p.last_error for p in listed.parked} == {"cannot use it"}
            assert [d.attempt for d in b2.got if d.message.commit_position == bad] == [1, 2]
            # At least once: an ack sent as "a" and "b" left may be lost, delivered again; EQ.B's
            # new entry comes after that, on its own time (EQ.A's parking says nothing of it).
            before = max(a.positions(B) + b.positions(B))

            async def b_moved_on() -> bool:
                return max(b2.positions(B), default=0) > before

            await until(b_moved_on)
            seen = {A: max(b2.positions(A)), B: max(b2.positions(B))}
            await b2.leave()
        # The query process restarts; what comes meanwhile is delivered after, nothing lost.
        cluster.stop(QUERY)
        await publish(c, "EQ.A", 4)
        await publish(c, "EQ.B", 4)
        cluster.start(QUERY)
        async with cluster.channel(QUERY) as channel:
            stub = pb_grpc.TopicServiceStub(channel)
            m = Member(stub, "c")

            async def resumed() -> bool:
                return all(max(m.positions(s), default=0) > seen[s] for s in (A, B))

            await until(resumed)
            # From the checkpoint on: nothing settled before what "b" may have left unacked.
            assert min(d.message.commit_position for d in m.got) >= min(seen.values())
            # The parked entries come back when replayed, once.
            replay = pb.ReplayParkedRequest(topic=TOPIC, group="g", max_count=10)
            parked = len(listed.parked)
            assert (await stub.ReplayParked(replay, metadata=ADMIN)).replayed_count == parked

            async def back() -> bool:
                return bad in m.positions(A)

            await until(back)
            assert [d.attempt for d in m.got if d.message.commit_position == bad] == [1]

            async def none_parked() -> bool:
                listed = await stub.ListParked(
                    pb.ListParkedRequest(topic=TOPIC, group="g"), metadata=ADMIN
                )
                return not listed.parked

            await until(none_parked)
            await m.leave()
