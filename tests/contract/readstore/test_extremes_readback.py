"""Values at the edges of what the command side accepts, sent over gRPC in the per-point form and
in the columnar form (decimal strings and scaled integers), projected by the real projector into
every read-store adapter and read back through every read path: QueryRange (both views),
GetValues (both views), Arrow Flight and `qis export` (Parquet and CSV). Each accepted value
must come back as the same instant and the same decimal on every path, and no value may stop
the projector or a query."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import grpc.aio
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest
from google.protobuf import timestamp_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_cli.export import ExportFormat, ExportQuery, export
from qis_domain import bounds
from qis_projector.application.projector import Projector
from qis_query.settings import QuerySettings

from tests.contract.readstore.test_projects_every_accepted_command import _read_store, command_stub
from tests.support.servers import query_ports

USER = (("x-qis-user", "tester"),)
US = 1_000_000
DAY = 86_400 * US
ADAPTERS = ["memory", "sqlite", "ferretdb"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (snap µs, decimal text as sent): instants at the ends of time, around the epoch and at the
# edges of BSON's millisecond dates; decimals at their digit bounds, in exponent notation, signed
# zeros and zeros with large exponents.
EDGES: list[tuple[int, str]] = [
    (bounds.MIN_INSTANT_US, "-999999999999999999.999999999999999999"),
    (bounds.MIN_INSTANT_US + 1, "0.000000000000000001"),
    (bounds.MIN_INSTANT_US + 999, "-0"),
    (-DAY - 1, "0E-18"),
    (-1_001, "-0.000000000000000000"),
    (-1, "1e17"),
    (0, "9.99999999999999999E+17"),
    (1, "0E+30"),
    (999, "1E-18"),
    (1_001, "+5"),
    (DAY + 7, "1.000000000000000000E+17"),
    (bounds.MAX_INSTANT_US - 1, "999999999999999999.999999999999999999"),
    (bounds.MAX_INSTANT_US - 2, "0E+9999"),
    (bounds.MAX_INSTANT_US - 3, "-0E+9999"),
    (bounds.MAX_INSTANT_US - 4, "5."),
    (bounds.MAX_INSTANT_US - 5, "0.1E-17"),
    (bounds.MAX_INSTANT_US - 6, "000000000000000000000000000001"),
    (bounds.MAX_INSTANT_US, ".5"),
]


def _timestamp(utc_us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(utc_us, US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def _micros(ts: timestamp_pb2.Timestamp) -> int:
    return int(ts.seconds) * US + int(ts.nanos) // 1000


Values = tuple[Decimal | None, ...]
"""A price, or a bar's open, high, low, close and volume (None: absent)."""
BAR_FIELDS = ("open", "high", "low", "close", "volume")


def _number(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def _from_value(value: values_pb2.DataValue) -> Values:
    if value.WhichOneof("kind") == "bar":
        return tuple(_number(getattr(value.bar, f)) for f in BAR_FIELDS)
    return (Decimal(value.price.value),)


def _from_columns(c: q.OfficialValueColumns) -> dict[int, Values]:
    if c.WhichOneof("values") == "bars":
        columns = [list(getattr(c.bars, f).texts) for f in BAR_FIELDS]
        # an absent volume column: no bar has one
        rows = [
            tuple(_number(col[i]) if col else None for col in columns)
            for i in range(len(c.snap_time_micros))
        ]
    else:
        rows = [(Decimal(t),) for t in c.prices.texts]
    return dict(zip(c.snap_time_micros, rows, strict=True))


@dataclass(frozen=True)
class Sent:
    series_id: str
    request: pb.IngestPointsRequest
    expected: dict[int, Values]
    data_type: values_pb2.DataType.ValueType = values_pb2.DATA_TYPE_PRICE


def _series(sent: Sent) -> pb.DefineSeriesRequest:
    return pb.DefineSeriesRequest(
        command_id=f"def-{sent.series_id}",
        series_id=sent.series_id,
        series=series_pb2.Series(
            data_type=sent.data_type,
            frequency=series_pb2.FREQUENCY_DAILY,
            unit="USD",
            sources=[series_pb2.SeriesSource(source="sources/feed", priority=1)],
        ),
    )


def _points(
    series_id: str, values: Sequence[tuple[int, values_pb2.DataValue]]
) -> pb.IngestPointsRequest:
    return pb.IngestPointsRequest(
        command_id=f"ingest-{series_id}",
        series=f"series/{series_id}",
        source="sources/feed",
        points=[values_pb2.DataPoint(snap_time=_timestamp(s), value=v) for s, v in values],
    )


def per_point(series_id: str, edges: Sequence[tuple[int, str]]) -> Sent:
    request = _points(
        series_id,
        [(s, values_pb2.DataValue(price=values_pb2.Price(value=t))) for s, t in edges],
    )
    return Sent(series_id, request, {s: (Decimal(t),) for s, t in edges})


def column_texts(series_id: str, edges: Sequence[tuple[int, str]]) -> Sent:
    request = pb.IngestPointsRequest(
        command_id=f"ingest-{series_id}", series=f"series/{series_id}", source="sources/feed"
    )
    request.columns.snap_time_micros.extend(s for s, _ in edges)
    request.columns.utc_offset_minutes.extend(
        [-1439, 1439] * (len(edges) // 2) + [0] * (len(edges) % 2)
    )
    request.columns.prices.texts.extend(t for _, t in edges)
    return Sent(series_id, request, {s: (Decimal(t),) for s, t in edges})


def column_scaled(
    series_id: str, snaps: Sequence[int], unscaled: Sequence[int], scale: int
) -> Sent:
    request = pb.IngestPointsRequest(
        command_id=f"ingest-{series_id}", series=f"series/{series_id}", source="sources/feed"
    )
    request.columns.snap_time_micros.extend(snaps)
    request.columns.prices.unscaled.extend(unscaled)
    request.columns.prices.scale = scale
    expected: dict[int, Values] = {
        s: (Decimal(u).scaleb(-scale),) for s, u in zip(snaps, unscaled, strict=True)
    }
    return Sent(series_id, request, expected)


SCALED_SNAPS = [bounds.MIN_INSTANT_US, -1, 0, bounds.MAX_INSTANT_US]
SCALED_18 = [-(2**63), -1, 0, 2**63 - 1]  # |x| < 9.3 at scale 18
SCALED_0 = [-(10**18) + 1, 0, 5, 10**18 - 1]


# Bars (open, high, low, close, volume; "" absent) at the extremes, with and without volumes.
BARS: list[tuple[int, tuple[str, str, str, str, str]]] = [
    (
        bounds.MIN_INSTANT_US,
        (
            "0",
            "999999999999999999.999999999999999999",
            "-999999999999999999.999999999999999999",
            "-0",
            "",
        ),
    ),
    (-1, ("1E-18", "1e17", "0E+9999", "0.000000000000000001", "0")),
    (0, ("5", "5", "5", "5", "")),
    (bounds.MAX_INSTANT_US, ("1", "2", "0.5", "1.5", "999999999999999999.999999999999999999")),
]


def _bar_values(fields: tuple[str, ...]) -> Values:
    return tuple(_number(t) for t in fields)


def bars_per_point(series_id: str) -> Sent:
    request = _points(
        series_id,
        [
            (
                s,
                values_pb2.DataValue(
                    bar=values_pb2.OhlcBar(**dict(zip(BAR_FIELDS, f, strict=True)))
                ),
            )
            for s, f in BARS
        ],
    )
    expected = {s: _bar_values(f) for s, f in BARS}
    return Sent(series_id, request, expected, values_pb2.DATA_TYPE_OHLC_BAR)


def bars_in_columns(series_id: str, with_volume: bool) -> Sent:
    request = pb.IngestPointsRequest(
        command_id=f"ingest-{series_id}", series=f"series/{series_id}", source="sources/feed"
    )
    request.columns.snap_time_micros.extend(s for s, _ in BARS)
    names = BAR_FIELDS if with_volume else BAR_FIELDS[:4]
    for i, name in enumerate(names):
        getattr(request.columns.bars, name).texts.extend(f[i] for _, f in BARS)
    expected = {s: _bar_values(f if with_volume else (*f[:4], "")) for s, f in BARS}
    return Sent(series_id, request, expected, values_pb2.DATA_TYPE_OHLC_BAR)


async def _command(events: InMemoryEventStore, sent: Sequence[Sent]) -> None:
    async with command_stub(events) as stub:
        await stub.RegisterDataSource(
            pb.RegisterDataSourceRequest(
                command_id="reg", source_id="feed", source=series_pb2.DataSource(provider="test")
            ),
            metadata=USER,
        )
        for s in sent:
            await stub.DefineSeries(_series(s), metadata=USER)
            response = await stub.IngestPoints(s.request, metadata=USER)
            assert response.accepted == len(s.expected), s.series_id


def _flight(location: str, series_id: str) -> pa.Table:
    ticket = json.dumps({"series": [f"series/{series_id}"]}).encode()
    with fl.FlightClient(location) as client:
        options = fl.FlightCallOptions(headers=[(b"x-qis-user", b"tester")], timeout=30)
        return client.do_get(fl.Ticket(ticket), options).read_all()


async def _query_range(
    stub: q_grpc.QueryServiceAsyncStub, series_id: str, view: q.ValueView.ValueType
) -> dict[int, Values]:
    request = q.QueryRangeRequest(series=f"series/{series_id}", page_size=1_000, view=view)
    found: dict[int, Values] = {}
    async for response in stub.QueryRange(request, metadata=USER):
        if view == q.VALUE_VIEW_COLUMNS:
            found.update(_from_columns(response.columns))
        else:
            found.update((_micros(v.snap_time), _from_value(v.value)) for v in response.values)
    return found


async def _get_values(
    stub: q_grpc.QueryServiceAsyncStub,
    series_id: str,
    snaps: Sequence[int],
    view: q.ValueView.ValueType,
) -> dict[int, Values]:
    request = q.GetValuesRequest(
        series=f"series/{series_id}", snap_times=[_timestamp(s) for s in snaps], view=view
    )
    response = await stub.GetValues(request, metadata=USER)
    if view == q.VALUE_VIEW_COLUMNS:
        return _from_columns(response.columns)
    return {_micros(v.snap_time): _from_value(v.value) for v in response.values}


def _from_flight(table: pa.Table) -> dict[int, Values]:
    names = [n for n in ("value", *BAR_FIELDS) if n in table.column_names]
    snaps = table.column("snap_time").cast(pa.int64()).to_pylist()
    values = zip(*(table.column(n).to_pylist() for n in names), strict=True)
    rows = [v + (None,) * (len(BAR_FIELDS) - len(v)) if len(names) > 1 else v for v in values]
    return dict(zip(snaps, rows, strict=True))


def _export(address: str, series_id: str, out: Path, file_format: ExportFormat) -> pa.Table:
    """`qis export` of the series, read back (CSV: every column as text)."""
    export(address, ExportQuery((series_id,)), USER, out, file_format)
    if file_format is ExportFormat.PARQUET:
        return pq.read_table(out)
    table = pa_csv.read_csv(
        out,
        convert_options=pa_csv.ConvertOptions(
            strings_can_be_null=True,
            column_types=dict.fromkeys(("snap_time", "value", *BAR_FIELDS), pa.string()),
        ),
    )
    snaps = [
        (datetime.fromisoformat(t) - EPOCH) // timedelta(microseconds=1)
        for t in table.column("snap_time").to_pylist()
    ]
    names = [n for n in ("value", *BAR_FIELDS) if n in table.column_names]
    texts = {n: table.column(n).cast(pa.string()).to_pylist() for n in names}
    columns = [pa.array(snaps, pa.timestamp("us"))] + [
        pa.array([None if t is None else Decimal(t) for t in texts[n]], pa.decimal128(38, 18))
        for n in names
    ]
    return pa.table(columns, names=["snap_time", *names])


def _same(found: dict[int, Values], expected: dict[int, Values]) -> bool:
    # Decimal equality is numeric (-0 == 0, 1E+17 == 100000000000000000): the value is what
    # must survive, not its spelling.
    return found == expected


async def _scenario(
    sent: Sequence[Sent], adapter: str, directory: Path, ferretdb: str
) -> list[str]:
    """Every read path that did not answer what was sent, as 'path series: found'."""
    events = InMemoryEventStore()
    await _command(events, sent)
    head = await events.head_position()
    problems: list[str] = []
    async with _read_store(adapter, directory, ferretdb) as store:
        await asyncio.wait_for(Projector(events, store).run(until_position=head), 60)
        assert await store.checkpoint() == head
        settings_ = QuerySettings(
            auth="dev",
            query_address="127.0.0.1:0",
            flight_address="127.0.0.1:0",
            query_max_wait_s=0.2,
        )
        async with query_ports(store, settings_) as ports:
            for s in sent:
                expected = s.expected
                for view in (q.VALUE_VIEW_POINTS, q.VALUE_VIEW_COLUMNS):
                    name = q.ValueView.Name(view)
                    try:
                        got = await _query_range(ports.stub, s.series_id, view)
                        if not _same(got, expected):
                            problems.append(f"QueryRange {name} {s.series_id}: {got}")
                    except grpc.aio.AioRpcError as e:
                        problems.append(
                            f"QueryRange {name} {s.series_id}: {e.code()} {e.details()}"
                        )
                    try:
                        got = await _get_values(ports.stub, s.series_id, list(expected), view)
                        if not _same(got, expected):
                            problems.append(f"GetValues {name} {s.series_id}: {got}")
                    except grpc.aio.AioRpcError as e:
                        problems.append(f"GetValues {name} {s.series_id}: {e.code()} {e.details()}")
                try:
                    table = await asyncio.to_thread(_flight, ports.flight, s.series_id)
                    got = _from_flight(table)
                    if not _same(got, expected):
                        problems.append(f"Flight {s.series_id}: {got}")
                except pa.ArrowException as e:
                    problems.append(f"Flight {s.series_id}: {e}")
                address = ports.flight.partition("://")[2]
                for file_format in ExportFormat:
                    out = directory / f"{s.series_id}.{file_format}"
                    try:
                        table = await asyncio.to_thread(
                            _export, address, s.series_id, out, file_format
                        )
                        got = _from_flight(table)
                        if not _same(got, expected):
                            problems.append(f"export {file_format} {s.series_id}: {got}")
                    except Exception as e:
                        problems.append(f"export {file_format} {s.series_id}: {e!r}")
    return problems


@pytest.fixture
def ferretdb(request: pytest.FixtureRequest, adapter: str) -> str:
    return str(request.getfixturevalue("ferretdb_uri")) if adapter == "ferretdb" else ""


SENT = [
    per_point("POINTS", EDGES),
    column_texts("TEXTS", EDGES),
    column_scaled("SCALED18", SCALED_SNAPS, SCALED_18, 18),
    column_scaled("SCALED0", SCALED_SNAPS, SCALED_0, 0),
    bars_per_point("BARS"),
    bars_in_columns("BARCOLS", with_volume=True),
    bars_in_columns("BARCOLS_NOVOL", with_volume=False),
]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_extreme_prices_read_back_on_every_path(adapter: str, ferretdb: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        problems = asyncio.run(_scenario(SENT, adapter, Path(directory), ferretdb))
    assert problems == []
