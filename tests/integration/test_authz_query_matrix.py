"""Every QueryService RPC and the Arrow Flight DoGet x every kind of caller, through the real
services built by their composition roots with bearer JWTs and the access policies enforced
(QIS_AUTHZ unset in jwt mode): who gets OK, who PERMISSION_DENIED and who UNAUTHENTICATED, and
what each call left in the event store (nothing, but for a refusal its record: an AccessDenied
the query service had the command service append, as itself). The projector runs between them,
so the denials are audit entries too, found by `action = "AccessDenied"`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pyarrow as pa
import pyarrow.flight as fl
import pytest
from pydantic import SecretStr
from qis.data.v1 import access_pb2, routing_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import topic_service_pb2 as topics_pb
from qis.data.v1 import topic_service_pb2_grpc as topics_grpc
from qis_adapters.eventstore.port import EventStore
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.access import DENIALS_PREFIX
from qis_domain.events import AccessDenied
from qis_projector.application.projector import Projector
from qis_query.bootstrap import build
from qis_query.settings import QuerySettings

from tests.integration.test_authz_command_matrix import (
    CALLERS,
    CODEC,
    ROOT,
    UNAUTHENTICATED,
    Metadata,
    _at,
    _points,
    command_service,
    events_after,
    seed,
)
from tests.support.blocking_streams import first_answer, path_of
from tests.support.servers import QueryPorts, query_ports
from tests.unit.security.security_support import AUDIENCE, HMAC_SECRET, ISSUER, hmac_token

# The one caller kind each call is allowed to (the policies of the command matrix: readers read
# series/* and sources/*, admins hold admin on *); every other one is refused.
ALLOWED = {
    "QueryRange": "reader",
    "GetValues": "reader",
    "GetPointHistory": "reader",
    "GetSeries": "reader",
    "ListAuditEntries": "reader",  # of a series; of everything: see below
    "Subscribe": "reader",  # to a series; to every series: see below
    "ListQualityIssues": "reader",  # of a series; of every series: see below
    "ListQualityMetrics": "reader",
    "GetDataSource": "reader",  # `read` on the source
    "DoGet": "reader",
}
FILTERING = {"ListSeries", "ListDataSources"}
"""Listings of several series: never refused, they show what the caller may read."""
_RESOURCES = {"ListQualityIssues": "series/PX/issues", "GetDataSource": "sources/feed"}
"""What a refused call was about, where it is not the series PX."""
QUERY_USER = "svc-query"  # in the command service's QIS_SERVICE_PRINCIPALS


@dataclass
class Cluster:
    command: pb_grpc.CommandServiceAsyncStub
    ports: QueryPorts
    events: EventStore
    head: int  # after the seed: what every request waits for (min_position)
    issue_id: str
    reader: SqliteReadStore
    settings: QuerySettings
    """The query service's: another instance may be started on `reader` with them."""


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, **query: Any) -> AsyncIterator[Cluster]:
    """The command service, the projector and the query service (both ports), in jwt mode with
    the command matrix's policies and series PX; `query`: settings of the query service."""
    events = await SqliteEventStore.open(tmp_path / "events.db")  # the command app closes it
    writer = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await writer.set_active_generation("g1")
    reader = await SqliteReadStore.open(tmp_path / "read.db")
    try:
        async with (
            command_service(events) as command_port,
            grpc.aio.insecure_channel(f"127.0.0.1:{command_port}") as channel,
            projecting(events, writer),
        ):
            command = pb_grpc.CommandServiceStub(channel)
            issue_id = await seed(command, events)
            settings = query_settings(command_port, flight=True).model_copy(update=query)
            async with query_ports(reader, settings) as ports:
                head = await events.head_position()
                yield Cluster(command, ports, events, head, issue_id, reader, settings)
    finally:
        await reader.close()
        await writer.close()


def query_settings(command_port: int, *, flight: bool) -> QuerySettings:
    token = hmac_token(sub=QUERY_USER, roles=[], exp=int(time.time()) + 3_600)
    return QuerySettings(
        auth="jwt",
        jwt_hmac_secret=SecretStr(HMAC_SECRET),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        admins="root",  # as the command service's
        query_address="127.0.0.1:0",
        flight_address="127.0.0.1:0" if flight else "",
        query_max_wait_s=5.0,
        command_address=f"127.0.0.1:{command_port}",
        query_token=SecretStr(token),
    )


@contextlib.asynccontextmanager
async def projecting(events: EventStore, writer: SqliteReadStore) -> AsyncIterator[None]:
    """The projector, running while the block runs."""
    running = asyncio.create_task(Projector(events, writer).run())
    try:
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def _flight_headers(metadata: Metadata) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in metadata]


def _do_get(location: str, ticket: bytes, headers: list[tuple[bytes, bytes]]) -> pa.Table:
    with fl.FlightClient(location) as client:
        options = fl.FlightCallOptions(headers=headers, timeout=30)
        return client.do_get(fl.Ticket(ticket), options).read_all()


_FLIGHT_CODES: dict[type[Exception], grpc.StatusCode] = {
    fl.FlightUnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    fl.FlightUnauthorizedError: grpc.StatusCode.PERMISSION_DENIED,
}


async def ask(c: Cluster, rpc: str, metadata: Metadata, **override: Any) -> grpc.StatusCode:
    """A valid call of `rpc` (read-your-writes at the seed's head), answered with its code; a
    stream is read to its first message."""
    stub, at = c.ports.stub, c.head
    if rpc == "DoGet":
        ticket = json.dumps({"series": ["series/PX"], "min_position": at}).encode()
        try:
            await asyncio.to_thread(_do_get, c.ports.flight, ticket, _flight_headers(metadata))
        except fl.FlightError as error:
            return _FLIGHT_CODES[type(error)]
        return grpc.StatusCode.OK
    series = override.get("series", "series/PX")
    request: Any
    match rpc:
        case "QueryRange":
            request = q.QueryRangeRequest(series=series, min_position=at)
        case "GetValues":
            request = q.GetValuesRequest(series=series, snap_times=[_at(1)], min_position=at)
        case "GetPointHistory":
            request = q.GetPointHistoryRequest(series=series, snap_time=_at(1), min_position=at)
        case "GetSeries":
            request = q.GetSeriesRequest(name=series, min_position=at)
        case "ListSeries":
            request = q.ListSeriesRequest(min_position=at)
        case "ListAuditEntries":
            request = q.ListAuditEntriesRequest(
                parent=override.get("parent", series),
                filter=override.get("filter", ""),
                min_position=override.get("min_position", at),
            )
        case "Subscribe":
            request = q.SubscribeRequest(series=[series], min_position=at)
        case "ListQualityIssues":
            request = q.ListQualityIssuesRequest(
                parent=override.get("parent", series), min_position=at
            )
        case "ListQualityMetrics":
            request = q.ListQualityMetricsRequest(series=series, min_position=at)
        case "GetDataSource":
            request = q.GetDataSourceRequest(name="sources/feed", min_position=at)
        case _:
            raise AssertionError(rpc)
    try:
        answer = getattr(stub, rpc)(request, metadata=metadata)
        if rpc in ("QueryRange", "Subscribe"):
            await asyncio.wait_for(anext(aiter(answer)), 10)
            answer.cancel()
        else:
            await answer
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def denials_after(events: EventStore, position: int) -> list[AccessDenied]:
    """The AccessDenied records appended after `position`; everything appended must be one of
    them or the command record of one (the query side changes nothing else)."""
    appended = await events_after(events, position)
    assert all(r.stream.startswith(DENIALS_PREFIX) for r in appended), [r.stream for r in appended]
    found = []
    for record in appended:
        decoded = CODEC.decode(record)
        if isinstance(decoded.event, AccessDenied):
            assert decoded.metadata.user_id == QUERY_USER
            found.append(decoded.event)
    return found


def test_the_matrix_names_every_rpc() -> None:
    service = q.DESCRIPTOR.services_by_name["QueryService"]
    assert set(ALLOWED) | FILTERING == {m.name for m in service.methods} | {"DoGet"}


@pytest.mark.parametrize("rpc", sorted(ALLOWED))
async def test_each_caller_gets_its_status_and_a_refusal_stores_only_its_record(
    tmp_path: Path, rpc: str
) -> None:
    allowed = ALLOWED[rpc]
    async with cluster(tmp_path) as c:
        for caller in CALLERS:
            head = await c.events.head_position()
            code = await ask(c, rpc, CALLERS[caller]())
            denials = await denials_after(c.events, head)
            if caller in UNAUTHENTICATED:
                assert code == grpc.StatusCode.UNAUTHENTICATED, caller
                assert denials == [], caller
            elif caller != allowed:
                assert code == grpc.StatusCode.PERMISSION_DENIED, caller
                [denial] = denials
                assert (denial.method, denial.roles, denial.permission) == (rpc, [caller], "read")
                assert denial.resource == _RESOURCES.get(rpc, "series/PX")
                assert denial.peer.startswith("ipv4:127.0.0.1:")
            else:
                assert code == grpc.StatusCode.OK, caller
                assert denials == [], caller


async def test_listings_of_several_series_show_only_what_the_caller_may_read(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        head = await c.events.head_position()
        request = q.ListSeriesRequest(min_position=c.head)
        for caller, expected in (("reader", ["series/PX"]), ("writer", []), ("admin", [])):
            listed = await c.ports.stub.ListSeries(request, metadata=CALLERS[caller]())
            assert [s.name for s in listed.series] == expected, caller
        every_queue = q.ListQualityIssuesRequest(parent="series/-", min_position=c.head)
        for caller, expected_ids in (("reader", [c.issue_id]), ("publisher", [])):
            issues = await c.ports.stub.ListQualityIssues(every_queue, metadata=CALLERS[caller]())
            assert [i.issue_id for i in issues.issues] == expected_ids, caller
        every_source = q.ListDataSourcesRequest(min_position=c.head)
        for caller, expected in (("reader", ["sources/alt", "sources/feed"]), ("writer", [])):
            sources = await c.ports.stub.ListDataSources(every_source, metadata=CALLERS[caller]())
            assert [s.name for s in sources.data_sources] == expected, caller
        assert await denials_after(c.events, head) == []  # filtered, not refused


async def test_the_audit_trail_of_everything_is_for_administrators_and_readers_of_everything(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        assert await ask(c, "ListAuditEntries", CALLERS["admin"](), parent="-") == (
            grpc.StatusCode.OK
        )
        head = await c.events.head_position()
        code = await ask(c, "ListAuditEntries", CALLERS["reader"](), parent="-")
        assert code == grpc.StatusCode.PERMISSION_DENIED  # every series is not everything
        [denial] = await denials_after(c.events, head)
        assert (denial.resource, denial.permission) == ("*", "read")
        assert await ask(c, "ListAuditEntries", ROOT, parent="-") == grpc.StatusCode.OK


async def test_every_denial_is_an_audit_entry_of_its_series_found_by_its_action(
    tmp_path: Path,
) -> None:
    """A refusal of each side (the command service's own, the query service's through it),
    projected, listed by ListAuditEntries with `action = "AccessDenied"`."""
    async with cluster(tmp_path) as c:
        rita = CALLERS["reader"]()
        refused = await call_command(
            c, "IngestPoints", _points("PX", "feed", "r-in", (9, "1")), rita
        )
        assert refused == grpc.StatusCode.PERMISSION_DENIED
        assert await ask(c, "QueryRange", CALLERS["writer"]()) == grpc.StatusCode.PERMISSION_DENIED
        at = await c.events.head_position()
        listed = await c.ports.stub.ListAuditEntries(
            q.ListAuditEntriesRequest(
                parent="series/PX", filter='action = "AccessDenied"', min_position=at
            ),
            metadata=rita,
        )
        assert [(e.user, e.resource, e.details["method"]) for e in listed.entries] == [
            ("rita", "series/PX", "IngestPoints"),
            ("wendy", "series/PX", "QueryRange"),
        ]
        assert [e.details["recorded_by"] for e in listed.entries[1:]] == [QUERY_USER]
        assert "recorded_by" not in listed.entries[0].details


async def call_command(c: Cluster, rpc: str, request: Any, metadata: Metadata) -> grpc.StatusCode:
    try:
        await getattr(c.command, rpc)(request, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _next(stream: Any, timeout_s: float = 10) -> q.SubscribeResponse:
    answer = await asyncio.wait_for(stream.read(), timeout_s)
    assert isinstance(answer, q.SubscribeResponse), answer  # not the end of the stream
    return answer


def _snaps(answer: q.SubscribeResponse) -> Sequence[int]:
    return [v.snap_time.seconds for v in answer.values]


async def test_a_subscriber_sees_only_what_it_may_read_also_when_a_policy_changes(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        rita = CALLERS["reader"]()
        everything = c.ports.stub.Subscribe(q.SubscribeRequest(min_position=c.head), metadata=rita)
        named = c.ports.stub.Subscribe(
            q.SubscribeRequest(series=["series/PX"], min_position=c.head), metadata=rita
        )
        assert _snaps(await _next(everything)) == [_at(1).seconds]
        assert _snaps(await _next(named)) == [_at(1).seconds]
        await c.command.DeleteAccessPolicy(
            pb.DeleteAccessPolicyRequest(
                command_id="rm-readers", name="accessPolicies/readers", reason="off"
            ),
            metadata=ROOT,
        )
        published = await c.command.PublishPoints(
            pb.PublishPointsRequest(command_id="pub-3", series="series/PX", snap_times=[_at(3)]),
            metadata=CALLERS["publisher"](),
        )
        # The named subscription ends, told why; the other one goes on without PX.
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await _next(named)
        assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "series/PX" in (ended.value.details() or "")
        with pytest.raises(TimeoutError):
            await _next(everything, 1.0)
        everything.cancel()
        assert published.commit_position > c.head


# --- TopicService ---------------------------------------------------------------------------

TOPIC_ALLOWED = {
    "Consume": "reader",  # `read` on "topics/{topic}"
    "ListParked": "reader",
    "ReplayParked": "admin",  # `admin` on the topic
}
TOPIC_FILTERING = {"ListTopics"}
"""Shows the topics the caller may read, refuses nobody."""
TOPIC = "topics/risk.recalculate"
CONSUME = path_of(topics_pb.DESCRIPTOR.services_by_name["TopicService"], "Consume")


def test_the_topic_matrix_names_every_rpc() -> None:
    service = topics_pb.DESCRIPTOR.services_by_name["TopicService"]
    assert set(TOPIC_ALLOWED) | TOPIC_FILTERING == {m.name for m in service.methods}


@dataclass
class TopicCluster:
    command: pb_grpc.CommandServiceAsyncStub
    stub: topics_grpc.TopicServiceAsyncStub
    target: str
    events: EventStore


@contextlib.asynccontextmanager
async def topic_service(tmp_path: Path) -> AsyncIterator[TopicCluster]:
    """The command service, the projector and the query service's gRPC port (TopicService),
    with the command matrix's policies, a topic, and a policy letting readers read it."""
    events = await SqliteEventStore.open(tmp_path / "events.db")  # the command app closes it
    writer = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await writer.set_active_generation("g1")
    reader = await SqliteReadStore.open(tmp_path / "read.db")
    try:
        async with (
            command_service(events) as command_port,
            grpc.aio.insecure_channel(f"127.0.0.1:{command_port}") as channel,
            projecting(events, writer),
        ):
            command = pb_grpc.CommandServiceStub(channel)
            await seed(command, events)
            topic = routing_pb2.Topic(
                name=TOPIC, event_types=[routing_pb2.ROUTED_EVENT_TYPE_DATA_PUBLISHED]
            )
            await command.SetTopic(pb.SetTopicRequest(command_id="t1", topic=topic), metadata=ROOT)
            policy = access_pb2.AccessPolicy(
                name="accessPolicies/topic-readers",
                principals=["role:reader"],
                resources=[TOPIC],
                permissions=[access_pb2.PERMISSION_READ],
            )
            done = await command.SetAccessPolicy(
                pb.SetAccessPolicyRequest(command_id="p1", policy=policy, reason="topics"),
                metadata=ROOT,
            )
            for _ in range(500):  # projected: the topic in force, the policy too
                if (await reader.checkpoint() or 0) >= done.commit_position:
                    break
                await asyncio.sleep(0.01)
            app = await build(query_settings(command_port, flight=False), reader)
            port = await app.server.start()
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as query_channel:
                    stub = topics_grpc.TopicServiceStub(query_channel)
                    yield TopicCluster(command, stub, f"127.0.0.1:{port}", events)
            finally:
                await app.server.stop(0)
                await app.close()
    finally:
        await reader.close()
        await writer.close()


async def ask_topic(
    c: TopicCluster, rpc: str, metadata: Metadata, *, refused: bool
) -> grpc.StatusCode:
    """`refused`: whether the caller is expected to be refused, which a Consume with nothing to
    deliver is given time for (the refusal and its record take longer than a moment under
    load); an admitted one waits for deliveries, so half a second of waiting says OK. Consume
    goes through the blocking client, which keeps the status of a refused stream (see
    blocking_streams)."""
    stub = c.stub
    try:
        match rpc:
            case "Consume":
                first = topics_pb.ConsumeRequest(topic=TOPIC, group="g", consumer="c")
                ended = await first_answer(
                    c.target,
                    CONSUME,
                    first,
                    topics_pb.ConsumeResponse,
                    metadata,
                    wait_s=30 if refused else 0.5,
                )
                if ended.code == grpc.StatusCode.DEADLINE_EXCEEDED and not refused:
                    return grpc.StatusCode.OK
                return ended.code
            case "ListParked":
                listing = topics_pb.ListParkedRequest(topic=TOPIC, group="g")
                await stub.ListParked(listing, metadata=metadata)
            case "ReplayParked":
                request = topics_pb.ReplayParkedRequest(topic=TOPIC, group="g", max_count=5)
                await stub.ReplayParked(request, metadata=metadata)
            case _:
                raise AssertionError(rpc)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("rpc", sorted(TOPIC_ALLOWED))
async def test_each_caller_of_a_topic_gets_its_status_and_a_refusal_its_record(
    tmp_path: Path, rpc: str
) -> None:
    allowed = TOPIC_ALLOWED[rpc]
    async with topic_service(tmp_path) as c:
        for caller in CALLERS:
            head = await c.events.head_position()
            code = await ask_topic(c, rpc, CALLERS[caller](), refused=caller != allowed)
            denials = [
                d for d in await denials_after_any(c.events, head) if isinstance(d, AccessDenied)
            ]
            if caller in UNAUTHENTICATED:
                assert code == grpc.StatusCode.UNAUTHENTICATED, caller
                assert denials == [], caller
            elif caller != allowed:
                assert code == grpc.StatusCode.PERMISSION_DENIED, caller
                [denial] = denials
                assert (denial.method, denial.roles, denial.resource) == (rpc, [caller], TOPIC)
            else:
                assert code == grpc.StatusCode.OK, caller
                assert denials == [], caller


async def test_the_topic_listing_shows_what_the_caller_may_read(tmp_path: Path) -> None:
    async with topic_service(tmp_path) as c:
        for caller, seen in (("reader", [TOPIC]), ("writer", []), ("admin", [])):
            listed = await c.stub.ListTopics(
                topics_pb.ListTopicsRequest(), metadata=CALLERS[caller]()
            )
            assert [t.name for t in listed.topics] == seen, caller


async def denials_after_any(events: EventStore, position: int) -> list[object]:
    """The events appended after `position` (a consumer group records its checkpoint too)."""
    return [CODEC.decode(r).event for r in await events_after(events, position)]
