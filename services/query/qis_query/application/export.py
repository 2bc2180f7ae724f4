"""Long range reads of one or several series at once, for columnar exports (Arrow Flight): the
same answer as QueryRange, read through the same use case (QueryHandlers.query_range) call
after call, series after series, so the bounds, the as-of semantics, read-your-writes and the
refusals are QueryRange's own.

Everything that can refuse the request is checked before the first value is handed out: the
range, each series (NOT_FOUND, naming which), its data type (options chains and corporate
actions have no column form; a term structure or surface has one row per node), and the read
model's position (min_position). What follows is
values only, in pages of at most EXPORT_PAGE points, each series ascending by snap, the series
in the order they were named.

Like QueryRange's pages, the calls of a latest read are separate reads: a restatement
published while a long export streams may show in its later pages. An as-of read
(`as_of_position`, e.g. the read position of an earlier export) is a fixed answer.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
from google.protobuf import json_format
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.readstore.port import LATEST, OPEN_END, AsOf, SeriesEntry
from qis_domain.errors import InvalidArgument, NotFound
from qis_domain.names import series_name, series_resource

from qis_query.application import ranges
from qis_query.application.handlers import MAX_RANGE_PAGE, QueryHandlers
from qis_query.application.ranges import EARLIEST, RangeQuery

MAX_SERIES = 1_000
"""Series one export names at most."""
EXPORT_PAGE = 5 * MAX_RANGE_PAGE
"""Points an export page holds at most. A QueryRange page is a gRPC message, which bounds it;
an export's page becomes Arrow batches without a copy, and each page costs the same few dozen
calls into Arrow, and a hand-off between the query loop and a Flight thread, whatever its size
(1M prices read and made into batches in-process, busy 2-core machine: ~175 ns CPU a point in
pages of 100,000, ~205 in pages of 10,000). 50,000 keeps the three pages a Flight stream holds
(flight.READ_AHEAD) near 12 MB for prices, and the call's limit (QueryLimits
.max_points_per_call) is five such pages."""
SERIES_FIELD = "series"
_DEFINITION_KEYS = ("data_type", "dataType", "unit")  # proto-JSON names, either form


class ValueColumns(enum.Enum):
    """Which value columns a series' values fill."""

    DECIMAL = "value"
    """Prices and volumes: one decimal per point."""
    BAR = "open/high/low/close/volume"
    """OHLC bars: four decimals and an optional volume."""
    CURVE = "tenor/value"
    """Term structures: one row per node, its tenor and value."""
    SURFACE = "tenor/coordinate/value"
    """Surfaces: one row per node, its tenor, coordinate and value."""


_ROW_COLUMNS = frozenset(
    {"snap_us", "kind", "version", "quality_score", "recorded_from_us", "position_from", "flags"}
)
STORED_COLUMNS: dict[ValueColumns, frozenset[str]] = {
    ValueColumns.DECIMAL: _ROW_COLUMNS | {"decimal", "unit"},
    ValueColumns.BAR: _ROW_COLUMNS
    | {"open_decimal", "high_decimal", "low_decimal", "close_decimal", "bar_volume_decimal"},
    ValueColumns.CURVE: _ROW_COLUMNS | {"value"},
    ValueColumns.SURFACE: _ROW_COLUMNS | {"value"},
}
"""The columns of the segments' rows (qis_adapters.readstore.segments) that an export of these
value columns reads (qis_query.application.arrow_batches): the only ones its pages decode."""
SEGMENT_COLUMNS = frozenset({ValueColumns.DECIMAL})
"""The value columns of the exports that can be read straight from the segments
(qis_query.application.segment_export): those whose batches need no Python per row."""

DATA_TYPES: dict[values_pb2.DataType.ValueType, tuple[str, ValueColumns]] = {
    values_pb2.DATA_TYPE_PRICE: ("price", ValueColumns.DECIMAL),
    values_pb2.DATA_TYPE_VOLUME: ("volume", ValueColumns.DECIMAL),
    values_pb2.DATA_TYPE_OHLC_BAR: ("ohlc_bar", ValueColumns.BAR),
    values_pb2.DATA_TYPE_TERM_STRUCTURE: ("term_structure", ValueColumns.CURVE),
    values_pb2.DATA_TYPE_SURFACE: ("surface", ValueColumns.SURFACE),
}
"""The data types with a column form: their short names (as `qis define-series --type`) and
value columns."""


@dataclass(frozen=True, slots=True)
class StructureNodes:
    """The nodes of term structures or surfaces, one entry per node, row after row (what the
    columnar view and an export carry of them): row i owns the next `counts[i]` nodes."""

    counts: list[int]
    tenors: list[str]
    coordinates: list[str]
    """Empty for term structures."""
    values: list[str]
    """Decimal strings as published."""


def structure_nodes(values: Sequence[bytes]) -> StructureNodes:
    """The nodes of serialised DataValues, each a TermStructure or a Surface, in each value's
    own node order; a distinct value is parsed once (a curve often stays as it was)."""
    out = StructureNodes([], [], [], [])
    parsed: dict[bytes, StructureNodes] = {}
    for value in values:
        nodes = parsed.get(value)
        if nodes is None:
            nodes = parsed[value] = _nodes(value)
        out.counts.append(len(nodes.tenors))
        out.tenors.extend(nodes.tenors)
        out.coordinates.extend(nodes.coordinates)
        out.values.extend(nodes.values)
    return out


def _nodes(value: bytes) -> StructureNodes:
    parsed = values_pb2.DataValue.FromString(value)
    if parsed.HasField("surface"):
        surface = parsed.surface.nodes
        return StructureNodes(
            [],
            [n.tenor for n in surface],
            [n.coordinate for n in surface],
            [n.value for n in surface],
        )
    curve = parsed.term_structure.nodes
    return StructureNodes([], [n.tenor for n in curve], [], [n.value for n in curve])


@dataclass(frozen=True, slots=True)
class ExportRequest:
    series_ids: tuple[str, ...]
    start_us: int = EARLIEST
    end_us: int = OPEN_END
    as_of: AsOf = LATEST
    min_position: int = 0


@dataclass(frozen=True, slots=True)
class ExportedSeries:
    series_id: str
    data_type: str
    """"price", "volume", "ohlc_bar", "term_structure" or "surface"."""
    unit: str
    """The series' currency or unit (its definition)."""
    columns: ValueColumns
    bucket_span_us: int | None = None
    """Of the series' segments (ranges.bucket_span; None: unknown, every bucket is read)."""

    @property
    def name(self) -> str:
        return series_name(self.series_id)


@dataclass(frozen=True, slots=True)
class ExportPage:
    series_index: int
    """Of the series in the request."""
    rows: pa.Table
    """qis_adapters.readstore.segments rows, ascending by snap, of STORED_COLUMNS (and the
    columns ranges select by)."""


@dataclass(frozen=True, slots=True)
class Export:
    series: tuple[ExportedSeries, ...]
    columns: ValueColumns
    read_position: int
    """The answer reflects at least this commit position (that of its first call)."""
    pages: AsyncGenerator[ExportPage, None]
    """Non-empty pages, in order; close it (aclose) if left unfinished."""


async def open_export(
    queries: QueryHandlers, request: ExportRequest, from_segments: bool = False
) -> Export:
    """Checks the request and reads its first page; raises InvalidArgument, NotFound or
    ReadModelBehind before any value is handed out. `from_segments`: the caller reads the
    values of an export of SEGMENT_COLUMNS from the segments itself (qis_query.application
    .segment_export) and wants only the checks and the read position: then the first page
    holds one point (one segment decoded), and so do the others of its call."""
    _check_series_ids(request.series_ids)
    ranges.check_time_range(request.start_us, request.end_us)
    exported = [
        await _series(queries, series_id, index, request.min_position)
        for index, series_id in enumerate(request.series_ids)
    ]
    columns = _columns_of(exported)
    stored = STORED_COLUMNS[columns]
    first_page = 1 if from_segments and columns in SEGMENT_COLUMNS else EXPORT_PAGE
    first = await queries.query_range(
        _query(request, 0), first_page, "", request.min_position, stored, EXPORT_PAGE
    )
    return Export(
        tuple(exported),
        columns,
        first.read_position,
        _pages(queries, request, stored, first.value),
    )


def _check_series_ids(series_ids: Sequence[str]) -> None:
    if not series_ids:
        raise InvalidArgument.single(SERIES_FIELD, "name at least one series")
    if len(series_ids) > MAX_SERIES:
        raise InvalidArgument.single(
            SERIES_FIELD, f"at most {MAX_SERIES:,} series, got {len(series_ids):,}"
        )
    seen: set[str] = set()
    for index, series_id in enumerate(series_ids):
        if series_id in seen:
            raise InvalidArgument.single(
                f"{SERIES_FIELD}[{index}]", f"{series_name(series_id)} is named twice"
            )
        seen.add(series_id)


async def _series(
    queries: QueryHandlers, series_id: str, index: int, min_position: int
) -> ExportedSeries:
    field = f"{SERIES_FIELD}[{index}]"
    try:
        entry = await queries.series(series_id, min_position)
    except NotFound:
        raise NotFound(series_resource(series_id), field) from None
    data_type, unit = _definition(entry)
    known = DATA_TYPES.get(data_type)
    if known is None:
        name = values_pb2.DataType.Name(data_type).removeprefix("DATA_TYPE_").lower()
        raise InvalidArgument.single(
            field,
            f"{series_name(series_id)} holds {name} values, which have no column form: columnar"
            " exports carry prices, volumes, OHLC bars, term structures and surfaces (read it"
            " with QueryRange)",
        )
    return ExportedSeries(series_id, known[0], unit, known[1], ranges.bucket_span(entry))


def _definition(entry: SeriesEntry) -> tuple[values_pb2.DataType.ValueType, str]:
    """The data type and unit of a catalogue entry (the proto-JSON form of its Series); only
    those two fields are parsed."""
    wanted = {k: v for k, v in entry.definition.items() if k in _DEFINITION_KEYS}
    series = json_format.ParseDict(wanted, series_pb2.Series())
    return series.data_type, series.unit


def _columns_of(exported: Sequence[ExportedSeries]) -> ValueColumns:
    first = exported[0]
    other = next((s for s in exported if s.columns is not first.columns), None)
    if other is not None:
        # Named the prices or volumes last, if any: "BAR holds OHLC bars and PX prices".
        one, two = (other, first) if first.columns is ValueColumns.DECIMAL else (first, other)
        raise InvalidArgument.single(
            SERIES_FIELD,
            f"{one.name} holds {_PLURALS[one.data_type]} and {two.name}"
            f" {_PLURALS[two.data_type]}: one export has one set of value columns, so ask for"
            " them separately",
        )
    return first.columns


_PLURALS = {
    "price": "prices",
    "volume": "volumes",
    "ohlc_bar": "OHLC bars",
    "term_structure": "term structures",
    "surface": "surfaces",
}


def _query(request: ExportRequest, index: int) -> RangeQuery:
    return RangeQuery(request.series_ids[index], request.start_us, request.end_us, request.as_of)


async def _pages(
    queries: QueryHandlers,
    request: ExportRequest,
    stored: frozenset[str],
    first: AsyncIterator[ranges.RangePage],
) -> AsyncGenerator[ExportPage, None]:
    """Every page of every series: a QueryRange call streams a bounded number of points, and
    its last page's token continues in the next call, until a page without one."""
    calls: AsyncIterator[ranges.RangePage] | None = first
    for index in range(len(request.series_ids)):
        query = _query(request, index)
        token = ""
        while True:
            if calls is None:
                read = await queries.query_range(
                    query, EXPORT_PAGE, token, request.min_position, stored, EXPORT_PAGE
                )
                calls = read.value
            token = ""
            async for page in calls:
                if page.rows.num_rows:
                    yield ExportPage(index, page.rows)
                token = page.next_page_token
            calls = None
            if not token:
                break
