"""Pages of official values as Arrow record batches: the schema of a columnar export (the Arrow
Flight endpoint serves it; docs/cli.md `qis export` writes it to Parquet or CSV).

| column          | type                          | what                                           |
|-----------------|-------------------------------|------------------------------------------------|
| series          | dictionary<int32, string>     | "series/{id}"; only when the export names several series |
| snap_time       | timestamp[us, tz=UTC]         | the instant the value describes                |
| value           | decimal128(38, 18)            | prices and volumes: the value, exact           |
| unit            | dictionary<int32, string>     | prices and volumes: the value's own currency (prices) or unit (volumes) |
| open, high, low, close | decimal128(38, 18)     | OHLC bars, instead of `value`                  |
| volume          | decimal128(38, 18), nullable  | OHLC bars: the quantity traded, null when the bar has none |
| tenor           | string                        | term structures and surfaces, one row per node: the node's tenor |
| coordinate      | decimal128(38, 18)            | surfaces: the node's second coordinate (strike, moneyness, delta) |
| value           | decimal128(38, 18)            | term structures and surfaces: the node's value, exact |
| version         | int32                         | 1 for a first publication, then +1 per restatement |
| quality_score   | float64                       | in [0, 1]                                      |
| record_time     | timestamp[us, tz=UTC]         | when this version became official (knowledge time) |
| record_position | uint64                        | the commit position that published it          |
| flags           | list<string>                  | the rules the point failed ("jump", "stale", ...) |

`unit` is per row because a series' unit can change (a schema evolution from GBP to USD): each
value keeps the currency or unit it was published in, so older rows of one export may differ
from newer ones and from the series' current unit. A stored value without one (published
before values carried it) reads as the series' unit. OHLC bars carry no currency of their own:
they have no `unit` column, and their currency is the series' unit in `qis.series`.

A term structure or surface has one row per node, in the value's own order (by tenor, then
coordinate), each row repeating its snap's version, quality_score, record_time,
record_position and flags: a snap is published, reconciled and restated whole, so its rows
share them. Like bars, nodes have no `unit` column (the series' is in `qis.series`).

Schema metadata: `qis.read_position` (the answer reflects at least this commit position) and
`qis.series`, a JSON list of {"series", "data_type", "unit"} in the order the export named them
(`unit` there is the series' current currency or unit, from its definition).

The decimals are the segments' own decimal128(38, 18) columns (qis_adapters.readstore.segments),
sent as stored: exact, built once when the segment was written, and never through a binary
float. A stored value those columns could not hold exactly (none that ingest accepts) is an
error (INTERNAL), never rounded. A node's coordinate and value are made exact the same way
(segments' conversion), from the stored DataValue's texts, as the page is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from qis_adapters.readstore.segments import DECIMAL, DECIMAL_COLUMNS, exact_decimals
from qis_domain.snaps import format_snap

from qis_query.application.export import (
    ExportedSeries,
    ExportPage,
    ValueColumns,
    structure_nodes,
)

INSTANT = pa.timestamp("us", tz="UTC")
SERIES_NAMES = pa.dictionary(pa.int32(), pa.string())
UNITS = pa.dictionary(pa.int32(), pa.string())
FLAGS = pa.list_(pa.string())
BAR_FIELDS = ("open", "high", "low", "close", "volume")
READ_POSITION_KEY = b"qis.read_position"
SERIES_KEY = b"qis.series"
_OPTIONAL = frozenset({"volume"})  # of a bar
_STRUCTURE_KINDS = {ValueColumns.CURVE: "term_structure", ValueColumns.SURFACE: "surface"}


def schema(
    series: Sequence[ExportedSeries], columns: ValueColumns, read_position: int
) -> pa.Schema:
    fields = [pa.field("series", SERIES_NAMES, nullable=False)] if len(series) > 1 else []
    fields.append(pa.field("snap_time", INSTANT, nullable=False))
    if columns is ValueColumns.DECIMAL:
        fields.append(pa.field("value", DECIMAL, nullable=False))
        fields.append(pa.field("unit", UNITS, nullable=False))
    elif columns in _STRUCTURE_KINDS:
        fields.append(pa.field("tenor", pa.string(), nullable=False))
        if columns is ValueColumns.SURFACE:
            fields.append(pa.field("coordinate", DECIMAL, nullable=False))
        fields.append(pa.field("value", DECIMAL, nullable=False))
    else:
        fields.extend(pa.field(f, DECIMAL, nullable=f in _OPTIONAL) for f in BAR_FIELDS)
    fields += [
        pa.field("version", pa.int32(), nullable=False),
        pa.field("quality_score", pa.float64(), nullable=False),
        pa.field("record_time", INSTANT, nullable=False),
        pa.field("record_position", pa.uint64(), nullable=False),
        pa.field("flags", FLAGS, nullable=False),
    ]
    described = [{"series": s.name, "data_type": s.data_type, "unit": s.unit} for s in series]
    return pa.schema(
        fields,
        metadata={
            READ_POSITION_KEY: str(read_position).encode(),
            SERIES_KEY: json.dumps(described).encode(),
        },
    )


class BatchBuilder:
    """The record batches of each page, of `schema(series, columns, read_position)`."""

    def __init__(
        self, series: Sequence[ExportedSeries], columns: ValueColumns, read_position: int
    ) -> None:
        self.schema = schema(series, columns, read_position)
        self._series = series
        self._columns = columns
        # Every batch carries the same dictionary, so an IPC stream sends it once.
        self._names = pa.array([s.name for s in series], pa.string()) if len(series) > 1 else None

    def batches(self, page: ExportPage) -> list[pa.RecordBatch]:
        """The page's rows as record batches: one per stretch of rows that lie together in
        memory (a store read's segments, joined as they were decoded: qis_query.application
        .ranges), so that no column is copied here to join them; the stored columns are sent as
        they are, the checks read whole columns. A term structure or surface's rows are its
        nodes, the snap's columns repeated for each."""
        rows = page.rows
        series = self._series[page.series_index]
        nodes: list[pa.Array] = []
        if self._columns in _STRUCTURE_KINDS:
            rows, nodes = _nodes(series.name, rows, self._columns)
        arrays: list[pa.Array | pa.ChunkedArray] = []
        if self._names is not None:
            indices = pa.repeat(pa.scalar(page.series_index, pa.int32()), rows.num_rows)
            arrays.append(pa.DictionaryArray.from_arrays(indices, self._names))
        arrays.append(_view(rows.column("snap_us"), INSTANT))
        if nodes:
            arrays.extend(nodes)
        elif self._columns is ValueColumns.DECIMAL:
            kind = "volume" if series.data_type == "volume" else "price"
            _require_kind(series.name, rows, kind)
            arrays.append(_decimals(series.name, rows, "text"))
            arrays.append(_units(rows.column("unit"), series.unit))
        else:
            _require_kind(series.name, rows, "bar")
            # Every bar has an open: its nulls are a segment's decimals that could not be
            # held exactly (a volume is null where a bar has none).
            _decimals(series.name, rows, "open")
            arrays.extend(rows.column(DECIMAL_COLUMNS[c]) for c in _BAR_COLUMNS)
        arrays += [
            rows.column("version"),
            rows.column("quality_score"),
            _view(rows.column("recorded_from_us"), INSTANT),
            _view(rows.column("position_from"), pa.uint64()),  # positions are never negative
            rows.column("flags"),
        ]
        batches: list[pa.RecordBatch] = pa.Table.from_arrays(
            arrays, schema=self.schema
        ).to_batches()
        return batches


_BAR_COLUMNS = ("open", "high", "low", "close", "bar_volume")


def _view(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """`column` as `kind`, a type of the same layout, without copying (a cast copies)."""
    return pa.chunked_array([chunk.view(kind) for chunk in column.chunks], kind)


def _units(units: pa.ChunkedArray, series_unit: str) -> pa.Array | pa.ChunkedArray:
    """Each value's own unit, the series' where it has none ("")."""
    # Nearly every page holds the series' unit only: one comparison is cheaper than unique().
    if _all_equal(units, series_unit) or set(pc.unique(units).to_pylist()) <= {"", series_unit}:
        indices = pa.array(np.zeros(len(units), dtype=np.int32))
        return pa.DictionaryArray.from_arrays(indices, pa.array([series_unit], pa.string()))
    return pc.if_else(pc.equal(units, ""), series_unit, units).dictionary_encode()


def _all_equal(column: pa.ChunkedArray, text: str) -> bool:
    """Whether every value of a string column is `text`, nulls aside (as Arrow's all(equal())
    answers). Read from its buffers: every value of the length of `text`, and their bytes
    `text` repeated, one comparison of memory, ~1 ns a value where Arrow's kernels take ~5 (the
    kind and the unit of every row a page sends are checked)."""
    want = text.encode()
    for chunk in column.chunks:
        if chunk.null_count or chunk.type != pa.string():  # (int32 offsets read below)
            if pc.all(pc.equal(chunk, text)).as_py() is False:
                return False
            continue
        if not len(chunk):
            continue
        _, offsets, data = chunk.buffers()
        ends = np.frombuffer(offsets, np.int32, len(chunk) + 1, chunk.offset * 4)
        if not (np.diff(ends) == len(want)).all():
            return False
        first = int(ends[0])
        if not data.slice(first, int(ends[-1]) - first).equals(pa.py_buffer(want * len(chunk))):
            return False
    return True


def _require_kind(series: str, rows: pa.Table, kind: str) -> None:
    """A stored value of another kind than the series' data type is a bug (INTERNAL)."""
    kinds = rows.column("kind")
    if _all_equal(kinds, kind):
        return
    other = pc.index(pc.not_equal(kinds, kind), True).as_py()
    raise ValueError(
        f"the stored value of {series} at {format_snap(rows.column('snap_us')[other].as_py())}"
        f" (version {rows.column('version')[other].as_py()}) is not of the series' data type"
    )


def _nodes(series: str, rows: pa.Table, columns: ValueColumns) -> tuple[pa.Table, list[pa.Array]]:
    """`rows` repeated once per node of each row's structure, and the nodes' value columns:
    tenor, (coordinate,) value."""
    _require_kind(series, rows, _STRUCTURE_KINDS[columns])
    nodes = structure_nodes(rows.column("value").to_pylist())
    owners = np.repeat(np.arange(rows.num_rows), nodes.counts)
    arrays = [pa.array(nodes.tenors, pa.string())]
    if columns is ValueColumns.SURFACE:
        arrays.append(_node_decimals(series, nodes.coordinates))
    arrays.append(_node_decimals(series, nodes.values))
    return rows.take(owners), arrays


def _node_decimals(series: str, texts: list[str]) -> pa.Array:
    """decimal128(38, 18) of a node's decimal texts, exactly; one it cannot hold exactly is an
    error, as in `_decimals`."""
    try:
        return exact_decimals(pa.chunked_array([pa.array(texts, pa.string())])).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ValueError(f"a stored value of {series} is not a bounded decimal") from None


def _decimals(series: str, rows: pa.Table, text: str) -> pa.ChunkedArray:
    """The decimal column of the text column `text`, present in every row: a null there is a
    stored value decimal128(38, 18) cannot hold exactly, an error."""
    decimals = rows.column(DECIMAL_COLUMNS[text])
    if decimals.null_count:
        raise ValueError(f"a stored value of {series} is not a bounded decimal")
    return decimals
