"""Both views of official values read into the same rows, by code of the tests' own (not the
service's), so that a test can say that VALUE_VIEW_COLUMNS carries row by row what the per-point
view carries (tests/service/query/test_query_columns.py, tests/e2e/test_e2e_columns_query.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import values_pb2

Value = tuple[object, ...]
Row = tuple[int, int, Value, float, int, int, int, int, tuple[int, ...]]
"""(snap µs, version, value, quality, record µs, record position, supersede position, method,
flags)"""


def micros(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1_000


def meaning(value: values_pb2.DataValue, unit: str) -> Value:
    """What a value says, in a series whose unit is `unit`: a price's or a volume's empty
    currency or unit is the series' (values.proto); a bar's is the series'."""
    case = value.WhichOneof("kind")
    if case == "price":
        return ("price", value.price.value, value.price.currency or unit)
    if case == "volume":
        return ("volume", value.volume.quantity, value.volume.unit or unit)
    if case == "bar":
        b = value.bar
        return ("bar", b.open, b.high, b.low, b.close, b.volume, unit)
    if case == "term_structure":
        return ("term_structure", tuple((n.tenor, n.value) for n in value.term_structure.nodes))
    if case == "surface":
        nodes = value.surface.nodes
        return ("surface", tuple((n.tenor, n.coordinate, n.value) for n in nodes))
    return (str(case), value.SerializeToString(deterministic=True))


def point_rows(values: Sequence[pb.OfficialValue], name: str, unit: str) -> list[Row]:
    """The rows of the per-point view of series `name` (whose unit is `unit`)."""
    rows: list[Row] = []
    for v in values:
        assert v.series == name
        assert v.HasField("supersede_time") == (v.supersede_position != 0)
        rows.append(
            (
                micros(v.snap_time),
                v.version,
                meaning(v.value, unit),
                v.quality_score,
                micros(v.record_time),
                v.record_position,
                v.supersede_position,
                v.method,
                tuple(v.flags),
            )
        )
    return rows


def column_rows(c: pb.OfficialValueColumns, case: str) -> list[Row]:
    """The rows of the columns, after checking their shape: the values in `case` (or in
    `other`), every column as long as the snaps, the flags all claimed, a bar's volume column
    unset only when no bar has a volume."""
    n = len(c.snap_time_micros)
    lengths = {
        len(c.versions),
        len(c.quality_scores),
        len(c.record_time_micros),
        len(c.record_positions),
        len(c.supersede_positions),
        len(c.methods),
        len(c.flag_counts),
    }
    assert lengths == {n}
    assert sum(c.flag_counts) == len(c.flags)
    got = c.WhichOneof("values")
    assert got in (case, "other"), got
    values: list[Value]
    if got == "prices":
        values = [("price", t, c.unit) for t in c.prices.texts]
    elif got == "volumes":
        values = [("volume", t, c.unit) for t in c.volumes.texts]
    elif got == "bars":
        b = c.bars
        volumes = list(b.volume.texts) if b.HasField("volume") else [""] * n
        assert not b.HasField("volume") or any(volumes)
        columns = zip(b.open.texts, b.high.texts, b.low.texts, b.close.texts, volumes, strict=True)
        values = [("bar", o, h, low, cl, v, c.unit) for o, h, low, cl, v in columns]
    elif got == "structures":
        values = structure_values(c.structures)
    else:
        values = [meaning(v, c.unit) for v in c.other.values]
    assert len(values) == n
    rows: list[Row] = []
    at = 0
    for i in range(n):
        flags = tuple(c.flags[at : at + c.flag_counts[i]])
        at += c.flag_counts[i]
        rows.append(
            (
                c.snap_time_micros[i],
                c.versions[i],
                values[i],
                c.quality_scores[i],
                c.record_time_micros[i],
                c.record_positions[i],
                c.supersede_positions[i],
                c.methods[i],
                flags,
            )
        )
    return rows


def structure_values(s: values_pb2.StructureColumns) -> list[Value]:
    """Each row's nodes, as `meaning` reads a term structure (no coordinates on the page) or a
    surface, after checking that the node columns line up."""
    tenors, coordinates, texts = list(s.tenors), list(s.coordinates), list(s.values.texts)
    assert all(count > 0 for count in s.node_counts)
    assert sum(s.node_counts) == len(tenors) == len(texts)
    assert len(coordinates) in (0, len(tenors))
    values: list[Value] = []
    at = 0
    for count in s.node_counts:
        end = at + count
        if coordinates:
            nodes = zip(tenors[at:end], coordinates[at:end], texts[at:end], strict=True)
            values.append(("surface", tuple(nodes)))
        else:
            values.append(
                ("term_structure", tuple(zip(tenors[at:end], texts[at:end], strict=True)))
            )
        at = end
    return values
