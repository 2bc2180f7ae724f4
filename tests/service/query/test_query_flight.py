"""The Arrow Flight endpoint of qis-query over an in-memory read model: its schema, exact
decimals, as-of reads equal to QueryRange's answer to the same request (decoded independently
from the gRPC messages), several series in one stream, authentication, and refusals that carry
the gRPC code and never a Python traceback.

The Flight server answers from the test's event loop, so every Flight call is made from another
thread (asyncio.to_thread)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import trustme
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import quality_pb2, series_pb2, values_pb2
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    AsOf,
    OfficialVersion,
    ProjectionBatch,
    Segment,
    SeriesEntry,
    VersionClosure,
)
from qis_domain.snaps import format_snap
from qis_query.application import segment_export
from qis_query.bootstrap import build
from qis_query.entrypoints.flight import parse_ticket
from qis_query.settings import QuerySettings

from tests.support.segmenting import SegmentingStore
from tests.support.servers import QueryPorts, query_ports

# qis_client.flight from the source tree, as tests/clients does (the .venv has the server).
CLIENT_SOURCE = Path(__file__).resolve().parents[3] / "clients" / "python"
if str(CLIENT_SOURCE) not in sys.path:
    sys.path.insert(0, str(CLIENT_SOURCE))
from qis_client import errors as client_errors  # noqa: E402
from qis_client import flight as client_flight  # noqa: E402

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
MINUTE = 60_000_000
HEAD = 30
USER = [(b"x-qis-user", b"alice")]
DECIMAL = pa.decimal128(38, 18)
INSTANT = pa.timestamp("us", tz="UTC")

# Prices at the edges of what the service accepts: 18 places, 18 integer digits, both at once.
PRICES = [
    "0.000000000000000001",
    "99999999999999999.999999999999999999",
    "999999999999999999",
    "-42.5",
    "100000000000000000",
    "101.25",
]
PX, VOL, BAR, CHAIN, ACTION, EMPTY, LONG = "PX", "VOL", "BAR", "CHAIN", "ACTION", "EMPTY", "LONG"
LONG_POINTS = 25_000


def definition(
    series_id: str, data_type: values_pb2.DataType.ValueType, unit: str = "USD"
) -> SeriesEntry:
    series = series_pb2.Series(
        name=f"series/{series_id}", data_type=data_type, unit=unit, schema_version=1
    )
    return SeriesEntry(series_id, 1, json_format.MessageToDict(series), 5_000, 5)


def version(
    series_id: str,
    snap: int,
    number: int,
    value: values_pb2.DataValue,
    *,
    at: int,
    position: int,
    flags: tuple[str, ...] = (),
    quality: float = 1.0,
) -> OfficialVersion:
    return OfficialVersion(
        series_id=series_id,
        snap_us=snap,
        version=number,
        value=value.SerializeToString(),
        quality_score=quality,
        recorded_from_us=at,
        position_from=position,
        reason="" if number == 1 else "vendor correction",
        user_id="alice",
        command_id=f"cmd-{position}",
        sources=("bbg",),
        method="priority",
        flags=flags,
    )


def price(text: str) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=text, currency="USD"))


def bar(o: str, h: str, low: str, c: str, volume: str = "") -> values_pb2.DataValue:
    return values_pb2.DataValue(
        bar=values_pb2.OhlcBar(open=o, high=h, low=low, close=c, volume=volume)
    )


def closure(old: OfficialVersion, new: OfficialVersion) -> VersionClosure:
    return VersionClosure(
        old.series_id, old.snap_us, old.version, new.recorded_from_us, new.position_from
    )


SNAPS = [T0 + i * MINUTE for i in range(len(PRICES))]
PX_V1 = [
    version(PX, s, 1, price(t), at=1_000 + i, position=10, quality=0.5 + i / 20)
    for i, (s, t) in enumerate(zip(SNAPS, PRICES, strict=True))
]
# Snap 2 restated at position 20 (time 2000), and again at 30 (time 3000).
PX_V2 = version(PX, SNAPS[2], 2, price("1.5"), at=2_000, position=20, flags=("jump",))
PX_V3 = version(PX, SNAPS[2], 3, price("1.25"), at=3_000, position=30, flags=("jump", "spike"))
VOLUMES = [
    version(
        VOL, s, 1, values_pb2.DataValue(volume=values_pb2.Volume(quantity=q)), at=1_000, position=10
    )
    for s, q in zip(SNAPS[:3], ["1000", "0.5", "123456789.123456789"], strict=True)
]
BARS = [
    version(BAR, SNAPS[0], 1, bar("10.5", "11", "10", "10.75", "1200"), at=1_000, position=10),
    version(BAR, SNAPS[1], 1, bar("10.75", "12.125", "10.5", "12"), at=1_000, position=10),
]
CHAIN_V = version(
    CHAIN,
    SNAPS[0],
    1,
    values_pb2.DataValue(options_chain=values_pb2.OptionsChain(underlying_price="100")),
    at=1_000,
    position=10,
)
LONG_V = [
    version(LONG, T0 + i * 1_000_000, 1, price(f"{i}.{i % 100:02d}"), at=1_000, position=10)
    for i in range(LONG_POINTS)
]


async def write_model(store: InMemoryReadStore) -> None:
    catalogue = [
        definition(PX, values_pb2.DATA_TYPE_PRICE),
        definition(VOL, values_pb2.DATA_TYPE_VOLUME, "shares"),
        definition(BAR, values_pb2.DATA_TYPE_OHLC_BAR),
        definition(CHAIN, values_pb2.DATA_TYPE_OPTIONS_CHAIN),
        definition(ACTION, values_pb2.DATA_TYPE_CORPORATE_ACTION),
        definition(EMPTY, values_pb2.DATA_TYPE_PRICE),
        definition(LONG, values_pb2.DATA_TYPE_PRICE),
    ]
    await store.apply(ProjectionBatch(series=catalogue), 5)
    first = [*PX_V1, *VOLUMES, *BARS, CHAIN_V, *LONG_V]
    await store.apply(ProjectionBatch(versions=first), 10)
    await store.apply(ProjectionBatch(versions=[PX_V2], closures=[closure(PX_V1[2], PX_V2)]), 20)
    await store.apply(ProjectionBatch(versions=[PX_V3], closures=[closure(PX_V2, PX_V3)]), HEAD)


@pytest.fixture
async def store() -> InMemoryReadStore:
    writer = SegmentingStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await write_model(writer)
    return InMemoryReadStore(writer.database)


def settings(**overrides: Any) -> QuerySettings:
    base: dict[str, Any] = {
        "auth": "dev",
        "query_address": "127.0.0.1:0",
        "flight_address": "127.0.0.1:0",
        "query_max_wait_s": 0.2,
    }
    return QuerySettings(**{**base, **overrides})


@pytest.fixture
async def ports(store: InMemoryReadStore) -> AsyncIterator[QueryPorts]:
    # A small per-call limit: a long series takes several QueryRange calls.
    async with query_ports(store, settings(query_max_points_per_call=10_000)) as ports:
        yield ports


# --- calling -------------------------------------------------------------------------------


def _read(
    location: str,
    ticket: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    client_options: dict[str, Any],
) -> pa.Table:
    with fl.FlightClient(location, **client_options) as client:
        options = fl.FlightCallOptions(headers=list(headers), timeout=30)
        return client.do_get(fl.Ticket(ticket), options).read_all()


async def read(
    location: str,
    ticket: dict[str, Any] | bytes,
    headers: Sequence[tuple[bytes, bytes]] = USER,
    **client_options: Any,
) -> pa.Table:
    raw = ticket if isinstance(ticket, bytes) else json.dumps(ticket).encode()
    return await asyncio.to_thread(_read, location, raw, headers, client_options)


async def refused(
    location: str,
    ticket: dict[str, Any] | bytes,
    headers: Sequence[tuple[bytes, bytes]] = USER,
    **client_options: Any,
) -> Exception:
    with pytest.raises(pa.ArrowException) as caught:
        await read(location, ticket, headers, **client_options)
    message = str(caught.value)
    assert "Traceback" not in message, message
    assert ".py" not in message, message
    error: Exception = caught.value
    return error


def ticket(*series: str, **fields: Any) -> dict[str, Any]:
    return {"series": [f"series/{s}" for s in series], **fields}


def rfc3339(us: int) -> str:
    return format_snap(us)


# --- the same request over gRPC, decoded independently ---------------------------------------

Row = tuple[str, int, tuple[Decimal | None, ...], int, float, int, int, tuple[str, ...]]
_RULE_PREFIX = "QUALITY_RULE_"


def _micros(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1_000


def _decimals(value: values_pb2.DataValue) -> tuple[Decimal | None, ...]:
    kind = value.WhichOneof("kind")
    if kind == "price":
        return (Decimal(value.price.value),)
    if kind == "volume":
        return (Decimal(value.volume.quantity),)
    b = value.bar
    return (
        *(Decimal(t) for t in (b.open, b.high, b.low, b.close)),
        Decimal(b.volume) if b.volume else None,
    )


async def grpc_rows(stub: q_grpc.QueryServiceAsyncStub, series_id: str, **fields: Any) -> list[Row]:
    """Every value of QueryRange for the same bounds, paging through calls."""
    request = q.QueryRangeRequest(series=f"series/{series_id}", page_size=1_000)
    for name in ("start_time", "end_time", "as_of_time"):
        if name in fields:
            getattr(request, name).FromJsonString(fields[name])
    if "as_of_position" in fields:
        request.as_of_position = fields["as_of_position"]
    rows: list[Row] = []
    while True:
        token = ""
        async for response in stub.QueryRange(request, metadata=(("x-qis-user", "alice"),)):
            for v in response.values:
                rows.append(
                    (
                        v.series,
                        _micros(v.snap_time),
                        _decimals(v.value),
                        v.version,
                        v.quality_score,
                        _micros(v.record_time),
                        v.record_position,
                        tuple(
                            quality_pb2.QualityRule.Name(f).removeprefix(_RULE_PREFIX).lower()
                            for f in v.flags
                        ),
                    )
                )
            token = response.next_page_token
        if not token:
            return rows
        request.page_token = token


def flight_rows(table: pa.Table, default_series: str = "") -> list[Row]:
    value_columns = [
        n for n in ("value", "open", "high", "low", "close", "volume") if n in table.column_names
    ]
    series = (
        table.column("series").to_pylist()
        if "series" in table.column_names
        else [default_series] * table.num_rows
    )
    snaps = table.column("snap_time").cast(pa.int64()).to_pylist()
    records = table.column("record_time").cast(pa.int64()).to_pylist()
    values = list(zip(*(table.column(n).to_pylist() for n in value_columns), strict=True))
    return [
        (s, snap, tuple(value), version, quality, record, position, tuple(flags))
        for s, snap, value, version, quality, record, position, flags in zip(
            series,
            snaps,
            values,
            table.column("version").to_pylist(),
            table.column("quality_score").to_pylist(),
            records,
            table.column("record_position").to_pylist(),
            table.column("flags").to_pylist(),
            strict=True,
        )
    ]


# --- the schema and exact values -------------------------------------------------------------


async def test_a_price_series_streams_in_the_documented_schema(ports: QueryPorts) -> None:
    table = await read(ports.flight, ticket(PX))
    assert table.schema.names == [
        "snap_time",
        "value",
        "unit",
        "version",
        "quality_score",
        "record_time",
        "record_position",
        "flags",
    ]
    types = [f.type for f in table.schema]
    assert types == [
        INSTANT,
        DECIMAL,
        pa.dictionary(pa.int32(), pa.string()),
        pa.int32(),
        pa.float64(),
        INSTANT,
        pa.uint64(),
        pa.list_(pa.string()),
    ]
    metadata = table.schema.metadata
    assert int(metadata[b"qis.read_position"]) >= HEAD
    assert json.loads(metadata[b"qis.series"]) == [
        {"series": "series/PX", "data_type": "price", "unit": "USD"}
    ]
    assert table.column("snap_time").cast(pa.int64()).to_pylist() == SNAPS
    assert table.column("unit").to_pylist() == ["USD"] * len(SNAPS)


async def test_each_value_keeps_its_own_unit_after_the_series_unit_changed(
    store: InMemoryReadStore,
) -> None:
    """A schema evolution moved the series from GBP to USD: older values stay in GBP, a stored
    value without a currency reads as the series' (current) unit."""
    writer = SegmentingStore(store.database, "g1")
    evolved = [definition("FX", values_pb2.DATA_TYPE_PRICE, "USD")]
    gbp = values_pb2.DataValue(price=values_pb2.Price(value="100", currency="GBP"))
    bare = values_pb2.DataValue(price=values_pb2.Price(value="102"))
    shares = values_pb2.DataValue(volume=values_pb2.Volume(quantity="5", unit="lots"))
    await writer.apply(ProjectionBatch(series=evolved), 40)
    fx = [
        version("FX", SNAPS[0], 1, gbp, at=4_000, position=41),
        version("FX", SNAPS[1], 1, price("101"), at=4_000, position=41),
        version("FX", SNAPS[2], 1, bare, at=4_000, position=41),
        version(VOL, SNAPS[3], 1, shares, at=4_000, position=41),
    ]
    await writer.apply(ProjectionBatch(versions=fx), 41)
    # One point per page: each batch has its own dictionary of units (IPC replaces it).
    async with query_ports(store, settings(query_max_points_per_call=1)) as ports:
        table = await read(ports.flight, ticket("FX"))
        volumes = await read(ports.flight, ticket(VOL))
        bars = await read(ports.flight, ticket(BAR))
    assert table.column("value").to_pylist() == [Decimal("100"), Decimal("101"), Decimal("102")]
    assert table.column("unit").to_pylist() == ["GBP", "USD", "USD"]
    assert json.loads(table.schema.metadata[b"qis.series"])[0]["unit"] == "USD"
    assert volumes.column("unit").to_pylist() == ["shares"] * len(VOLUMES) + ["lots"]
    assert "unit" not in bars.column_names  # bars: the series' unit, in the metadata only
    assert json.loads(bars.schema.metadata[b"qis.series"])[0]["unit"] == "USD"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0E+9999", Decimal(0), id="zero-huge-exponent"),
        pytest.param("0E-30", Decimal(0), id="zero-tiny-exponent"),
        pytest.param("-0E+5", Decimal(0), id="negative-zero"),
        pytest.param("1.5E-17", Decimal("0.000000000000000015"), id="18-places-in-exponent"),
        pytest.param("1.25E+17", Decimal("125000000000000000"), id="18-digits-in-exponent"),
        pytest.param("0.123456789012345678", Decimal("0.123456789012345678"), id="18-places"),
    ],
)
async def test_every_decimal_ingest_accepts_exports_exactly(
    store: InMemoryReadStore, text: str, expected: Decimal
) -> None:
    writer = SegmentingStore(store.database, "g1")
    later = version(PX, SNAPS[-1] + MINUTE, 1, price(text), at=4_000, position=40)
    await writer.apply(ProjectionBatch(versions=[later]), 40)
    async with query_ports(store, settings()) as ports:
        table = await read(ports.flight, ticket(PX))
    assert table.column("value").to_pylist()[-1] == expected


async def test_decimals_are_exact_to_18_places_and_up_to_1e18(ports: QueryPorts) -> None:
    table = await read(ports.flight, ticket(PX, as_of_position=10))
    values = table.column("value").to_pylist()
    assert values == [Decimal(t) for t in PRICES]
    # Every digit, not merely equal numbers: the 36-digit value and the 18th place survive.
    assert str(values[0]) == "1E-18"
    assert format(values[1], "f") == "99999999999999999.999999999999999999"
    assert format(values[2], "f").startswith("999999999999999999.")
    # Arrow computes on them exactly, too.
    total = pa.compute.sum(table.column("value")).as_py()
    assert total == sum(Decimal(t) for t in PRICES)


async def test_restatements_carry_their_version_record_and_flags(ports: QueryPorts) -> None:
    table = await read(ports.flight, ticket(PX))
    row = table.slice(2, 1).to_pylist()[0]
    assert (row["version"], row["value"], row["flags"]) == (3, Decimal("1.25"), ["jump", "spike"])
    assert row["record_position"] == 30
    assert table.column("flags").to_pylist()[0] == []


async def test_volumes_and_bars_have_their_value_columns(ports: QueryPorts) -> None:
    volumes = await read(ports.flight, ticket(VOL))
    assert volumes.column("value").to_pylist() == [
        Decimal("1000"),
        Decimal("0.5"),
        Decimal("123456789.123456789"),
    ]
    assert json.loads(volumes.schema.metadata[b"qis.series"])[0]["unit"] == "shares"
    bars = await read(ports.flight, ticket(BAR))
    assert bars.schema.names[:6] == ["snap_time", "open", "high", "low", "close", "volume"]
    assert all(bars.schema.field(n).type == DECIMAL for n in ("open", "volume"))
    assert not bars.schema.field("open").nullable
    assert bars.schema.field("volume").nullable
    assert bars.slice(0, 1).to_pylist()[0]["high"] == Decimal("11")
    assert bars.column("volume").to_pylist() == [Decimal("1200"), None]


async def test_a_series_without_values_is_an_empty_table(ports: QueryPorts) -> None:
    table = await read(ports.flight, ticket(EMPTY))
    assert table.num_rows == 0
    assert table.schema.field("value").type == DECIMAL


# --- the same answer as QueryRange ------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="latest"),
        pytest.param({"as_of_time": rfc3339(999)}, id="known-before-anything"),
        pytest.param({"as_of_time": rfc3339(1_500)}, id="known-after-first"),
        pytest.param({"as_of_time": rfc3339(2_500)}, id="known-between-restatements"),
        pytest.param({"as_of_position": 9}, id="before-first-position"),
        pytest.param({"as_of_position": 10}, id="at-first-position"),
        pytest.param({"as_of_position": 25}, id="between-restatements"),
        pytest.param({"as_of_position": HEAD}, id="at-head"),
        pytest.param(
            {"start_time": rfc3339(SNAPS[1]), "end_time": rfc3339(SNAPS[4])}, id="bounded"
        ),
        pytest.param(
            {"start_time": rfc3339(SNAPS[2]), "as_of_position": 20}, id="bounded-at-position"
        ),
    ],
)
async def test_flight_answers_what_query_range_answers(
    ports: QueryPorts, fields: dict[str, Any]
) -> None:
    expected = await grpc_rows(ports.stub, PX, **fields)
    table = await read(ports.flight, ticket(PX, **fields))
    assert flight_rows(table, "series/PX") == expected


async def test_a_long_series_is_read_through_several_query_range_calls(
    ports: QueryPorts,
) -> None:
    table = await read(ports.flight, ticket(LONG))
    assert table.num_rows == LONG_POINTS  # the per-call limit is 10,000
    snaps = table.column("snap_time").cast(pa.int64()).to_pylist()
    assert snaps == [v.snap_us for v in LONG_V]
    assert table.column("value").to_pylist()[-1] == Decimal(f"{LONG_POINTS - 1}.99")
    assert flight_rows(table, "series/LONG") == await grpc_rows(ports.stub, LONG)


async def test_several_series_stream_one_after_the_other_with_a_series_column(
    ports: QueryPorts,
) -> None:
    table = await read(ports.flight, ticket(VOL, PX, EMPTY, as_of_position=25))
    assert table.schema.names[0] == "series"
    assert table.schema.field("series").type == pa.dictionary(pa.int32(), pa.string())
    expected = [
        *await grpc_rows(ports.stub, VOL, as_of_position=25),
        *await grpc_rows(ports.stub, PX, as_of_position=25),
    ]
    assert flight_rows(table) == expected
    series = json.loads(table.schema.metadata[b"qis.series"])
    assert [s["series"] for s in series] == ["series/VOL", "series/PX", "series/EMPTY"]
    assert [s["data_type"] for s in series] == ["volume", "price", "price"]


async def test_a_single_name_may_be_given_without_a_list(ports: QueryPorts) -> None:
    table = await read(ports.flight, {"series": "series/VOL"})
    assert table.num_rows == len(VOLUMES)
    assert "series" not in table.column_names


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(b"\xff\xfe", "ticket", id="not-utf8"),
        pytest.param(b"series/PX", "ticket", id="not-json"),
        pytest.param(b"[1, 2]", "ticket", id="not-an-object"),
        pytest.param(b"{}", "series", id="no-series"),
        pytest.param(b'{"series": []}', "series", id="empty-list"),
        pytest.param(b'{"series": ["PX"]}', "series[0]", id="not-a-resource-name"),
        pytest.param(b'{"series": [7]}', "series[0]", id="not-a-string"),
        pytest.param(b'{"series": "series/PX", "asof": 3}', "asof", id="unknown-field"),
        pytest.param(
            b'{"series": "series/PX", "start_time": "2024-01-01"}', "start_time", id="no-time"
        ),
        pytest.param(
            b'{"series": "series/PX", "end_time": "2024-01-01T00:00:00"}',
            "end_time",
            id="no-offset",
        ),
        pytest.param(
            b'{"series": "series/PX", "as_of_time": "2024-01-01T00:00:00Z", "as_of_position": 3}',
            "as_of_position",
            id="two-as-ofs",
        ),
        pytest.param(b'{"series": "series/PX", "as_of_position": -1}', "as_of_position", id="neg"),
        pytest.param(
            b'{"series": "series/PX", "min_position": true}', "min_position", id="bool-position"
        ),
        pytest.param(
            b'{"series": "series/PX", "start_time": "2024-01-02T00:00:00Z",'
            b' "end_time": "2024-01-01T00:00:00Z"}',
            "start_time",
            id="end-before-start",
        ),
        pytest.param(b'{"series": ["series/PX", "series/PX"]}', "series[1]", id="named-twice"),
        pytest.param(b" " * (64 * 1024 + 1), "ticket", id="too-long"),
    ],
)
async def test_a_bad_ticket_is_invalid_argument_naming_the_field(
    ports: QueryPorts, raw: bytes, field: str
) -> None:
    error = await refused(ports.flight, raw)
    assert isinstance(error, pa.ArrowInvalid), error
    assert str(error).startswith(f"INVALID_ARGUMENT: {field}"), error


@pytest.mark.parametrize(
    "field", ["start_time", "end_time", "as_of_time", "as_of_position", "min_position"]
)
async def test_a_null_field_is_absent(ports: QueryPorts, field: str) -> None:
    latest = await read(ports.flight, ticket(PX))
    table = await read(ports.flight, ticket(PX, **{field: None}))
    assert table.num_rows == len(SNAPS)
    assert flight_rows(table, "series/PX") == flight_rows(latest, "series/PX")


async def test_a_null_unknown_field_is_still_unknown(ports: QueryPorts) -> None:
    error = await refused(ports.flight, ticket(PX, asof=None))
    assert str(error).startswith("INVALID_ARGUMENT: asof: unknown field"), error


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="nested-list"),
        pytest.param(b'{"series": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", id="nested-field"),
    ],
)
async def test_a_deeply_nested_ticket_is_invalid_argument_without_an_error_log(
    ports: QueryPorts, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR"):
        error = await refused(ports.flight, raw)
    assert isinstance(error, pa.ArrowInvalid), error
    assert str(error).startswith("INVALID_ARGUMENT: ticket: nested too deeply"), error
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def _other_methods(location: str) -> dict[str, str]:
    """What each Flight method other than DoGet answers: 'OK <result>' or the error."""
    descriptor = fl.FlightDescriptor.for_command(b"series/PX")
    table = pa.table({"a": [1]})

    def put(client: fl.FlightClient, options: fl.FlightCallOptions) -> object:
        writer, _ = client.do_put(descriptor, table.schema, options)
        writer.write_table(table)
        writer.close()
        return None

    def exchange(client: fl.FlightClient, options: fl.FlightCallOptions) -> object:
        writer, reader = client.do_exchange(descriptor, options)
        writer.begin(table.schema)
        writer.write_table(table)
        writer.done_writing()
        return reader.read_all()

    calls = {
        "GetFlightInfo": lambda c, o: c.get_flight_info(descriptor, o),
        "GetSchema": lambda c, o: c.get_schema(descriptor, o),
        "ListFlights": lambda c, o: list(c.list_flights(options=o)),
        "ListActions": lambda c, o: c.list_actions(o),
        "DoAction": lambda c, o: list(c.do_action(fl.Action("x", b""), o)),
        "DoPut": put,
        "DoExchange": exchange,
    }
    answers: dict[str, str] = {}
    with fl.FlightClient(location) as client:
        options = fl.FlightCallOptions(headers=USER, timeout=10)
        for name, call in calls.items():
            try:
                answers[name] = f"OK {call(client, options)!r}"
            except Exception as error:
                answers[name] = f"{type(error).__name__}: {error}"
    return answers


async def test_methods_other_than_do_get_answer_without_a_traceback(ports: QueryPorts) -> None:
    answers = await asyncio.to_thread(_other_methods, ports.flight)
    for name, answer in answers.items():
        assert "Traceback" not in answer, (name, answer)
        assert ".py" not in answer, (name, answer)
    assert answers["ListFlights"] == "OK []"
    assert answers["ListActions"] == "OK []"
    for name in ("GetFlightInfo", "GetSchema", "DoAction", "DoPut", "DoExchange"):
        # pyarrow's client raises GetSchema's refusal as OSError, the others as FlightServerError.
        kind, _, message = answers[name].partition(": ")
        assert kind in ("FlightServerError", "OSError"), (name, answers[name])
        assert message.startswith("UNIMPLEMENTED: the Arrow Flight endpoint"), (name, message)


async def test_an_unserved_method_carries_the_unimplemented_status(ports: QueryPorts) -> None:
    def info() -> fl.FlightError:
        with fl.FlightClient(ports.flight) as client, pytest.raises(fl.FlightError) as caught:
            client.get_flight_info(
                fl.FlightDescriptor.for_command(b"x"), fl.FlightCallOptions(headers=USER)
            )
        return caught.value

    error = await asyncio.to_thread(info)
    status = status_pb2.Status.FromString(error.extra_info)
    assert status.code == 12  # UNIMPLEMENTED
    assert "DoGet" in status.message
    assert isinstance(client_flight.flight_error(error), client_errors.QisError)
    assert client_flight.flight_error(error).code.name == "UNIMPLEMENTED"


async def test_an_unserved_method_still_needs_an_identity(ports: QueryPorts) -> None:
    def info() -> Exception:
        with fl.FlightClient(ports.flight) as client, pytest.raises(fl.FlightError) as caught:
            client.get_flight_info(fl.FlightDescriptor.for_command(b"x"))
        error: Exception = caught.value
        return error

    assert isinstance(await asyncio.to_thread(info), fl.FlightUnauthenticatedError)


async def test_every_violation_of_a_ticket_is_listed(ports: QueryPorts) -> None:
    error = await refused(
        ports.flight, {"series": ["PX"], "start_time": "yesterday", "min_position": -3}
    )
    message = str(error)
    for field in ("series[0]", "start_time", "min_position"):
        assert f"{field}: " in message, message


@pytest.mark.parametrize(
    ("series_id", "kind"),
    [(CHAIN, "options_chain"), (ACTION, "corporate_action")],
)
async def test_data_types_without_columns_are_refused_by_name(
    ports: QueryPorts, series_id: str, kind: str
) -> None:
    error = await refused(ports.flight, ticket(PX, series_id))
    assert isinstance(error, pa.ArrowInvalid)
    assert str(error).startswith(f"INVALID_ARGUMENT: series[1]: series/{series_id} holds {kind}")


async def test_bars_and_prices_do_not_share_one_stream(ports: QueryPorts) -> None:
    error = await refused(ports.flight, ticket(PX, BAR))
    assert isinstance(error, pa.ArrowInvalid)
    assert "series/BAR holds OHLC bars and series/PX prices" in str(error)


async def test_an_unknown_series_is_not_found_as_a_key_error(ports: QueryPorts) -> None:
    error = await refused(ports.flight, ticket(PX, "NOPE"))
    assert isinstance(error, KeyError)
    assert str(error).startswith("NOT_FOUND: series/NOPE not found"), error


async def test_a_read_model_behind_min_position_is_unavailable_with_retry_info(
    ports: QueryPorts,
) -> None:
    error = await refused(ports.flight, ticket(PX, min_position=HEAD + 1))
    assert isinstance(error, fl.FlightUnavailableError)
    assert str(error).startswith("UNAVAILABLE: the read model has projected position 30")
    status = status_pb2.Status.FromString(error.extra_info)
    assert status.code == 14  # UNAVAILABLE, as the gRPC API answers
    kinds = {d.type_url.rpartition("/")[2] for d in status.details}
    assert {"google.rpc.RetryInfo", "google.rpc.ErrorInfo"} <= kinds
    info = error_details_pb2.ErrorInfo()
    next(d for d in status.details if d.Unpack(info))
    assert info.reason == "READ_MODEL_BEHIND"


async def test_a_value_the_series_cannot_hold_ends_the_stream_internal(
    store: InMemoryReadStore,
) -> None:
    writer = SegmentingStore(store.database, "g1")
    bad = version(PX, SNAPS[-1] + MINUTE, 1, bar("1", "1", "1", "1"), at=4_000, position=40)
    await writer.apply(ProjectionBatch(versions=[bad]), 40)
    async with query_ports(store, settings()) as ports:
        error = await refused(ports.flight, ticket(PX))
    message = str(error)
    assert "INTERNAL: internal error (reference " in message, message


# --- identity ----------------------------------------------------------------------------------


async def test_a_call_without_identity_is_unauthenticated(ports: QueryPorts) -> None:
    error = await refused(ports.flight, ticket(PX), headers=[])
    assert isinstance(error, fl.FlightUnauthenticatedError)
    assert "x-qis-user" in str(error)
    error = await refused(ports.flight, ticket(PX), headers=[*USER, (b"x-qis-user", b"bob")])
    assert isinstance(error, fl.FlightUnauthenticatedError)


SECRET = "s" * 40
ISSUER, AUDIENCE = "https://login.example.org/", "qis-data"


def token(**claims: Any) -> bytes:
    now = int(time.time())
    body = {"sub": "carol", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60, "iat": now, **claims}
    return f"Bearer {jwt.encode(body, SECRET, algorithm='HS256')}".encode()


async def test_jwt_mode_checks_bearer_tokens_as_the_grpc_port_does(
    store: InMemoryReadStore,
) -> None:
    # Authentication is what this test is about: every authenticated caller may read
    # (test_authz_query_matrix.py tests the policies, on this port too).
    jwt_settings = settings(
        auth="jwt", authz="open", jwt_hmac_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    async with query_ports(store, jwt_settings) as ports:
        table = await read(ports.flight, ticket(VOL), headers=[(b"authorization", token())])
        assert table.num_rows == len(VOLUMES)
        expired = [(b"authorization", token(exp=int(time.time()) - 3_600))]
        error = await refused(ports.flight, ticket(VOL), headers=expired)
        assert isinstance(error, fl.FlightUnauthenticatedError)
        assert "the token has expired ('exp')" in str(error)
        error = await refused(ports.flight, ticket(VOL), headers=USER)  # dev header: not proof
        assert isinstance(error, fl.FlightUnauthenticatedError)
        assert "authorization" in str(error)


@dataclass(frozen=True, slots=True)
class Pki:
    server_cert: Path
    server_key: Path
    ca: Path
    client_cert: bytes
    client_key: bytes


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("analyst@example.org", common_name="analyst")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    server.cert_chain_pems[0].write_to_path(str(cert_file))
    server.private_key_pem.write_to_path(str(key_file))
    chain = b"".join(p.bytes() for p in client.cert_chain_pems)
    return Pki(cert_file, key_file, ca_file, chain, client.private_key_pem.bytes())


async def test_tls_and_client_certificates_use_the_same_files(
    store: InMemoryReadStore, pki: Pki
) -> None:
    tls = {"tls_cert_file": pki.server_cert, "tls_key_file": pki.server_key}
    trust = {"tls_root_certs": pki.ca.read_bytes()}
    async with query_ports(store, settings(**tls)) as ports:
        assert ports.flight.startswith("grpc+tls://")
        assert (await read(ports.flight, ticket(VOL), USER, **trust)).num_rows == len(VOLUMES)
    mtls = settings(auth="mtls", authz="open", tls_client_ca_file=pki.ca, **tls)
    async with query_ports(store, mtls) as ports:
        table = await read(
            ports.flight,
            ticket(VOL),
            headers=[],
            cert_chain=pki.client_cert,
            private_key=pki.client_key,
            **trust,
        )
        assert table.num_rows == len(VOLUMES)
        with pytest.raises(pa.ArrowException):  # no client certificate: refused at handshake
            await read(ports.flight, ticket(VOL), headers=[], **trust)


async def test_stopping_ends_promptly_when_no_call_is_open(
    store: InMemoryReadStore, caplog: pytest.LogCaptureFixture
) -> None:
    # stop(0) waits no grace, then 2 s for pyarrow's shutdown to return: done in time, no
    # warning; a shutdown still waiting on a call would warn and take the 2 s.
    with caplog.at_level("WARNING", logger="qis_query.entrypoints.flight"):
        async with query_ports(store, settings()) as ports:
            await read(ports.flight, ticket(PX))
            started = time.monotonic()
        stopped_after = time.monotonic() - started
    assert not [r for r in caplog.records if "still open" in r.getMessage()], caplog.text
    assert stopped_after < 1.5
    # The port is really closed: a new call cannot connect.
    with pytest.raises(fl.FlightUnavailableError):
        await read(ports.flight, ticket(PX))


class SlowReads(InMemoryReadStore):
    """A store whose range reads take a second: a long export is still streaming when the
    service is told to stop, longer than its grace."""

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        await asyncio.sleep(1.0)
        return await super().segments(series_id, from_bucket_us, end_us, as_of, limit)


async def test_stopping_gives_open_streams_the_grace_then_ends_them_unavailable(
    store: InMemoryReadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A price export reads its segments a bucket at a time (LONG's two days: two reads), not
    # 16 at once: the second read is still under way when the grace ends.
    monkeypatch.setattr(segment_export, "SEGMENTS_PER_READ", 1)
    slow = SlowReads(store.database)
    app = await build(settings(query_max_points_per_call=1_000), slow)
    assert app.flight is not None
    await app.server.start()
    port = await app.flight.start()
    first_batch = threading.Event()

    def export() -> str:
        with fl.FlightClient(f"grpc+tcp://127.0.0.1:{port}") as client:
            reader = client.do_get(
                fl.Ticket(json.dumps(ticket(LONG)).encode()), fl.FlightCallOptions(headers=USER)
            )
            reader.read_chunk()
            first_batch.set()
            try:
                return f"completed: {reader.read_all().num_rows} more rows"
            except fl.FlightError as error:
                return str(error)

    reading = asyncio.create_task(asyncio.to_thread(export))
    try:
        assert await asyncio.to_thread(first_batch.wait, 10)
        started = time.monotonic()
        await app.flight.stop(0.5)
        stopped_after = time.monotonic() - started
        outcome = await reading
    finally:
        await app.server.stop(0)
        await app.close()
    # The read under way (1 s) ends after the grace: the stream was cut there, not completed.
    assert "UNAVAILABLE: the query service is stopping" in outcome, outcome
    assert "Traceback" not in outcome
    assert 0.5 <= stopped_after < 2.0


# --- the Python client's helper ---------------------------------------------------------------


def _address(ports: QueryPorts) -> str:
    return ports.flight.partition("://")[2]


async def test_the_client_helper_reads_a_table(ports: QueryPorts) -> None:
    table = await asyncio.to_thread(
        client_flight.read_range,
        _address(ports),
        [PX, "series/VOL"],
        start=datetime.fromtimestamp(SNAPS[1] / 1e6, UTC),
        as_of_position=25,
        user="alice",
    )
    assert table.column_names[0] == "series"
    expected = [
        *(r for r in await grpc_rows(ports.stub, PX, as_of_position=25) if r[1] >= SNAPS[1]),
        *(r for r in await grpc_rows(ports.stub, VOL, as_of_position=25) if r[1] >= SNAPS[1]),
    ]
    assert flight_rows(table) == expected


async def test_the_client_helper_raises_the_errors_of_the_grpc_client(ports: QueryPorts) -> None:
    address = _address(ports)

    async def failure(*args: Any, **kwargs: Any) -> client_errors.QisError:
        with pytest.raises(client_errors.QisError) as caught:
            await asyncio.to_thread(client_flight.read_range, address, *args, **kwargs)
        return caught.value

    error = await failure([PX, "NOPE"], user="alice")
    assert isinstance(error, client_errors.NotFound)
    assert error.message == "series/NOPE not found"
    error = await failure(PX, start="yesterday", end="2024-01-01", user="alice")
    assert isinstance(error, client_errors.InvalidArgument)
    assert [v.field for v in error.field_violations] == ["start_time", "end_time"]
    error = await failure(PX, min_position=HEAD + 1, user="alice")
    assert isinstance(error, client_errors.Unavailable)
    assert error.reason == "READ_MODEL_BEHIND"
    assert error.retryable
    assert error.retry_delay is not None
    error = await failure(PX, identity=client_errors_identity())
    assert isinstance(error, client_errors.Unauthenticated)
    with pytest.raises(ValueError, match="naive"):
        client_flight.ticket(PX, start=datetime(2024, 1, 1))


REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "source",
    [REPO / "README.md", REPO / "clients" / "python" / "qis_client" / "flight.py"],
    ids=["README", "qis_client.flight"],
)
def test_the_documented_read_range_examples_send_times_the_service_takes(source: Path) -> None:
    examples = re.findall(r"read_range\((.*?)\)\n", source.read_text(), flags=re.S)
    times = [t for e in examples for t in re.findall(r'(?:start|end)="([^"]*)"', e)]
    assert times, f"no read_range example with a time in {source}"
    for text in times:
        parse_ticket(client_flight.ticket(PX, start=text))  # raises InvalidArgument if refused


async def test_the_client_helper_takes_a_date_as_midnight_utc(ports: QueryPorts) -> None:
    body = json.loads(client_flight.ticket(PX, start=date(2024, 1, 1), end="2025-01-01T00:00:00Z"))
    assert (body["start_time"], body["end_time"]) == (
        "2024-01-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
    )
    table = await asyncio.to_thread(
        client_flight.read_range, _address(ports), PX, start=date(2023, 11, 14), user="alice"
    )
    assert table.num_rows == len(SNAPS)


def client_errors_identity() -> Any:
    class Nobody:
        def metadata(self) -> tuple[tuple[str, str], ...]:
            return ()

    return Nobody()
