"""Term structures and surfaces in columns (OfficialValueColumns.structures, one entry per node)
and as Arrow rows (Flight: one row per node), against the per-point view read by the tests'
own code (views.py).

The property reuses tests/service/query/test_query_columns.py's histories (first publications
and restatements over several commits, read latest, as known at a time and as of a position, at
several page sizes and per-call bounds), with a curve or a surface of 1 to 6 nodes as each
version's value; the extremes (1 and 2,000 nodes), a restated snap read as of before its
restatement, and Flight follow.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, cast

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import OfficialVersion, ProjectionBatch
from qis_query.entrypoints import columns as column_view

from tests.service.query.test_query_columns import (
    NAME,
    History,
    Kind,
    Query,
    calls,
    check_values,
    decimals,
    histories,
    queries,
    service_on,
    write_history,
)
from tests.service.query.test_query_flight import (
    T0,
    closure,
    definition,
    read,
    refused,
    ticket,
    version,
)
from tests.service.query.test_query_flight import settings as flight_settings
from tests.service.query.views import Row, column_rows, point_rows
from tests.support.segmenting import SegmentingStore
from tests.support.servers import QueryPorts, query_ports

CURVE = Kind(values_pb2.DATA_TYPE_TERM_STRUCTURE, "pct", "structures")
SURFACE = Kind(values_pb2.DATA_TYPE_SURFACE, "", "structures")
TENORS = ("P1D", "P1W", "P1M", "P3M", "P6M", "P1Y", "P2Y", "P5Y", "P10Y", "P30Y")
MANY = 2_000  # the most nodes a structure may have


def curve(values: list[str], tenors: tuple[str, ...] = TENORS) -> values_pb2.DataValue:
    nodes = [values_pb2.CurveNode(tenor=t, value=v) for t, v in zip(tenors, values, strict=False)]
    return values_pb2.DataValue(term_structure=values_pb2.TermStructure(nodes=nodes))


def surface(nodes: list[tuple[str, str, str]]) -> values_pb2.DataValue:
    return values_pb2.DataValue(
        surface=values_pb2.Surface(
            nodes=[values_pb2.SurfaceNode(tenor=t, coordinate=k, value=v) for t, k, v in nodes]
        )
    )


def many_nodes(count: int) -> values_pb2.DataValue:
    """A curve of `count` nodes, days apart."""
    return curve([f"{i}.{i % 7}" for i in range(count)], tuple(f"P{i + 1}D" for i in range(count)))


@st.composite
def structures(draw: st.DrawFn, kind: Kind) -> values_pb2.DataValue:
    tenors = sorted(draw(st.sets(st.sampled_from(TENORS), min_size=1, max_size=6)))
    if kind is CURVE:
        texts = draw(st.lists(decimals, min_size=len(tenors), max_size=len(tenors)))
        return curve(texts, tuple(tenors))
    coordinates = sorted(draw(st.sets(st.sampled_from(["0.9", "1", "1.1", "25"]), min_size=1)))
    grid = [(t, k) for t in tenors for k in coordinates]
    texts = draw(st.lists(decimals, min_size=len(grid), max_size=len(grid)))
    return surface([(t, k, v) for (t, k), v in zip(grid, texts, strict=True)])


@st.composite
def structure_histories(draw: st.DrawFn) -> History:
    """A history of test_query_columns' shape, each version's value a curve or a surface."""
    kind = draw(st.sampled_from([CURVE, SURFACE]))
    shape = draw(histories())
    events = [
        [v._replace(value=draw(structures(kind)).SerializeToString()) for v in event]
        for event in shape.events
    ]
    return History(kind, shape.camel_case, shape.snaps, events)


async def check_structure_range(store: Any, history: History, q: Query) -> list[Row]:
    """Both views of the range: the same calls and tokens, every message's columns in
    `structures` with every node of every row; returns the rows."""
    service = service_on(store, q)
    per_point = await calls(service, q, pb.VALUE_VIEW_POINTS)
    in_columns = await calls(service, q, pb.VALUE_VIEW_COLUMNS)
    assert [len(c) for c in in_columns] == [len(c) for c in per_point]
    every: list[Row] = []
    for points_call, columns_call in zip(per_point, in_columns, strict=True):
        for points_msg, columns_msg in zip(points_call, columns_call, strict=True):
            assert columns_msg.next_page_token == points_msg.next_page_token
            assert columns_msg.columns.WhichOneof("values") == "structures"
            rows = point_rows(points_msg.values, NAME, history.kind.unit)
            assert column_rows(columns_msg.columns, "structures") == rows
            every.extend(rows)
    expected = history.expected(q.as_of, q.at)
    wanted = {
        snap: number
        for snap, number in expected.items()
        if (q.start is None or snap >= q.start) and (q.end is None or snap < q.end)
    }
    assert [(row[0], row[1]) for row in every] == sorted(wanted.items())
    return every


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[History, list[Query], list[tuple[list[int], Query]]]:
    history = draw(structure_histories())
    ranges = draw(st.lists(queries(history), min_size=1, max_size=3))
    lookups = draw(
        st.lists(
            st.tuples(st.lists(st.sampled_from(history.snaps), min_size=1), queries(history)),
            max_size=2,
        )
    )
    return history, ranges, lookups


async def run_scenario(
    history: History, ranges: list[Query], lookups: list[tuple[list[int], Query]]
) -> None:
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    for q in ranges:
        await check_structure_range(store, history, q)
    for snaps, q in lookups:
        await check_values(store, history, snaps, q)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_structure_columns_carry_every_node_of_the_per_point_view(
    scenario: tuple[History, list[Query], list[tuple[list[int], Query]]],
) -> None:
    asyncio.run(run_scenario(*scenario))


# --- extremes and restatements --------------------------------------------------------------

SNAP = 1_700_000_000_000_000


def stored(snap: int, number: int, value: values_pb2.DataValue, event: int) -> OfficialVersion:
    return OfficialVersion(
        series_id=NAME.removeprefix("series/"),
        snap_us=snap,
        version=number,
        value=value.SerializeToString(),
        quality_score=1.0,
        recorded_from_us=1_700_000_100_000_000 + event,
        position_from=History.position(event),
        reason="",
        user_id="feed",
        command_id=f"cmd-{event}",
        sources=("bbg",),
        method="priority",
        flags=(),
    )


LATEST = Query("latest", 0, None, None, 0, 250_000, 10_000)


@pytest.mark.parametrize("count", [1, 2, MANY])
async def test_structure_columns_hold_one_to_two_thousand_nodes(count: int) -> None:
    value = many_nodes(count)
    history = History(CURVE, False, [SNAP, SNAP + 1], [[stored(SNAP, 1, value, 0)]])
    history.events[0].append(stored(SNAP + 1, 1, many_nodes(1), 0))
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    rows = await check_structure_range(store, history, LATEST)
    assert [len(cast(tuple[object, ...], row[2][1])) for row in rows] == [count, 1]
    assert rows[0][2][1] == tuple((n.tenor, n.value) for n in value.term_structure.nodes)


async def test_a_restated_surface_reads_its_old_nodes_as_of_before() -> None:
    old = surface([("P1M", "0.9", "0.25"), ("P1M", "1.1", "0.24")])
    new = surface([("P1M", "0.9", "0.26"), ("P1M", "1.0", "0.255"), ("P1M", "1.1", "0.24")])
    history = History(SURFACE, True, [SNAP], [[stored(SNAP, 1, old, 0)], [stored(SNAP, 2, new, 1)]])
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    latest = await check_structure_range(store, history, LATEST)
    before = dataclasses.replace(LATEST, as_of="position", at=History.position(0))
    earlier = await check_structure_range(store, history, before)
    assert [(r[1], len(cast(tuple[object, ...], r[2][1]))) for r in latest] == [(2, 3)]
    assert [(r[1], r[2][1]) for r in earlier] == [
        (1, (("P1M", "0.9", "0.25"), ("P1M", "1.1", "0.24")))
    ]


def test_a_page_mixing_kinds_keeps_other() -> None:
    """A curve series holding a surface (its type changed): no single structure fits."""
    versions = [
        stored(SNAP, 1, many_nodes(2), 0),
        stored(SNAP + 1, 1, surface([("P1M", "1", "2")]), 0),
    ]
    out = pb.OfficialValueColumns()
    shape = column_view.ValueLayout(column_view.Case.STRUCTURES, "pct", "term_structure")
    column_view.fill_versions(out, versions, shape)
    assert out.WhichOneof("values") == "other"
    assert [v.SerializeToString() for v in out.other.values] == [v.value for v in versions]


# --- Arrow Flight: one row per node ---------------------------------------------------------

MINUTE = 60_000_000
CRV, VOL_SURFACE, PRICES, BIG = "CRV", "VOLS", "PXS", "BIG"
CRV_V1 = [
    version(CRV, T0 + i * MINUTE, 1, curve([f"4.{i}1", f"4.{i}2", "5E-7"]), at=1_000, position=10)
    for i in range(3)
]
CRV_V2 = version(
    CRV, T0 + MINUTE, 2, curve(["4.5", "4.6"]), at=2_000, position=20, flags=("spike",)
)
SURFACE_V = version(
    VOL_SURFACE,
    T0,
    1,
    surface([("P1M", "0.9", "0.25"), ("P1M", "1.1", "0.24"), ("P3M", "0.9", "0.23")]),
    at=1_000,
    position=10,
)
BIG_V = version(BIG, T0, 1, many_nodes(MANY), at=1_000, position=10)


@pytest.fixture
async def ports() -> AsyncIterator[QueryPorts]:
    writer = SegmentingStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    catalogue = [
        definition(CRV, values_pb2.DATA_TYPE_TERM_STRUCTURE, "pct"),
        definition(VOL_SURFACE, values_pb2.DATA_TYPE_SURFACE, ""),
        definition(BIG, values_pb2.DATA_TYPE_TERM_STRUCTURE, "pct"),
        definition(PRICES, values_pb2.DATA_TYPE_PRICE),
    ]
    await writer.apply(ProjectionBatch(series=catalogue), 5)
    await writer.apply(ProjectionBatch(versions=[*CRV_V1, SURFACE_V, BIG_V]), 10)
    await writer.apply(
        ProjectionBatch(versions=[CRV_V2], closures=[closure(CRV_V1[1], CRV_V2)]), 20
    )
    async with query_ports(InMemoryReadStore(writer.database), flight_settings()) as ports:
        yield ports


async def node_rows(ports: QueryPorts, series_id: str, **fields: Any) -> list[tuple[Any, ...]]:
    """The per-point answer over gRPC, one row per node: (snap µs, tenor, coordinate or None,
    value, version, record position, how many flags)."""
    request = pb.QueryRangeRequest(series=f"series/{series_id}", **fields)
    rows: list[tuple[Any, ...]] = []
    async for message in ports.stub.QueryRange(request, metadata=[("x-qis-user", "alice")]):
        for v in message.values:
            snap = v.snap_time.seconds * 1_000_000 + v.snap_time.nanos // 1_000
            nodes = (
                [(n.tenor, Decimal(n.coordinate), n.value) for n in v.value.surface.nodes]
                if v.value.HasField("surface")
                else [(n.tenor, None, n.value) for n in v.value.term_structure.nodes]
            )
            rows.extend(
                (snap, t, k, Decimal(x), v.version, v.record_position, len(v.flags))
                for t, k, x in nodes
            )
    return rows


def table_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    coordinates = (
        table.column("coordinate").to_pylist()
        if "coordinate" in table.column_names
        else [None] * table.num_rows
    )
    return [
        (int(pa.scalar(s, pa.timestamp("us", tz="UTC")).value), t, k, x, v, p, len(f))
        for s, t, k, x, v, p, f in zip(
            table.column("snap_time").to_pylist(),
            table.column("tenor").to_pylist(),
            coordinates,
            table.column("value").to_pylist(),
            table.column("version").to_pylist(),
            table.column("record_position").to_pylist(),
            table.column("flags").to_pylist(),
            strict=True,
        )
    ]


async def test_flight_curve_rows_are_one_per_node_as_query_range_answers(
    ports: QueryPorts,
) -> None:
    table = await read(ports.flight, ticket(CRV))
    assert table.schema.names == [
        "snap_time",
        "tenor",
        "value",
        "version",
        "quality_score",
        "record_time",
        "record_position",
        "flags",
    ]
    assert table.schema.field("value").type == pa.decimal128(38, 18)
    assert table_rows(table) == await node_rows(ports, CRV)
    assert table.num_rows == 3 + 2 + 3  # the restated snap has two nodes now
    assert table.column("value").to_pylist()[2] == Decimal("5E-7")  # exact
    assert table.column("flags").to_pylist()[3:5] == [["spike"], ["spike"]]
    # As of before the restatement: the old curve's three nodes.
    before = await read(ports.flight, ticket(CRV, as_of_position=10))
    assert table_rows(before) == await node_rows(ports, CRV, as_of_position=10)
    assert before.num_rows == 9
    assert before.column("tenor").to_pylist()[3:6] == ["P1D", "P1W", "P1M"]


async def test_flight_surface_rows_carry_their_coordinate(ports: QueryPorts) -> None:
    table = await read(ports.flight, ticket(VOL_SURFACE))
    assert table.schema.names[:4] == ["snap_time", "tenor", "coordinate", "value"]
    assert table.schema.field("coordinate").type == pa.decimal128(38, 18)
    assert table_rows(table) == await node_rows(ports, VOL_SURFACE)
    assert table.column("coordinate").to_pylist() == [
        Decimal("0.9"),
        Decimal("1.1"),
        Decimal("0.9"),
    ]


async def test_flight_curve_rows_of_two_thousand_nodes(ports: QueryPorts) -> None:
    table = await read(ports.flight, ticket(BIG))
    assert table.num_rows == MANY
    assert table_rows(table) == await node_rows(ports, BIG)


@pytest.mark.parametrize("text", ["1E+20", "0.0000000000000000001", "nan"])
async def test_flight_refuses_a_node_decimal128_cannot_hold_rather_than_round_it(
    text: str,
) -> None:
    """No such node passes ingest; one stored anyway (a bug) ends the stream INTERNAL."""
    writer = SegmentingStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    catalogue = [definition(CRV, values_pb2.DATA_TYPE_TERM_STRUCTURE, "pct")]
    await writer.apply(ProjectionBatch(series=catalogue), 5)
    bad = version(CRV, T0, 1, curve(["1.5", text]), at=1_000, position=10)
    await writer.apply(ProjectionBatch(versions=[bad]), 10)
    async with query_ports(InMemoryReadStore(writer.database), flight_settings()) as ports:
        error = await refused(ports.flight, ticket(CRV))
    assert "INTERNAL: internal error (reference " in str(error), error


async def test_curves_surfaces_and_prices_do_not_share_one_stream(ports: QueryPorts) -> None:
    for names, said in [
        ((PRICES, CRV), "series/CRV holds term structures and series/PXS prices"),
        ((CRV, VOL_SURFACE), "series/CRV holds term structures and series/VOLS surfaces"),
    ]:
        error = await refused(ports.flight, ticket(*names))
        assert isinstance(error, pa.ArrowInvalid)
        assert said in str(error)
