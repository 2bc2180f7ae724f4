"""ValueColumns reading term structures and surfaces in columns (OfficialValueColumns.structures,
one entry per node): across pages, one row per node, and as DataValues once a page needs
`other`."""

from __future__ import annotations

from decimal import Decimal

import pytest
from qis.data.v1 import query_service_pb2, values_pb2
from qis_client import MalformedColumns, ValueColumns, micros_datetime

from tests.clients.test_client_columns import official_columns

CURVES = [
    [("P1M", "4.01"), ("P1Y", "4.25"), ("P10Y", "5E-7")],
    [("P1M", "4.02")],
    [("P3M", "4.1"), ("P30Y", "3.999999999999999999")],
]
SURFACES = [
    [("P1M", "0.9", "0.25"), ("P1M", "1.1", "0.24")],
    [("P3M", "0.9", "0.23"), ("P3M", "1", "0.2"), ("P6M", "1", "0.21")],
]


def curve(nodes: list[tuple[str, str]]) -> values_pb2.DataValue:
    curve = values_pb2.TermStructure(
        nodes=[values_pb2.CurveNode(tenor=t, value=v) for t, v in nodes]
    )
    return values_pb2.DataValue(term_structure=curve)


def surface(nodes: list[tuple[str, str, str]]) -> values_pb2.DataValue:
    surface = values_pb2.Surface(
        nodes=[values_pb2.SurfaceNode(tenor=t, coordinate=k, value=v) for t, k, v in nodes]
    )
    return values_pb2.DataValue(surface=surface)


def structure_columns(
    first: int, rows: list[list[tuple[str, ...]]]
) -> query_service_pb2.OfficialValueColumns:
    """official_columns(first, len(rows)) with its values in `structures`, one entry per node."""
    columns = official_columns(first, len(rows))
    columns.structures.SetInParent()
    s = columns.structures
    for nodes in rows:
        s.node_counts.append(len(nodes))
        s.tenors.extend(n[0] for n in nodes)
        s.values.texts.extend(n[-1] for n in nodes)
        s.coordinates.extend(n[1] for n in nodes if len(n) == 3)
    return columns


def test_curves_in_structure_columns_read_one_row_per_node() -> None:
    values = ValueColumns()
    values.append(structure_columns(0, [list(c) for c in CURVES[:2]]))
    values.append(structure_columns(2, [list(CURVES[2])]))
    assert (len(values), values.kind) == (3, "structures")
    assert values.structures.node_counts == [3, 1, 2]
    assert values.structures.coordinates == []
    assert values.structures.data_values() == [curve(c) for c in CURVES]
    rows = values.node_rows()
    assert len(rows) == 6
    assert rows[2] == (
        micros_datetime(values.snap_time_micros[0]),
        "P10Y",
        None,
        Decimal("5E-7"),
        1,
    )
    assert [r[0] for r in rows] == [values.snap_times()[i] for i in (0, 0, 0, 1, 2, 2)]
    assert rows[5][3] == Decimal("3.999999999999999999")  # exact
    with pytest.raises(TypeError, match="structures"):
        values.decimals()


def test_surfaces_in_structure_columns_carry_coordinates() -> None:
    values = ValueColumns()
    values.append(structure_columns(0, [list(s) for s in SURFACES]))
    assert values.structures.data_values() == [surface(s) for s in SURFACES]
    assert [(r[1], r[2], r[3]) for r in values.node_rows()] == [
        (t, Decimal(k), Decimal(v)) for s in SURFACES for t, k, v in s
    ]


def test_structures_before_a_page_in_other_become_data_values() -> None:
    values = ValueColumns()
    values.append(structure_columns(0, [list(c) for c in CURVES[:2]]))
    mixed = official_columns(2, 2)
    mixed.other.values.extend([curve(CURVES[2]), surface(SURFACES[0])])
    values.append(mixed)
    assert values.kind == "other"
    assert values.other == [*(curve(c) for c in CURVES), surface(SURFACES[0])]
    assert values.structures.node_counts == []
    with pytest.raises(TypeError, match="other"):
        values.node_rows()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda s: s.node_counts.__setitem__(0, 2), "node_counts add up to 2, there are 4"),
        (lambda s: s.node_counts.__setitem__(0, 0), r"a row without nodes: node_counts \[0\]"),
        (lambda s: s.values.texts.pop(), "4 tenors, but 3 values"),
        (lambda s: s.coordinates.append("1"), "and 1 coordinates"),
        (lambda s: s.node_counts.append(0), "1 snaps, but"),
    ],
)
def test_structure_columns_that_do_not_line_up_are_refused(change: object, said: str) -> None:
    columns = structure_columns(0, [list(CURVES[0])])
    columns.structures.tenors.append("P2Y")
    columns.structures.values.texts.append("1")
    columns.structures.node_counts[0] = 4
    change(columns.structures)  # type: ignore[operator]
    with pytest.raises(MalformedColumns, match=said):
        ValueColumns().append(columns)
