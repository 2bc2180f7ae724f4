"""Official values as Arrow rows: the payload of a read-model Segment (port.Segment), and the
shape the query service reads ranges in.

| column            | type                       | what                                              |
|-------------------|----------------------------|---------------------------------------------------|
| snap_us           | int64                      | the instant the value describes (valid time)      |
| version           | int32                      | 1, 2, ...                                         |
| value             | binary                     | the serialised qis.data.v1.DataValue, the same bytes as the per-point records |
| kind              | string                     | the DataValue's case: "price", "volume", "bar", "options_chain", "corporate_action", "term_structure", "surface" (a whole curve or surface in one row, as a chain) |
| text              | string, null unless a price or volume | the decimal as published             |
| unit              | string, null unless a price or volume | its own currency or unit, "" when it has none |
| open, high, low, close | string, null unless a bar |                                                |
| bar_volume        | string, null unless a bar  | "" when the bar has none                          |
| quality_score     | float64                    |                                                   |
| recorded_from_us, position_from | int64        | when this version became official                 |
| recorded_to_us, position_to | int64            | when a later version superseded it *within the stretch of the log the rows cover*; OPEN_END otherwise |
| method, reason, user_id, command_id | string   |                                                   |
| sources, flags    | list<string>               |                                                   |
| decimal           | decimal128(38, 18), null unless a price or volume | `text`, exact                  |
| open_decimal, high_decimal, low_decimal, close_decimal | decimal128(38, 18), null unless a bar | |
| bar_volume_decimal | decimal128(38, 18)        | null unless a bar with a volume                   |

The value columns are derived from the DataValue bytes once, when rows are built (a price's
or a volume's from the event's text and unit they were made of: event_value_columns), so that a
range read, a columnar answer and an Arrow export take them as columns without parsing a
message per row: the texts as published (the per-point and columnar answers send them as they
came), and the same numbers as exact decimal128, which an Arrow export sends as stored.

The decimal columns are exact or absent, never rounded: every decimal the domain accepts
(|x| < 1e18, at most 18 places as written: qis_domain.bounds) fits decimal128(38, 18). A
text that does not (stored before those bounds, or by a bug) leaves every decimal column of
its row null: an Arrow export of a range holding that row refuses it (INTERNAL), as it always
has; the other rows keep theirs.

Format 2 added the decimal columns at the end. A format-1 payload (22 columns) still decodes
into SCHEMA: its decimal columns are made from its texts as it is read (`decode`), the same
columns a rebuild would store.

A segment's rows hold every version official somewhere in its stretch of the log (from its
position_from until the next segment version of the bucket): `select` picks those of one
knowledge time or position with vectorised filters, which gives exactly what the per-point
records give for the same question.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from qis.data.v1 import values_pb2
from qis_domain.events import RawValue
from qis_domain.values import DataType, is_bounded_plain_decimal

from qis_adapters.readstore.port import (
    OPEN_END,
    VERSION_FIELDS,
    VERSION_TUPLES,
    AsOf,
    AtPosition,
    KnownAt,
    Latest,
    OfficialVersion,
)

_TEXTS = pa.list_(pa.string())
DECIMAL = pa.decimal128(38, 18)
DECIMAL_COLUMNS = {
    "text": "decimal",
    "open": "open_decimal",
    "high": "high_decimal",
    "low": "low_decimal",
    "close": "close_decimal",
    "bar_volume": "bar_volume_decimal",
}
"""The decimal column of each text column."""
SCHEMA = pa.schema(
    [
        pa.field("snap_us", pa.int64(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("value", pa.binary(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("unit", pa.string()),
        pa.field("open", pa.string()),
        pa.field("high", pa.string()),
        pa.field("low", pa.string()),
        pa.field("close", pa.string()),
        pa.field("bar_volume", pa.string()),
        pa.field("quality_score", pa.float64(), nullable=False),
        pa.field("recorded_from_us", pa.int64(), nullable=False),
        pa.field("position_from", pa.int64(), nullable=False),
        pa.field("recorded_to_us", pa.int64(), nullable=False),
        pa.field("position_to", pa.int64(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("command_id", pa.string(), nullable=False),
        pa.field("sources", _TEXTS, nullable=False),
        pa.field("flags", _TEXTS, nullable=False),
        *(pa.field(name, DECIMAL) for name in DECIMAL_COLUMNS.values()),
    ]
)
_FORMAT_1 = pa.schema(list(SCHEMA)[: len(SCHEMA) - len(DECIMAL_COLUMNS)])
"""The columns of a format-1 segment: SCHEMA's first ones."""
_VALUE_FIELDS = ("kind", "text", "unit", "open", "high", "low", "close", "bar_volume")
_ValueParts = tuple[
    str, str | None, str | None, str | None, str | None, str | None, str | None, str | None
]
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)
"""LZ4, not zstd: a segment of 3,600 prices decodes in 0.74 ms against 1.3 ms (0.02 ms
uncompressed), for 48 bytes a row against 27 (170 uncompressed); reads pay the decoding on
every range, writes the compression once. One thread, here and in _READ_OPTIONS: a segment's
columns are too small to gain from Arrow's thread pool, whose hand-offs cost more than they
save (3,600 prices on 2 cores: decoded in 0.19-0.23 ms against 0.26-0.32 ms with the pool,
encoded in 0.22-0.28 ms against 0.29-0.36, and less CPU time), and the other core is left to
whoever sends the answer."""
_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)
EMPTY = SCHEMA.empty_table()


def _value_parts(value: bytes) -> _ValueParts:
    """The value columns of one DataValue (see the module's table)."""
    parsed = values_pb2.DataValue.FromString(value)
    kind = parsed.WhichOneof("kind") or ""
    if kind == "price":
        return (kind, parsed.price.value, parsed.price.currency, None, None, None, None, None)
    if kind == "volume":
        return (kind, parsed.volume.quantity, parsed.volume.unit, None, None, None, None, None)
    if kind == "bar":
        bar = parsed.bar
        return (kind, None, None, bar.open, bar.high, bar.low, bar.close, bar.volume)
    return (kind, None, None, None, None, None, None, None)


def value_columns(values: Sequence[bytes]) -> dict[str, list[object]]:
    """The value columns (see the module's table) of serialised DataValues, in their order;
    each distinct value parsed once."""
    parts: dict[bytes, _ValueParts] = {}
    derived = []
    for value in values:
        found = parts.get(value)
        if found is None:
            found = parts[value] = _value_parts(value)
        derived.append(found)
    by_field = list(zip(*derived, strict=True)) if derived else [()] * len(_VALUE_FIELDS)
    return dict(zip(_VALUE_FIELDS, map(list, by_field), strict=True))


_TEXT_KINDS = {DataType.PRICE: "price", DataType.VOLUME: "volume"}
"""The DataValue case of the data types whose value is one decimal text and its unit."""


def event_value_columns(
    data_type: DataType, unit: str, raws: Sequence[RawValue], values: Sequence[bytes]
) -> tuple[dict[str, list[object]], dict[str, object]]:
    """value_columns of one event's values (`values`: their DataValue bytes, `raws`: the
    event's form of them), as NewRows.add takes them: (the columns with a value a point, those
    with one value for all). A price's or a volume's are its texts and the event's unit, as
    proto.values.raw_to_proto_bytes puts them in the DataValue: not parsed back from it."""
    kind = _TEXT_KINDS.get(data_type)
    if kind is None:
        return value_columns(values), {}
    same: dict[str, object] = {"kind": kind, "unit": unit}
    return {"text": list(map(str, raws))}, same | dict.fromkeys(_VALUE_FIELDS[3:])


class NewRows:
    """The versions a run of events published in one bucket, as columns, an event's points
    at a time: `rows` makes of them what rows_from_versions makes of the same versions, with
    neither a record per point to take apart nor a DataValue to parse per price. A column
    with one value per event is kept as runs, made into an array without a value per point."""

    def __init__(self) -> None:
        self._each: dict[str, list[Any]] = {}
        self._runs: dict[str, list[tuple[Any, int]]] = {}

    def add(self, points: int, each: Mapping[str, Sequence[Any]], same: Mapping[str, Any]) -> None:
        """One event's `points`: `each` the columns of _FORMAT_1 with a value a point, `same`
        those with one value for every point of the event (both together: every column). A
        column given both ways (events of different data types) is held a value a point."""
        for name, column in each.items():
            if name in self._runs:
                self._each[name] = _expanded(self._runs.pop(name))
            self._each.setdefault(name, []).extend(column)
        for name, value in same.items():
            if name in self._each:
                self._each[name] += [value] * points
            else:
                self._runs.setdefault(name, []).append((value, points))

    def rows(self) -> pa.Table:
        runs = {
            name: _runs_array(runs, SCHEMA.field(name).type) for name, runs in self._runs.items()
        }
        return _rows(self._each | runs)


def _runs_array(runs: list[tuple[Any, int]], arrow_type: pa.DataType) -> pa.Array:
    """The column of `runs` (value, points), without a Python object per point: integers by
    numpy (pa.repeat of an integer costs ~0.2 us a point), one value repeated (the unit, the
    user, the bars' texts of a price...), else each run's value converted once, then taken as
    many times as it has points."""
    values = [value for value, _ in runs]
    points = [count for _, count in runs]
    if pa.types.is_integer(arrow_type):
        return pa.array(np.repeat(np.array(values, arrow_type.to_pandas_dtype()), points))
    if values.count(values[0]) == len(values):
        return pa.repeat(pa.scalar(values[0], arrow_type), sum(points))
    return pa.array(values, arrow_type).take(pa.array(np.repeat(np.arange(len(runs)), points)))


def _expanded(runs: list[tuple[Any, int]]) -> list[Any]:
    return [value for value, points in runs for _ in range(points)]


def rows_from_versions(versions: Sequence[OfficialVersion]) -> pa.Table:
    """Rows of `versions`, in their order, with their knowledge intervals."""
    # Records are tuples: zip transposes them into columns in one pass, in C.
    transposed = list(zip(*versions, strict=True)) or [()] * len(OfficialVersion._fields)
    columns: dict[str, Sequence[Any]] = dict(zip(OfficialVersion._fields, transposed, strict=True))
    columns.update(value_columns(columns["value"]))
    return _rows(columns)


def _rows(columns: Mapping[str, Sequence[Any] | pa.Array]) -> pa.Table:
    """The rows of `columns`: per field, its values, or its array made already."""
    arrays = [
        column
        if isinstance(column := columns[field.name], pa.Array)
        else _array(column, field.type)
        for field in _FORMAT_1
    ]
    return _with_decimals(pa.Table.from_arrays(arrays, schema=_FORMAT_1))


def _array(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    """`values` as an Arrow array: one value repeated (most columns of a bucket's rows: the
    same method, user, sources, version...) without converting each."""
    if not values or values.count(values[0]) != len(values):
        return pa.array(values, arrow_type)
    if not pa.types.is_list(arrow_type):
        return pa.repeat(pa.scalar(values[0], arrow_type), len(values))
    # pa.repeat of a list scalar costs more than converting every row.
    items = pa.array(values[0], arrow_type.value_type)
    at = np.tile(np.arange(len(items)), len(values))
    offsets = np.arange(len(values) + 1, dtype=np.int32) * len(items)
    return pa.ListArray.from_arrays(pa.array(offsets), items.take(pa.array(at)))


def versions_from_rows(series_id: str, rows: pa.Table) -> list[OfficialVersion]:
    """The per-point records of `rows` (the per-point view is built from these)."""
    columns = [rows.column(name).to_pylist() for name in VERSION_FIELDS]
    for i in VERSION_TUPLES:
        columns[i] = [tuple(texts) for texts in columns[i]]
    return [OfficialVersion(series_id, *fields) for fields in zip(*columns, strict=True)]


def encode(rows: pa.Table) -> bytes:
    """An Arrow IPC stream of `rows`, LZ4-compressed."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA, options=_IPC_OPTIONS) as writer:
        writer.write_table(rows)
    payload: bytes = sink.getvalue().to_pybytes()
    return payload


def decode(payload: bytes, columns: frozenset[str] | None = None) -> pa.Table:
    """The rows of a segment: every column, or only `columns`, in SCHEMA's order. The other
    columns are not even decompressed, most of a read's time: a price export reads 11 of the
    28 (3,600 prices: ~40 ns a row against ~60-78). ValueError for a name not in SCHEMA."""
    buffer = pa.py_buffer(payload)
    if columns is None:
        rows = pa.ipc.open_stream(buffer, options=_READ_OPTIONS).read_all()
        return rows if rows.num_columns == len(SCHEMA) else _with_decimals(rows)
    try:
        return pa.ipc.open_stream(buffer, options=_projection(columns)).read_all()
    except pa.ArrowInvalid:  # a format-1 payload has no decimal column to project
        return _format_1(buffer, columns)


def decode_many(payloads: Sequence[bytes], columns: frozenset[str]) -> pa.Table:
    """The rows of several segments, one after the other, of `columns` only (as `decode`),
    one chunk per record batch. Payloads written by `encode` (nearly all) are one schema
    message, record batches and an end marker: their record batches are read behind one schema
    as one IPC stream, a single call into Arrow for them all (decoding a segment alone costs
    ~25 us of calls besides its ~40 ns a row); any other (format 1) is decoded alone."""
    if all(p.startswith(_SCHEMA_MESSAGE) and p.endswith(_END_OF_STREAM) for p in payloads):
        bodies = (memoryview(p)[len(_SCHEMA_MESSAGE) : -len(_END_OF_STREAM)] for p in payloads)
        stream = b"".join([_SCHEMA_MESSAGE, *bodies, _END_OF_STREAM])
        return pa.ipc.open_stream(stream, options=_projection(columns)).read_all()
    return pa.concat_tables([decode(payload, columns) for payload in payloads])


_SCHEMA_MESSAGE = SCHEMA.serialize().to_pybytes()
"""How a payload of `encode` starts: the same bytes as Arrow's stream writer writes."""
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def _format_1(buffer: pa.Buffer, columns: frozenset[str]) -> pa.Table:
    """`columns` of a format-1 payload, the decimal columns made from its texts."""
    stored = (columns - frozenset(DECIMAL_COLUMNS.values())) | frozenset(DECIMAL_COLUMNS)
    rows = _with_decimals(pa.ipc.open_stream(buffer, options=_projection(stored)).read_all())
    return rows.select([name for name in SCHEMA.names if name in columns])


@functools.lru_cache(maxsize=64)  # column sets by value kind and as-of, asked segment by segment
def _projection(columns: frozenset[str]) -> pa.ipc.IpcReadOptions:
    unknown = columns - set(SCHEMA.names)
    if unknown:
        raise ValueError(f"not columns of a segment: {', '.join(sorted(unknown))}")
    included = [index for index, name in enumerate(SCHEMA.names) if name in columns]
    return pa.ipc.IpcReadOptions(use_threads=False, included_fields=included)


def _with_decimals(rows: pa.Table) -> pa.Table:
    """`rows`, holding every text column of DECIMAL_COLUMNS, with the decimal columns
    appended: each exact (null where the text is absent or empty), or null in every decimal
    column of a row one of whose texts decimal128(38, 18) cannot hold exactly (see the
    module's docstring): that row alone, for a segment keeps the rows still official beside
    their restatements, and a row restated must not take the others' decimals with it."""
    decimals: list[pa.ChunkedArray] = []
    lost = None
    for text in DECIMAL_COLUMNS:
        texts = rows.column(text)
        try:
            decimals.append(exact_decimals(texts))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            held = pa.chunked_array([pa.array(list(map(_one_exact, texts.to_pylist())), DECIMAL)])
            missing = pc.and_(pc.is_null(held), pc.not_equal(pc.fill_null(texts, ""), ""))
            lost = missing if lost is None else pc.or_(lost, missing)
            decimals.append(held)
    for name, column in zip(DECIMAL_COLUMNS.values(), decimals, strict=True):
        if lost is not None:
            column = pc.if_else(lost, pa.scalar(None, DECIMAL), column)
        rows = rows.append_column(SCHEMA.field(name), column)
    return rows


def _one_exact(text: str | None) -> decimal.Decimal | None:
    if not text:
        return None
    try:
        held: decimal.Decimal = exact_decimals(pa.chunked_array([pa.array([text])]))[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return held


def exact_decimals(texts: pa.ChunkedArray) -> pa.ChunkedArray:
    """decimal128(38, 18) of decimal texts, exactly ("" is null: a bar without a volume);
    ArrowInvalid for a text it cannot hold exactly. Arrow's cast refuses what it would round,
    and takes plain texts (nearly all), so only the others are first made plain."""
    if texts.null_count == len(texts):
        return pa.chunked_array([pa.nulls(len(texts), DECIMAL)])
    texts = pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts)
    try:
        return texts.cast(DECIMAL)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        plain = [None if text is None else _plain(text) for text in texts.to_pylist()]
        return pa.chunked_array([pa.array(plain, pa.string())]).cast(DECIMAL)


_PLACES = decimal.Decimal(1).scaleb(-DECIMAL.scale)
_EXACT = decimal.Context(prec=DECIMAL.precision, traps=[decimal.Inexact, decimal.InvalidOperation])


def _plain(text: str) -> str:
    """`text` as Arrow's cast to decimal128(38, 18) takes it, the same number exactly: a plain
    decimal within bounds as it is, any zero as "0" ("0E+9999" and "0E-30" are zeros Arrow's
    parser cannot or need not scale), anything else quantized to 18 places when that is exact
    (else unchanged, for the cast to refuse)."""
    if is_bounded_plain_decimal(text):
        return text
    try:
        number = decimal.Decimal(text)
        if number.is_zero():
            return "0"
        return format(number.quantize(_PLACES, context=_EXACT), "f")
    except (decimal.DecimalException, ValueError):
        return text


def extend(current: pa.Table, versions: Sequence[OfficialVersion]) -> pa.Table:
    """extend_rows by the rows of `versions`."""
    return extend_rows(current, rows_from_versions(versions))


def extend_rows(current: pa.Table, new: pa.Table) -> pa.Table:
    """The rows of a new stretch of the log: the rows official at the end of `current`'s
    stretch, then `new` (versions published in log order, open), each version closing the one
    before it of its snap at its own (recorded_from_us, position_from). Ascending by (snap,
    version)."""
    still = current.filter(pc.equal(current["position_to"], OPEN_END))
    rows = pa.concat_tables([still, new])
    snaps = rows["snap_us"].to_numpy()
    if (snaps[1:] > snaps[:-1]).all():
        # Each snap once and in order (a load, a live feed): nothing to sort or supersede. One
        # chunk, as the sort's copy makes (the chunks are the payload's record batches).
        return rows.combine_chunks()
    rows = rows.sort_by([("snap_us", "ascending"), ("version", "ascending")])
    snaps = rows["snap_us"].to_numpy()
    superseded = np.zeros(len(snaps), dtype=bool)
    superseded[:-1] = snaps[:-1] == snaps[1:]
    if not superseded.any():
        return rows
    following = np.arange(len(snaps)) + 1
    for name, by in (("recorded_to_us", "recorded_from_us"), ("position_to", "position_from")):
        starts = rows[by].to_numpy()
        ends = np.where(superseded, starts[np.minimum(following, len(snaps) - 1)], OPEN_END)
        rows = _replace(rows, name, pa.array(ends, pa.int64()))
    return rows


def select(rows: pa.Table, as_of: AsOf, start_us: int, end_us: int) -> pa.Table:
    """The rows official `as_of` with start_us <= snap_us < end_us, ascending by snap, as they
    were known then: none superseded (a later version is not part of that answer).

    The snap range is a slice (the rows are sorted by snap), and a segment whose rows are all
    open (most are: a restatement closes a row) needs no filter for a latest read: then no
    column is copied.

    `rows` need only the columns `as_of` is chosen by (SELECTED_BY); the others are kept as
    they are, but for the closing columns of rows chosen: those present read OPEN_END."""
    snaps = rows.column("snap_us").to_numpy()
    first, last = np.searchsorted(snaps, [start_us, end_us], side="left")
    if first or last < len(snaps):  # most segments lie whole in a range: no table to make
        rows = rows.slice(first, last - first)
    ends = rows.column("position_to")
    # OPEN_END is the greatest int64; numpy's min costs a third of a compute call's here.
    all_open = bool(ends.to_numpy().min(initial=OPEN_END) == OPEN_END)
    match as_of:
        case Latest():
            if all_open:
                return rows
            keep = pc.equal(ends, OPEN_END)
        case AtPosition(position):
            keep = _within(rows, "position_from", "position_to", position)
        case KnownAt(at_us):
            keep = _within(rows, "recorded_from_us", "recorded_to_us", at_us)
    chosen = rows.filter(keep)
    if all_open:
        return chosen
    open_ends = pa.repeat(pa.scalar(OPEN_END, pa.int64()), chosen.num_rows)
    for name in ("recorded_to_us", "position_to"):
        if name in chosen.schema.names:
            chosen = _replace(chosen, name, open_ends)
    return chosen


SELECTED_BY: dict[type[Latest] | type[AtPosition] | type[KnownAt], frozenset[str]] = {
    Latest: frozenset({"snap_us", "position_to"}),
    AtPosition: frozenset({"snap_us", "position_from", "position_to"}),
    KnownAt: frozenset({"snap_us", "recorded_from_us", "recorded_to_us", "position_to"}),
}
"""The columns `select` reads for each kind of as-of (position_to for every one: a segment whose
rows are all open is taken as it is). A reader of a few columns decodes these too, and no other
(a latest read leaves the knowledge-time columns compressed)."""


def _replace(rows: pa.Table, name: str, column: pa.Array) -> pa.Table:
    index = rows.schema.get_field_index(name)
    return rows.set_column(index, rows.schema.field(index), column)


def _within(rows: pa.Table, start: str, end: str, at: int) -> pa.ChunkedArray:
    return pc.and_(pc.less_equal(rows[start], at), pc.greater(rows[end], at))
