"""Data sources end to end in one process: the real command service (in-memory events), the
projector, and the query service's GetDataSource / ListDataSources over loopback gRPC: what a
feed reports is read back with its cost, the day's and the total usage, and the status changes
are the source's audit entries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import command_service_pb2_grpc as cmd_grpc
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis.data.v1 import series_pb2
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_projector.application.projector import Projector
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.sources import SourceQueries
from qis_query.application.subscription import FeedSettings
from qis_query.entrypoints.grpc_service import QueryService
from qis_runtime.server import QisServer, ServiceBinding

FEEDER = (("x-qis-user", "feeder"),)
DAY_S = 86_400
T0_S = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class Stack:
    command: cmd_grpc.CommandServiceAsyncStub
    query: q_grpc.QueryServiceAsyncStub
    events: InMemoryEventStore
    query_address: str


@contextlib.asynccontextmanager
async def stack(*, with_sources: bool = True) -> AsyncIterator[Stack]:
    events = InMemoryEventStore()
    settings = CommandSettings(command_address="127.0.0.1:0", scheduler_enabled=False, auth="dev")
    command_app = await build(settings, events)
    database = InMemoryReadDatabase()
    writer = InMemoryReadStore(database, "g1")
    await writer.set_active_generation("g1")
    reader = InMemoryReadStore(database)
    read_position = ReadPosition(reader, 5.0)
    handlers = QueryHandlers(reader, read_position, FeedSettings(0.01, 1.0))
    sources = SourceQueries(reader, read_position) if with_sources else None
    servicer = QueryService(handlers, sources=sources)
    query_server = QisServer(
        "127.0.0.1:0",
        [
            ServiceBinding(
                "qis.data.v1.QueryService", q_grpc.add_QueryServiceServicer_to_server, servicer
            )
        ],
    )
    projecting = asyncio.create_task(Projector(events, writer).run())
    command_port = await command_app.server.start()
    query_port = await query_server.start()
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{command_port}") as command_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{query_port}") as query_channel,
        ):
            yield Stack(
                cmd_grpc.CommandServiceStub(command_channel),
                q_grpc.QueryServiceStub(query_channel),
                events,
                f"127.0.0.1:{query_port}",
            )
    finally:
        projecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await projecting
        await query_server.stop(0)
        await command_app.server.stop(0)
        await command_app.close()


def at(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=T0_S + seconds)


async def register(s: Stack, source_id: str, provider: str, cost: str) -> int:
    reply = await s.command.RegisterDataSource(
        cmd.RegisterDataSourceRequest(
            command_id=f"reg-{source_id}",
            source_id=source_id,
            source=series_pb2.DataSource(
                provider=provider, cost_per_request=cost, settings={"coin.id": "bitcoin"}
            ),
        ),
        metadata=FEEDER,
    )
    return reply.commit_position


def report(
    source_id: str,
    start_s: int,
    status: series_pb2.DataSourceStatus.ValueType,
    requests: int,
    failures: int = 0,
    command_id: str = "",
) -> cmd.ReportDataSourceHealthRequest:
    return cmd.ReportDataSourceHealthRequest(
        command_id=command_id or f"health-{source_id}-{start_s}",
        source=f"sources/{source_id}",
        status=status,
        start_time=at(start_s),
        end_time=at(start_s + 30),
        request_count=requests,
        failure_count=failures,
        rate_limited_count=failures,
        retry_count=failures,
        latency_p50=duration_pb2.Duration(nanos=120_000_000),
        latency_p99=duration_pb2.Duration(seconds=1, nanos=500_000),
        last_success_time=at(start_s + 29),
        last_error="HTTP 429" if failures else "",
    )


HEALTHY = series_pb2.DATA_SOURCE_STATUS_HEALTHY
DEGRADED = series_pb2.DATA_SOURCE_STATUS_DEGRADED


async def test_reports_are_read_back_with_their_cost_and_usage() -> None:
    async with stack() as s:
        await register(s, "cg", "coingecko", "0.000000000000000001")
        await s.command.ReportDataSourceHealth(report("cg", 0, HEALTHY, 7), metadata=FEEDER)
        await s.command.ReportDataSourceHealth(report("cg", 30, DEGRADED, 3, 2), metadata=FEEDER)
        resent = await s.command.ReportDataSourceHealth(
            report("cg", 30, DEGRADED, 3, 2), metadata=FEEDER
        )
        assert resent.duplicate  # a resent report counts once
        # The next day: the day's usage starts again, the total goes on.
        last = await s.command.ReportDataSourceHealth(
            report("cg", DAY_S, DEGRADED, 5), metadata=FEEDER
        )
        source = await s.query.GetDataSource(
            q.GetDataSourceRequest(name="sources/cg", min_position=last.commit_position),
            metadata=FEEDER,
        )
    assert (source.name, source.provider, source.disabled) == ("sources/cg", "coingecko", False)
    assert dict(source.settings) == {"coin.id": "bitcoin"}
    health = source.health
    assert health.status == DEGRADED
    assert health.status_change_time == at(60)  # since the end of the first degraded report
    assert (health.start_time, health.end_time) == (at(DAY_S), at(DAY_S + 30))
    assert health.request_count == 5
    assert Decimal(health.cost) == Decimal("5E-18")  # exact: never a float, never rounded
    assert health.latency_p50 == duration_pb2.Duration(nanos=120_000_000)
    assert health.latency_p99 == duration_pb2.Duration(seconds=1, nanos=500_000)
    assert health.last_success_time == at(DAY_S + 29)
    day, total = source.day_usage, source.total_usage
    assert (day.day.year, day.day.month, day.day.day) == (2026, 1, 2)
    assert (day.report_count, day.request_count, Decimal(day.cost)) == (1, 5, Decimal("5E-18"))
    assert not total.HasField("day")
    assert (total.report_count, total.request_count, total.failure_count) == (3, 15, 2)
    assert (total.rate_limited_count, total.retry_count) == (2, 2)
    assert Decimal(total.cost) == Decimal("15E-18")


async def test_status_changes_are_the_source_audit_entries() -> None:
    async with stack() as s:
        await register(s, "cg", "coingecko", "0.01")
        for start_s, status in ((0, HEALTHY), (30, HEALTHY), (60, DEGRADED), (90, HEALTHY)):
            last = await s.command.ReportDataSourceHealth(
                report("cg", start_s, status, 1), metadata=FEEDER
            )
        listed = await s.query.ListAuditEntries(
            q.ListAuditEntriesRequest(
                parent="sources/cg",
                filter='action = "DataSourceStatusChanged"',
                min_position=last.commit_position,
            ),
            metadata=FEEDER,
        )
    changes = [(e.details["previous"], e.details["status"]) for e in listed.entries]
    assert changes == [(None, "healthy"), ("healthy", "degraded"), ("degraded", "healthy")]
    assert listed.entries[1].details["last_error"] == ""
    assert {e.resource for e in listed.entries} == {"sources/cg"}


async def test_listing_pages_and_filters_sources() -> None:
    async with stack() as s:
        for source_id, provider in (("a", "coingecko"), ("b", "file"), ("c", "coingecko")):
            head = await register(s, source_id, provider, "0")
        disabled = await s.command.ConfigureDataSource(
            cmd.ConfigureDataSourceRequest(
                command_id="off-c",
                source=series_pb2.DataSource(name="sources/c", disabled=True),
                update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
            ),
            metadata=FEEDER,
        )
        head = max(head, disabled.commit_position)

        async def names(
            provider: str = "", state: q.SourceState.ValueType = q.SOURCE_STATE_UNSPECIFIED
        ) -> list[str]:
            """Every page's names, paging on until the token is empty (a filtered page may
            hold fewer than page_size)."""
            listed, token = [], ""
            while True:
                page = await s.query.ListDataSources(
                    q.ListDataSourcesRequest(
                        page_size=2,
                        page_token=token,
                        min_position=head,
                        provider=provider,
                        state=state,
                    ),
                    metadata=FEEDER,
                )
                assert len(page.data_sources) <= 2
                listed += [d.name for d in page.data_sources]
                token = page.next_page_token
                if not token:
                    return listed

        assert await names() == ["sources/a", "sources/b", "sources/c"]
        assert await names(provider="coingecko") == ["sources/a", "sources/c"]
        assert await names(state=q.SOURCE_STATE_ENABLED) == ["sources/a", "sources/b"]
        assert await names(state=q.SOURCE_STATE_DISABLED) == ["sources/c"]
        assert await names(state=q.SOURCE_STATE_DISABLED, provider="file") == []
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await s.query.ListDataSources(
                q.ListDataSourcesRequest(page_token="garbage"), metadata=FEEDER
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_refusals() -> None:
    async with stack() as s:
        await register(s, "cg", "coingecko", "0.01")
        await s.command.ConfigureDataSource(
            cmd.ConfigureDataSourceRequest(
                command_id="off",
                source=series_pb2.DataSource(name="sources/cg", disabled=True),
                update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
            ),
            metadata=FEEDER,
        )
        head = await s.events.head_position()
        cases = [
            (report("cg", 0, HEALTHY, 1), grpc.StatusCode.FAILED_PRECONDITION),
            (report("absent", 0, HEALTHY, 1), grpc.StatusCode.NOT_FOUND),
            (
                report("cg", 0, series_pb2.DATA_SOURCE_STATUS_UNSPECIFIED, 1),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (report("cg", 0, HEALTHY, 1, failures=2), grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for request, code in cases:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await s.command.ReportDataSourceHealth(request, metadata=FEEDER)
            assert refused.value.code() == code, request
        assert await s.events.head_position() == head  # nothing stored
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await s.query.GetDataSource(
                q.GetDataSourceRequest(name="sources/absent"), metadata=FEEDER
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await s.query.GetDataSource(q.GetDataSourceRequest(name="series/cg"), metadata=FEEDER)
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as unknown_state:
            await s.query.ListDataSources(
                q.ListDataSourcesRequest(state=7),  # type: ignore[arg-type]
                metadata=FEEDER,
            )
        assert unknown_state.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_query_service_without_the_sources_says_so() -> None:
    async with stack(with_sources=False) as s:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await s.query.GetDataSource(q.GetDataSourceRequest(name="sources/cg"), metadata=FEEDER)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
