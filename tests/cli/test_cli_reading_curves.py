"""How `qis` tables show a curve or a surface: its size and span, not its nodes."""

from __future__ import annotations

from qis.data.v1 import values_pb2
from qis_cli.reading import value_text


def test_a_curve_shows_its_node_count_and_tenor_span() -> None:
    nodes = [values_pb2.CurveNode(tenor=t, value="4.5") for t in ("P1M", "P1Y", "P30Y")]
    curve = values_pb2.DataValue(term_structure=values_pb2.TermStructure(nodes=nodes))
    assert value_text(curve) == "3 nodes P1M..P30Y"
    empty = values_pb2.DataValue(term_structure=values_pb2.TermStructure())
    assert value_text(empty) == "0 nodes"


def test_a_surface_shows_its_grid() -> None:
    nodes = [
        values_pb2.SurfaceNode(tenor=t, coordinate=k, value="0.2")
        for t in ("P1M", "P3M")
        for k in ("0.9", "1.0", "1.1")
    ]
    surface = values_pb2.DataValue(surface=values_pb2.Surface(nodes=nodes[:-1]))
    assert value_text(surface) == "5 nodes (2 tenors x 3)"
