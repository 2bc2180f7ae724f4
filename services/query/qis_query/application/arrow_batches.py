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
| version         | int32                         | 1 for a first publication, then +1 per restatement |
| quality_score   | float64                       | in [0, 1]                                      |
| record_time     | timestamp[us, tz=UTC]         | when this version became official (knowledge time) |
| record_position | uint64                        | the commit position that published it          |
| flags           | list<string>                  | the rules the point failed ("jump", "spike", ...) |

`unit` is per row because a series' unit can change (a schema evolution from GBP to USD): each
value keeps the currency or unit it was published in, so older rows of one export may differ
from newer ones and from the series' current unit. A stored value without one (published
before values carried it) reads as the series' unit. OHLC bars carry no currency of their own:
they have no `unit` column, and their currency is the series' unit in `qis.series`.

Schema metadata: `qis.read_position` (the answer reflects at least this commit position) and
`qis.series`, a JSON list of {"series", "data_type", "unit"} in the order the export named them
(`unit` there is the series' current currency or unit, from its definition).

Decimals are built from the stored decimal texts by Arrow's string-to-decimal cast, which is
exact; no value passes through a binary float. A stored text in exponent notation is first
written out in plain form by Python's decimal module, exactly: any zero as "0" ("0E+9999" and
"0E-30" are zeros that Arrow's parser cannot or need not scale), any other value quantized to
18 places, which is exact for every decimal ingest accepts (|x| < 1e18 with at most 18 places
as written: at most 36 digits). A text that still cannot be made exact (more than 18 significant
places, or beyond 38 digits) is an error (INTERNAL), never rounded.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from qis.data.v1 import values_pb2
from qis_domain.snaps import format_snap
from qis_domain.values import is_bounded_plain_decimal

from qis_query.application.export import ExportedSeries, ExportPage, ValueColumns

DECIMAL = pa.decimal128(38, 18)
INSTANT = pa.timestamp("us", tz="UTC")
SERIES_NAMES = pa.dictionary(pa.int32(), pa.string())
UNITS = pa.dictionary(pa.int32(), pa.string())
FLAGS = pa.list_(pa.string())
BAR_FIELDS = ("open", "high", "low", "close", "volume")
READ_POSITION_KEY = b"qis.read_position"
SERIES_KEY = b"qis.series"
_OPTIONAL = frozenset({"volume"})  # of a bar

_parse = values_pb2.DataValue.FromString


def schema(
    series: Sequence[ExportedSeries], columns: ValueColumns, read_position: int
) -> pa.Schema:
    fields = [pa.field("series", SERIES_NAMES, nullable=False)] if len(series) > 1 else []
    fields.append(pa.field("snap_time", INSTANT, nullable=False))
    if columns is ValueColumns.DECIMAL:
        fields.append(pa.field("value", DECIMAL, nullable=False))
        fields.append(pa.field("unit", UNITS, nullable=False))
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
        """The page's rows as record batches: one per stretch of
        rows that lie together in memory (mostly a segment's), so that no column is copied to
        join them; the decimal casts are Arrow kernels, the only pass over the values."""
        rows = page.rows
        arrays: list[pa.Array | pa.ChunkedArray] = []
        if self._names is not None:
            indices = pa.repeat(pa.scalar(page.series_index, pa.int32()), rows.num_rows)
            arrays.append(pa.DictionaryArray.from_arrays(indices, self._names))
        arrays.append(rows.column("snap_us").cast(INSTANT))
        series = self._series[page.series_index]
        if self._columns is ValueColumns.DECIMAL:
            kind = "volume" if series.data_type == "volume" else "price"
            _require_kind(series.name, rows, kind)
            arrays.append(_decimals(series.name, rows.column("text")))
            arrays.append(_units(rows.column("unit"), series.unit))
        else:
            _require_kind(series.name, rows, "bar")
            arrays.extend(
                _decimals(series.name, rows.column(column), optional=field in _OPTIONAL)
                for field, column in zip(BAR_FIELDS, _BAR_COLUMNS, strict=True)
            )
        arrays += [
            rows.column("version"),
            rows.column("quality_score"),
            rows.column("recorded_from_us").cast(INSTANT),
            rows.column("position_from").cast(pa.uint64()),
            rows.column("flags"),
        ]
        batches: list[pa.RecordBatch] = pa.Table.from_arrays(
            arrays, schema=self.schema
        ).to_batches()
        return batches


_BAR_COLUMNS = ("open", "high", "low", "close", "bar_volume")


def _units(units: pa.ChunkedArray, series_unit: str) -> pa.Array | pa.ChunkedArray:
    """Each value's own unit, the series' where it has none ("")."""
    # Nearly every page holds the series' unit only: one comparison is cheaper than unique().
    only_series_unit = pc.all(pc.equal(units, series_unit)).as_py() is not False
    if only_series_unit or set(pc.unique(units).to_pylist()) <= {"", series_unit}:
        indices = pa.array(np.zeros(len(units), dtype=np.int32))
        return pa.DictionaryArray.from_arrays(indices, pa.array([series_unit], pa.string()))
    return pc.if_else(pc.equal(units, ""), series_unit, units).dictionary_encode()


def _require_kind(series: str, rows: pa.Table, kind: str) -> None:
    """A stored value of another kind than the series' data type is a bug (INTERNAL)."""
    kinds = rows.column("kind")
    if pc.all(pc.equal(kinds, kind)).as_py() is not False:
        return
    other = pc.index(pc.not_equal(kinds, kind), True).as_py()
    raise ValueError(
        f"the stored value of {series} at {format_snap(rows.column('snap_us')[other].as_py())}"
        f" (version {rows.column('version')[other].as_py()}) is not of the series' data type"
    )


_PLACES = decimal.Decimal(1).scaleb(-DECIMAL.scale)
_EXACT = decimal.Context(prec=DECIMAL.precision, traps=[decimal.Inexact, decimal.InvalidOperation])


def plain(text: str) -> str:
    """`text` as Arrow's cast to decimal128(38, 18) takes it, the same number exactly: a plain
    decimal within bounds as it is, any zero as "0", anything else quantized to 18 places
    when that is exact (else unchanged, for the cast to refuse)."""
    if not text or is_bounded_plain_decimal(text):
        return text
    try:
        number = decimal.Decimal(text)
        if number.is_zero():
            return "0"
        return format(number.quantize(_PLACES, context=_EXACT), "f")
    except (decimal.DecimalException, ValueError):
        return text


def _decimals(series: str, texts: pa.ChunkedArray, *, optional: bool = False) -> pa.ChunkedArray:
    """decimal128(38, 18) from decimal texts, exactly; "" is null where the field is optional.
    The cast refuses what it cannot hold exactly, so the texts are made plain (see `plain`)
    only when it does."""
    if optional:
        texts = pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts)
    try:
        return texts.cast(DECIMAL)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        texts = pa.chunked_array(
            [pa.array([None if t is None else plain(t) for t in texts.to_pylist()], pa.string())]
        )
    try:
        return texts.cast(DECIMAL)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ValueError(f"a stored value of {series} is not a bounded decimal: {error}") from None
