"""Official values in columns (qis.data.v1.OfficialValueColumns, VALUE_VIEW_COLUMNS): row i of
every column is the OfficialValue the per-point view would carry at index i, built with one
Python list per column and no message per row.

Values are the decimal strings of the stored DataValues, exactly as the per-point view carries
them: the read model's rows hold them in columns (qis_adapters.readstore.segments).

`unit` is the series' own (its definition), which is also what a price or volume without a
currency or unit means (values.proto). Should a stored price or volume carry another currency
or unit (a series whose unit was changed by a schema evolution keeps its older values
as they were), no single `unit` is true of the page: its values then travel in `other`, one
DataValue per row, as the per-point view has them; so does a value of another kind than the
series' data type. Options chains and corporate actions always do."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.readstore.port import OPEN_END, SeriesEntry

from qis_query.entrypoints import wire
from qis_query.entrypoints.mapping import METHODS, RULES

E = TypeVar("E", bound=int)


class Case(StrEnum):
    """The cases of OfficialValueColumns.values."""

    PRICES = "prices"
    VOLUMES = "volumes"
    BARS = "bars"
    OTHER = "other"


_CASES = {
    values_pb2.DATA_TYPE_PRICE: Case.PRICES,
    values_pb2.DATA_TYPE_VOLUME: Case.VOLUMES,
    values_pb2.DATA_TYPE_OHLC_BAR: Case.BARS,
}


@dataclass(frozen=True, slots=True)
class ValueLayout:
    """How a series' values go into columns: the case of OfficialValueColumns.values, and the
    series' currency or unit."""

    case: Case
    unit: str


def layout(entry: SeriesEntry) -> ValueLayout:
    """From a catalogue entry (the proto-JSON form of its Series, under either form of the
    field names)."""
    definition = entry.definition
    return _layout(definition.get("data_type", definition.get("dataType")), definition.get("unit"))


@functools.lru_cache(maxsize=256)
def _layout(data_type: object, unit: object) -> ValueLayout:
    """Parsed as protobuf parses the definition (30 µs for these two fields), once per
    distinct pair."""
    fields = {"data_type": data_type, "unit": unit}
    series = json_format.ParseDict(
        {k: v for k, v in fields.items() if v is not None}, series_pb2.Series()
    )
    return ValueLayout(_CASES.get(series.data_type, Case.OTHER), series.unit)


def fill(out: pb.OfficialValueColumns, rows: pa.Table, shape: ValueLayout) -> None:
    """Sets `out` to `rows` (qis_adapters.readstore.segments rows) in columns: every column,
    and the values' case, present even when there are no rows. Each column is one conversion
    of an Arrow column; no value is parsed or built per row."""
    out.SetInParent()
    out.snap_time_micros.extend(_ints(rows, "snap_us"))
    out.versions.extend(_ints(rows, "version"))
    out.quality_scores.extend(rows.column("quality_score").to_numpy().tolist())
    out.record_time_micros.extend(_ints(rows, "recorded_from_us"))
    out.record_positions.extend(_ints(rows, "position_from"))
    superseded = rows.column("position_to").to_numpy()
    out.supersede_positions.extend(np.where(superseded == OPEN_END, 0, superseded).tolist())
    out.methods.extend(_enums(rows.column("method"), METHODS))
    flags = rows.column("flags")
    out.flag_counts.extend(pc.list_value_length(flags).to_numpy(zero_copy_only=False).tolist())
    out.flags.extend(_enums(pc.list_flatten(flags), RULES))
    out.unit = shape.unit
    match shape.case:
        case Case.PRICES | Case.VOLUMES if _all_decimals_of(rows, shape):
            column = out.prices if shape.case is Case.PRICES else out.volumes
            column.SetInParent()
            column.texts.extend(rows.column("text").to_pylist())
        case Case.BARS if _all_of_kind(rows, "bar"):
            _bars(out.bars, rows)
        case _:
            values = rows.column("value").to_pylist()
            out.other.MergeFromString(b"".join([wire.field(wire.TEXT, b) for b in values]))


def _ints(rows: pa.Table, name: str) -> list[int]:
    return rows.column(name).to_numpy().tolist()  # type: ignore[no-any-return]


def _enums(names: pa.ChunkedArray | pa.Array, numbers: Mapping[str, E]) -> list[E]:
    """Each name's enum number, looked up once per distinct name."""
    encoded = names.dictionary_encode()
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    table = np.array([numbers[n] for n in encoded.dictionary.to_pylist()], dtype=np.int64)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    found: list[E] = table[indices].tolist() if len(table) else []
    return found


_KINDS = {Case.PRICES: "price", Case.VOLUMES: "volume"}


def _all_of_kind(rows: pa.Table, kind: str) -> bool:
    return bool(pc.all(pc.equal(rows.column("kind"), kind)).as_py() is not False)


def _all_decimals_of(rows: pa.Table, shape: ValueLayout) -> bool:
    """Every value is of the series' kind, in the series' unit or in none."""
    if not _all_of_kind(rows, _KINDS[shape.case]):
        return False
    units = rows.column("unit")
    own = pc.or_(pc.equal(units, ""), pc.equal(units, shape.unit))
    return bool(pc.all(own).as_py() is not False)


def _bars(out: values_pb2.OhlcBarColumns, rows: pa.Table) -> None:
    """OHLC bars in columns; `volume` set only when some bar has one ("" where one has not)."""
    for column, name in (
        (out.open, "open"),
        (out.high, "high"),
        (out.low, "low"),
        (out.close, "close"),
    ):
        column.SetInParent()  # present on an empty page too
        column.texts.extend(rows.column(name).to_pylist())
    volumes = rows.column("bar_volume")
    if pc.any(pc.not_equal(volumes, "")).as_py():
        out.volume.texts.extend(volumes.to_pylist())
