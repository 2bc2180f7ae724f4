"""Every command the command side accepts projects on every read-store adapter (the bounds
table, qis_domain.bounds, proved by property): hypothesis draws requests at and around the
bounds (the first and last instant, decimals of 18 integer and 18 fractional digits, metrics
windows and override expiries at the ends of time), sends them to a real command servicer over
gRPC, and projects whatever it accepted into SQLite, FerretDB and the in-memory store. One
extreme timestamp must never stop the read side."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis.data.v1 import access_pb2, series_pb2, values_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.factory import AdministeredReadStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.mongodb import MongoReadStore
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_domain import bounds
from qis_projector.application.projector import Projector

USER = (("x-qis-user", "tester"),)
APPROVER = (("x-qis-user", "approver"),)
US = 1_000_000
ADAPTERS = ["memory", "sqlite", "ferretdb"]

instants = st.one_of(
    st.sampled_from([bounds.MIN_INSTANT_US, bounds.MAX_INSTANT_US, 0, -1, 1]),
    st.integers(bounds.MIN_INSTANT_US, bounds.MAX_INSTANT_US),
    st.integers(bounds.MAX_INSTANT_US - 400 * 86_400 * US, bounds.MAX_INSTANT_US),
    st.integers(bounds.MIN_INSTANT_US, bounds.MIN_INSTANT_US + 400 * 86_400 * US),
)
decimals = st.one_of(
    st.sampled_from(
        [
            "999999999999999999.999999999999999999",
            "-999999999999999999.999999999999999999",
            "0.000000000000000001",
            "-0.000000000000000001",
            "0",
            "1e17",
            "9.99999999999999999E+17",
        ]
    ),
    st.decimals(min_value=-(10**18) + 1, max_value=10**18 - 1, places=6, allow_nan=False).map(str),
)


# Free text at and around its bound (any characters: reasons and descriptions are stored as
# sent), and names of the longest id.
texts = st.one_of(
    st.sampled_from(["x" * bounds.MAX_TEXT_LENGTH, "é" * bounds.MAX_TEXT_LENGTH, "why"]),
    st.text(min_size=1, max_size=bounds.MAX_TEXT_LENGTH),
)
names = st.sampled_from(["p", "P" * bounds.MAX_ID_LENGTH, "a.b:c-d_e"])


@dataclass(frozen=True)
class PolicyChange:
    """An access policy set (every principal and resource of the longest name, as many as a
    policy takes) and then, with `delete`, deleted."""

    policy_id: str
    items: int
    description: str
    reason: str
    delete: bool


@dataclass(frozen=True)
class Batch:
    ingests: list[list[tuple[int, str]]]
    windows: list[tuple[int, int]]
    expiries: list[int]
    policies: list[PolicyChange] = field(default_factory=list)


batches = st.builds(
    Batch,
    ingests=st.lists(
        st.lists(st.tuples(instants, decimals), min_size=1, max_size=6), min_size=1, max_size=3
    ),
    windows=st.lists(st.tuples(instants, instants), max_size=2),
    expiries=st.lists(instants, max_size=2),
    policies=st.lists(
        st.builds(
            PolicyChange,
            policy_id=names,
            items=st.sampled_from([1, 100]),
            description=texts,
            reason=texts,
            delete=st.booleans(),
        ),
        max_size=2,
    ),
)


def _policy(change: PolicyChange) -> access_pb2.AccessPolicy:
    name = "N" * (bounds.MAX_ID_LENGTH - 1)
    return access_pb2.AccessPolicy(
        name=f"accessPolicies/{change.policy_id}",
        principals=[f"user:{name}{i % 10}" for i in range(change.items)],
        resources=[f"series/{name[:-1]}*{i % 10}" for i in range(change.items)],
        permissions=[access_pb2.PERMISSION_READ, access_pb2.PERMISSION_ADMIN],
        conditions=[
            access_pb2.AccessCondition(
                data_classification=access_pb2.ClassificationLimit(
                    max_classification=series_pb2.DATA_CLASSIFICATION_RESTRICTED
                )
            )
        ],
        description=change.description,
    )


def _timestamp(utc_us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(utc_us, US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


async def _send(stub: pb_grpc.CommandServiceAsyncStub, batch: Batch) -> list[int]:
    """Every request of `batch`; the commit positions of those accepted."""
    # (method, request, metadata), sent one after the other: grpc.aio starts a call as soon as
    # it is made, and a series must not be defined before its source exists.
    calls: list[tuple[str, object, tuple[tuple[str, str], ...]]] = [
        (
            "RegisterDataSource",
            pb.RegisterDataSourceRequest(
                command_id="reg",
                source_id="feed",
                source=series_pb2.DataSource(provider="test"),
            ),
            USER,
        ),
        (
            "DefineSeries",
            pb.DefineSeriesRequest(
                command_id="def",
                series_id="PX",
                series=series_pb2.Series(
                    data_type=values_pb2.DATA_TYPE_PRICE,
                    frequency=series_pb2.FREQUENCY_DAILY,
                    unit="USD",
                    calendar="XTKS",  # east of UTC: local days beyond year 9999 exist
                    time_zone="Asia/Tokyo",
                    sources=[series_pb2.SeriesSource(source="sources/feed", priority=1)],
                    validation=series_pb2.ValidationRules(
                        max_jump_percent="5",
                        max_spike_percent="5",
                        max_zscore="3",
                        stale_after_snaps=2,
                        check_calendar=True,
                    ),
                ),
            ),
            USER,
        ),
    ]
    for i, points in enumerate(batch.ingests):
        unique = dict(points)  # one value per snap: a duplicate instant is malformed anyway
        calls.append(
            (
                "IngestPoints",
                pb.IngestPointsRequest(
                    command_id=f"ingest-{i}",
                    series="series/PX",
                    source="sources/feed",
                    points=[
                        values_pb2.DataPoint(
                            snap_time=_timestamp(s),
                            value=values_pb2.DataValue(price=values_pb2.Price(value=v)),
                        )
                        for s, v in unique.items()
                    ],
                ),
                USER,
            )
        )
    for i, (start, end) in enumerate(batch.windows):
        calls.append(
            (
                "CalculateQualityMetrics",
                pb.CalculateQualityMetricsRequest(
                    command_id=f"metrics-{i}",
                    series="series/PX",
                    start_time=_timestamp(min(start, end)),
                    end_time=_timestamp(max(start, end)),
                ),
                USER,
            )
        )
    first_snap = batch.ingests[0][0][0]
    for i, expiry in enumerate(batch.expiries):
        calls.append(
            (
                "RestatePoint",
                pb.RestatePointRequest(
                    command_id=f"restate-{i}",
                    series="series/PX",
                    snap_time=_timestamp(first_snap),
                    value=values_pb2.DataValue(price=values_pb2.Price(value="1.5")),
                    reason="checked",
                    expire_time=_timestamp(expiry),
                ),
                APPROVER,
            )
        )
    for i, change in enumerate(batch.policies):
        calls.append(
            (
                "SetAccessPolicy",
                pb.SetAccessPolicyRequest(
                    command_id=f"policy-{i}", policy=_policy(change), reason=change.reason
                ),
                USER,
            )
        )
        if change.delete:
            delete = pb.DeleteAccessPolicyRequest(
                command_id=f"unpolicy-{i}",
                name=f"accessPolicies/{change.policy_id}",
                reason=change.reason,
            )
            calls.append(("DeleteAccessPolicy", delete, USER))
    accepted = []
    for method, request, metadata in calls:
        with contextlib.suppress(grpc.aio.AioRpcError):  # refused: stores nothing
            response = await getattr(stub, method)(request, metadata=metadata)
            accepted.append(int(response.commit_position))
    return accepted


@contextlib.asynccontextmanager
async def _read_store(
    name: str, directory: Path, ferretdb: str
) -> AsyncIterator[AdministeredReadStore]:
    store: AdministeredReadStore
    if name == "memory":
        store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    elif name == "sqlite":
        store = await SqliteReadStore.open(directory / "read.db", "g1")
    else:
        store = await MongoReadStore.open(ferretdb, f"qis_accept_{uuid.uuid4().hex[:12]}", "g1")
    await store.set_active_generation("g1")
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def command_stub(
    events: InMemoryEventStore,
) -> AsyncIterator[pb_grpc.CommandServiceAsyncStub]:
    """A command service over `events` (no scheduler), served on loopback, and a stub of it."""
    settings_ = CommandSettings(auth="dev", command_address="127.0.0.1:0", scheduler_enabled=False)
    app = await build(settings_, store=events)
    port = await app.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.CommandServiceStub(channel)
    finally:
        await app.server.stop(0)


async def _scenario(batch: Batch, adapter: str, directory: Path, ferretdb: str) -> int:
    """Sends `batch`, projects what was accepted; returns how many of its requests were."""
    events = InMemoryEventStore()
    async with command_stub(events) as stub:
        accepted = await _send(stub, batch)
    head = await events.head_position()
    assert max(accepted) == head  # nothing was stored by a refused command
    async with _read_store(adapter, directory, ferretdb) as store:
        projector = Projector(events, store)
        await asyncio.wait_for(projector.run(until_position=head), 60)
        assert await store.checkpoint() == head
    return len(accepted) - 2  # the source and the series


@pytest.fixture
def ferretdb(request: pytest.FixtureRequest, adapter: str) -> str:
    return str(request.getfixturevalue("ferretdb_uri")) if adapter == "ferretdb" else ""


@pytest.mark.parametrize("adapter", ADAPTERS)
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches)
def test_every_accepted_command_projects(adapter: str, ferretdb: str, batch: Batch) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_scenario(batch, adapter, Path(directory), ferretdb))


EXTREMES = Batch(
    ingests=[
        [
            (bounds.MIN_INSTANT_US, "-999999999999999999.999999999999999999"),
            (bounds.MIN_INSTANT_US + 86_400 * US, "0.000000000000000001"),
        ],
        [
            (bounds.MAX_INSTANT_US - 86_400 * US, "999999999999999999.999999999999999999"),
            (bounds.MAX_INSTANT_US, "1"),
        ],
    ],
    windows=[(bounds.MAX_INSTANT_US - 40 * 86_400 * US, bounds.MAX_INSTANT_US)],
    expiries=[bounds.MAX_INSTANT_US],
    policies=[
        PolicyChange("P" * bounds.MAX_ID_LENGTH, 100, "é" * bounds.MAX_TEXT_LENGTH, "x", True),
        PolicyChange("p", 100, "", "é" * bounds.MAX_TEXT_LENGTH, False),
    ],
)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_very_ends_of_the_bounds_are_accepted_and_project(adapter: str, ferretdb: str) -> None:
    """Not left to chance: every request at the ends of the bounds is accepted (all 7), and
    projects."""
    with tempfile.TemporaryDirectory() as directory:
        assert asyncio.run(_scenario(EXTREMES, adapter, Path(directory), ferretdb)) == 7
