"""The columnar ingest form through the command side: a PointColumns request is the same command
as the per-point request with the same points (the same domain command, fingerprint and stored
events; resending one form for the other is a duplicate), and is refused the way it is sent.

Property: random points of each columnar kind (prices, volumes, OHLC bars), sent per point and in
columns (decimal strings or unscaled integers, column by column), make equal commands with equal
fingerprints, and the in-memory command side stores the very same events for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import RecordedEvent
from qis_adapters.proto.definitions import series_from_proto
from qis_command.application.commands import DefineSeries, IngestPoints, RegisterSource
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_command.bootstrap import SERVICE_NAME
from qis_command.entrypoints.grpc_service import CommandService, ingest_command
from qis_domain import bounds
from qis_domain.command_log import COMMAND_REUSED, _columns, fingerprint
from qis_domain.commands import CommandContext
from qis_domain.definitions import DataSourceConfig
from qis_domain.errors import FieldViolation
from qis_runtime.server import QisServer, ServiceBinding

US = 1_000_000
NOW_US = 1_767_225_600 * US  # 2026-01-01T00:00:00Z
T0 = 1_709_326_800 * US  # 2024-03-01T21:00:00Z
USER = (("x-qis-user", "tester"),)
SOURCE = "bbg"
KINDS = {
    "prices": (values_pb2.DATA_TYPE_PRICE, "USD"),
    "volumes": (values_pb2.DATA_TYPE_VOLUME, "shares"),
    "bars": (values_pb2.DATA_TYPE_OHLC_BAR, "USD"),
}
BAR_FIELDS = ("open", "high", "low", "close")


# --- points both ways ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dec:
    """A decimal as unscaled × 10^-scale, and the ways to write it."""

    unscaled: int
    scale: int

    def text(self) -> str:
        digits = str(abs(self.unscaled)).rjust(self.scale + 1, "0")
        whole, places = digits[: len(digits) - self.scale], digits[len(digits) - self.scale :]
        sign = "-" if self.unscaled < 0 else ""
        return f"{sign}{whole}.{places}" if self.scale else f"{sign}{whole}"


@dataclass(frozen=True)
class Batch:
    kind: str  # "prices" | "volumes" | "bars"
    snaps: list[int]
    offsets: list[int]  # minutes: none, one or one per row
    values: dict[str, list[Dec | None]]  # per field ("value", or a bar's); None: no volume
    unscaled: dict[str, bool]  # per field: sent as unscaled integers (else as texts)

    def offset_s(self, row: int) -> int | None:
        if not self.offsets:
            return None
        return 60 * self.offsets[row if len(self.offsets) > 1 else 0]

    def per_point(self, command_id: str, series_id: str) -> pb.IngestPointsRequest:
        request = _request(command_id, series_id)
        for i, us in enumerate(self.snaps):
            point = values_pb2.DataPoint(
                snap_time=timestamp_pb2.Timestamp(seconds=us // US, nanos=us % US * 1_000),
                value=self._value(i),
            )
            if (offset := self.offset_s(i)) is not None:
                point.utc_offset.CopyFrom(duration_pb2.Duration(seconds=offset))
            request.points.append(point)
        return request

    def _value(self, i: int) -> values_pb2.DataValue:
        text = {f: "" if d[i] is None else d[i].text() for f, d in self.values.items()}  # type: ignore[union-attr]
        if self.kind == "prices":
            return values_pb2.DataValue(price=values_pb2.Price(value=text["value"]))
        if self.kind == "volumes":
            return values_pb2.DataValue(volume=values_pb2.Volume(quantity=text["value"]))
        return values_pb2.DataValue(bar=values_pb2.OhlcBar(**text))

    def columnar(self, command_id: str, series_id: str) -> pb.IngestPointsRequest:
        request = _request(command_id, series_id)
        columns = request.columns
        columns.snap_time_micros.extend(self.snaps)
        columns.utc_offset_minutes.extend(self.offsets)
        if self.kind == "bars":
            for field, decs in self.values.items():
                if any(d is not None for d in decs):
                    getattr(columns.bars, field).CopyFrom(self._column(field, decs))
        else:
            getattr(columns, self.kind).CopyFrom(self._column("value", self.values["value"]))
        return request

    def _column(self, field: str, decs: list[Dec | None]) -> values_pb2.DecimalColumn:
        if self.unscaled[field] and all(d is not None for d in decs):
            scale = max(d.scale for d in decs)  # type: ignore[union-attr]
            if all(d.scale == scale for d in decs):  # type: ignore[union-attr]
                return values_pb2.DecimalColumn(
                    unscaled=[d.unscaled for d in decs],  # type: ignore[union-attr]
                    scale=scale,
                )
        return values_pb2.DecimalColumn(texts=["" if d is None else d.text() for d in decs])


def _request(command_id: str, series_id: str) -> pb.IngestPointsRequest:
    return pb.IngestPointsRequest(
        command_id=command_id, series=f"series/{series_id}", source=f"sources/{SOURCE}"
    )


@st.composite
def decimals(draw: st.DrawFn, scale: int | None = None) -> Dec:
    """Within the bounds: |x| < 1e18, at most 18 places (an int64 unscaled)."""
    s = draw(st.integers(0, bounds.MAX_DECIMAL_PLACES)) if scale is None else scale
    limit = min(10 ** (bounds.MAX_DECIMAL_DIGITS_BEFORE_POINT + s), 2**63)
    edge = st.sampled_from([0, 1, -1, limit - 1, -limit + 1])
    return Dec(draw(st.integers(-limit + 1, limit - 1) | edge), s)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    kind = draw(st.sampled_from(sorted(KINDS)))
    n = draw(st.integers(1, 40))
    instants = st.integers(bounds.MIN_INSTANT_US, bounds.MAX_INSTANT_US)
    near = st.integers(T0, T0 + 10 * 86_400 * US)
    snaps = draw(st.lists(near | instants, min_size=n, max_size=n, unique=True))
    minute = st.integers(-bounds.MAX_UTC_OFFSET_SECONDS // 60, bounds.MAX_UTC_OFFSET_SECONDS // 60)
    offsets = draw(
        st.sampled_from([0, 1, n]).flatmap(lambda k: st.lists(minute, min_size=k, max_size=k))
    )
    fields = (*BAR_FIELDS, "volume") if kind == "bars" else ("value",)
    values: dict[str, list[Dec | None]] = {}
    for field in fields:
        one_scale = draw(st.booleans())  # a column at one scale can go unscaled
        scale = draw(st.integers(0, bounds.MAX_DECIMAL_PLACES)) if one_scale else None
        column = draw(st.lists(decimals(scale), min_size=n, max_size=n))
        values[field] = list(column)
    if kind == "bars":
        volumes = draw(st.sampled_from(["none", "all", "some"]))
        if volumes == "none":
            values["volume"] = [None] * n
        elif volumes == "some":
            keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
            values["volume"] = [
                d if k else None for d, k in zip(values["volume"], keep, strict=True)
            ]
    unscaled = {field: draw(st.booleans()) for field in fields}
    return Batch(kind, snaps, offsets, values, unscaled)


def command_of(request: pb.IngestPointsRequest) -> IngestPoints:
    """The command the servicer makes of a request."""
    violations: list[FieldViolation] = []
    command = ingest_command(request, violations)
    assert violations == [], violations
    assert command is not None
    return command


# --- the in-memory command side -----------------------------------------------------------------


@dataclass
class Side:
    store: InMemoryEventStore
    handlers: CommandHandlers

    @classmethod
    async def with_series(cls, kind: str) -> Side:
        store = InMemoryEventStore(clock=lambda: NOW_US)
        side = cls(store, CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars()))
        ctx = CommandContext("reg", "tester", NOW_US)
        await side.handlers.register_source(
            RegisterSource(SOURCE, DataSourceConfig(provider="t")), ctx
        )
        definition = series_from_proto(series(kind))
        await side.handlers.define_series(
            DefineSeries(kind.upper(), definition), CommandContext("def", "tester", NOW_US)
        )
        return side

    async def log(self) -> list[tuple[str, int, int, str, bytes, bytes]]:
        """Every event stored, without its random id."""
        head = await self.store.head_position()
        out: list[RecordedEvent] = []
        if head:
            async for event in self.store.subscribe(0):
                out.append(event)
                if len(out) == head:
                    break
        return [(e.stream, e.stream_version, e.position, e.type, e.data, e.metadata) for e in out]


def series(
    kind: str, frequency: series_pb2.Frequency.ValueType = series_pb2.FREQUENCY_DAILY
) -> series_pb2.Series:
    data_type, unit = KINDS[kind]
    return series_pb2.Series(
        data_type=data_type,
        frequency=frequency,
        unit=unit,
        sources=[series_pb2.SeriesSource(source=f"sources/{SOURCE}", priority=1)],
    )


async def stored_both_ways(batch: Batch) -> None:
    series_id = batch.kind.upper()
    per_point = command_of(batch.per_point("c-1", series_id))
    columnar = command_of(batch.columnar("c-1", series_id))
    ctx = CommandContext("c-1", "loader", NOW_US)
    sides = []
    for command in (per_point, columnar):
        side = await Side.with_series(batch.kind)
        result = await side.handlers.ingest(command, ctx)
        assert not result.duplicate
        sides.append(side)
    assert await sides[0].log() == await sides[1].log()
    # Resent in the other form, with the same id: a duplicate, nothing stored.
    before = await sides[0].log()
    again = await sides[0].handlers.ingest(columnar, ctx)
    assert again.duplicate
    assert await sides[0].log() == before


@settings(max_examples=150, deadline=None, derandomize=True)
@given(batches())
def test_the_columnar_form_is_the_same_command_as_the_per_point_form(batch: Batch) -> None:
    series_id = batch.kind.upper()
    per_point = command_of(batch.per_point("c-1", series_id))
    columnar = command_of(batch.columnar("c-1", series_id))
    assert columnar == per_point
    assert repr(columnar) == repr(per_point)
    assert fingerprint(columnar) == fingerprint(per_point)
    # and it is the columns' fingerprint that is compared: prices and volumes are written so
    assert (_columns(list(columnar.points)) is None) == (batch.kind == "bars")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(batches())
def test_the_columnar_form_stores_the_events_of_the_per_point_form(batch: Batch) -> None:
    asyncio.run(stored_both_ways(batch))


def test_a_decimal_written_with_its_scale_is_the_unscaled_integer_at_that_scale() -> None:
    assert Dec(10125, 2).text() == "101.25"
    assert Dec(-5, 3).text() == "-0.005"
    assert Dec(0, 2).text() == "0.00"
    assert Dec(7, 0).text() == "7"
    assert Dec(-(2**63) + 1, 18).text() == "-9.223372036854775807"


# --- over gRPC ----------------------------------------------------------------------------------


@dataclass
class Edge:
    stub: pb_grpc.CommandServiceAsyncStub
    store: InMemoryEventStore

    async def refused(
        self, request: pb.IngestPointsRequest, code: grpc.StatusCode
    ) -> status_pb2.Status:
        head = await self.store.head_position()
        call = self.stub.IngestPoints(request, metadata=USER)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == code, error.value.details()
        status = await rpc_status.aio.from_call(call)
        assert isinstance(status, status_pb2.Status)
        assert await self.store.head_position() == head  # nothing stored
        return status

    async def rejected(self, request: pb.IngestPointsRequest) -> list[str]:
        return fields(await self.refused(request, grpc.StatusCode.INVALID_ARGUMENT))


def fields(status: status_pb2.Status) -> list[str]:
    found: list[str] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.extend(v.field for v in bad_request.field_violations)
    return found


def reason(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    store = InMemoryEventStore(clock=lambda: NOW_US)
    handlers = CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars())
    servicer = CommandService(handlers, lambda: NOW_US)
    binding = ServiceBinding(SERVICE_NAME, pb_grpc.add_CommandServiceServicer_to_server, servicer)
    server = QisServer("127.0.0.1:0", [binding])
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: pb_grpc.CommandServiceAsyncStub = pb_grpc.CommandServiceStub(channel)
            await stub.RegisterDataSource(
                pb.RegisterDataSourceRequest(
                    command_id="reg", source_id=SOURCE, source=series_pb2.DataSource(provider="t")
                ),
                metadata=USER,
            )
            for kind in ("prices", "volumes"):
                await stub.DefineSeries(
                    pb.DefineSeriesRequest(
                        command_id=f"def-{kind}",
                        series_id=kind.upper(),
                        series=series(kind, series_pb2.FREQUENCY_SECOND),
                    ),
                    metadata=USER,
                )
            yield Edge(stub, store)
    finally:
        await server.stop(0)


def price_batch(texts: list[str], unscaled: bool = False, offsets: tuple[int, ...] = ()) -> Batch:
    decs: list[Dec | None] = []
    for text in texts:
        whole, _, places = text.partition(".")
        decs.append(Dec(int(whole + places), len(places)))
    snaps = [T0 + i * US for i in range(len(texts))]
    return Batch("prices", snaps, list(offsets), {"value": decs}, {"value": unscaled})


async def test_resending_a_command_in_the_other_form_is_a_duplicate(edge: Edge) -> None:
    batch = price_batch(["101.25", "101.50", "99.00"], unscaled=True, offsets=(-300,))
    first = await edge.stub.IngestPoints(batch.per_point("dup-1", "PRICES"), metadata=USER)
    assert (first.accepted, first.duplicate) == (3, False)
    head = await edge.store.head_position()
    again = await edge.stub.IngestPoints(batch.columnar("dup-1", "PRICES"), metadata=USER)
    assert (again.duplicate, again.commit_position, again.accepted) == (
        True,
        first.commit_position,
        3,
    )
    assert await edge.store.head_position() == head
    # And the other way round, with the decimals as texts.
    later = price_batch(["102.25", "102.50"], offsets=(60, 120))
    columnar = await edge.stub.IngestPoints(later.columnar("dup-2", "PRICES"), metadata=USER)
    assert not columnar.duplicate
    per_point = await edge.stub.IngestPoints(later.per_point("dup-2", "PRICES"), metadata=USER)
    assert (per_point.duplicate, per_point.commit_position) == (True, columnar.commit_position)


async def test_the_same_id_with_other_points_in_the_other_form_is_refused(edge: Edge) -> None:
    await edge.stub.IngestPoints(price_batch(["101.25"]).per_point("r-1", "PRICES"), metadata=USER)
    # 101.250 is another command: the places are stored as written.
    other = price_batch(["101.250"], unscaled=True).columnar("r-1", "PRICES")
    status = await edge.refused(other, grpc.StatusCode.ALREADY_EXISTS)
    assert reason(status) == COMMAND_REUSED


async def test_points_and_columns_both_or_neither_are_refused(edge: Edge) -> None:
    both = price_batch(["1"]).per_point("b", "PRICES")
    both.columns.CopyFrom(price_batch(["1"]).columnar("b", "PRICES").columns)
    assert await edge.rejected(both) == ["points", "columns"]
    assert await edge.rejected(_request("n", "PRICES")) == ["points", "columns"]


async def test_row_violations_come_in_one_answer(edge: Edge) -> None:
    request = price_batch(["1", "2", "3", "4"]).columnar("bad", "PRICES")
    request.columns.prices.texts[2] = "3.x"
    request.columns.snap_time_micros[3] = request.columns.snap_time_micros[0]
    request.columns.utc_offset_minutes.extend([0, 0, 0, 1500])
    assert await edge.rejected(request) == [
        "columns.snap_time_micros[3]",
        "columns.utc_offset_minutes[3]",
        "columns.prices.texts[2]",
    ]


async def test_a_value_column_of_another_type_than_the_series_is_named_once(edge: Edge) -> None:
    request = price_batch(["1", "2", "3"]).columnar("t", "VOLUMES")
    assert await edge.rejected(request) == ["columns.prices"]
    # Volumes are taken, in the series' unit.
    request.columns.volumes.CopyFrom(request.columns.prices)
    reply = await edge.stub.IngestPoints(request, metadata=USER)
    assert reply.accepted == 3


async def test_bulk_ingest_takes_both_forms_chunk_by_chunk(edge: Edge) -> None:
    def chunk(i: int, form: str) -> pb.IngestPointsRequest:
        texts = [f"{100 + i}.{j:02d}" for j in range(50)]
        batch = price_batch(texts, unscaled=i % 2 == 0)
        batch = Batch(
            "prices", [T0 + (i * 50 + j) * US for j in range(50)], [], batch.values, batch.unscaled
        )
        if form == "points":
            return batch.per_point(f"bulk-{i}", "PRICES")
        return batch.columnar(f"bulk-{i}", "PRICES")

    bad = chunk(3, "columns")  # texts (odd chunks)
    del bad.columns.prices.texts[-1]
    chunks = [
        chunk(0, "columns"),
        chunk(1, "points"),
        chunk(2, "columns"),
        bad,
        chunk(4, "columns"),
    ]
    chunks.append(chunk(1, "columns"))  # chunk 1 again, in columns: a duplicate

    async def requests() -> AsyncIterator[pb.IngestPointsRequest]:
        for c in chunks:
            yield c

    acks = [ack async for ack in edge.stub.BulkIngest(requests(), metadata=USER)]
    outcomes = [ack.WhichOneof("outcome") for ack in acks]
    assert outcomes == ["result", "result", "result", "error", "result", "result"]
    assert fields(acks[3].error) == ["columns.prices"]  # 49 texts for 50 snaps, named whole
    assert [a.result.accepted for a in acks if a.WhichOneof("outcome") == "result"] == [50] * 5
    assert [a.result.duplicate for a in acks] == [False, False, False, False, False, True]
