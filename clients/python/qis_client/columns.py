"""Points and official values in columns: the contract's columnar forms, in Python terms.

Ingest: `point_columns(snaps, prices)` (or `volumes=`, `bars=`) builds a PointColumns from a
column of aware datetimes and one of decimals; `rows_as_columns(rows)` does it from
(snap, value) pairs. The snap and offset rules are those of `data_point`: the instant in whole
microseconds (a datetime holds nothing finer), the offset the datetime states in whole minutes
(an offset with seconds, a pre-1900 local mean time, goes as UTC), one offset for every row when
they share it and none when that one is UTC. Decimals go as decimal strings (Decimal, int, or a
string checked to be one, sent as written) or as integers at a scale (`Scaled`, or `scale=`).
`ingest_requests` cuts columns into IngestPointsRequests of at most 10,000 rows, each one
IngestPoints command or one BulkIngest chunk.

Read: `ValueColumns` collects OfficialValueColumns (QueryRange and GetValues with
view = VALUE_VIEW_COLUMNS) across pages: lists per field, row i of each being one official
value, with each row's flags decoded from flag_counts + flags. Each page chooses its values'
case: one holding a value in another currency or unit than the series' current one (published
before a schema evolution changed the unit) comes in `other`, its neighbours in `prices`; the
rows still line up, as DataValues once any page needs them (see `ValueColumns`). Term
structures and surfaces come one entry per node (`StructureTexts`); `node_rows()` gives one
(snap, tenor, coordinate, value) row per node, ready for a DataFrame.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, Rounded

from qis.data.v1 import command_service_pb2, quality_pb2, query_service_pb2, values_pb2

from qis_client.values import Bar, decimal_text, parse_decimal, series_name, source_name

MAX_ROWS = 10_000
"""Rows of one request (one IngestPoints command, one BulkIngest chunk)."""
MAX_SCALE = 18
MAX_OFFSET_MINUTES = 23 * 60 + 59
MIN_SNAP_MICROS = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_SNAP_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
_SINT64 = (-(2**63), 2**63 - 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
# What the contract calls a decimal string: ASCII digits, an optional sign, point and exponent;
# nothing Decimal() would take besides (spaces, "_", "NaN", "Infinity").
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Scaling a decimal must be exact: a wide precision, and any rounding trapped.
_EXACT = Context(prec=100, traps=[Inexact, Rounded])


@dataclass(frozen=True, slots=True)
class Scaled:
    """A column of decimals as integers scaled by 10^-scale: `Scaled([10125, 9950], 2)` is 101.25
    and 99.50. They reach the service as integers, with no text to format or parse."""

    unscaled: Sequence[int]
    scale: int


DecimalLike = Decimal | int | str
"""One decimal of a column: a Decimal, an int, or a decimal string ("101.25", sent as written)."""
Decimals = Sequence[DecimalLike] | Scaled
OptionalDecimals = Sequence[DecimalLike | None] | Scaled
"""A bar's volume column: None where a bar has no volume."""


@dataclass(frozen=True, slots=True)
class BarColumns:
    """OHLC bars in columns, row i of each making bar i; `volume` is None when no bar has one."""

    open: Decimals
    high: Decimals
    low: Decimals
    close: Decimals
    volume: OptionalDecimals | None = None


# --- ingest -----------------------------------------------------------------------------------


def snap_columns(snaps: Sequence[datetime]) -> tuple[list[int], list[int]]:
    """snap_time_micros and utc_offset_minutes of aware datetimes: the offsets collapsed to none
    (every row UTC) or one (every row the same) when they allow it."""
    micros: list[int] = []
    offsets: list[int] = []
    for row, snap in enumerate(snaps):
        if not isinstance(snap, datetime):
            raise TypeError(
                f"snaps[{row}]: an instant must be a datetime, not {type(snap).__name__}"
            )
        offset = snap.utcoffset()
        if offset is None:
            raise ValueError(
                f"snaps[{row}]: {snap.isoformat()} has no time zone: an instant needs one"
                " (tzinfo=UTC or a zoneinfo.ZoneInfo)"
            )
        instant = (snap - _EPOCH) // _MICROSECOND
        if not MIN_SNAP_MICROS <= instant <= MAX_SNAP_MICROS:
            raise ValueError(f"snaps[{row}]: {snap.isoformat()} is outside years 1..9999 in UTC")
        micros.append(instant)
        # Whole minutes, as data_point: an offset with seconds goes as UTC (same instant).
        offsets.append(0 if offset % _MINUTE else offset // _MINUTE)
    distinct = set(offsets)
    if len(distinct) <= 1:
        offsets = [] if distinct <= {0} else offsets[:1]
    return micros, offsets


def _text(value: DecimalLike, where: str) -> str:
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise ValueError(f"{where}: {value!r} is not a decimal string")
        return value
    try:
        return decimal_text(value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None


def _unscaled(text: str, scale: int, where: str) -> int:
    """A checked decimal string as an integer at `scale`, exactly."""
    try:
        scaled = parse_decimal(text).scaleb(scale, _EXACT)
        exact = scaled == scaled.to_integral_value()
    except (Inexact, Rounded):
        exact = False
    if not exact:
        raise ValueError(f"{where}: {text} has more than {scale} decimal places")
    return int(scaled)


def _check_scale(scale: int, where: str) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= MAX_SCALE:
        raise ValueError(f"{where}: scale {scale!r} is not 0 to {MAX_SCALE}")


def decimal_column(
    values: OptionalDecimals,
    *,
    scale: int | None = None,
    name: str = "values",
    optional: bool = False,
) -> values_pb2.DecimalColumn:
    """A DecimalColumn: decimal strings, or integers at `scale` when the values are `Scaled` or
    `scale` is given. Scaling rounds nothing (a value with more places is refused) and gives
    every value exactly `scale` places, which the service keeps as written: 20.5 at scale 2 is
    20.50. None is "" where the column is `optional` (a bar's unknown volume), and has no scaled
    form. `name` names the column in errors ("prices[3]: ...")."""
    if isinstance(values, Scaled):
        _check_scale(values.scale, name)
        unscaled = list(values.unscaled)
        for row, number in enumerate(unscaled):
            if isinstance(number, bool) or not isinstance(number, int):
                raise TypeError(f"{name}[{row}]: an unscaled value must be an int")
            if not _SINT64[0] <= number <= _SINT64[1]:
                raise ValueError(f"{name}[{row}]: {number} does not fit in 64 bits")
        return values_pb2.DecimalColumn(unscaled=unscaled, scale=values.scale)
    texts: list[str] = []
    for row, value in enumerate(values):
        if value is None and not optional:
            raise TypeError(f"{name}[{row}]: a value is required (None)")
        texts.append("" if value is None else _text(value, f"{name}[{row}]"))
    if scale is None:
        return values_pb2.DecimalColumn(texts=texts)
    _check_scale(scale, name)
    if "" in texts:
        raise ValueError(f"{name}: an absent value (None) has no scaled form: send texts")
    unscaled = [_unscaled(v, scale, f"{name}[{r}]") for r, v in enumerate(texts)]
    return decimal_column(Scaled(unscaled, scale), name=name)


def _rows(values: OptionalDecimals) -> int:
    return len(values.unscaled) if isinstance(values, Scaled) else len(values)


def point_columns(
    snaps: Sequence[datetime],
    prices: Decimals | None = None,
    *,
    volumes: Decimals | None = None,
    bars: BarColumns | None = None,
    scale: int | None = None,
) -> values_pb2.PointColumns:
    """Points of a price, volume or OHLC bar series in columns: `snaps` (aware datetimes) and
    one of `prices`, `volumes` and `bars`, every column as long as `snaps`. Currencies and units
    are the series' own. `scale=` sends the decimals as integers at that scale (see
    decimal_column). At most MAX_ROWS rows go in one request: see ingest_requests."""
    given = [
        kind
        for kind, column in (("prices", prices), ("volumes", volumes), ("bars", bars))
        if column is not None
    ]
    if len(given) != 1:
        raise ValueError(f"exactly one of prices, volumes and bars, not {given or 'none'}")
    micros, offsets = snap_columns(snaps)
    columns = values_pb2.PointColumns(snap_time_micros=micros, utc_offset_minutes=offsets)

    def column(values: OptionalDecimals, name: str) -> values_pb2.DecimalColumn:
        if _rows(values) != len(micros):
            raise ValueError(f"{name} has {_rows(values)} rows, snaps {len(micros)}")
        # A bar without a volume has no scaled form: that column goes as texts ("" for none).
        optional = name == "bars.volume"
        absent = optional and not isinstance(values, Scaled) and None in values
        return decimal_column(values, scale=None if absent else scale, name=name, optional=optional)

    if prices is not None:
        columns.prices.CopyFrom(column(prices, "prices"))
    elif volumes is not None:
        columns.volumes.CopyFrom(column(volumes, "volumes"))
    elif bars is not None:
        for part in ("open", "high", "low", "close"):
            getattr(columns.bars, part).CopyFrom(column(getattr(bars, part), f"bars.{part}"))
        if bars.volume is not None:
            columns.bars.volume.CopyFrom(column(bars.volume, "bars.volume"))
    return columns


Row = tuple[datetime, DecimalLike | Bar]
Rows = Mapping[datetime, DecimalLike | Bar] | Iterable[Row]


def rows_as_columns(
    rows: Rows, *, volumes: bool = False, scale: int | None = None
) -> values_pb2.PointColumns:
    """point_columns of (snap, value) rows or a {snap: value} mapping: numbers are prices
    (volumes with `volumes=True`), Bars make OHLC bars."""
    pairs = list(rows.items() if isinstance(rows, Mapping) else rows)
    snaps = [snap for snap, _ in pairs]
    values = [value for _, value in pairs]
    bars = [value for value in values if isinstance(value, Bar)]
    if not bars:
        numbers = [value for value in values if not isinstance(value, Bar)]
        if volumes:
            return point_columns(snaps, volumes=numbers, scale=scale)
        return point_columns(snaps, numbers, scale=scale)
    if len(bars) != len(values):
        raise TypeError("rows of bars and numbers mixed: a series holds one kind")
    has_volume = any(bar.volume is not None for bar in bars)
    return point_columns(
        snaps,
        bars=BarColumns(
            open=[bar.open for bar in bars],
            high=[bar.high for bar in bars],
            low=[bar.low for bar in bars],
            close=[bar.close for bar in bars],
            volume=[bar.volume for bar in bars] if has_volume else None,
        ),
        scale=scale,
    )


def _slice_decimals(
    column: values_pb2.DecimalColumn, start: int, stop: int
) -> values_pb2.DecimalColumn:
    if column.unscaled:
        return values_pb2.DecimalColumn(unscaled=column.unscaled[start:stop], scale=column.scale)
    return values_pb2.DecimalColumn(texts=column.texts[start:stop])


def chunk_columns(
    columns: values_pb2.PointColumns, rows: int = MAX_ROWS
) -> list[values_pb2.PointColumns]:
    """`columns` cut into runs of at most `rows` rows, in order (a single offset, or none, stays
    with every run)."""
    if not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"rows per chunk {rows} is not 1 to {MAX_ROWS}")
    total = len(columns.snap_time_micros)
    chunks = []
    for start in range(0, total, rows):
        stop = min(start + rows, total)
        offsets = columns.utc_offset_minutes
        chunk = values_pb2.PointColumns(
            snap_time_micros=columns.snap_time_micros[start:stop],
            utc_offset_minutes=offsets[start:stop] if len(offsets) > 1 else offsets,
        )
        kind = columns.WhichOneof("values")
        if kind == "prices":
            chunk.prices.CopyFrom(_slice_decimals(columns.prices, start, stop))
        elif kind == "volumes":
            chunk.volumes.CopyFrom(_slice_decimals(columns.volumes, start, stop))
        elif kind == "bars":
            for part in ("open", "high", "low", "close"):
                sliced = _slice_decimals(getattr(columns.bars, part), start, stop)
                getattr(chunk.bars, part).CopyFrom(sliced)
            if columns.bars.HasField("volume"):
                chunk.bars.volume.CopyFrom(_slice_decimals(columns.bars.volume, start, stop))
        chunks.append(chunk)
    return chunks


def chunk_command_ids(command_id: str | None, chunks: int) -> list[str]:
    """One command id per chunk: `{command_id}:{i}` (i from 0) when a command id is given, so
    that a re-run of the same load resends the same chunks as duplicates; fresh UUIDs without."""
    if command_id is None:
        return [str(uuid.uuid4()) for _ in range(chunks)]
    return [f"{command_id}:{index}" for index in range(chunks)]


def ingest_requests(
    series: str,
    source: str,
    columns: values_pb2.PointColumns,
    *,
    command_id: str | None = None,
    chunk_rows: int = MAX_ROWS,
) -> list[command_service_pb2.IngestPointsRequest]:
    """IngestPointsRequests of `columns` in chunks of at most `chunk_rows` rows: each one
    IngestPoints command or one BulkIngest chunk, its command id from chunk_command_ids."""
    chunks = chunk_columns(columns, chunk_rows)
    return [
        command_service_pb2.IngestPointsRequest(
            command_id=chunk_id,
            series=series_name(series),
            source=source_name(source),
            columns=chunk,
        )
        for chunk_id, chunk in zip(chunk_command_ids(command_id, len(chunks)), chunks, strict=True)
    ]


# --- read -------------------------------------------------------------------------------------


def micros_datetime(micros: int) -> datetime:
    """Microseconds since 1970-01-01T00:00:00Z as an aware datetime in UTC."""
    return _EPOCH + timedelta(microseconds=micros)


def _texts(column: values_pb2.DecimalColumn) -> list[str]:
    """The decimal strings of a column; integers at a scale written as decimals."""
    if not column.unscaled:
        return list(column.texts)
    return [format(Decimal(n).scaleb(-column.scale, _EXACT), "f") for n in column.unscaled]


@dataclass(slots=True)
class BarTexts:
    """OHLC bars in columns of decimal strings; a volume is "" where unknown."""

    open: list[str] = field(default_factory=list)
    high: list[str] = field(default_factory=list)
    low: list[str] = field(default_factory=list)
    close: list[str] = field(default_factory=list)
    volume: list[str] = field(default_factory=list)

    def bars(self) -> list[Bar]:
        return [
            Bar(
                parse_decimal(o),
                parse_decimal(h),
                parse_decimal(low),
                parse_decimal(c),
                parse_decimal(v) if v else None,
            )
            for o, h, low, c, v in zip(
                self.open, self.high, self.low, self.close, self.volume, strict=True
            )
        ]


@dataclass(slots=True)
class StructureTexts:
    """Term structures or surfaces in columns, one entry per node: row i owns the next
    node_counts[i] entries of the others; `coordinates` is empty for term structures."""

    node_counts: list[int] = field(default_factory=list)
    tenors: list[str] = field(default_factory=list)
    coordinates: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)

    def extend(self, other: StructureTexts) -> None:
        self.node_counts.extend(other.node_counts)
        self.tenors.extend(other.tenors)
        self.coordinates.extend(other.coordinates)
        self.values.extend(other.values)

    def data_values(self) -> list[values_pb2.DataValue]:
        """Each row as the TermStructure or Surface the per-point view carries."""
        out = []
        at = 0
        for count in self.node_counts:
            nodes = range(at, at + count)
            at += count
            if self.coordinates:
                surface = values_pb2.Surface(
                    nodes=[
                        values_pb2.SurfaceNode(
                            tenor=self.tenors[i],
                            coordinate=self.coordinates[i],
                            value=self.values[i],
                        )
                        for i in nodes
                    ]
                )
                out.append(values_pb2.DataValue(surface=surface))
            else:
                curve = values_pb2.TermStructure(
                    nodes=[
                        values_pb2.CurveNode(tenor=self.tenors[i], value=self.values[i])
                        for i in nodes
                    ]
                )
                out.append(values_pb2.DataValue(term_structure=curve))
        return out


def _data_values(
    kind: str, unit: str, values: list[str], bars: BarTexts, structures: StructureTexts
) -> list[values_pb2.DataValue]:
    """Typed rows (a kind's decimal strings, bars or structures, in `unit`) as the DataValues
    the per-point view carries."""
    if kind == "structures":
        return structures.data_values()
    if kind == "prices":
        return [
            values_pb2.DataValue(price=values_pb2.Price(value=v, currency=unit)) for v in values
        ]
    if kind == "volumes":
        return [
            values_pb2.DataValue(volume=values_pb2.Volume(quantity=v, unit=unit)) for v in values
        ]
    return [
        values_pb2.DataValue(bar=values_pb2.OhlcBar(open=o, high=h, low=lo, close=c, volume=v))
        for o, h, lo, c, v in zip(
            bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True
        )
    ]


class MalformedColumns(ValueError):
    """An OfficialValueColumns whose columns do not line up (a service bug, never a user's)."""


def _check_nodes(s: StructureTexts) -> None:
    nodes = len(s.tenors)
    if any(count < 1 for count in s.node_counts):
        raise MalformedColumns(f"a row without nodes: node_counts {s.node_counts}")
    if sum(s.node_counts) != nodes:
        raise MalformedColumns(f"node_counts add up to {sum(s.node_counts)}, there are {nodes}")
    if len(s.values) != nodes or len(s.coordinates) not in (0, nodes):
        raise MalformedColumns(
            f"{nodes} tenors, but {len(s.values)} values and {len(s.coordinates)} coordinates"
        )


@dataclass(slots=True)
class ValueColumns:
    """Official values in columns, row i of each list being one value; what
    `QisClient.query_range_columns` and `get_values_columns` return, every page put together.

    `kind` says where the values are: "prices" or "volumes" in `values` (decimal strings as
    published; `decimals()` parses them), "bars" in `bars`, "structures" (term structures and
    surfaces) in `structures`, one entry per node (`node_rows()` gives a row per node), "other"
    (options chains, corporate actions) in `other` as DataValue messages; "" while there is no
    row. `unit` is the currency
    (prices, bars) or unit (volumes) of every row of `values` or `bars`. `methods` are
    ValueMethod values and `flags` each row's QualityRule values (`QualityRule.Name(f)` gives
    a name). Instants are microseconds since 1970-01-01T00:00:00Z (`snap_times()`,
    `record_times()` as datetimes).

    Pages may differ in case: a page holding a value in another currency or unit than the
    series' current one (published before a schema evolution changed the unit) carries its
    values in `other`, the other pages in `prices`, `volumes` or `bars`; typed pages may also
    state different units (the unit changed between two calls of a range). The typed columns
    stay while every page with rows has the same case and unit. Once they differ, the rows read
    so far and every later page become DataValues in `other` and `kind` becomes "other": a
    price text and its page's unit make Price(value, currency=unit), a volume Volume(quantity,
    unit), a bar an OhlcBar; `other` then holds what the per-point view does, row for row, and
    `unit` is the series' unit as the last page with rows stated it. Prices after volumes (or
    bars) stay malformed: a series' data type never changes."""

    snap_time_micros: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    kind: str = ""
    values: list[str] = field(default_factory=list)
    bars: BarTexts = field(default_factory=BarTexts)
    structures: StructureTexts = field(default_factory=StructureTexts)
    other: list[values_pb2.DataValue] = field(default_factory=list)
    unit: str = ""
    quality_scores: list[float] = field(default_factory=list)
    record_time_micros: list[int] = field(default_factory=list)
    record_positions: list[int] = field(default_factory=list)
    supersede_positions: list[int] = field(default_factory=list)
    methods: list[query_service_pb2.ValueMethod.ValueType] = field(default_factory=list)
    flags: list[list[quality_pb2.QualityRule.ValueType]] = field(default_factory=list)
    read_position: int = 0
    """The least read position of the answers put together: the whole reflects at least it."""
    _case: str = field(default="", init=False, repr=False, compare=False)
    """The typed case (prices, volumes, bars) of every typed page with rows so far."""

    def __len__(self) -> int:
        return len(self.snap_time_micros)

    def snap_times(self) -> list[datetime]:
        return [micros_datetime(m) for m in self.snap_time_micros]

    def record_times(self) -> list[datetime]:
        return [micros_datetime(m) for m in self.record_time_micros]

    def decimals(self) -> list[Decimal]:
        """The prices or volumes as Decimals (TypeError for bars and other kinds)."""
        if self.kind not in ("prices", "volumes", ""):
            raise TypeError(f"{self.kind} are not one number a row: read .bars or .other")
        return [parse_decimal(text) for text in self.values]

    def node_rows(self) -> list[tuple[datetime, str, Decimal | None, Decimal, int]]:
        """Term structures or surfaces one row per node: (snap, tenor, coordinate, or None for
        a curve, value, version); `pandas.DataFrame(rows, columns=[...])` makes a table of
        them. TypeError for other kinds."""
        if self.kind not in ("structures", ""):
            raise TypeError(f"{self.kind} have no nodes: read .values, .bars or .other")
        s = self.structures
        rows = []
        at = 0
        for snap, version, count in zip(
            self.snap_time_micros, self.versions, s.node_counts, strict=True
        ):
            when = micros_datetime(snap)
            for i in range(at, at + count):
                coordinate = parse_decimal(s.coordinates[i]) if s.coordinates else None
                rows.append((when, s.tenors[i], coordinate, parse_decimal(s.values[i]), version))
            at += count
        return rows

    def append(
        self, columns: query_service_pb2.OfficialValueColumns, read_position: int = 0
    ) -> None:
        """Adds the rows of one answer (a QueryRange message, a GetValues response), after
        checking that its columns line up."""
        rows = len(columns.snap_time_micros)
        kind = columns.WhichOneof("values") or ""
        if rows and kind == "":
            raise MalformedColumns(f"{rows} rows without values")
        if rows and kind != "other" and self._case and kind != self._case:
            raise MalformedColumns(f"{kind} after {self._case}")
        values: list[str] = []
        bars = BarTexts()
        if kind in ("prices", "volumes"):
            values = _texts(getattr(columns, kind))
        elif kind == "bars":
            parts = columns.bars
            bars = BarTexts(
                _texts(parts.open), _texts(parts.high), _texts(parts.low), _texts(parts.close)
            )
            volume = _texts(parts.volume)
            bars.volume = volume if parts.HasField("volume") and volume else [""] * rows
        structures = StructureTexts()
        if kind == "structures":
            nodes = columns.structures
            structures = StructureTexts(
                list(nodes.node_counts),
                list(nodes.tenors),
                list(nodes.coordinates),
                _texts(nodes.values),
            )
        counts = list(columns.flag_counts)
        if not counts and not columns.flags:
            counts = [0] * rows  # no row has a flag
        lengths = {
            "versions": len(columns.versions),
            "quality_scores": len(columns.quality_scores),
            "record_time_micros": len(columns.record_time_micros),
            "record_positions": len(columns.record_positions),
            "supersede_positions": len(columns.supersede_positions),
            "methods": len(columns.methods),
            "flag_counts": len(counts),
        }
        if kind in ("prices", "volumes"):
            lengths[kind] = len(values)
        elif kind == "bars":
            lengths.update(
                {
                    f"bars.{p}": len(getattr(bars, p))
                    for p in ("open", "high", "low", "close", "volume")
                }
            )
        elif kind == "structures":
            lengths["structures.node_counts"] = len(structures.node_counts)
        elif kind == "other":
            lengths["other"] = len(columns.other.values)
        uneven = {name: length for name, length in lengths.items() if length != rows}
        if uneven:
            raise MalformedColumns(f"{rows} snaps, but {uneven}")
        if kind == "structures":
            _check_nodes(structures)
        if any(count < 0 for count in counts) or sum(counts) != len(columns.flags):
            raise MalformedColumns(
                f"flag_counts add up to {sum(counts)}, there are {len(columns.flags)} flags"
            )
        flags = list(columns.flags)
        start = 0
        for count in counts:
            self.flags.append(flags[start : start + count])
            start += count
        unit = columns.unit
        if not self.snap_time_micros:
            # Nothing to line up with yet: the first page with rows sets the case and unit.
            self.kind = kind if rows else kind or self.kind
            self.unit = unit if rows else unit or self.unit
        elif not rows:
            pass  # an empty page (the end of a range) changes nothing
        elif self.kind == "other" or kind == "other" or unit != self.unit:
            if self.kind != "other":
                self.other.extend(
                    _data_values(self.kind, self.unit, self.values, self.bars, self.structures)
                )
                self.values.clear()
                self.bars = BarTexts()
                self.structures = StructureTexts()
                self.kind = "other"
            self.unit = unit or self.unit
        if rows and kind != "other":
            self._case = kind
        if self.kind == "other" and kind != "other":
            self.other.extend(_data_values(kind, unit, values, bars, structures))
        else:
            self.values.extend(values)
            self.structures.extend(structures)
            for part in ("open", "high", "low", "close", "volume"):
                getattr(self.bars, part).extend(getattr(bars, part))
            self.other.extend(columns.other.values)
        self.snap_time_micros.extend(columns.snap_time_micros)
        self.versions.extend(columns.versions)
        self.quality_scores.extend(columns.quality_scores)
        self.record_time_micros.extend(columns.record_time_micros)
        self.record_positions.extend(columns.record_positions)
        self.supersede_positions.extend(columns.supersede_positions)
        self.methods.extend(columns.methods)
        if read_position and (not self.read_position or read_position < self.read_position):
            self.read_position = read_position
