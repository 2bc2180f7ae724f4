"""The command servicer over real gRPC (in process, SQLite event store): a malformed request is
INVALID_ARGUMENT with every violation in one google.rpc.BadRequest, and appends nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_command.bootstrap import SERVICE_NAME
from qis_command.entrypoints.grpc_service import CommandService
from qis_domain import bounds
from qis_domain.events import DataSourceConfigured, DomainEvent, SchemaEvolved
from qis_runtime.server import QisServer, ServiceBinding

US = 1_000_000
SNAP_S = 1_709_326_800  # 2024-03-01T21:00:00Z
NOW_US = (SNAP_S + 86_400) * US
BEYOND_INT64_US = 2**62  # seconds: 2^62 s is 2^62 * 10^6 µs, far beyond int64
USER = (("x-qis-user", "tester"),)


@dataclass
class Edge:
    stub: pb_grpc.CommandServiceAsyncStub
    store: SqliteEventStore

    async def refused(
        self, rpc: str, request: object, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
    ) -> status_pb2.Status:
        """The status of an answer with `code`, after checking nothing was stored."""
        head = await self.store.head_position()
        call = getattr(self.stub, rpc)(request, metadata=USER)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == code, error.value.details()
        status = await rpc_status.aio.from_call(call)
        assert isinstance(status, status_pb2.Status)
        assert await self.store.head_position() == head
        return status

    async def rejected(self, rpc: str, request: object) -> list[str]:
        """The field paths of an INVALID_ARGUMENT answer, after checking nothing was stored."""
        status = await self.refused(rpc, request)
        found = []
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                found.extend(bad_request.field_violations)
        assert all(v.description for v in found)
        return [v.field for v in found]

    async def last_event(self, stream: str) -> DomainEvent:
        return EventCodec().decode((await self.store.read_stream(stream))[-1]).event


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    handlers = CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars())
    servicer = CommandService(handlers, lambda: NOW_US)
    binding = ServiceBinding(SERVICE_NAME, pb_grpc.add_CommandServiceServicer_to_server, servicer)
    server = QisServer("127.0.0.1:0", [binding])
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: pb_grpc.CommandServiceAsyncStub = pb_grpc.CommandServiceStub(channel)
            await define_px(stub)
            await stub.IngestPoints(
                pb.IngestPointsRequest(
                    command_id="ing",
                    series="series/PX",
                    source="sources/bbg",
                    points=[_point("2024-03-01T21:00:00Z")],
                ),
                metadata=USER,
            )
            yield Edge(stub, store)
    finally:
        await server.stop(0)
        await store.close()


async def define_px(stub: pb_grpc.CommandServiceAsyncStub) -> None:
    """The source `bbg` and the daily price series `PX` it feeds."""
    await stub.RegisterDataSource(
        pb.RegisterDataSourceRequest(
            command_id="reg",
            source_id="bbg",
            source=series_pb2.DataSource(provider="bloomberg"),
        ),
        metadata=USER,
    )
    await stub.DefineSeries(
        pb.DefineSeriesRequest(command_id="def", series_id="PX", series=_series()),
        metadata=USER,
    )


def _series(zscore_window: int = 0) -> series_pb2.Series:
    return series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=series_pb2.FREQUENCY_DAILY,
        unit="USD",
        sources=[series_pb2.SeriesSource(source="sources/bbg", priority=1)],
        validation=series_pb2.ValidationRules(zscore_window=zscore_window),
    )


def _point(
    snap: str | timestamp_pb2.Timestamp,
    value: str = "100.5",
    currency: str = "",
    offset: duration_pb2.Duration | None = None,
) -> values_pb2.DataPoint:
    """A price at `snap`: RFC 3339 text (its offset kept as the point's utc_offset), or a
    Timestamp as sent, with `offset`."""
    if isinstance(snap, str):
        moment = datetime.fromisoformat(snap)
        utc_offset = moment.utcoffset()
        assert utc_offset is not None
        snap, offset = _ts(0), duration_pb2.Duration(seconds=int(utc_offset.total_seconds()))
        snap.FromDatetime(moment)
    price = values_pb2.Price(value=value, currency=currency)
    return values_pb2.DataPoint(
        snap_time=snap, utc_offset=offset, value=values_pb2.DataValue(price=price)
    )


def _ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


async def test_a_metrics_window_beyond_the_instant_bounds_is_rejected(edge: Edge) -> None:
    # Accepted before, then the projector could not store the window.
    request = pb.CalculateQualityMetricsRequest(
        command_id="m",
        series="series/PX",
        start_time=_ts(BEYOND_INT64_US),
        end_time=_ts(BEYOND_INT64_US + 86_400),
    )
    assert await edge.rejected("CalculateQualityMetrics", request) == [
        "start_time.seconds",
        "end_time.seconds",
    ]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (_ts(SNAP_S, 10**9), _ts(SNAP_S + 1), ["start_time.nanos"]),
        (
            _ts(SNAP_S, -1),
            _ts(bounds.MAX_TIMESTAMP_SECONDS + 1),
            ["start_time.nanos", "end_time.seconds"],
        ),
        (_ts(bounds.MIN_TIMESTAMP_SECONDS - 1), _ts(SNAP_S), ["start_time.seconds"]),
        (_ts(SNAP_S + 60), _ts(SNAP_S), ["start_time", "end_time"]),
        (_ts(SNAP_S), _ts(SNAP_S), ["start_time", "end_time"]),
    ],
)
async def test_a_metrics_window_is_checked_at_the_edge(
    edge: Edge, start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp, expected: list[str]
) -> None:
    request = pb.CalculateQualityMetricsRequest(
        command_id="m", series="series/PX", start_time=start, end_time=end
    )
    assert await edge.rejected("CalculateQualityMetrics", request) == expected


async def test_a_restatement_expiring_beyond_the_bounds_is_rejected(edge: Edge) -> None:
    request = pb.RestatePointRequest(
        command_id="r",
        series="series/PX",
        snap_time=_ts(SNAP_S),
        value=values_pb2.DataValue(price=values_pb2.Price(value="101")),
        reason="exchange correction",
        expire_time=_ts(BEYOND_INT64_US),
    )
    assert await edge.rejected("RestatePoint", request) == ["expire_time.seconds"]


async def test_an_override_expiring_beyond_the_bounds_is_rejected(edge: Edge) -> None:
    request = pb.ResolveQualityIssuesRequest(
        command_id="o",
        series="series/PX",
        issue_ids=["i" * (bounds.MAX_ID_LENGTH + 1)],
        resolution=pb.RESOLUTION_OVERRIDE,
        reason="r" * (bounds.MAX_TEXT_LENGTH + 1),
        value=values_pb2.DataValue(price=values_pb2.Price(value="1e40", currency="usd")),
        reason_code="c" * (bounds.MAX_ID_LENGTH + 1),
        expire_time=_ts(SNAP_S, -5),
    )
    assert await edge.rejected("ResolveQualityIssues", request) == [
        "issue_ids[0]",
        "reason",
        "value.price.value",
        "value.price.currency",
        "reason_code",
        "expire_time.nanos",
    ]


async def test_every_violation_of_a_definition_comes_in_one_answer(edge: Edge) -> None:
    # An out-of-range window was a pydantic error before: UNKNOWN, and it hid the others.
    bad = _series(zscore_window=5000)
    bad.unit = "usd"
    request = pb.DefineSeriesRequest(command_id="", series_id="bad id", series=bad)
    assert await edge.rejected("DefineSeries", request) == [
        "command_id",
        "series_id",
        "series.validation.zscore_window",
        "series.unit",  # checked last: its shape depends on the data type
    ]


async def test_every_violation_of_an_evolution_comes_in_one_answer(edge: Edge) -> None:
    bad = _series(zscore_window=1)
    bad.name = "series/PX"
    request = pb.EvolveSeriesSchemaRequest(
        command_id="e", series=bad, reason="r" * (bounds.MAX_TEXT_LENGTH + 1)
    )
    assert await edge.rejected("EvolveSeriesSchema", request) == [
        "series.validation.zscore_window",
        "reason",
    ]


async def test_a_currency_error_no_longer_hides_behind_a_snap_error(edge: Edge) -> None:
    request = pb.IngestPointsRequest(
        command_id="x" * (bounds.MAX_ID_LENGTH + 1),
        series="series/PX",
        source="sources/" + "s" * (bounds.MAX_ID_LENGTH + 1),
        points=[
            _point(_ts(SNAP_S, 1)),
            _point("2024-03-05T21:00:00Z", currency="usd"),
            _point(_ts(bounds.MIN_TIMESTAMP_SECONDS - 1), value="1e18"),
        ],
    )
    assert await edge.rejected("IngestPoints", request) == [
        "command_id",
        "source",
        "points[0].snap_time",
        "points[1].value.price.currency",
        "points[2].snap_time.seconds",
        "points[2].value.price.value",
    ]


async def test_a_snap_is_required_and_whole_microseconds_everywhere(edge: Edge) -> None:
    # A snap finer than the microsecond would be truncated into another point's snap.
    ingest = pb.IngestPointsRequest(
        command_id="i",
        series="series/PX",
        source="sources/bbg",
        points=[
            values_pb2.DataPoint(value=values_pb2.DataValue(price=values_pb2.Price(value="1"))),
            _point(_ts(SNAP_S, 1_000)),
            _point(_ts(SNAP_S, 1_500)),
            _point(_ts(SNAP_S), offset=duration_pb2.Duration(seconds=3600, nanos=1)),
        ],
    )
    assert await edge.rejected("IngestPoints", ingest) == [
        "points[0].snap_time",
        "points[2].snap_time",
        "points[3].utc_offset",
    ]
    publish = pb.PublishPointsRequest(
        command_id="p", series="series/PX", snap_times=[_ts(SNAP_S), _ts(SNAP_S, 999)]
    )
    assert await edge.rejected("PublishPoints", publish) == ["snap_times[1]"]
    restate = pb.RestatePointRequest(
        command_id="r",
        series="series/PX",
        value=values_pb2.DataValue(price=values_pb2.Price(value="101")),
        reason="exchange correction",
    )
    assert await edge.rejected("RestatePoint", restate) == ["snap_time"]
    restate.snap_time.CopyFrom(_ts(SNAP_S, 10**9 - 1))
    assert await edge.rejected("RestatePoint", restate) == ["snap_time"]


async def test_publish_and_texts_are_bounded(edge: Edge) -> None:
    request = pb.PublishPointsRequest(
        command_id="p",
        series="series/PX",
        snap_times=[_ts(bounds.MAX_TIMESTAMP_SECONDS + 1)],
        comment="c" * (bounds.MAX_TEXT_LENGTH + 1),
    )
    assert await edge.rejected("PublishPoints", request) == ["snap_times[0].seconds", "comment"]


async def test_a_huge_number_of_violations_still_fits_in_the_answer(edge: Edge) -> None:
    # Every violation of 10,000 points would exceed what a client accepts in trailing metadata
    # (8 KiB by default): the client would see RESOURCE_EXHAUSTED instead.
    request = pb.IngestPointsRequest(
        command_id="many",
        series="series/PX",
        source="sources/bbg",
        points=[_point(_ts(SNAP_S + i, 1), value="NaN") for i in range(bounds.MAX_BATCH)],
    )
    found = await edge.rejected("IngestPoints", request)
    assert found[:4] == [
        "points[0].snap_time",
        "points[0].value.price.value",
        "points[1].snap_time",
        "points[1].value.price.value",
    ]
    assert found[-1] == "points"  # how many more there are, for the whole batch
    assert len(found) < 2 * bounds.MAX_BATCH


# --- updates: AIP-134 masks and the expected schema version ---


def _evolution(
    *paths: str, expected: int = 0, command_id: str = "e", **fields: object
) -> pb.EvolveSeriesSchemaRequest:
    series = series_pb2.Series(name="series/PX", **fields)  # type: ignore[arg-type]
    return pb.EvolveSeriesSchemaRequest(
        command_id=command_id,
        series=series,
        reason="why",
        update_mask=field_mask_pb2.FieldMask(paths=paths),
        expected_schema_version=expected,
    )


def _error_infos(status: status_pb2.Status) -> list[str]:
    reasons = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reasons.append(info.reason)
    return reasons


async def test_an_evolution_reads_only_the_fields_its_mask_names(edge: Edge) -> None:
    request = _evolution(
        "description",
        description="closing prices",
        precision=7,
        validation=series_pb2.ValidationRules(zscore_window=5000),  # not named: not read
    )
    await edge.stub.EvolveSeriesSchema(request, metadata=USER)
    evolved = await edge.last_event("series/PX")
    assert isinstance(evolved, SchemaEvolved)
    assert (evolved.definition.description, evolved.definition.precision) == ("closing prices", 0)
    assert evolved.schema_version == 2


async def test_a_mask_names_top_level_evolvable_fields_only(edge: Edge) -> None:
    request = _evolution(
        "description", "name", "schema_version", "publication.cutoff", "colour", "*"
    )
    assert await edge.rejected("EvolveSeriesSchema", request) == [
        f"update_mask.paths[{i}]" for i in range(1, 6)
    ]
    source = pb.ConfigureDataSourceRequest(
        command_id="c",
        source=series_pb2.DataSource(name="sources/bbg"),
        update_mask=field_mask_pb2.FieldMask(paths=["enabled", "name", "provider"]),
    )
    assert await edge.rejected("ConfigureDataSource", source) == [
        "update_mask.paths[0]",
        "update_mask.paths[1]",
        "source.provider",  # named and unset: cleared, and a provider is required
    ]


async def test_an_evolution_may_not_change_the_data_type(edge: Edge) -> None:
    # Implied by the mask: the field is set in the request.
    request = _evolution(data_type=values_pb2.DATA_TYPE_VOLUME, unit="shares")
    status = await edge.refused("EvolveSeriesSchema", request, grpc.StatusCode.FAILED_PRECONDITION)
    assert _error_infos(status) == ["IMMUTABLE_FIELD"]


async def test_an_evolution_from_another_schema_version_is_aborted(edge: Edge) -> None:
    stale = _evolution("description", expected=2, description="closing prices")
    status = await edge.refused("EvolveSeriesSchema", stale, grpc.StatusCode.ABORTED)
    assert _error_infos(status) == ["SCHEMA_VERSION_MISMATCH"]
    assert "at schema version 1, not 2" in status.message
    retry_info = error_details_pb2.RetryInfo()
    assert not any(d.Unpack(retry_info) for d in status.details)  # a blind retry cannot succeed
    current = _evolution("description", expected=1, command_id="e2", description="closing")
    assert (await edge.stub.EvolveSeriesSchema(current, metadata=USER)).commit_position > 0
    negative = _evolution("description", expected=-1, command_id="e3")
    assert await edge.rejected("EvolveSeriesSchema", negative) == ["expected_schema_version"]


async def test_a_configuration_changes_only_what_its_mask_names(edge: Edge) -> None:
    request = pb.ConfigureDataSourceRequest(
        command_id="c",
        source=series_pb2.DataSource(name="sources/bbg", disabled=True, description="ignored"),
        update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
    )
    await edge.stub.ConfigureDataSource(request, metadata=USER)
    configured = await edge.last_event("sources/bbg")
    assert isinstance(configured, DataSourceConfigured)
    assert configured.config.model_dump(include={"provider", "description", "enabled"}) == {
        "provider": "bloomberg",
        "description": "",
        "enabled": False,
    }
