"""Issues of the curve and surface rules reach a client through the query service with their own
QualityRule values, their evidence naming the nodes, and can be filtered by rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from qis.data.v1 import quality_pb2
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis_adapters.readstore.factory import AdministeredReadStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import ProjectionBatch, QualityIssue
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_query.settings import QuerySettings

from tests.service.query.readmodel import catalogue_entry
from tests.support.servers import query_service

T0 = 1_700_000_000_000_000
RULES = {
    "curve_node_spike": quality_pb2.QUALITY_RULE_CURVE_NODE_SPIKE,
    "curve_node_jump": quality_pb2.QUALITY_RULE_CURVE_NODE_JUMP,
    "curve_flat_spot": quality_pb2.QUALITY_RULE_CURVE_FLAT_SPOT,
    "curve_monotonicity": quality_pb2.QUALITY_RULE_CURVE_MONOTONICITY,
    "surface_calendar_arbitrage": quality_pb2.QUALITY_RULE_SURFACE_CALENDAR_ARBITRAGE,
    "surface_butterfly_arbitrage": quality_pb2.QUALITY_RULE_SURFACE_BUTTERFLY_ARBITRAGE,
}
METADATA = (("x-qis-user", "reader"),)


def issue(n: int, rule: str) -> QualityIssue:
    return QualityIssue(
        issue_id=f"{T0 + n}-{n:06x}",
        series_id="VOL",
        snap_us=T0 + n,
        rule=rule,
        severity="warning" if rule in ("curve_node_spike", "curve_flat_spot") else "error",
        evidence={"nodes": [{"node": "P3M 1.05", "value": "0.31"}], "count": 1},
        status="open",
        raised_at_us=T0 + 1_000 + n,
        position=10 + n,
        source_id="bbg",
    )


ISSUES = [issue(n, rule) for n, rule in enumerate(RULES)]


@pytest.fixture(params=["memory", "sqlite"])
async def stub(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[pb_grpc.QueryServiceAsyncStub]:
    store: AdministeredReadStore
    if request.param == "memory":
        store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    else:
        store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await store.set_active_generation("g1")
    await store.apply(ProjectionBatch(series=[catalogue_entry("VOL")], issues=ISSUES), 20)
    try:
        async with query_service(
            store, QuerySettings(auth="dev", query_address="127.0.0.1:0")
        ) as s:
            yield s
    finally:
        await store.close()


async def test_each_structure_rule_reaches_clients_as_its_enum_value(
    stub: pb_grpc.QueryServiceAsyncStub,
) -> None:
    reply = await stub.ListQualityIssues(
        pb.ListQualityIssuesRequest(parent="series/VOL"), metadata=METADATA
    )
    assert [(i.rule, i.severity) for i in reply.issues] == [
        (
            RULES[i.rule],
            quality_pb2.SEVERITY_ERROR if i.severity == "error" else quality_pb2.SEVERITY_WARNING,
        )
        for i in ISSUES
    ]
    evidence = json_format.MessageToDict(reply.issues[0].evidence)
    assert evidence["nodes"] == [{"node": "P3M 1.05", "value": "0.31"}]


@pytest.mark.parametrize("rule", list(RULES))
async def test_issues_filter_by_a_structure_rule(
    stub: pb_grpc.QueryServiceAsyncStub, rule: str
) -> None:
    request = pb.ListQualityIssuesRequest(parent="series/VOL", filter=f"rule = {rule.upper()}")
    reply = await stub.ListQualityIssues(request, metadata=METADATA)
    assert [i.rule for i in reply.issues] == [RULES[rule]]
