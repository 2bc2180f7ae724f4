"""Parquet files as rows of exact text: typed columns converted without passing through binary
floats, timestamps written in their column's zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from qis_cli.readers import FileRows, ImportFile, Row, Warn


def read_parquet(source: ImportFile, warn: Warn) -> FileRows:
    schema = pq.read_schema(source.path)
    located = source.locate(schema.names)
    # The file's columns, in the order of the row's fields; "" for an optional one it lacks.
    columns = [schema.names[at] if at is not None else "" for at in located]
    floats = [
        f"column {name!r} is {schema.field(name).type}"
        for name in filter(None, columns[1:])
        if pa.types.is_floating(schema.field(name).type)
    ]
    if floats:
        warn(
            f"{source.path.name}: {', '.join(floats)}: binary floating point cannot hold most"
            " decimal fractions, so values are sent as the shortest decimal that reads back as"
            " the same float (0.1, not 0.1000000000000000055511...). That is usually what was"
            " written, but digits beyond ~15-17 significant ones are lost. Store decimal128 or"
            " text columns to keep values exact."
        )
    expected = pq.read_metadata(source.path).num_rows
    return FileRows("row", _parquet_rows(source.path, columns), expected)


def _parquet_rows(path: Path, columns: list[str]) -> Iterator[Row]:
    number = 0
    present = [c for c in columns if c]
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(columns=list(dict.fromkeys(present))):
            by_name = {name: _texts(batch.column(name)) for name in present}
            blank = [""] * batch.num_rows
            texts = [by_name[c] if c else blank for c in columns]
            for snap, *values in zip(*texts, strict=True):
                number += 1
                yield Row(number, snap, tuple(values))


def _texts(column: pa.Array) -> list[str]:
    kind = column.type
    if pa.types.is_timestamp(kind):
        return _timestamp_texts(column)
    if pa.types.is_floating(kind):
        return ["" if v is None else str(Decimal(repr(v))) for v in column.to_pylist()]
    # Decimal columns come back as Decimal (str keeps every digit); ints and strings as themselves.
    return ["" if v is None else str(v) for v in column.to_pylist()]


_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _timestamp_texts(column: pa.Array) -> list[str]:
    kind: pa.TimestampType = column.type
    zone = _zone(kind.tz)
    per_second = _PER_SECOND[kind.unit]
    # Through int64 rather than to_pylist(): nanoseconds would not fit a datetime.
    ticks = column.cast(pa.int64()).to_pylist()
    return ["" if t is None else format_instant(t, per_second, zone) for t in ticks]


def _zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None
    if name in ("UTC", "Z", "+00:00", "Etc/UTC"):
        return UTC
    if name[:1] in "+-":
        hours, _, minutes = name[1:].partition(":")
        sign = -1 if name[0] == "-" else 1
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
    return ZoneInfo(name)


def format_instant(ticks: int, per_second: int, zone: tzinfo | None) -> str:
    """RFC 3339 text of an Arrow timestamp, in its column's zone (the offset is lineage the
    server keeps). Without a zone the wall-clock time is written without an offset, which the
    import refuses: guessing a zone here would silently shift every value. Nanoseconds are
    written as they are, so that a snap finer than a microsecond is refused, not truncated."""
    seconds, fraction = divmod(ticks, per_second)
    moment = datetime.fromtimestamp(seconds, zone or UTC)
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    if fraction:
        digits = len(str(per_second)) - 1
        text += "." + f"{fraction:0{digits}d}".rstrip("0")
    if zone is None:
        return text
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
