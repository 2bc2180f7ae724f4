"""What grpcurl and an orchestrator see: server reflection, health per service, and identity
required on every business call (but not on the infrastructure endpoints)."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q

from tests.e2e.harness import COMMAND, PROJECTOR, QUERY, Cluster, as_user, unique

pytestmark = pytest.mark.e2e

HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
STATUS = "qis.data.v1.StatusService"  # every process's health report (qis status)
TOPICS = "qis.data.v1.TopicService"


def reflected(address: str, service: str = "") -> tuple[set[str], dict[str, tuple[bool, bool]]]:
    """Services listed by reflection, and `service`'s methods (client/server streaming) as
    resolved through reflection into a descriptor pool, request and response types included."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        if not service:
            return services, {}
        descriptor = DescriptorPool(database).FindServiceByName(service)
        for m in descriptor.methods:
            assert m.input_type.full_name.startswith("qis.data.v1."), m.input_type.full_name
            assert m.output_type.fields, m.output_type.full_name
        methods = {m.name: (m.client_streaming, m.server_streaming) for m in descriptor.methods}
        return services, methods


def contract(service: ServiceDescriptor) -> dict[str, tuple[bool, bool]]:
    return {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}


COMMAND_SERVICE = cmd.DESCRIPTOR.services_by_name["CommandService"]
QUERY_SERVICE = q.DESCRIPTOR.services_by_name["QueryService"]


@pytest.mark.parametrize(
    ("role", "service", "streaming"),
    [
        (COMMAND, COMMAND_SERVICE, {"BulkIngest": (True, True), "IngestPoints": (False, False)}),
        (QUERY, QUERY_SERVICE, {"QueryRange": (False, True), "Subscribe": (False, True)}),
    ],
    ids=[COMMAND, QUERY],
)
def test_reflection_describes_the_service(
    cluster: Cluster, role: str, service: ServiceDescriptor, streaming: dict[str, tuple[bool, bool]]
) -> None:
    services, found = reflected(cluster.address(role), service.full_name)
    # The query process also serves the topics' consumer groups (docs/routing.md).
    extra = {TOPICS} if role == QUERY else set()
    assert services == {service.full_name, HEALTH, REFLECTION, STATUS, *extra}
    # Reflection serves the same contract as the protos in the repository...
    assert found == contract(service)
    # ...including the streaming shape of the calls that stream.
    assert {name: found[name] for name in streaming} == streaming


def test_projector_serves_health_reflection_and_its_report_only(cluster: Cluster) -> None:
    services, _ = reflected(cluster.address(PROJECTOR))
    assert services == {HEALTH, REFLECTION, STATUS}


@pytest.mark.parametrize(
    ("role", "services"),
    [
        (COMMAND, ["", "qis.data.v1.CommandService"]),
        (QUERY, ["", "qis.data.v1.QueryService"]),
        (PROJECTOR, [""]),
    ],
)
async def test_health_is_serving_per_service(
    cluster: Cluster, role: str, services: list[str]
) -> None:
    async with cluster.channel(role) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in services:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_projector_reports_its_lag_as_a_health_service(cluster: Cluster) -> None:
    cluster.wait_serving(PROJECTOR, "qis.data.v1.Projector", timeout=10)


@pytest.mark.parametrize(
    ("role", "component"),
    [
        (COMMAND, "event-store"),
        (PROJECTOR, "projector"),
        (PROJECTOR, "event-store"),
        (PROJECTOR, "read-store"),
        (QUERY, "read-store"),
    ],
)
async def test_each_component_has_a_health_name_an_orchestrator_can_probe(
    cluster: Cluster, role: str, component: str
) -> None:
    cluster.wait_serving(role, f"qis.component.{component}", timeout=15)


@pytest.mark.parametrize(
    "metadata", [(), (("x-qis-user", "not a user!"),)], ids=["none", "invalid"]
)
async def test_business_calls_need_an_identity(
    cluster: Cluster, metadata: tuple[tuple[str, str], ...]
) -> None:
    series_id = unique("anon")
    async with cluster.clients() as c:
        with pytest.raises(grpc.aio.AioRpcError) as command_error:
            await c.command.RegisterDataSource(
                cmd.RegisterDataSourceRequest(command_id=unique("c"), source_id=series_id),
                metadata=metadata,
            )
        assert command_error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as query_error:
            await c.query.GetSeries(
                q.GetSeriesRequest(name=f"series/{series_id}"), metadata=metadata
            )
        assert query_error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as stream_error:
            async for _ in c.query.Subscribe(q.SubscribeRequest(), metadata=metadata):
                pass
        assert stream_error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # With an identity the same call gets through to the domain (here: NOT_FOUND).
        with pytest.raises(grpc.aio.AioRpcError) as known:
            await c.query.GetSeries(
                q.GetSeriesRequest(name=f"series/{series_id}"), metadata=as_user("alice")
            )
        assert known.value.code() == grpc.StatusCode.NOT_FOUND
