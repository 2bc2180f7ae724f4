"""Term structures and surfaces through the three processes: a yield curve and a volatility
surface series defined with their StructureSchema (read back by GetSeries), values ingested over
gRPC and published, read by QueryRange and GetValues in both views (a whole structure per point;
the columnar view carries every node in `structures`), one curve restated (a new version of the
whole curve, the earlier one still there as of before), read by Arrow Flight and written by
`qis export` one row per node, and malformed structures refused with violations naming the
node, nothing stored."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import grpc
import grpc.aio
import pyarrow as pa
import pyarrow.flight as fl
import pytest
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2, values_pb2

from tests.e2e.harness import (
    DAY_US,
    US,
    Clients,
    Cluster,
    as_user,
    micros,
    point,
    point_history,
    price_series,
    query_all,
    setup_series,
    timestamp,
    unique,
)
from tests.e2e.test_e2e_columns_query import same_rows, same_values
from tests.e2e.test_e2e_flight import qis
from tests.e2e.test_e2e_malformed_input import rich_status, violations

pytestmark = pytest.mark.e2e

FIRST_SNAP = 1_704_229_200 * US  # 2024-01-02T21:00:00Z
TENORS = ("P1M", "P3M", "P6M", "P1Y", "P2Y", "P5Y", "P10Y", "P30Y")
EXPIRIES = ("P1M", "P3M", "P6M", "P12M")
MONEYNESS = ("0.8", "0.9", "1.0", "1.1", "1.2")
FEED = as_user("feed")


def snap(i: int) -> int:
    return FIRST_SNAP + i * DAY_US


def curve(day: int, bump: str = "") -> values_pb2.DataValue:
    nodes = [
        values_pb2.CurveNode(tenor=t, value=f"4.{day:02d}{i}{bump}") for i, t in enumerate(TENORS)
    ]
    return values_pb2.DataValue(term_structure=values_pb2.TermStructure(nodes=nodes))


def surface(day: int) -> values_pb2.DataValue:
    nodes = [
        values_pb2.SurfaceNode(tenor=t, coordinate=k, value=f"0.2{day}{i}")
        for i, t in enumerate(EXPIRIES)
        for k in MONEYNESS
    ]
    return values_pb2.DataValue(surface=values_pb2.Surface(nodes=nodes))


def structured(
    data_type: values_pb2.DataType.ValueType, source: str, schema: series_pb2.StructureSchema
) -> series_pb2.Series:
    series = price_series([(source, 1)])
    series.data_type = data_type
    series.structure.CopyFrom(schema)
    return series


CURVE_SCHEMA = series_pb2.StructureSchema(
    tenor_axis=series_pb2.StructureAxis(name="tenor"),
    max_nodes=50,
    checks=series_pb2.StructureChecks(max_node_spike_percent="20", flat_spot_nodes=4),
)
SURFACE_SCHEMA = series_pb2.StructureSchema(
    tenor_axis=series_pb2.StructureAxis(name="expiry", tenor_unit=series_pb2.TENOR_UNIT_MONTHS),
    coordinate_axis=series_pb2.StructureAxis(
        name="moneyness", coordinate_unit=series_pb2.COORDINATE_UNIT_MONEYNESS
    ),
    full_grid=True,
    checks=series_pb2.StructureChecks(calendar_arbitrage=True, butterfly_arbitrage=True),
)


async def ingest(
    c: Clients, series_id: str, source: str, values: list[tuple[int, values_pb2.DataValue]]
) -> cmd.IngestPointsResponse:
    reply: cmd.IngestPointsResponse = await c.command.IngestPoints(
        cmd.IngestPointsRequest(
            command_id=unique("ing"),
            series=f"series/{series_id}",
            source=f"sources/{source}",
            points=[point(us, value) for us, value in values],
        ),
        metadata=FEED,
    )
    return reply


async def refused(
    c: Clients, series_id: str, source: str, value: values_pb2.DataValue
) -> list[tuple[str, str]]:
    call = c.command.IngestPoints(
        cmd.IngestPointsRequest(
            command_id=unique("ing"),
            series=f"series/{series_id}",
            source=f"sources/{source}",
            points=[point(snap(50), value)],
        ),
        metadata=FEED,
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    return [(v.field, v.description) for v in violations(await rich_status(call))]


async def test_a_curve_is_published_read_and_restated_whole(cluster: Cluster) -> None:
    series_id, source = unique("curve"), unique("feed")
    name = f"series/{series_id}"
    async with cluster.clients() as c:
        await setup_series(
            c, series_id, structured(values_pb2.DATA_TYPE_TERM_STRUCTURE, source, CURVE_SCHEMA)
        )
        reply = await ingest(c, series_id, source, [(snap(i), curve(i)) for i in range(5)])
        assert reply.published == 5, reply
        ingested = reply.commit_position

        defined = await c.query.GetSeries(
            q.GetSeriesRequest(name=name, min_position=ingested), metadata=as_user("reader")
        )
        assert defined.structure.max_nodes == 50
        assert defined.structure.checks.flat_spot_nodes == 4
        assert defined.structure.checks.max_node_spike_percent == "20"

        restated = await c.command.RestatePoint(
            cmd.RestatePointRequest(
                command_id=unique("fix"),
                series=name,
                snap_time=timestamp(snap(2)),
                value=curve(2, bump="5"),
                reason="vendor corrected the curve",
            ),
            metadata=as_user("carol"),
        )
        head = restated.commit_position

        latest = await query_all(c, series_id, min_position=head)
        assert [(micros(v.snap_time), v.version) for v in latest] == [
            (snap(i), 2 if i == 2 else 1) for i in range(5)
        ]
        assert [v.value for v in latest] == [
            curve(2, "5") if i == 2 else curve(i) for i in range(5)
        ]
        before = await query_all(c, series_id, as_of_position=ingested)
        assert [v.value for v in before] == [curve(i) for i in range(5)]
        history, _ = await point_history(c, series_id, snap(2), min_position=head)
        assert [(v.version, v.value) for v in history.versions] == [
            (1, curve(2)),
            (2, curve(2, "5")),
        ]

        request = q.QueryRangeRequest(series=name, min_position=head, page_size=2)
        rows, cases = await same_rows(c, request, "USD", "structures")
        assert (len(rows), cases) == (5, {"structures"})
        lookup = q.GetValuesRequest(
            series=name, snap_times=[timestamp(snap(4)), timestamp(snap(2))]
        )
        assert [r[:2] for r in await same_values(c, lookup, "USD", "structures")] == [
            (snap(4), 1),
            (snap(2), 2),
        ]


async def test_a_surface_is_published_and_read_by_snap(cluster: Cluster) -> None:
    series_id, source = unique("vol"), unique("feed")
    name = f"series/{series_id}"
    async with cluster.clients() as c:
        await setup_series(
            c, series_id, structured(values_pb2.DATA_TYPE_SURFACE, source, SURFACE_SCHEMA)
        )
        reply = await ingest(c, series_id, source, [(snap(i), surface(i)) for i in range(3)])
        assert reply.published == 3, reply
        lookup = q.GetValuesRequest(
            series=name, snap_times=[timestamp(snap(1))], min_position=reply.commit_position
        )
        answer = await c.query.GetValues(lookup, metadata=as_user("reader"))
        assert [v.value for v in answer.values] == [surface(1)]
        assert len(answer.values[0].value.surface.nodes) == len(EXPIRIES) * len(MONEYNESS)


def node_rows(values: list[values_pb2.DataValue], days: list[int]) -> list[tuple[object, ...]]:
    """(snap µs, tenor, coordinate or None, value) per node, as an export should carry them."""
    rows: list[tuple[object, ...]] = []
    for day, value in zip(days, values, strict=True):
        if value.HasField("surface"):
            rows.extend(
                (snap(day), n.tenor, Decimal(n.coordinate), Decimal(n.value))
                for n in value.surface.nodes
            )
        else:
            rows.extend(
                (snap(day), n.tenor, None, Decimal(n.value)) for n in value.term_structure.nodes
            )
    return rows


def table_rows(table: pa.Table) -> list[tuple[object, ...]]:
    coordinates = (
        table.column("coordinate").to_pylist()
        if "coordinate" in table.column_names
        else [None] * table.num_rows
    )
    snaps = table.column("snap_time").cast(pa.int64()).to_pylist()
    return list(
        zip(
            snaps,
            table.column("tenor").to_pylist(),
            coordinates,
            table.column("value").to_pylist(),
            strict=True,
        )
    )


async def test_flight_and_qis_export_write_curve_rows_one_per_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A curve (restated) and a surface read by Arrow Flight, and the curve written to CSV by
    `qis export`: one row per node, the values exact; as of before the restatement, the old
    nodes."""
    curve_id, vol_id, source, vol_source = unique("curve"), unique("vol"), unique("f"), unique("f")
    async with cluster.clients() as c:
        schema = structured(values_pb2.DATA_TYPE_TERM_STRUCTURE, source, CURVE_SCHEMA)
        await setup_series(c, curve_id, schema)
        await setup_series(
            c, vol_id, structured(values_pb2.DATA_TYPE_SURFACE, vol_source, SURFACE_SCHEMA)
        )
        ingested = await ingest(c, curve_id, source, [(snap(i), curve(i)) for i in range(3)])
        await ingest(c, vol_id, vol_source, [(snap(i), surface(i)) for i in range(2)])
        restated = await c.command.RestatePoint(
            cmd.RestatePointRequest(
                command_id=unique("fix"),
                series=f"series/{curve_id}",
                snap_time=timestamp(snap(1)),
                value=curve(1, bump="5"),
                reason="vendor corrected the curve",
            ),
            metadata=as_user("carol"),
        )
    head = restated.commit_position
    options = fl.FlightCallOptions(headers=[(b"x-qis-user", b"reader")], timeout=60)
    flight = cluster.env["QIS_FLIGHT_ADDRESS"]

    def read(series_id: str, **fields: object) -> pa.Table:
        ticket = {"series": [f"series/{series_id}"], "min_position": head, **fields}
        with fl.FlightClient(f"grpc+tcp://{flight}") as client:
            return client.do_get(fl.Ticket(json.dumps(ticket).encode()), options).read_all()

    latest = read(curve_id)
    assert latest.schema.names[:3] == ["snap_time", "tenor", "value"]
    assert table_rows(latest) == node_rows([curve(0), curve(1, "5"), curve(2)], [0, 1, 2])
    assert latest.column("version").to_pylist() == [1] * 8 + [2] * 8 + [1] * 8
    before = read(curve_id, as_of_position=ingested.commit_position)
    assert table_rows(before) == node_rows([curve(i) for i in range(3)], [0, 1, 2])
    vols = read(vol_id)
    assert vols.schema.names[:4] == ["snap_time", "tenor", "coordinate", "value"]
    assert table_rows(vols) == node_rows([surface(0), surface(1)], [0, 1])

    out = tmp_path / "curve.csv"
    done = qis("export", curve_id, "--format", "csv", "--out", str(out), flight=flight)
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as f:
        written = list(csv.DictReader(f))
    assert [(r["tenor"], Decimal(r["value"]), int(r["version"])) for r in written] == list(
        zip(
            latest.column("tenor").to_pylist(),
            latest.column("value").to_pylist(),
            latest.column("version").to_pylist(),
            strict=True,
        )
    )


async def test_malformed_structures_are_refused_naming_the_node(cluster: Cluster) -> None:
    series_id, source = unique("vol"), unique("feed")
    async with cluster.clients() as c:
        await setup_series(
            c, series_id, structured(values_pb2.DATA_TYPE_SURFACE, source, SURFACE_SCHEMA)
        )
        unsorted = surface(1)
        nodes = unsorted.surface.nodes
        nodes[0].tenor, nodes[5].tenor = nodes[5].tenor, nodes[0].tenor
        found = await refused(c, series_id, source, unsorted)
        assert tuple(f for f, _ in found[:1]) == ("points[0].value.surface.nodes[1]",), found
        bad = surface(1)
        bad.surface.nodes[3].value = "NaN"
        bad.surface.nodes[4].tenor = "3M"
        assert [f for f, _ in await refused(c, series_id, source, bad)] == [
            "points[0].value.surface.nodes[3].value",
        ]
        del bad.surface.nodes[3]
        assert await refused(c, series_id, source, bad) == [
            (
                "points[0].value.surface.nodes[3].tenor",
                "'3M' is not a tenor: an ISO 8601 period of years, months, weeks and days in"
                ' upper case ("P3M", "P1Y6M", "P30D")',
            )
        ]
        later = await ingest(c, series_id, source, [(snap(9), surface(9))])
        assert [
            micros(v.snap_time)
            for v in await query_all(c, series_id, min_position=later.commit_position)
        ] == [snap(9)]
