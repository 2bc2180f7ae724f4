"""The checks of curves and surfaces through the three processes (needs the hooks in
series_bucket, handlers._conform, reconciliation, decisions and reference_data): a spike and a
jump raise their issues, listed with their QualityRule values; a jump is the same whether the
curves came in one command or one per command; the series' schema refuses values outside its
units or grid; two sources reconcile node by node and a break names the nodes."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from google.protobuf import json_format
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import quality_pb2, series_pb2, values_pb2

from tests.e2e.harness import (
    DAY_US,
    US,
    Clients,
    Cluster,
    as_user,
    list_issues,
    micros,
    point,
    price_series,
    setup_series,
    unique,
)
from tests.e2e.test_e2e_malformed_input import rich_status, violations

pytestmark = pytest.mark.e2e

FIRST_SNAP = 1_704_229_200 * US
TENORS = ("P1M", "P3M", "P6M", "P1Y", "P2Y", "P5Y")
FEED = as_user("feed")


def snap(i: int) -> int:
    return FIRST_SNAP + i * DAY_US


def curve(*values: str) -> values_pb2.DataValue:
    nodes = [values_pb2.CurveNode(tenor=t, value=v) for t, v in zip(TENORS, values, strict=True)]
    return values_pb2.DataValue(term_structure=values_pb2.TermStructure(nodes=nodes))


CALM = curve("4.00", "4.10", "4.20", "4.30", "4.40", "4.50")
SPIKED = curve("4.00", "4.10", "5.20", "4.30", "4.40", "4.50")  # 6M out and back
JUMPED = curve("4.00", "4.10", "4.20", "4.30", "5.40", "4.50")  # 2Y +22.7 % from CALM


def series(sources: list[tuple[str, int]]) -> series_pb2.Series:
    made = price_series(sources)
    made.data_type = values_pb2.DATA_TYPE_TERM_STRUCTURE
    made.reconciliation.tolerance_abs = "0.01"
    made.structure.CopyFrom(
        series_pb2.StructureSchema(
            tenor_axis=series_pb2.StructureAxis(name="tenor"),
            checks=series_pb2.StructureChecks(
                max_node_spike_percent="10", max_node_jump_percent="15"
            ),
        )
    )
    return made


async def ingest(
    c: Clients, series_id: str, source: str, values: list[tuple[int, values_pb2.DataValue]]
) -> int:
    reply = await c.command.IngestPoints(
        cmd.IngestPointsRequest(
            command_id=unique("ing"),
            series=f"series/{series_id}",
            source=f"sources/{source}",
            points=[point(us, v) for us, v in values],
        ),
        metadata=FEED,
    )
    return int(reply.commit_position)


async def rules_by_snap(c: Clients, series_id: str, head: int) -> dict[int, list[int]]:
    issues = await list_issues(c, f"series/{series_id}", min_position=head)
    out: dict[int, list[int]] = {}
    for issue in issues:
        out.setdefault(micros(issue.snap_time), []).append(issue.rule)
    return {k: sorted(v) for k, v in out.items()}


async def test_spikes_and_jumps_raise_issues_however_the_curves_are_chunked(
    cluster: Cluster,
) -> None:
    history = [(snap(0), CALM), (snap(1), SPIKED), (snap(2), CALM), (snap(3), JUMPED)]
    expected = {
        snap(1): [
            quality_pb2.QUALITY_RULE_CURVE_NODE_SPIKE,
            quality_pb2.QUALITY_RULE_CURVE_NODE_JUMP,
        ],
        snap(2): [quality_pb2.QUALITY_RULE_CURVE_NODE_JUMP],  # back from the spike
        # 2Y jumps from the day before, and is out and back between 1Y and 5Y too.
        snap(3): [
            quality_pb2.QUALITY_RULE_CURVE_NODE_SPIKE,
            quality_pb2.QUALITY_RULE_CURVE_NODE_JUMP,
        ],
    }
    async with cluster.clients() as c:
        found = []
        for chunk in (4, 1, 3):
            series_id, source = unique("curve"), unique("feed")
            await setup_series(c, series_id, series([(source, 1)]))
            head = 0
            for start in range(0, len(history), chunk):
                head = await ingest(c, series_id, source, history[start : start + chunk])
            found.append(await rules_by_snap(c, series_id, head))
        assert found == [expected] * 3
        issues = await list_issues(c, f"series/{series_id}", "rule = CURVE_NODE_SPIKE")
        evidence = json_format.MessageToDict(issues[0].evidence)
        assert [n["node"] for n in evidence["nodes"]] == ["P6M"]


async def test_the_schema_refuses_values_outside_its_units(cluster: Cluster) -> None:
    async with cluster.clients() as c:
        series_id, source = unique("curve"), unique("feed")
        months = series([(source, 1)])
        months.structure.tenor_axis.tenor_unit = series_pb2.TENOR_UNIT_MONTHS
        await setup_series(c, series_id, months)
        call = c.command.IngestPoints(
            cmd.IngestPointsRequest(
                command_id=unique("ing"),
                series=f"series/{series_id}",
                source=f"sources/{source}",
                points=[point(snap(0), CALM)],
            ),
            metadata=FEED,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in violations(await rich_status(call))] == [
            "points[0].value.term_structure.nodes[3].tenor",
            "points[0].value.term_structure.nodes[4].tenor",
            "points[0].value.term_structure.nodes[5].tenor",
        ]


async def test_sources_reconcile_node_by_node(cluster: Cluster) -> None:
    async with cluster.clients() as c:
        series_id, first, second = unique("curve"), unique("bbg"), unique("lseg")
        await setup_series(c, series_id, series([(first, 1), (second, 2)]))
        await ingest(c, series_id, first, [(snap(0), CALM), (snap(1), CALM)])
        close = curve("4.00", "4.11", "4.20", "4.29", "4.40", "4.50")  # within 0.01
        away = curve("4.00", "4.10", "4.25", "4.30", "4.40", "4.60")
        head = await ingest(c, series_id, second, [(snap(0), close), (snap(1), away)])
        issues = await list_issues(
            c, f"series/{series_id}", "rule = SOURCE_BREAK", min_position=head
        )
        assert [micros(i.snap_time) for i in issues] == [snap(1)]
        evidence = json_format.MessageToDict(issues[0].evidence)
        assert evidence["nodes"] == {second: ["P6M", "P5Y"]}
