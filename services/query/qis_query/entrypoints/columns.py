"""Official values in columns (qis.data.v1.OfficialValueColumns, VALUE_VIEW_COLUMNS): row i of
every column is the OfficialValue the per-point view would carry at index i, built with one
Python list per column and no message per row.

Values are the decimal strings of the stored DataValue bytes, exactly as the per-point view
carries them. The projector stores a price as DataValue{price{1: text, 2: currency}} (a volume
likewise), each part shorter than 128 bytes: then the text, with its tag and length, is a slice
of the stored bytes and already has the encoding of one DecimalColumn.texts entry, so a whole
column is one join and one parse in C. Bytes of any other shape are decoded by protobuf, row by
row, to the same texts.

`unit` is the series' own (its definition), which is also what a price or volume without a
currency or unit means (values.proto). Should a stored price or volume carry another currency
or unit (a series whose unit was changed by a schema evolution keeps its older values
as they were), no single `unit` is true of the page: its values then travel in `other`, one
DataValue per row, as the per-point view has them; so does a value of another kind than the
series' data type. Options chains and corporate actions always do."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from google.protobuf import json_format
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.readstore.port import OPEN_END, OfficialVersion, SeriesEntry

from qis_query.entrypoints import wire
from qis_query.entrypoints.mapping import METHODS, RULES


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


def fill(
    out: pb.OfficialValueColumns, versions: Sequence[OfficialVersion], shape: ValueLayout
) -> None:
    """Sets `out` to `versions` in columns (every column, and the values' case, present even
    when there are no rows)."""
    out.SetInParent()
    out.snap_time_micros.extend([v.snap_us for v in versions])
    out.versions.extend([v.version for v in versions])
    out.quality_scores.extend([v.quality_score for v in versions])
    out.record_time_micros.extend([v.recorded_from_us for v in versions])
    out.record_positions.extend([v.position_from for v in versions])
    out.supersede_positions.extend(
        [0 if v.recorded_to_us == OPEN_END else v.position_to for v in versions]
    )
    out.methods.extend([METHODS[v.method] for v in versions])
    out.flag_counts.extend([len(v.flags) for v in versions])
    out.flags.extend([RULES[f] for v in versions for f in v.flags])
    out.unit = shape.unit
    values = [v.value for v in versions]
    try:
        match shape.case:
            case Case.PRICES:
                out.prices.MergeFromString(_texts(values, _PRICE, shape.unit))
            case Case.VOLUMES:
                out.volumes.MergeFromString(_texts(values, _VOLUME, shape.unit))
            case Case.BARS:
                _bars(out.bars, values)
            case _:
                raise _NoColumns
    except _NoColumns:
        out.other.MergeFromString(b"".join([wire.field(wire.TEXT, b) for b in values]))


class _NoColumns(Exception):
    """A value the columns of the series' case cannot carry as the per-point view has it."""


@dataclass(frozen=True, slots=True)
class _Decimal:
    """A kind of DataValue holding one decimal and a unit: its DataValue field's tag, and the
    names of the case and of the unit field."""

    tag: int
    case: str
    unit_field: str


_PRICE = _Decimal(0x0A, "price", "currency")  # DataValue.price: field 1
_VOLUME = _Decimal(0x12, "volume", "unit")  # DataValue.volume: field 2


def _texts(values: list[bytes], kind: _Decimal, unit: str) -> bytes:
    """DecimalColumn.texts of `values` (DataValues of `kind`), serialised; raises _NoColumns
    for a value of another kind or in another unit."""
    tail = wire.text_field(wire.UNIT, unit) if unit else b""
    tag = kind.tag
    parts: list[bytes] = []
    append = parts.append
    for b in values:
        n = len(b)
        # DataValue{kind: {1: text, 2: unit}}, the kind's length in one byte (< 128), the text
        # field first, the rest the series' unit or nothing.
        if n > 3 and b[0] == tag and b[1] == n - 2 < 0x80 and b[2] == wire.TEXT:
            end = b[3] + 4
            if end == n or (end < n and b[end:] == tail):
                append(b[2:end])
                continue
        append(_decoded_text(b, kind, unit))
    return b"".join(parts)


def _decoded_text(b: bytes, kind: _Decimal, unit: str) -> bytes:
    value = values_pb2.DataValue.FromString(b)
    if value.WhichOneof("kind") != kind.case:
        raise _NoColumns
    decimal: values_pb2.Price | values_pb2.Volume = getattr(value, kind.case)
    if getattr(decimal, kind.unit_field) not in ("", unit):
        raise _NoColumns
    text = decimal.value if isinstance(decimal, values_pb2.Price) else decimal.quantity
    return wire.text_field(wire.TEXT, text)


def _bars(out: values_pb2.OhlcBarColumns, values: list[bytes]) -> None:
    """OHLC bars in columns; `volume` set only when some bar has one ("" where one has not)."""
    parse = values_pb2.DataValue.FromString
    bars: list[values_pb2.OhlcBar] = []
    for b in values:
        value = parse(b)
        if value.WhichOneof("kind") != "bar":
            raise _NoColumns
        bars.append(value.bar)
    for column in (out.open, out.high, out.low, out.close):
        column.SetInParent()  # present on an empty page too
    out.open.texts.extend([bar.open for bar in bars])
    out.high.texts.extend([bar.high for bar in bars])
    out.low.texts.extend([bar.low for bar in bars])
    out.close.texts.extend([bar.close for bar in bars])
    volumes = [bar.volume for bar in bars]
    if any(volumes):
        out.volume.texts.extend(volumes)
