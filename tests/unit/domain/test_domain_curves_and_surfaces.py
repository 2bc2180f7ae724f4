"""Term structures and surfaces in the domain: tenors, the schema a series declares, the shape a
value must have (violations naming the node), the checks per node and their evidence, and the
event form of the values."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from pydantic import ValidationError
from qis_domain.definitions import SeriesDefinition
from qis_domain.errors import FieldViolation
from qis_domain.rules import RULE_NAMES, RuleFailure, Severity
from qis_domain.snaps import Frequency
from qis_domain.structure_checks import (
    MAX_EVIDENCE_NODES,
    check_structure,
    check_structure_jump,
    check_structures,
    differing_nodes,
)
from qis_domain.structures import (
    MAX_STRUCTURE_NODES,
    CoordinateAxis,
    CoordinateUnit,
    Monotonicity,
    StructureChecks,
    StructureSchema,
    TenorAxis,
    TenorUnit,
    structure_violations,
    tenor_years,
)
from qis_domain.values import (
    CurveNode,
    DataType,
    Surface,
    SurfaceNode,
    TermStructure,
    decode_value,
    encode_value,
    value_from_doc,
    value_to_doc,
)

D = Decimal
TENORS = ("P1M", "P3M", "P6M", "P1Y", "P2Y", "P5Y")
MONEYNESS = CoordinateAxis(name="moneyness", unit=CoordinateUnit.MONEYNESS)


def curve(*values: str, tenors: tuple[str, ...] = TENORS) -> TermStructure:
    return TermStructure(tuple(CurveNode(t, D(v)) for t, v in zip(tenors, values, strict=True)))


def grid(vol: dict[tuple[str, str], str], default: str = "0.2") -> Surface:
    """Expiries P1M, P3M, P1Y x moneyness 0.8 to 1.2; `vol` overrides some nodes."""
    ks = ("0.8", "0.9", "1.0", "1.1", "1.2")
    return Surface(
        tuple(
            SurfaceNode(t, D(k), D(vol.get((t, k), default)))
            for t in ("P1M", "P3M", "P1Y")
            for k in ks
        )
    )


def shape(value: TermStructure | Surface, schema: StructureSchema | None) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    structure_violations(value, schema, "points[2].value", violations)
    return violations


def test_tenors_are_iso_periods_ordered_by_their_length_in_years() -> None:
    assert tenor_years("P1Y6M") == Fraction(3, 2)
    assert tenor_years("P12M") == tenor_years("P1Y") == 1
    assert tenor_years("P2W") == Fraction(14, 365)
    assert tenor_years("P30D") < tenor_years("P1M")  # type: ignore[operator]
    for not_a_tenor in ("", "P", "1M", "p3m", "PT12H", "P1.5Y", "P3M1Y", "P-1D", "P99999Y"):
        assert tenor_years(not_a_tenor) is None, not_a_tenor


def test_a_well_formed_curve_and_surface_pass_their_shape() -> None:
    assert shape(curve("1", "2", "3", "4", "5", "6"), None) == []
    schema = StructureSchema(coordinate_axis=MONEYNESS, full_grid=True)
    assert shape(grid({}), schema) == []


def test_each_shape_violation_names_its_node() -> None:
    value = TermStructure(
        (
            CurveNode("P3M", D(1)),
            CurveNode("P1M", D(1)),  # before the one above
            CurveNode("P12M", D(1)),
            CurveNode("P1Y", D(1)),  # the same tenor as P12M
            CurveNode("2Y", D(1)),  # not a tenor
        )
    )
    assert shape(value, None) == [
        FieldViolation(
            "points[2].value.term_structure.nodes[4].tenor",
            "'2Y' is not a tenor: an ISO 8601 period of years, months, weeks and days in upper"
            ' case ("P3M", "P1Y6M", "P30D")',
        ),
        FieldViolation(
            "points[2].value.term_structure.nodes[1]",
            "nodes are by increasing tenor: P1M after P3M",
        ),
        FieldViolation("points[2].value.term_structure.nodes[3]", "the same tenor as nodes[2]"),
    ]


def test_the_declared_units_bound_tenors_and_coordinates() -> None:
    months = StructureSchema(tenor_axis=TenorAxis(unit=TenorUnit.MONTHS))
    assert [v.field for v in shape(curve("1", "2", tenors=("P3M", "P1Y")), months)] == [
        "points[2].value.term_structure.nodes[1].tenor"
    ]
    deltas = StructureSchema(coordinate_axis=CoordinateAxis(unit=CoordinateUnit.DELTA))
    value = Surface((SurfaceNode("P1M", D("-0.25"), D(1)), SurfaceNode("P1M", D("1.5"), D(1))))
    assert shape(value, deltas) == [
        FieldViolation(
            "points[2].value.surface.nodes[1].coordinate", "1.5: a delta is from -1 to 1"
        )
    ]
    assert [v.field for v in shape(grid({}), StructureSchema(coordinate_axis=MONEYNESS))] == []
    negative = Surface((SurfaceNode("P1M", D(0), D(1)),))
    assert shape(negative, StructureSchema(coordinate_axis=MONEYNESS))[0].description == (
        "0: a forward moneyness is above 0"
    )


def test_a_declared_full_grid_names_the_missing_nodes() -> None:
    holed = Surface(
        tuple(n for n in grid({}).nodes if (n.tenor, str(n.coordinate)) != ("P3M", "1.0"))
    )
    schema = StructureSchema(coordinate_axis=MONEYNESS, full_grid=True)
    assert shape(holed, schema) == [
        FieldViolation("points[2].value.surface.nodes", "not a full grid: no node at P3M 1.0")
    ]
    assert shape(holed, StructureSchema(coordinate_axis=MONEYNESS)) == []


def test_node_counts_are_bounded_by_the_schema() -> None:
    small = StructureSchema(max_nodes=5)
    assert shape(curve("1", "2", "3", "4", "5", "6"), small) == [
        FieldViolation("points[2].value.term_structure.nodes", "6 nodes, more than 5")
    ]
    assert shape(TermStructure(()), None)[0].description == "at least one node is required"
    with pytest.raises(ValidationError):
        StructureSchema(max_nodes=MAX_STRUCTURE_NODES + 1)


def test_the_schema_refuses_checks_its_axes_cannot_support() -> None:
    with pytest.raises(ValidationError, match="need a coordinate axis"):
        StructureSchema(checks=StructureChecks(calendar_arbitrage=True))
    strikes = CoordinateAxis(unit=CoordinateUnit.STRIKE)
    with pytest.raises(ValidationError, match="forward moneyness"):
        StructureSchema(coordinate_axis=strikes, checks=StructureChecks(butterfly_arbitrage=True))
    with pytest.raises(ValidationError, match="at least 3"):
        StructureChecks(flat_spot_nodes=2)


def test_every_structure_rule_is_a_known_rule() -> None:
    rules = {
        "curve_node_spike",
        "curve_node_jump",
        "curve_flat_spot",
        "curve_monotonicity",
        "surface_calendar_arbitrage",
        "surface_butterfly_arbitrage",
    }
    assert rules <= RULE_NAMES


def only(failures: list[RuleFailure]) -> RuleFailure:
    assert len(failures) == 1, failures
    return failures[0]


def test_a_node_out_and_back_against_its_neighbours_is_a_spike() -> None:
    schema = StructureSchema(checks=StructureChecks(max_node_spike_percent=D(10)))
    failure = only(check_structure(curve("4.0", "4.1", "5.0", "4.2", "4.3", "4.4"), schema))
    assert (failure.rule, failure.severity) == ("curve_node_spike", Severity.WARNING)
    assert failure.evidence["count"] == 1
    assert failure.evidence["nodes"][0] == {
        "node": "P6M",
        "axis": "tenor",
        "previous_node": "P3M",
        "previous": "4.1",
        "value": "5.0",
        "next_node": "P1Y",
        "next": "4.2",
        "move_in_percent": "21.9512",
        "move_out_percent": "16.0000",
    }
    # A steep but monotone short end moves one way: no spike.
    assert check_structure(curve("1.0", "2.0", "3.5", "4.0", "4.1", "4.2"), schema) == []
    # Out and back, but back by less than the limit.
    assert check_structure(curve("4.0", "4.1", "5.0", "4.6", "4.6", "4.6"), schema) == []


def test_a_run_of_equal_neighbours_is_a_flat_spot() -> None:
    schema = StructureSchema(checks=StructureChecks(flat_spot_nodes=3))
    failure = only(check_structure(curve("1", "2", "2", "2", "3", "3"), schema))
    assert (failure.rule, failure.severity) == ("curve_flat_spot", Severity.WARNING)
    assert failure.evidence == {
        "nodes": [
            {"from_node": "P3M", "to_node": "P1Y", "axis": "tenor", "nodes": 3, "value": "2"}
        ],
        "count": 1,
        "min_nodes": 3,
    }
    assert check_structure(curve("1", "2", "2", "3", "3", "4"), schema) == []


def test_monotonicity_is_checked_where_declared_and_names_both_nodes() -> None:
    falling = StructureSchema(monotonicity=Monotonicity.NON_INCREASING)
    discount_factors = curve("0.99", "0.98", "0.98", "0.95", "0.97", "0.80")
    failure = only(check_structure(discount_factors, falling))
    assert (failure.rule, failure.severity) == ("curve_monotonicity", Severity.ERROR)
    assert failure.evidence["nodes"] == [
        {"node": "P2Y", "value": "0.97", "previous_node": "P1Y", "previous": "0.95"}
    ]
    assert failure.evidence["expected"] == "non_increasing"
    assert check_structure(discount_factors, StructureSchema()) == []


def test_a_node_jumping_from_the_previous_structure_holds_the_value() -> None:
    schema = StructureSchema(checks=StructureChecks(max_node_jump_percent=D(5)))
    before = curve("4.00", "4.10", "4.20", "4.30", "4.40", "4.50")
    after = TermStructure(
        (*curve("4.01", "4.11", "4.70", "4.31", "4.41", "4.51").nodes, CurveNode("P10Y", D(9)))
    )
    failure = check_structure_jump(after, before, schema)
    assert failure is not None
    assert (failure.rule, failure.severity) == ("curve_node_jump", Severity.ERROR)
    assert failure.evidence == {
        "nodes": [{"node": "P6M", "previous": "4.20", "value": "4.70", "jump_percent": "11.9048"}],
        "count": 1,
        "limit_percent": "5",
    }  # P10Y is new: it has no move
    assert check_structure_jump(before, before, schema) is None
    # A tenor written another way is the same node.
    renamed = curve(
        "4.00",
        "4.10",
        "4.20",
        "4.30",
        "4.40",
        "4.50",
        tenors=("P1M", "P3M", "P6M", "P12M", "P24M", "P60M"),
    )
    assert check_structure_jump(renamed, before, schema) is None


def test_surface_jumps_match_nodes_by_tenor_and_coordinate() -> None:
    schema = StructureSchema(
        coordinate_axis=MONEYNESS, checks=StructureChecks(max_node_jump_percent=D(10))
    )
    failure = check_structure_jump(grid({("P3M", "1.1"): "0.3"}), grid({}), schema)
    assert failure is not None
    assert [n["node"] for n in failure.evidence["nodes"]] == ["P3M 1.1"]


def test_total_variance_falling_with_expiry_is_a_calendar_arbitrage() -> None:
    schema = StructureSchema(
        coordinate_axis=MONEYNESS, checks=StructureChecks(calendar_arbitrage=True)
    )
    # sigma^2 T: 0.2^2 x 3/12 = 0.01 at P3M; 0.09^2 x 1 = 0.0081 at P1Y: falls.
    failure = only(check_structure(grid({("P1Y", "0.9"): "0.09"}), schema))
    assert (failure.rule, failure.severity) == ("surface_calendar_arbitrage", Severity.ERROR)
    assert failure.evidence["nodes"] == [
        {
            "node": "P1Y 0.9",
            "total_variance": "0.008100000000",
            "previous_node": "P3M 0.9",
            "previous_total_variance": "0.010000000000",
        }
    ]
    # Vol may fall with expiry as long as total variance does not: 0.1^2 x 1 = 0.01 exactly.
    assert check_structure(grid({("P1Y", "0.9"): "0.1"}), schema) == []


def test_a_smile_with_a_dent_is_a_butterfly_arbitrage() -> None:
    schema = StructureSchema(
        coordinate_axis=MONEYNESS, checks=StructureChecks(butterfly_arbitrage=True)
    )
    assert check_structure(grid({}), schema) == []  # flat vol: Black prices are convex
    smile = {
        ("P1Y", "0.8"): "0.26",
        ("P1Y", "0.9"): "0.22",
        ("P1Y", "1.1"): "0.21",
        ("P1Y", "1.2"): "0.24",
    }
    assert check_structure(grid(smile), schema) == []
    # A vol spike at the money makes its call dearer than the average of its wings'.
    failure = only(check_structure(grid({("P3M", "1.0"): "0.6"}), schema))
    assert (failure.rule, failure.severity) == ("surface_butterfly_arbitrage", Severity.ERROR)
    assert [n["node"] for n in failure.evidence["nodes"]] == ["P3M 1.0"]
    assert D(failure.evidence["nodes"][0]["convexity"]) < 0


def test_evidence_lists_at_most_twenty_nodes_and_counts_them_all() -> None:
    tenors = tuple(f"P{i}M" for i in range(1, 52))
    zigzag = curve(*("1" if i % 2 else "2" for i in range(51)), tenors=tenors)
    schema = StructureSchema(checks=StructureChecks(max_node_spike_percent=D(10)))
    failure = only(check_structure(zigzag, schema))
    assert failure.evidence["count"] == 49
    assert len(failure.evidence["nodes"]) == MAX_EVIDENCE_NODES


def test_values_keep_their_nodes_through_the_event_form() -> None:
    for value in (curve("1.50", "-0.25", "3", "4", "5", "6E-3"), grid({("P3M", "1.0"): "0.25"})):
        assert value_from_doc(value_to_doc(value)) == value
        raw = encode_value(value)
        assert decode_value(value.data_type, "USD", raw) == value
        assert value_to_doc(decode_value(value.data_type, "USD", raw)) == raw  # texts as sent


def test_a_definition_keeps_its_schema_and_one_without_stays_as_it_was() -> None:
    plain = SeriesDefinition(data_type=DataType.PRICE, frequency=Frequency.DAILY, sources=())
    assert "structure" not in plain.model_dump(mode="json")
    schema = StructureSchema(
        tenor_axis=TenorAxis(name="expiry", unit=TenorUnit.MONTHS),
        coordinate_axis=MONEYNESS,
        full_grid=True,
        monotonicity=Monotonicity.NON_DECREASING,
        checks=StructureChecks(max_node_spike_percent=D("2.5"), butterfly_arbitrage=True),
    )
    surface = SeriesDefinition(
        data_type=DataType.SURFACE, frequency=Frequency.DAILY, sources=(), structure=schema
    )
    assert SeriesDefinition.model_validate_json(surface.model_dump_json()) == surface


def test_a_command_checks_each_value_against_the_structure_before_it() -> None:
    schema = StructureSchema(checks=StructureChecks(max_node_jump_percent=D(5), flat_spot_nodes=3))
    first = curve("1", "2", "3", "4", "5", "6")
    flat = curve("1", "1", "1", "2", "3", "4")
    jumped = curve("1", "1", "1.5", "2", "3", "4")
    found = check_structures([first, flat, jumped], schema, [None, first, flat])
    assert {i: [f.rule for f in failures] for i, failures in found.items()} == {
        1: ["curve_flat_spot", "curve_node_jump"],
        2: ["curve_node_jump"],
    }
    assert check_structures([jumped], schema, [None]) == {}
    assert check_structures([jumped], schema, [jumped]) == {}


def test_reconciliation_compares_structures_node_by_node() -> None:
    def close(x: Decimal, y: Decimal) -> bool:
        return abs(x - y) <= D("0.01")

    a = curve("1.00", "2.00", "3.00", "4.00", "5.00", "6.00")
    b = curve("1.00", "2.01", "3.05", "4.00", "5.00", "6.10")
    assert differing_nodes(a, b, close) == ["P6M", "P5Y"]
    assert differing_nodes(a, a, close) == []
    other_tenors = curve(
        "1", "2", "3", "4", "5", "6", tenors=("P1M", "P3M", "P6M", "P1Y", "P2Y", "P7Y")
    )
    assert differing_nodes(a, other_tenors, close) is None
    assert differing_nodes(a, grid({}), close) is None
