"""Curves and surfaces at the edge: DataValue messages to domain values and back (the bytes the
read stores keep), violations naming the node, and the StructureSchema of a series definition
both ways."""

from __future__ import annotations

from decimal import Decimal

import pytest
from google.protobuf import field_mask_pb2
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.proto.definitions import (
    series_from_proto,
    series_to_proto,
    series_update_from_proto,
)
from qis_adapters.proto.values import doc_to_proto, raw_to_proto_bytes, value_from_proto
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.structures import (
    MAX_STRUCTURE_NODES,
    CoordinateUnit,
    Monotonicity,
    StructureSchema,
    TenorUnit,
)
from qis_domain.values import (
    CurveNode,
    DataType,
    Surface,
    SurfaceNode,
    TermStructure,
    encode_value,
    value_to_doc,
)

CURVE = values_pb2.DataValue(
    term_structure=values_pb2.TermStructure(
        nodes=[
            values_pb2.CurveNode(tenor="P1M", value="5.31"),
            values_pb2.CurveNode(tenor="P1Y", value="4.80"),
            values_pb2.CurveNode(tenor="P10Y", value="4.25"),
        ]
    )
)
SURFACE = values_pb2.DataValue(
    surface=values_pb2.Surface(
        nodes=[
            values_pb2.SurfaceNode(tenor="P1M", coordinate="0.9", value="0.22"),
            values_pb2.SurfaceNode(tenor="P1M", coordinate="1.0", value="0.20"),
            values_pb2.SurfaceNode(tenor="P3M", coordinate="0.9", value="0.23"),
        ]
    )
)


def parse(msg: values_pb2.DataValue) -> tuple[object, list[FieldViolation]]:
    violations: list[FieldViolation] = []
    return value_from_proto(msg, "points[1].value", violations), violations


def test_values_come_in_exactly_and_go_out_as_the_same_bytes() -> None:
    value, violations = parse(CURVE)
    assert violations == []
    assert value == TermStructure(
        (
            CurveNode("P1M", Decimal("5.31")),
            CurveNode("P1Y", Decimal("4.80")),
            CurveNode("P10Y", Decimal("4.25")),
        )
    )
    surface, violations = parse(SURFACE)
    assert violations == []
    assert isinstance(surface, Surface)
    assert surface.nodes[2] == SurfaceNode("P3M", Decimal("0.9"), Decimal("0.23"))
    for msg, parsed, data_type in (
        (CURVE, value, DataType.TERM_STRUCTURE),
        (SURFACE, surface, DataType.SURFACE),
    ):
        assert isinstance(parsed, TermStructure | Surface)
        assert doc_to_proto(value_to_doc(parsed)) == msg
        to_bytes = raw_to_proto_bytes(data_type, "USD")
        assert to_bytes(encode_value(parsed)) == msg.SerializeToString()


def test_malformed_nodes_are_refused_each_by_its_path() -> None:
    msg = values_pb2.DataValue(
        surface=values_pb2.Surface(
            nodes=[
                values_pb2.SurfaceNode(tenor="P3M", coordinate="1.0", value="0.2"),
                values_pb2.SurfaceNode(tenor="P1M", coordinate="1.0", value="0.2"),
                values_pb2.SurfaceNode(tenor="P1M", coordinate="x", value="NaN"),
            ]
        )
    )
    _, violations = parse(msg)
    assert [v.field for v in violations] == [
        "points[1].value.surface.nodes[2].coordinate",
        "points[1].value.surface.nodes[2].value",
    ]
    del msg.surface.nodes[2]
    _, violations = parse(msg)
    assert violations == [
        FieldViolation(
            "points[1].value.surface.nodes[1]",
            "nodes are by increasing (tenor, coordinate): P1M 1.0 after P3M 1.0",
        )
    ]
    _, violations = parse(values_pb2.DataValue(term_structure=values_pb2.TermStructure()))
    assert violations == [
        FieldViolation("points[1].value.term_structure.nodes", "at least one node is required")
    ]


def test_too_many_nodes_are_refused_before_they_are_parsed() -> None:
    nodes = [values_pb2.CurveNode(tenor="bad", value="bad")] * (MAX_STRUCTURE_NODES + 1)
    msg = values_pb2.DataValue(term_structure=values_pb2.TermStructure(nodes=nodes))
    _, violations = parse(msg)
    assert violations == [
        FieldViolation("points[1].value.term_structure.nodes", "2,001 nodes, more than 2,000")
    ]


def surface_series() -> series_pb2.Series:
    return series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_SURFACE,
        frequency=series_pb2.FREQUENCY_DAILY,
        unit="USD",
        sources=[series_pb2.SeriesSource(source="sources/bbg", priority=1)],
        structure=series_pb2.StructureSchema(
            tenor_axis=series_pb2.StructureAxis(
                name="expiry", tenor_unit=series_pb2.TENOR_UNIT_MONTHS
            ),
            coordinate_axis=series_pb2.StructureAxis(
                name="moneyness", coordinate_unit=series_pb2.COORDINATE_UNIT_MONEYNESS
            ),
            full_grid=True,
            monotonicity=series_pb2.MONOTONICITY_NON_DECREASING,
            checks=series_pb2.StructureChecks(
                max_node_spike_percent="2.5",
                max_node_jump_percent="10",
                flat_spot_nodes=4,
                calendar_arbitrage=True,
                butterfly_arbitrage=True,
            ),
        ),
    )


def test_a_schema_round_trips_through_the_definition() -> None:
    definition = series_from_proto(surface_series())
    schema = definition.structure
    assert isinstance(schema, StructureSchema)
    assert schema.tenor_axis.unit is TenorUnit.MONTHS
    assert schema.coordinate_axis is not None
    assert schema.coordinate_axis.unit is CoordinateUnit.MONEYNESS
    assert schema.monotonicity is Monotonicity.NON_DECREASING
    assert schema.max_nodes == MAX_STRUCTURE_NODES  # 0: the bound
    assert schema.checks.max_node_spike_percent == Decimal("2.5")
    back = series_to_proto("VOL", definition, 1)
    assert series_from_proto(back) == definition
    assert back.structure.max_nodes == MAX_STRUCTURE_NODES
    plain = surface_series()
    plain.data_type = values_pb2.DATA_TYPE_PRICE
    plain.ClearField("structure")
    assert not series_to_proto("PX", series_from_proto(plain), 1).HasField("structure")


def violations_of(msg: series_pb2.Series) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as refused:
        series_from_proto(msg)
    return [(v.field, v.description) for v in refused.value.violations]


def test_schemas_that_do_not_fit_their_series_are_refused_by_field() -> None:
    on_prices = surface_series()
    on_prices.data_type = values_pb2.DATA_TYPE_PRICE
    assert (
        "series.structure",
        "only term structure and surface series have a structure",
    ) in violations_of(on_prices)
    curve = surface_series()
    curve.data_type = values_pb2.DATA_TYPE_TERM_STRUCTURE
    assert ("series.structure.coordinate_axis", "a term structure has one axis") in (
        violations_of(curve)
    )
    no_axis = surface_series()
    no_axis.structure.ClearField("coordinate_axis")
    assert violations_of(no_axis) == [
        (
            "series.structure",
            "full_grid and calendar_arbitrage need a coordinate axis (surfaces)",
        )
    ]
    no_axis.structure.full_grid = False
    no_axis.structure.ClearField("checks")
    assert ("series.structure.coordinate_axis", "required for surfaces") in violations_of(no_axis)
    bad = surface_series()
    bad.structure.coordinate_axis.coordinate_unit = series_pb2.COORDINATE_UNIT_STRIKE
    bad.structure.checks.max_node_spike_percent = "-1"
    bad.structure.max_nodes = MAX_STRUCTURE_NODES + 1
    assert [f for f, _ in violations_of(bad)] == [
        "series.structure.max_nodes",
        "series.structure.checks.max_node_spike_percent",
    ]
    bad.structure.checks.max_node_spike_percent = ""
    bad.structure.max_nodes = 0
    assert violations_of(bad) == [
        ("series.structure", "butterfly_arbitrage needs a coordinate axis of forward moneyness")
    ]


def test_a_schema_evolves_alone_through_an_update_mask() -> None:
    update = series_update_from_proto(
        series_pb2.Series(
            structure=series_pb2.StructureSchema(
                tenor_axis=series_pb2.StructureAxis(tenor_unit=series_pb2.TENOR_UNIT_YEARS)
            )
        ),
        field_mask_pb2.FieldMask(paths=["structure"]),
    )
    schema = update.values["structure"]
    assert isinstance(schema, StructureSchema)
    assert schema.tenor_axis.unit is TenorUnit.YEARS
