"""Official values in columns (qis.data.v1.OfficialValueColumns, VALUE_VIEW_COLUMNS): row i of
every column is the OfficialValue the per-point view would carry at index i. The message is
serialised column by column (qis_query.entrypoints.wire), byte for byte as protobuf would: a
range's pages (`Pages`, sent as they are by grpc_service.add_to_server) from their rows'
buffers in vectorised steps, the rows read ahead encoded once for the pages cut from them; the
few records of a GetValues answer (`fill_versions`, parsed by protobuf in one call) value by
value, without Arrow (building Arrow arrays costs more than a few rows' worth of Python).

Values are the decimal strings of the stored DataValues, exactly as the per-point view carries
them: the read model's rows hold them in columns (qis_adapters.readstore.segments).

`unit` is the series' own (its definition), which is also what a price or volume without a
currency or unit means (values.proto). Should a stored price or volume carry another currency
or unit (a series whose unit was changed by a schema evolution keeps its older values
as they were), no single `unit` is true of the page: its values then travel in `other`, one
DataValue per row, as the per-point view has them; so does a value of another kind than the
series' data type. Options chains and corporate actions always do.

Term structures and surfaces go in `structures`, one entry per node: each stored value is parsed
(qis_query.application.export.structure_nodes) and its nodes' texts go as they are into a
StructureColumns that protobuf serialises; the nodes' order is the value's own."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import accumulate
from typing import Any, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.proto.enums import METHODS, RULES
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import OPEN_END, OfficialVersion, SeriesEntry

from qis_query.application.export import structure_nodes
from qis_query.application.ranges import RangePage
from qis_query.entrypoints import wire


class Case(StrEnum):
    """The cases of OfficialValueColumns.values."""

    PRICES = "prices"
    VOLUMES = "volumes"
    BARS = "bars"
    STRUCTURES = "structures"
    OTHER = "other"


_CASES = {
    values_pb2.DATA_TYPE_PRICE: Case.PRICES,
    values_pb2.DATA_TYPE_VOLUME: Case.VOLUMES,
    values_pb2.DATA_TYPE_OHLC_BAR: Case.BARS,
    values_pb2.DATA_TYPE_TERM_STRUCTURE: Case.STRUCTURES,
    values_pb2.DATA_TYPE_SURFACE: Case.STRUCTURES,
}
_STRUCTURES = {
    values_pb2.DATA_TYPE_TERM_STRUCTURE: "term_structure",
    values_pb2.DATA_TYPE_SURFACE: "surface",
}


@dataclass(frozen=True, slots=True)
class ValueLayout:
    """How a series' values go into columns: the case of OfficialValueColumns.values, and the
    series' currency or unit."""

    case: Case
    unit: str
    structure: str = ""
    """The DataValue case of a term structure or surface series' values ("term_structure",
    "surface"); "" for the other cases."""


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
    return ValueLayout(
        _CASES.get(series.data_type, Case.OTHER),
        series.unit,
        _STRUCTURES.get(series.data_type, ""),
    )


Ints: TypeAlias = npt.NDArray[Any] | Sequence[int]
"""A column of integers: a numpy array (a range's rows) or a Python list (a few records)."""
Floats: TypeAlias = npt.NDArray[Any] | Sequence[float]
Texts: TypeAlias = pa.Array | pa.ChunkedArray | Sequence[str] | Sequence[bytes]
"""A column of texts or serialised messages: Arrow (a range's rows) or a Python list."""


@dataclass(frozen=True, slots=True)
class _Columns:
    """The rows of an answer as the columnar view takes them: from a range's Arrow rows as
    numpy and Arrow arrays, encoded in vectorised steps; from a few per-point records as
    Python lists, encoded value by value (cheaper below a few dozen rows than any array)."""

    snaps: Ints
    versions: Ints
    quality_scores: Floats
    record_times: Ints
    record_positions: Ints
    supersede_positions: Ints
    methods: Texts
    flag_offsets: Ints
    """Where each row's flags start in `flags`, and where the last's end."""
    flags: Texts
    value: Callable[[str], Texts]
    """A value column by name: kind, text, unit, open, high, low, close, bar_volume
    (segments' value columns) or value (the serialised DataValue); read only when the
    values' case needs it."""


READ = frozenset(
    {
        "snap_us",
        "version",
        "quality_score",
        "recorded_from_us",
        "position_from",
        "position_to",
        "method",
        "flags",
        "value",
        *segments.value_columns([]),  # kind, text, unit and the bars' texts
    }
)
"""The columns of the segments' rows `Pages` reads, whatever the values' case."""


class Pages:
    """Range pages (qis_query.application.ranges.RangePage) in columns, each serialised byte for
    byte as protobuf serialises the message: every column, and the values' case, present even
    when there are no rows. The rows a page was sliced from (its block: the rows read ahead)
    are encoded from their Arrow buffers once for as many whole pages of its size as the block
    holds from it, and the next pages cut out of these; no value is parsed or built per row.
    (Only the whole pages: rows left over are read ahead again with the next segment, in
    another block.)"""

    def __init__(self, shape: ValueLayout) -> None:
        self._shape = shape
        self._block: pa.Table | None = None
        self._first = 0
        self._encoded: _Encoded | None = None

    def __call__(self, page: RangePage) -> bytes:
        block = page.rows if page.block is None else page.block
        count = page.rows.num_rows
        start = page.start - self._first
        encoded = self._encoded
        if (
            encoded is None
            or block is not self._block
            or start < 0
            or start + count > encoded.count
        ):
            whole = max(count, (block.num_rows - page.start) // count * count if count else 0)
            encoded = _encoded(_from_rows(block.slice(page.start, whole)), self._shape)
            self._block, self._first, self._encoded, start = block, page.start, encoded, 0
        return encoded.page(start, start + count, page.rows.column)


def _from_rows(rows: pa.Table) -> _Columns:
    """The columns of segments' `rows` as numpy and Arrow arrays."""
    flags = _contiguous(rows.column("flags"))
    flag_offsets = flags.offsets.to_numpy()
    first_flag, end_flag = int(flag_offsets[0]), int(flag_offsets[-1])
    superseded = _numbers(rows, "position_to")
    return _Columns(
        snaps=_numbers(rows, "snap_us"),
        versions=_numbers(rows, "version"),
        quality_scores=_numbers(rows, "quality_score"),
        record_times=_numbers(rows, "recorded_from_us"),
        record_positions=_numbers(rows, "position_from"),
        supersede_positions=np.where(superseded == OPEN_END, 0, superseded),
        methods=rows.column("method"),
        flag_offsets=flag_offsets - first_flag,
        # The rows' flags in the list's values (no list is null): flatten() is an Arrow
        # kernel call, twice the cost.
        flags=flags.values.slice(first_flag, end_flag - first_flag),
        value=rows.column,
    )


def fill_versions(
    out: pb.OfficialValueColumns, versions: Sequence[OfficialVersion], shape: ValueLayout
) -> None:
    """The columns of the few per-point records of a GetValues answer: the message `Pages`
    sends, built from the records' fields without making Arrow rows of them, and parsed by
    protobuf in one call."""
    values = segments.value_columns([v.value for v in versions])
    values["value"] = [v.value for v in versions]
    flag_offsets = list(accumulate((len(v.flags) for v in versions), initial=0))
    rows = _Columns(
        snaps=[v.snap_us for v in versions],
        versions=[v.version for v in versions],
        quality_scores=[v.quality_score for v in versions],
        record_times=[v.recorded_from_us for v in versions],
        record_positions=[v.position_from for v in versions],
        supersede_positions=[0 if v.position_to == OPEN_END else v.position_to for v in versions],
        methods=[v.method for v in versions],
        flag_offsets=flag_offsets,
        flags=[f for v in versions for f in v.flags],
        value=lambda name: cast(Sequence[str], values[name]),
    )
    out.SetInParent()
    out.MergeFromString(_encoded(rows, shape).page(0, len(versions), rows.value))


_TAGS = {f.name: wire.tag(f.number) for f in pb.OfficialValueColumns.DESCRIPTOR.fields}
_STRUCTURES_TAG = _TAGS[Case.STRUCTURES.value]
_BAR_TAGS = {f.name: wire.tag(f.number) for f in values_pb2.OhlcBarColumns.DESCRIPTOR.fields}


@dataclass(frozen=True, slots=True)
class _Encoded:
    """The columns of a block of rows encoded, row by row, for any run of its rows."""

    shape: ValueLayout
    snaps: wire.Encoded
    versions: wire.Encoded
    quality_scores: wire.Encoded
    record_times: wire.Encoded
    record_positions: wire.Encoded
    supersede_positions: wire.Encoded
    methods: wire.Encoded
    flag_counts: wire.Encoded
    flags: wire.Encoded
    """One row per flag: row i's flags are those from flag_offsets[i] to flag_offsets[i + 1]."""
    flag_offsets: Ints
    texts: wire.Encoded | None
    """The values' texts when every value of the block is a decimal of the series' kind and
    unit (the prices or volumes case: so is every value of its pages); None: each page's values
    are serialised from its own rows (_values)."""
    count: int
    """The rows encoded."""

    def page(self, start: int, stop: int, value: Callable[[str], Texts]) -> bytes:
        """Rows [start, stop) serialised field by field, in the order of the fields' numbers as
        protobuf writes them (so that a reply can be sent as built, without a parse and a
        serialisation: tests/service/query/test_query_page_bytes.py); `value`: the value
        columns of these rows alone."""
        shape = self.shape
        if self.texts is None:
            values = _values(value, shape)
        else:
            values = wire.field(_TAGS[shape.case.value], self.texts.rows(start, stop))
        structures = values[0] == _STRUCTURES_TAG  # field 15 goes after the others
        flags = self.flags.rows(int(self.flag_offsets[start]), int(self.flag_offsets[stop]))
        parts = [
            wire.packed(_TAGS["snap_time_micros"], self.snaps.rows(start, stop)),
            wire.packed(_TAGS["versions"], self.versions.rows(start, stop)),
            b"" if structures else values,
            wire.text_field(_TAGS["unit"], shape.unit) if shape.unit else b"",
            wire.packed(_TAGS["quality_scores"], self.quality_scores.rows(start, stop)),
            wire.packed(_TAGS["record_time_micros"], self.record_times.rows(start, stop)),
            wire.packed(_TAGS["record_positions"], self.record_positions.rows(start, stop)),
            wire.packed(_TAGS["supersede_positions"], self.supersede_positions.rows(start, stop)),
            wire.packed(_TAGS["methods"], self.methods.rows(start, stop)),
            wire.packed(_TAGS["flag_counts"], self.flag_counts.rows(start, stop)),
            wire.packed(_TAGS["flags"], flags),
            values if structures else b"",
        ]
        return b"".join(parts)


def _encoded(rows: _Columns, shape: ValueLayout) -> _Encoded:
    """Every column of `rows` encoded: the numbers in a few whole-column steps (an array's) or
    value by value (a list's)."""
    offsets = rows.flag_offsets
    counts = np.diff(offsets) if isinstance(offsets, np.ndarray) else np.diff(offsets).tolist()
    in_texts = shape.case in _KINDS and _all_decimals_of(rows.value, shape)
    return _Encoded(
        shape,
        snaps=wire.varints(rows.snaps),
        versions=wire.varints(rows.versions),
        quality_scores=wire.doubles(rows.quality_scores),
        record_times=wire.varints(rows.record_times),
        record_positions=wire.varints(rows.record_positions),
        supersede_positions=wire.varints(rows.supersede_positions),
        methods=wire.varints(_METHODS.numbers(rows.methods)),
        flag_counts=wire.varints(counts),
        flags=wire.varints(_RULES.numbers(rows.flags)),
        flag_offsets=offsets,
        texts=_texts(rows.value("text")) if in_texts else None,
        count=len(rows.snaps),
    )


def _values(value: Callable[[str], Texts], shape: ValueLayout) -> bytes:
    """The values' case of OfficialValueColumns, serialised: present (if empty) on every
    answer."""
    match shape.case:
        case Case.PRICES | Case.VOLUMES if _all_decimals_of(value, shape):
            return wire.field(_TAGS[shape.case.value], _texts(value("text")).data)
        case Case.BARS if _only(value("kind"), {"bar"}):
            return wire.field(_TAGS[Case.BARS.value], _bars(value))
        case Case.STRUCTURES if _only(value("kind"), {shape.structure}):
            return wire.field(_TAGS[Case.STRUCTURES.value], _structures(value("value")))
        case _:
            return wire.field(_TAGS[Case.OTHER.value], _texts(value("value")).data)


def _numbers(rows: pa.Table, name: str) -> npt.NDArray[Any]:
    numbers: npt.NDArray[Any] = rows.column(name).to_numpy()
    return numbers


def _contiguous(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.Array):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _texts(column: Texts) -> wire.Encoded:
    """A repeated string or bytes field (DecimalColumn.texts, DataValues.values), serialised."""
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return wire.strings(wire.TEXT, _contiguous(column))
    return wire.fields(wire.TEXT, column)


class _Enum:
    """The numbers of an enum's names (mapping's tables), for either form of a column."""

    def __init__(self, numbers: Mapping[str, int]) -> None:
        self._numbers = numbers
        # The lookup's options made once: made per call they cost three times the lookup.
        self._lookup = pc.SetLookupOptions(pa.array(list(numbers), pa.string()))
        self._table = np.array(list(numbers.values()), dtype=np.int64)

    def numbers(self, names: Texts) -> Ints:
        """Each name's number; KeyError for a name the contract has no value for."""
        if not isinstance(names, pa.Array | pa.ChunkedArray):
            return [self._numbers[cast(str, n)] for n in names]
        if not len(names):
            return self._table[:0]
        one = _one_text(names)
        if one is not None:  # a page's rows mostly share their method: no lookup per row
            return np.full(len(names), self._numbers[one], dtype=np.int64)
        found = pc.index_in(names, options=self._lookup)
        if found.null_count:
            raise KeyError(pc.filter(names, pc.is_null(found))[0].as_py())
        indices: npt.NDArray[np.int64] = found.to_numpy()
        return self._table[indices]


_METHODS = _Enum(METHODS)
_RULES = _Enum(RULES)
_KINDS = {Case.PRICES: "price", Case.VOLUMES: "volume"}


def _only(column: Texts, allowed: set[str]) -> bool:
    """Every row of the string column is one of `allowed` (so is every row of none)."""
    if isinstance(column, pa.Array | pa.ChunkedArray):
        if not len(column):
            return True
        one = _one_text(column)
        if one is not None:  # most pages: found from the buffers, without Arrow's kernels
            return one in allowed
        return set(pc.unique(column).to_pylist()) <= allowed
    return set(column) <= allowed


def _one_text(column: pa.Array | pa.ChunkedArray) -> str | None:
    """The text every row of a string column of rows holds; None when they hold several, or a
    null. From the offsets and the bytes: a third of what Arrow's unique or lookup costs on a
    page."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    texts = {_one_in(chunk) for chunk in chunks if len(chunk)}
    return texts.pop() if len(texts) == 1 else None


def _one_in(chunk: pa.Array) -> str | None:
    """_one_text of a non-empty chunk: every row as long as the first, and the bytes the
    first's repeated."""
    if chunk.null_count:
        return None
    same_length = wire.one_length(chunk)
    if same_length is None:
        return None
    start, size = same_length
    if not size:
        return ""
    data = chunk.buffers()[2]
    first = data.slice(start, size).to_pybytes()
    return (
        first.decode()
        if data.slice(start, size * len(chunk)).to_pybytes() == first * len(chunk)
        else None
    )


def _all_decimals_of(value: Callable[[str], Texts], shape: ValueLayout) -> bool:
    """Every value is of the series' kind, in the series' unit or in none."""
    return _only(value("kind"), {_KINDS[shape.case]}) and _only(value("unit"), {"", shape.unit})


def _bars(value: Callable[[str], Texts]) -> bytes:
    """OHLC bars in columns; `volume` set only when some bar has one ("" where one has not)."""
    parts = [
        wire.field(_BAR_TAGS[name], _texts(value(name)).data)
        for name in ("open", "high", "low", "close")  # present on an empty page too
    ]
    volumes = value("bar_volume")
    if not _only(volumes, {""}):
        parts.append(wire.field(_BAR_TAGS["volume"], _texts(volumes).data))
    return b"".join(parts)


def _structures(values: Texts) -> bytes:
    """StructureColumns of serialised DataValues, every one a term structure or every one a
    surface, serialised."""
    serialised = values.to_pylist() if isinstance(values, pa.Array | pa.ChunkedArray) else values
    nodes = structure_nodes(cast(Sequence[bytes], serialised))
    out = values_pb2.StructureColumns(
        node_counts=nodes.counts,
        tenors=nodes.tenors,
        coordinates=nodes.coordinates,
        values=values_pb2.DecimalColumn(texts=nodes.values),  # present on an empty page too
    )
    serialised_columns: bytes = out.SerializeToString()
    return serialised_columns
