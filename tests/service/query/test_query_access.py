"""PolicyAccess, the query service's check with QIS_AUTHZ=policies: deny by default with the
denial handed to the recorder, the policies read from their read model again once the
checkpoint moves (and only then), conditions on the series' classification from the catalogue,
the audit trail of everything for administrators, and listings and subscriptions that show
only what the caller may read, also when a policy changes mid-stream."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

import grpc.aio
import pytest
from google.protobuf import json_format
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import (
    AccessPolicyEntry,
    ChangeFeedEntry,
    ProjectionBatch,
    ReadModelWriter,
)
from qis_domain.access import Caller
from qis_domain.definitions import (
    AccessPolicy,
    Classification,
    ClassificationLimit,
    Permission,
)
from qis_domain.errors import PermissionDenied
from qis_domain.events import AccessDenied, PolicyRefusal
from qis_query.adapters.denials import CommandServiceRecorder
from qis_query.application.access import (
    ADMIN_OR_READ,
    EVERYTHING,
    Call,
    PolicyAccess,
)
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.subscription import FeedBatch

from tests.contract.readstore.test_readstore_contract import change, version
from tests.service.query.conftest import FEED, MAX_WAIT_S
from tests.service.query.readmodel import HEAD, OTHER, SERIES, catalogue_entry

NOW_US = 1_767_225_600_000_000
RITA = Caller("rita", frozenset({"reader"}))
ROOT = Caller("root")


class Recorder:
    def __init__(self) -> None:
        self.denials: list[tuple[str, AccessDenied]] = []

    async def record(self, denial: AccessDenied, denial_id: str) -> None:
        self.denials.append((denial_id, denial))


def grant(
    policy_id: str,
    *resources: str,
    position: int,
    permission: Permission = Permission.READ,
    **kw: object,
) -> AccessPolicyEntry:
    policy = AccessPolicy.model_validate(
        {"principals": ("role:reader",), "resources": resources, "permissions": (permission,), **kw}
    )
    return AccessPolicyEntry(
        policy_id, 1, position - HEAD, position, position, policy.model_dump(mode="json")
    )


def deleted(policy_id: str, position: int) -> AccessPolicyEntry:
    """A deleted policy's entry: kept, without a policy."""
    return AccessPolicyEntry(policy_id, 1, position - HEAD, position, position, None)


async def project(writer: ReadModelWriter, *entries: AccessPolicyEntry) -> int:
    """The entries, as the projector writes them; returns the new checkpoint."""
    checkpoint = max(e.position for e in entries)
    await writer.apply(ProjectionBatch(policies=list(entries)), checkpoint)
    return checkpoint


@dataclasses.dataclass
class World:
    writer: InMemoryReadStore
    access: PolicyAccess
    queries: QueryHandlers
    recorder: Recorder


@pytest.fixture
def world(writer: InMemoryReadStore) -> World:
    reader = InMemoryReadStore(writer.database)
    # No age: every check sees the checkpoint as it is (the service trusts one 50 ms old).
    position = ReadPosition(reader, MAX_WAIT_S, max_age_s=0)
    recorder = Recorder()
    ids = iter(range(1, 100))
    access = PolicyAccess(
        reader,
        position,
        recorder,
        admins=("user:root",),
        clock_us=lambda: NOW_US,
        new_id=lambda: f"d-{next(ids)}",
    )
    return World(writer, access, QueryHandlers(reader, position, FEED), recorder)


def asking(caller: Caller = RITA, method: str = "QueryRange") -> Call:
    return Call(caller, method, "ipv4:10.0.0.7:5000")


async def allowed(w: World, resource: str, series_id: str | None = None, **kw: object) -> bool:
    try:
        await w.access.require(asking(), resource, series_id=series_id, **kw)  # type: ignore[arg-type]
    except PermissionDenied:
        return False
    return True


async def test_deny_by_default_and_the_denial_is_handed_to_the_recorder(world: World) -> None:
    with pytest.raises(PermissionDenied) as refused:
        await world.access.require(asking(), f"series/{SERIES}", series_id=SERIES)
    assert refused.value.reason == "ACCESS_DENIED"
    assert str(refused.value) == (
        "'rita' may not read series/S1 (denial d-1): no access policy grants it"
    )
    assert world.recorder.denials == [
        (
            "d-1",
            AccessDenied(
                user_id="rita",
                roles=["reader"],
                method="QueryRange",
                permission="read",
                resource="series/S1",
                refusals=[],
                policy_version=-1,
                peer="ipv4:10.0.0.7:5000",
                denied_us=NOW_US,
            ),
        )
    ]


async def test_a_policy_allows_what_it_covers_and_a_refusal_says_why_the_others_did_not(
    world: World,
) -> None:
    await project(
        world.writer,
        grant("s1", f"series/{SERIES}", position=HEAD + 1),
        grant("writers", "series/*", position=HEAD + 2, permission=Permission.WRITE),
    )
    assert await allowed(world, f"series/{SERIES}", SERIES)
    assert await allowed(world, f"series/{SERIES}/issues", SERIES)  # a series covers its queue
    assert not await allowed(world, f"series/{OTHER}", OTHER)
    [(_, denial)] = world.recorder.denials
    assert denial.refusals == [PolicyRefusal(policy_id="writers", reason="grants write, not read")]
    assert denial.policy_version == 2  # the highest stream version of the entries


async def test_policies_are_read_again_when_the_checkpoint_moves_and_only_then(
    world: World,
) -> None:
    at = await project(world.writer, grant("s1", f"series/{SERIES}", position=HEAD + 1))
    for _ in range(3):
        assert await allowed(world, f"series/{SERIES}", SERIES)
    assert (world.access.reads, world.access.evaluations) == (1, 1)
    await project(world.writer, deleted("s1", at + 1))
    # A query at the deletion's position is decided on it (read-your-writes of a policy).
    assert not await allowed(world, f"series/{SERIES}", SERIES, min_position=at + 1)
    assert (world.access.reads, world.access.evaluations) == (2, 2)


async def test_a_classification_limit_reads_the_series_classification_from_the_catalogue(
    world: World,
) -> None:
    secret = series_pb2.Series(
        name=f"series/{SERIES}", classification=series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL
    )
    entry = dataclasses.replace(
        catalogue_entry(SERIES, HEAD + 1),
        schema_version=2,
        definition=json_format.MessageToDict(secret),
    )
    await world.writer.apply(ProjectionBatch(series=[entry]), HEAD + 1)
    limit = ClassificationLimit(max_level=Classification.INTERNAL)
    await project(world.writer, grant("all", "series/*", position=HEAD + 2, conditions=(limit,)))
    assert await allowed(world, f"series/{OTHER}", OTHER)  # no classification: INTERNAL
    assert not await allowed(world, f"series/{SERIES}", SERIES)
    [(_, denial)] = world.recorder.denials
    assert denial.classification == "confidential"
    assert denial.refusals == [
        PolicyRefusal(policy_id="all", reason="allows series classified up to internal only")
    ]


async def test_the_audit_trail_of_everything_needs_read_or_admin_on_everything(
    world: World,
) -> None:
    await project(world.writer, grant("series", "series/*", position=HEAD + 1))

    async def may_read_everything(caller: Caller) -> bool:
        try:
            await world.access.require(
                asking(caller, "ListAuditEntries"), EVERYTHING, permissions=ADMIN_OR_READ
            )
        except PermissionDenied:
            return False
        return True

    assert not await may_read_everything(RITA)  # every series is not everything
    assert await may_read_everything(ROOT)  # QIS_ADMINS
    await project(world.writer, grant("auditors", "*", position=HEAD + 2))
    assert await may_read_everything(RITA)


async def test_listings_of_several_series_show_only_what_the_caller_may_read(
    world: World,
) -> None:
    who = asking()
    await project(world.writer, grant("other", f"series/{OTHER}", position=HEAD + 1))
    gate = await world.access.gate(who)
    listed = await world.queries.list_series(10, "", 0, readable=gate)
    assert [e.series_id for e in listed.items] == [OTHER]
    # The issues are all of S1: its queue is not readable.
    assert (await world.queries.quality_issues("", "", 10, "", 0, readable=gate)).items == []
    await project(world.writer, grant("queue", f"series/{SERIES}/issues", position=HEAD + 2))
    gate = await world.access.gate(who)
    listed = await world.queries.list_series(10, "", 0, readable=gate)
    assert [e.series_id for e in listed.items] == [OTHER]  # the queue is not the series
    issues = await world.queries.quality_issues("", "", 10, "", 0, readable=gate)
    assert [i.issue_id for i in issues.items] == ["I1", "I2", "I3"]
    assert world.recorder.denials == []  # filtered, not refused


async def follow(w: World, series_ids: Sequence[str]) -> asyncio.Queue[FeedBatch | BaseException]:
    """A subscription of rita's, its batches (and how it ended) in a queue."""
    got: asyncio.Queue[FeedBatch | BaseException] = asyncio.Queue()
    admit = w.access.admit(asking(method="Subscribe"), series_ids)

    async def run() -> None:
        try:
            await w.queries.subscribe(series_ids, None, 0, got.put, admit=admit)
        except Exception as error:
            await got.put(error)

    asyncio.get_running_loop().create_task(run())
    return got


def published(series_id: str, position: int) -> ProjectionBatch:
    v = version(1_800_000_000_000_000, 1, "1.00", at=position * 1000, position=position)._replace(
        series_id=series_id
    )
    return ProjectionBatch(versions=[v], changes=[change(v, 0)])


async def test_a_subscription_to_every_series_skips_the_others(world: World) -> None:
    await project(world.writer, grant("other", f"series/{OTHER}", position=HEAD + 1))
    got = await follow(world, [])
    await world.writer.apply(published(OTHER, HEAD + 2), HEAD + 2)
    batch = await asyncio.wait_for(got.get(), 2)
    assert isinstance(batch, FeedBatch)
    # S1's seven changes (positions 10 to 30) were read before it, and left out.
    assert [(c.series_id, c.position) for c in batch.changes] == [(OTHER, HEAD + 2)]


async def test_a_subscription_to_a_series_ends_when_its_reader_loses_the_right(
    world: World,
) -> None:
    at = await project(world.writer, grant("s1", f"series/{SERIES}", position=HEAD + 1))
    got = await follow(world, [SERIES])
    first = await asyncio.wait_for(got.get(), 2)
    assert isinstance(first, FeedBatch)
    await project(world.writer, deleted("s1", at + 1))
    await world.writer.apply(published(SERIES, at + 2), at + 2)
    while isinstance(ended := await asyncio.wait_for(got.get(), 2), FeedBatch):
        changes: list[ChangeFeedEntry] = ended.changes
        assert all(c.position <= HEAD for c in changes)  # nothing after the policy went
    assert isinstance(ended, PermissionDenied)
    [(_, denial)] = world.recorder.denials
    assert (denial.method, denial.resource) == ("Subscribe", f"series/{SERIES}")


async def test_a_record_the_command_service_cannot_take_is_logged_and_the_refusal_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    denial = AccessDenied(
        user_id="rita",
        roles=[],
        method="GetSeries",
        permission="read",
        resource="series/S1",
        refusals=[],
        policy_version=-1,
        peer="p",
        denied_us=NOW_US,
    )
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:  # nothing listens there
        recorder = CommandServiceRecorder(pb_grpc.CommandServiceStub(channel), (), timeout_s=1)
        with caplog.at_level(logging.ERROR):
            await asyncio.wait_for(recorder.record(denial, "d-9"), 5)
    assert "access denial d-9 not recorded" in caplog.text
    assert '"user_id":"rita"' in caplog.text
