"""Every CommandService RPC x every kind of caller, through the real server built by its
composition root with bearer JWTs and the access policies enforced (QIS_AUTHZ unset in jwt
mode): who gets OK, who PERMISSION_DENIED and who UNAUTHENTICATED, and what each refused call
left in the event store (nothing when unauthenticated; when denied, its AccessDenied record
only)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pydantic import SecretStr
from qis.data.v1 import access_pb2, routing_pb2, series_pb2, values_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import EventStore, RecordedEvent
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_domain.access import DENIALS_PREFIX
from qis_domain.events import AccessDenied, DomainEvent, PolicyRefusal, QualityIssueDetected

from tests.support.blocking_streams import first_answer, path_of
from tests.unit.security.security_support import (
    AUDIENCE,
    HMAC_SECRET,
    ISSUER,
    good_claims,
    hmac_token,
)

Metadata = tuple[tuple[str, str], ...]
DAY_S = 86_400
DAY1_S = 1_767_225_600  # 2026-01-01T00:00:00Z
CODEC = EventCodec()


def _bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def _tampered() -> str:
    """A reader's valid token whose claims were edited to say admin, signature kept."""
    header, _, rest = hmac_token(sub="rita", roles=["reader"]).partition(".")
    _, _, signature = rest.partition(".")
    claims = json.dumps(good_claims(sub="rita", roles=["admin"])).encode()
    payload = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


CALLERS: dict[str, Callable[[], Metadata]] = {
    "anonymous": lambda: (),
    "reader": lambda: _bearer(hmac_token(sub="rita", roles=["reader"])),
    "writer": lambda: _bearer(hmac_token(sub="wendy", roles=["writer"])),
    "publisher": lambda: _bearer(hmac_token(sub="pat", roles=["publisher"])),
    "admin": lambda: _bearer(hmac_token(sub="ada", roles=["admin"])),
    "wrong-audience": lambda: _bearer(hmac_token(sub="ada", roles=["admin"], aud="other")),
    "expired": lambda: _bearer(hmac_token(sub="ada", roles=["admin"], exp=int(time.time()) - 3600)),
    "bad-signature": lambda: _bearer(
        jwt.encode(good_claims(sub="ada", roles=["admin"]), "another-secret-" * 3, "HS256")
    ),
    "tampered-claims": lambda: _bearer(_tampered()),
}
UNAUTHENTICATED = ("anonymous", "wrong-audience", "expired", "bad-signature", "tampered-claims")
# Minted at import, so valid for a day: a whole test session may pass before they are used.
SESSION_EXP = int(time.time()) + 24 * 3600
ROOT = _bearer(hmac_token(sub="root", roles=[], exp=SESSION_EXP))  # QIS_ADMINS

# The one caller kind each RPC is allowed to (the policies below); every other one is refused.
ALLOWED = {
    "DefineSeries": "admin",
    "EvolveSeriesSchema": "admin",
    "RegisterDataSource": "admin",
    "ConfigureDataSource": "admin",
    "ReportDataSourceHealth": "writer",  # `write` on the source
    "IngestPoints": "writer",
    "BulkIngest": "writer",
    "CalculateQualityMetrics": "writer",
    "PublishPoints": "publisher",
    "RestatePoint": "publisher",
    "ResolveQualityIssues": "publisher",
    "SetAccessPolicy": "admin",
    "DeleteAccessPolicy": "admin",
    "RecordAccessDenial": "admin",  # or a service of QIS_SERVICE_PRINCIPALS (below)
    "SetTopic": "admin",  # `admin` on "topics/{topic}"
    "DeleteTopic": "admin",
    # A consumer group's records: a service of QIS_SERVICE_PRINCIPALS (below) or `admin` on "*".
    "CheckpointConsumerGroup": "admin",
    "ParkTopicEntry": "admin",
    "ReplayParkedEntries": "admin",
}
SERVICE = _bearer(hmac_token(sub="svc-query", roles=[], exp=SESSION_EXP))  # QIS_SERVICE_PRINCIPALS


def _policy(
    name: str, role: str, resources: list[str], *permissions: access_pb2.Permission.ValueType
) -> access_pb2.AccessPolicy:
    return access_pb2.AccessPolicy(
        name=f"accessPolicies/{name}",
        principals=[f"role:{role}"],
        resources=resources,
        permissions=list(permissions),
    )


POLICIES = [
    _policy("readers", "reader", ["series/*", "sources/*"], access_pb2.PERMISSION_READ),
    access_pb2.AccessPolicy(
        name="accessPolicies/writers",
        principals=["role:writer"],
        resources=["series/*", "sources/feed"],
        permissions=[access_pb2.PERMISSION_WRITE],
        conditions=[
            access_pb2.AccessCondition(
                source_restriction=access_pb2.SourceRestriction(sources=["sources/feed"])
            )
        ],
    ),
    _policy("publishers", "publisher", ["series/*"], access_pb2.PERMISSION_PUBLISH),
    _policy("admins", "admin", ["*"], access_pb2.PERMISSION_ADMIN),
    _policy("doomed", "nobody", ["series/none"], access_pb2.PERMISSION_READ),
]


def _at(day: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=DAY1_S + (day - 1) * DAY_S)


def _price(text: str) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=text))


def _points(
    series: str, source: str, command_id: str, *days: tuple[int, str]
) -> pb.IngestPointsRequest:
    return pb.IngestPointsRequest(
        command_id=command_id,
        series=f"series/{series}",
        source=f"sources/{source}",
        points=[values_pb2.DataPoint(snap_time=_at(d), value=_price(v)) for d, v in days],
    )


def _series(*sources: str) -> series_pb2.Series:
    return series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=series_pb2.FREQUENCY_DAILY,
        unit="USD",
        sources=[series_pb2.SeriesSource(source=f"sources/{s}") for s in sources],
        validation=series_pb2.ValidationRules(max_jump_percent="50"),
        publication=series_pb2.PublicationPolicy(mode=series_pb2.PUBLICATION_MODE_MANUAL),
    )


@dataclass
class World:
    stub: pb_grpc.CommandServiceAsyncStub
    target: str
    store: EventStore
    issue_id: str = ""


async def events_after(store: EventStore, position: int) -> list[RecordedEvent]:
    """Every event appended after `position`, in log order."""
    head = await store.head_position()
    found: list[RecordedEvent] = []
    if head > position:
        async for event in store.subscribe(after_position=position):
            found.append(event)
            if event.position >= head:
                break
    return found


def decoded(records: list[RecordedEvent]) -> list[DomainEvent]:
    return [CODEC.decode(r).event for r in records]


@asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A command service in jwt mode with the policies above and a series PX (sources feed and
    alt, manual publication, the jump rule at 50%): day 1 published, day 2 held by a jump issue,
    day 3 a candidate."""
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with (
        command_service(store) as port,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = pb_grpc.CommandServiceStub(channel)
        yield World(stub, f"127.0.0.1:{port}", store, await seed(stub, store))


@asynccontextmanager
async def command_service(store: EventStore) -> AsyncIterator[int]:
    """The command service, built by its composition root in jwt mode (root in QIS_ADMINS,
    svc-query in QIS_SERVICE_PRINCIPALS), serving on the port yielded."""
    settings = CommandSettings(
        command_address="127.0.0.1:0",
        scheduler_enabled=False,
        auth="jwt",
        jwt_hmac_secret=SecretStr(HMAC_SECRET),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        admins="root",
        service_principals="svc-query",
    )
    app = await build(settings, store=store)
    port = await app.server.start()
    await app.server.mark_serving()
    try:
        yield port
    finally:
        await app.server.stop(0)
        await app.close()


async def seed(stub: pb_grpc.CommandServiceAsyncStub, store: EventStore) -> str:
    """The policies and the series PX (see `world`); returns the id of its jump issue."""
    for policy in POLICIES:
        await stub.SetAccessPolicy(
            pb.SetAccessPolicyRequest(
                command_id=f"set-{policy.name}", policy=policy, reason="setup"
            ),
            metadata=ROOT,
        )
    await stub.SetTopic(
        pb.SetTopicRequest(command_id="set-doomed", topic=_topic("doomed")), metadata=ROOT
    )
    admin, writer, publisher = (CALLERS[c]() for c in ("admin", "writer", "publisher"))
    for source in ("feed", "alt"):
        await stub.RegisterDataSource(
            pb.RegisterDataSourceRequest(
                command_id=f"reg-{source}",
                source_id=source,
                source=series_pb2.DataSource(provider="test"),
            ),
            metadata=admin,
        )
    await stub.DefineSeries(
        pb.DefineSeriesRequest(command_id="def-PX", series_id="PX", series=_series("feed", "alt")),
        metadata=admin,
    )
    await stub.IngestPoints(
        _points("PX", "feed", "in-1", (1, "100"), (2, "200"), (3, "205")), metadata=writer
    )
    await stub.PublishPoints(
        pb.PublishPointsRequest(command_id="pub-1", series="series/PX", snap_times=[_at(1)]),
        metadata=publisher,
    )
    issues = [
        i.issue_id
        for e in decoded(await events_after(store, 0))
        if isinstance(e, QualityIssueDetected)
        for i in e.issues
    ]
    return issues[0]


def request_of(rpc: str, caller: str, w: World) -> Any:
    """A valid request of `rpc`, its own for each caller (command ids, new resources)."""
    cid = f"{rpc}-{caller}"
    match rpc:
        case "DefineSeries":
            return pb.DefineSeriesRequest(
                command_id=cid, series_id=f"NEW-{caller}", series=_series("feed")
            )
        case "EvolveSeriesSchema":
            return pb.EvolveSeriesSchemaRequest(
                command_id=cid,
                series=series_pb2.Series(name="series/PX", description=f"by {caller}"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                reason="clearer",
            )
        case "RegisterDataSource":
            return pb.RegisterDataSourceRequest(
                command_id=cid,
                source_id=f"src-{caller}",
                source=series_pb2.DataSource(provider="x"),
            )
        case "ConfigureDataSource":
            return pb.ConfigureDataSourceRequest(
                command_id=cid,
                source=series_pb2.DataSource(name="sources/feed", description=f"by {caller}"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        case "ReportDataSourceHealth":
            return pb.ReportDataSourceHealthRequest(
                command_id=cid,
                source="sources/feed",
                status=series_pb2.DATA_SOURCE_STATUS_HEALTHY,
                start_time=_at(1),
                end_time=_at(2),
                request_count=3,
            )
        case "IngestPoints" | "BulkIngest":
            return _points("PX", "feed", cid, (10 + list(CALLERS).index(caller), "205"))
        case "CalculateQualityMetrics":
            return pb.CalculateQualityMetricsRequest(
                command_id=cid, series="series/PX", start_time=_at(1), end_time=_at(8)
            )
        case "PublishPoints":
            return pb.PublishPointsRequest(command_id=cid, series="series/PX", snap_times=[_at(3)])
        case "RestatePoint":
            return pb.RestatePointRequest(
                command_id=cid,
                series="series/PX",
                snap_time=_at(1),
                value=_price("99"),
                reason="typo",
            )
        case "ResolveQualityIssues":
            return pb.ResolveQualityIssuesRequest(
                command_id=cid,
                series="series/PX",
                issue_ids=[w.issue_id],
                resolution=pb.RESOLUTION_APPROVE,
                reason="checked with the exchange",
            )
        case "SetAccessPolicy":
            policy = _policy(f"extra-{caller}", "x", ["series/*"], access_pb2.PERMISSION_READ)
            return pb.SetAccessPolicyRequest(command_id=cid, policy=policy, reason="more")
        case "DeleteAccessPolicy":
            return pb.DeleteAccessPolicyRequest(
                command_id=cid, name="accessPolicies/doomed", reason="unused"
            )
        case "RecordAccessDenial":
            return pb.RecordAccessDenialRequest(command_id=cid, denial=_query_denial())
        case "SetTopic":
            return pb.SetTopicRequest(command_id=cid, topic=_topic(f"extra.{caller}"))
        case "DeleteTopic":
            return pb.DeleteTopicRequest(command_id=cid, name="topics/doomed")
        case "CheckpointConsumerGroup":
            return pb.CheckpointConsumerGroupRequest(
                command_id=cid, topic="topics/doomed", group=caller, position=5, index=0
            )
        case "ParkTopicEntry":
            return pb.ParkTopicEntryRequest(
                command_id=cid, topic="topics/doomed", group=caller, position=5, attempts=3
            )
        case "ReplayParkedEntries":
            return pb.ReplayParkedEntriesRequest(
                command_id=cid,
                topic="topics/doomed",
                group=caller,
                entries=[pb.TopicEntryRef(position=5)],
            )
    raise AssertionError(rpc)


def _topic(name: str) -> routing_pb2.Topic:
    return routing_pb2.Topic(
        name=f"topics/{name}", event_types=[routing_pb2.ROUTED_EVENT_TYPE_DATA_PUBLISHED]
    )


def _query_denial() -> access_pb2.AccessDenial:
    """A refusal as the query service reports it."""
    return access_pb2.AccessDenial(
        user="mallory",
        roles=["intern"],
        method="QueryRange",
        permission=access_pb2.PERMISSION_READ,
        resource="series/PX",
        refusals=[access_pb2.PolicyRefusal(policy_id="readers", reason="names role:reader")],
        policy_version=4,
        peer="ipv4:10.0.0.9:40000",
        denial_time=_at(2),
    )


async def call(w: World, rpc: str, request: Any, metadata: Metadata) -> grpc.StatusCode:
    """The call's status code; BulkIngest's is its one chunk's, or the stream's when the stream
    is refused (through the blocking client, which keeps that status: see blocking_streams)."""
    if rpc == "BulkIngest":
        ended = await first_answer(
            w.target, BULK_INGEST, request, pb.BulkIngestResponse, metadata, wait_s=30
        )
        if ended.error is not None:
            return _status_checked(ended.error)
        assert isinstance(ended.answer, pb.BulkIngestResponse), ended
        if ended.answer.HasField("error"):
            return _reason_checked(ended.answer.error)
        return grpc.StatusCode.OK
    try:
        await getattr(w.stub, rpc)(request, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return _status_checked(error)
    return grpc.StatusCode.OK


def _status_checked(error: Any) -> grpc.StatusCode:
    status = rpc_status.from_call(error)
    if status is not None:
        _reason_checked(status)
    code: grpc.StatusCode = error.code()
    return code


_CODES = {code.value[0]: code for code in grpc.StatusCode}
BULK_INGEST = path_of(pb.DESCRIPTOR.services_by_name["CommandService"], "BulkIngest")
_REASONS = {
    grpc.StatusCode.PERMISSION_DENIED: "ACCESS_DENIED",
    grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
}


def _reason_checked(status: Any) -> grpc.StatusCode:
    code = _CODES[status.code]
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details), status
    assert info.reason == _REASONS.get(code, info.reason), status
    return code


def test_the_matrix_names_every_rpc() -> None:
    service = pb.DESCRIPTOR.services_by_name["CommandService"]
    assert set(ALLOWED) == {m.name for m in service.methods}


@pytest.mark.parametrize("rpc", sorted(ALLOWED))
async def test_each_caller_gets_its_status_and_a_refusal_stores_only_its_record(
    tmp_path: Path, rpc: str
) -> None:
    allowed = ALLOWED[rpc]
    async with world(tmp_path) as w:
        # The allowed caller last: its command changes what the others' would have found.
        for caller in sorted(CALLERS, key=lambda c: c == allowed):
            head = await w.store.head_position()
            code = await call(w, rpc, request_of(rpc, caller, w), CALLERS[caller]())
            appended = await events_after(w.store, head)
            if caller in UNAUTHENTICATED:
                assert code == grpc.StatusCode.UNAUTHENTICATED, caller
                assert appended == [], caller
            elif caller != allowed:
                assert code == grpc.StatusCode.PERMISSION_DENIED, caller
                [record] = appended
                assert record.stream.startswith(DENIALS_PREFIX), record.stream
                denial = CODEC.decode(record).event
                assert isinstance(denial, AccessDenied)
                assert (denial.method, denial.roles) == (rpc, [caller])
                assert denial.peer.startswith("ipv4:127.0.0.1:")
            else:
                assert code == grpc.StatusCode.OK, caller
                assert appended, "an allowed command stores its effect"
                # No denial of the caller (recording one is RecordAccessDenial's effect).
                assert not any(
                    isinstance(e, AccessDenied) and e.user_id == "ada" for e in decoded(appended)
                )


async def test_a_writer_may_ingest_only_as_its_sources(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        head = await w.store.head_position()
        request = _points("PX", "alt", "as-alt", (20, "205"))
        assert (
            await call(w, "IngestPoints", request, CALLERS["writer"]())
            == grpc.StatusCode.PERMISSION_DENIED
        )
        [denial] = decoded(await events_after(w.store, head))
        assert isinstance(denial, AccessDenied)
        assert (denial.user_id, denial.permission, denial.resource, denial.source_id) == (
            "wendy",
            "write",
            "series/PX",
            "alt",
        )
        [refusal] = denial.refusals
        assert refusal.policy_id == "writers"
        assert "sources/alt" in refusal.reason


async def test_four_eyes_uses_the_token_not_a_header(tmp_path: Path) -> None:
    """A caller who may write and publish cannot approve its own value, whatever user an
    x-qis-user header names beside its token."""
    async with world(tmp_path) as w:
        both = _bearer(hmac_token(sub="wes", roles=["writer", "publisher"]))
        await w.stub.IngestPoints(_points("PX", "feed", "wes-in", (30, "205")), metadata=both)
        publish = pb.PublishPointsRequest(
            command_id="wes-pub", series="series/PX", snap_times=[_at(30)]
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await w.stub.PublishPoints(publish, metadata=(*both, ("x-qis-user", "pat")))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "four-eyes" in (refused.value.details() or "")
        await w.stub.PublishPoints(publish, metadata=CALLERS["publisher"]())


async def test_a_policy_change_is_in_force_at_the_next_command(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        writer = CALLERS["writer"]()
        await w.stub.IngestPoints(_points("PX", "feed", "before", (40, "205")), metadata=writer)
        await w.stub.DeleteAccessPolicy(
            pb.DeleteAccessPolicyRequest(
                command_id="rm", name="accessPolicies/writers", reason="off"
            ),
            metadata=ROOT,
        )
        request = _points("PX", "feed", "after", (41, "205"))
        assert await call(w, "IngestPoints", request, writer) == grpc.StatusCode.PERMISSION_DENIED


async def test_a_service_records_a_denial_of_its_own_once(tmp_path: Path) -> None:
    """QIS_SERVICE_PRINCIPALS may record denials (and nothing else the policies do not grant);
    the record is the refused caller's, in the stream its command id names, and a retry records
    nothing more."""
    async with world(tmp_path) as w:
        request = pb.RecordAccessDenialRequest(command_id="q-denial-1", denial=_query_denial())
        head = await w.store.head_position()
        first = await w.stub.RecordAccessDenial(request, metadata=SERVICE)
        again = await w.stub.RecordAccessDenial(request, metadata=SERVICE)
        assert (again.commit_position, again.duplicate) == (first.commit_position, True)
        [record] = [r for r in await events_after(w.store, head) if r.type == "AccessDenied"]
        assert record.stream == f"{DENIALS_PREFIX}q-denial-1"
        denial = CODEC.decode(record)
        assert denial.metadata.user_id == "svc-query"
        assert denial.event == AccessDenied(
            user_id="mallory",
            roles=["intern"],
            method="QueryRange",
            permission="read",
            resource="series/PX",
            refusals=[PolicyRefusal(policy_id="readers", reason="names role:reader")],
            policy_version=4,
            peer="ipv4:10.0.0.9:40000",
            denied_us=(DAY1_S + DAY_S) * 1_000_000,
        )
        other = pb.RecordAccessDenialRequest(command_id="q-denial-1", denial=_query_denial())
        other.denial.user = "someone-else"
        assert await call(w, "RecordAccessDenial", other, SERVICE) == grpc.StatusCode.ALREADY_EXISTS
        define = request_of("DefineSeries", "svc", w)
        assert await call(w, "DefineSeries", define, SERVICE) == grpc.StatusCode.PERMISSION_DENIED


async def test_a_service_records_the_consumer_groups_it_serves(tmp_path: Path) -> None:
    """The query service serving a consumer group records its checkpoint and parked entries
    (QIS_SERVICE_PRINCIPALS), whatever the policies say."""
    async with world(tmp_path) as w:
        for rpc in ("CheckpointConsumerGroup", "ParkTopicEntry", "ReplayParkedEntries"):
            request = request_of(rpc, "svc", w)
            assert await call(w, rpc, request, SERVICE) == grpc.StatusCode.OK, rpc
            assert await call(w, rpc, request, CALLERS["reader"]()) == (
                grpc.StatusCode.PERMISSION_DENIED
            ), rpc
