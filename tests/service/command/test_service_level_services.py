"""Service levels end to end in one process: defined through the real command service (refused
with field violations when unfit), lateness raised by the scheduler on a fake clock, projected,
and listed by the real query service as LATE_ARRIVAL / LATE_PUBLICATION issues of points that
have no value; approving one is an audited decision that makes no value of nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import quality_pb2, series_pb2, values_pb2
from qis.data.v1 import query_service_pb2 as q
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.factory import AdministeredReadStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_command.application.scheduler import Scheduler
from qis_command.bootstrap import SERVICE_NAME
from qis_command.entrypoints.grpc_service import CommandService
from qis_projector.application.projector import Projector
from qis_query.settings import QuerySettings
from qis_runtime.server import QisServer, ServiceBinding

from tests.service.command.command_support import close
from tests.service.command.test_lateness_scheduler import at
from tests.support.servers import query_service

USER = (("x-qis-user", "ops"),)
APPROVER = (("x-qis-user", "supervisor"),)
HOUR = 3600


def span(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def series(
    level: series_pb2.ServiceLevel, frequency: int = series_pb2.FREQUENCY_DAILY
) -> series_pb2.Series:
    return series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=frequency,  # type: ignore[arg-type]
        unit="USD",
        time_zone="America/New_York",
        calendar="XNYS",
        sources=[series_pb2.SeriesSource(source="sources/bbg", priority=1)],
        service_level=level,
    )


LEVEL = series_pb2.ServiceLevel(
    first_snap=span(16 * HOUR),
    arrival=series_pb2.ServiceLevelDeadline(local_time=span(18 * HOUR)),
    publication=series_pb2.ServiceLevelDeadline(local_time=span(9 * HOUR), days_after=1),
    publication_severity=quality_pb2.SEVERITY_ERROR,
)


@dataclass
class Edge:
    stub: pb_grpc.CommandServiceAsyncStub
    store: InMemoryEventStore
    handlers: CommandHandlers
    now: list[int]


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    now = [at(date(2024, 7, 1), 9)]
    store = InMemoryEventStore(clock=lambda: now[0])
    handlers = CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars())
    servicer = CommandService(handlers, lambda: now[0])
    binding = ServiceBinding(SERVICE_NAME, pb_grpc.add_CommandServiceServicer_to_server, servicer)
    server = QisServer("127.0.0.1:0", [binding])
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: pb_grpc.CommandServiceAsyncStub = pb_grpc.CommandServiceStub(channel)
            await stub.RegisterDataSource(
                pb.RegisterDataSourceRequest(
                    command_id="reg", source_id="bbg", source=series_pb2.DataSource(provider="t")
                ),
                metadata=USER,
            )
            yield Edge(stub, store, handlers, now)
    finally:
        await server.stop(0)


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    out = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            out.update({v.field: v.description for v in request.field_violations})
    return out


async def refused(edge: Edge, level: series_pb2.ServiceLevel, frequency: int) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.stub.DefineSeries(
            pb.DefineSeriesRequest(
                command_id="bad", series_id="BAD", series=series(level, frequency)
            ),
            metadata=USER,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    return violations(caught.value)


async def test_an_unfit_service_level_is_refused_with_field_violations(edge: Edge) -> None:
    both = series_pb2.ServiceLevelDeadline(after=span(60), local_time=span(HOUR))
    found = await refused(edge, series_pb2.ServiceLevel(arrival=both), series_pb2.FREQUENCY_DAILY)
    assert list(found) == ["series.service_level.arrival"]
    too_long = series_pb2.ServiceLevelDeadline(after=span(8 * 24 * HOUR))
    late_source = series_pb2.SourceDeadline(source="sources/reuters", deadline=too_long)
    found = await refused(
        edge,
        series_pb2.ServiceLevel(source_arrivals=[late_source], weekdays=[8]),
        series_pb2.FREQUENCY_DAILY,
    )
    assert set(found) == {
        "series.service_level.weekdays[0]",
        "series.service_level.source_arrivals[0].deadline.after",
    }
    found = await refused(edge, LEVEL, series_pb2.FREQUENCY_MINUTE)
    assert set(found) == {"series.service_level.arrival", "series.service_level.publication"}
    found = await refused(edge, LEVEL, series_pb2.FREQUENCY_TICK)
    assert "series.service_level" in found
    found = await refused(
        edge,
        series_pb2.ServiceLevel(
            publication_severity=quality_pb2.SEVERITY_INFO,
            source_arrivals=[
                series_pb2.SourceDeadline(
                    source="sources/reuters",
                    deadline=series_pb2.ServiceLevelDeadline(after=span(60)),
                )
            ],
        ),
        series_pb2.FREQUENCY_DAILY,
    )
    assert set(found) == {"series.service_level.publication_severity"}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_late_points_without_values_reach_the_exception_queue(
    edge: Edge, kind: str, tmp_path: Path
) -> None:
    await edge.stub.DefineSeries(
        pb.DefineSeriesRequest(command_id="def", series_id="SPX", series=series(LEVEL)),
        metadata=USER,
    )
    scheduler = Scheduler(edge.store, edge.handlers, lambda: edge.now[0])
    codec = EventCodec()
    async for record in edge.store.subscribe(None, None):
        scheduler.observe(codec.decode(record).event, record.recorded_at_us)
        if record.position >= await edge.store.head_position():
            break
    # 1 July arrives on time; 2 July never; 3 July after its 18:00 deadline; 4 July: a holiday
    steps: list[tuple[date, int, str]] = [
        (date(2024, 7, 1), 17, "ingest 1"),
        (date(2024, 7, 2), 18, "tick"),
        (date(2024, 7, 3), 9, "tick"),
        (date(2024, 7, 3), 18, "tick"),
        (date(2024, 7, 3), 19, "ingest 3"),
        (date(2024, 7, 5), 12, "tick"),
    ]
    for day, hour, what in steps:
        edge.now[0] = at(day, hour)
        if what == "tick":
            await scheduler.fire_due()
        else:
            snap = close(date(2024, 7, int(what[-1])))
            point = values_pb2.DataPoint(
                value=values_pb2.DataValue(price=values_pb2.Price(value="5460.5"))
            )
            point.snap_time.FromMicroseconds(snap.utc_us)
            await edge.stub.IngestPoints(
                pb.IngestPointsRequest(
                    command_id=what, series="series/SPX", source="sources/bbg", points=[point]
                ),
                metadata=USER,
            )
    read: AdministeredReadStore = (
        InMemoryReadStore(InMemoryReadDatabase(), "g1")
        if kind == "memory"
        else await SqliteReadStore.open(tmp_path / "read.db", "g1")
    )
    await read.set_active_generation("g1")
    await Projector(edge.store, read).run(until_position=await edge.store.head_position())
    second = close(date(2024, 7, 2)).utc_us
    assert await read.history("SPX", second) == []  # no value, yet issues
    settings = QuerySettings(auth="dev", query_address="127.0.0.1:0")
    async with query_service(read, settings) as query:
        listed = await query.ListQualityIssues(
            q.ListQualityIssuesRequest(parent="series/SPX"), metadata=USER
        )
        found = sorted(
            (i.snap_time.ToMicroseconds(), i.rule, i.severity, i.source) for i in listed.issues
        )
        third = close(date(2024, 7, 3)).utc_us
        assert found == [
            (
                second,
                quality_pb2.QUALITY_RULE_LATE_ARRIVAL,
                quality_pb2.SEVERITY_WARNING,
                "sources/bbg",
            ),
            (second, quality_pb2.QUALITY_RULE_LATE_PUBLICATION, quality_pb2.SEVERITY_ERROR, ""),
            (
                third,
                quality_pb2.QUALITY_RULE_LATE_ARRIVAL,
                quality_pb2.SEVERITY_WARNING,
                "sources/bbg",
            ),
        ]
        evidence = json_format.MessageToDict(listed.issues[0].evidence)
        assert evidence["deadline_us"] in (at(date(2024, 7, 2), 18), at(date(2024, 7, 3), 18))
        filtered = await query.ListQualityIssues(
            q.ListQualityIssuesRequest(parent="series/SPX", filter="rule = LATE_PUBLICATION"),
            metadata=USER,
        )
        [late_publication] = filtered.issues
        # Approving the lateness is the audited decision that closes it; it makes no value.
        await edge.stub.ResolveQualityIssues(
            pb.ResolveQualityIssuesRequest(
                command_id="ok",
                series="series/SPX",
                issue_ids=[late_publication.issue_id],
                resolution=pb.RESOLUTION_APPROVE,
                reason="vendor outage, confirmed with the desk",
            ),
            metadata=APPROVER,
        )
        await Projector(edge.store, read).run(until_position=await edge.store.head_position())
        filtered = await query.ListQualityIssues(
            q.ListQualityIssuesRequest(parent="series/SPX", filter="rule = LATE_PUBLICATION"),
            metadata=USER,
        )
        assert [(i.status, i.resolved_by) for i in filtered.issues] == [
            (quality_pb2.QUALITY_ISSUE_STATUS_APPROVED, "supervisor")
        ]
    assert await read.history("SPX", second) == []
    await read.close()
