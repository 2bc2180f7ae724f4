"""Rows of an import file (CSV, JSON, Parquet) as exact text.

Values stay text from the file to the wire: a decimal that went through a float on the way would
no longer be the number the file holds. Snaps stay text too, and are never given a time zone
here: a timestamp without an offset reaches the server as it is and is rejected there, rather
than being silently read in this machine's zone.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from qis_cli.errors import CliError

SNAP_COLUMN = "snap"
VALUE_COLUMN = "value"


class FileFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSON = "json"


_EXTENSIONS = {
    ".csv": FileFormat.CSV,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
    ".json": FileFormat.JSON,
    ".jsonl": FileFormat.JSON,
    ".ndjson": FileFormat.JSON,
}


@dataclass(frozen=True, slots=True)
class Row:
    """One observation as the file holds it; `number` is where a person finds it in the file."""

    number: int
    snap: str
    value: str
    unit: str = ""


@dataclass(frozen=True, slots=True)
class ImportFile:
    path: Path
    format: FileFormat
    unit_column: str
    """'currency' for price series, 'unit' for volume series; the column is optional."""


@dataclass(frozen=True, slots=True)
class FileRows:
    label: str
    """What `Row.number` counts: "line" where a person finds the row by line number in an
    editor or spreadsheet (CSV, JSON Lines), else "row"/"item" (1-based)."""
    rows: Iterator[Row]


Warn = Callable[[str], None]


def detect_format(path: Path, explicit: str | None) -> FileFormat:
    if explicit is not None:
        return FileFormat(explicit)
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise CliError(f"cannot tell the format of {path.name} ({known}): pass --format")
    return found


def read_rows(source: ImportFile, warn: Warn) -> FileRows:
    """Checks the columns now (a usage error before anything is sent); reads rows lazily."""
    try:
        if source.format is FileFormat.CSV:
            return FileRows("line", _read_csv(source))
        if source.format is FileFormat.JSON:
            return _read_json(source)
        # Imported here: pyarrow takes longer to import than the rest of the CLI together, and
        # only Parquet needs it.
        from qis_cli.parquet import read_parquet

        return FileRows("row", read_parquet(source, warn))
    except (OSError, ValueError, csv.Error) as error:
        # ValueError covers undecodable text (UnicodeDecodeError) and Arrow's ArrowInvalid.
        raise CliError(f"cannot read {source.path}: {error}") from None


def require_columns(source: ImportFile, columns: list[str]) -> None:
    missing = [c for c in (SNAP_COLUMN, VALUE_COLUMN) if c not in columns]
    if missing:
        have = ", ".join(columns) or "none"
        raise CliError(
            f"{source.path.name} has no {' or '.join(repr(c) for c in missing)} column"
            f" (columns: {have})"
        )


# --- CSV: the stdlib reader yields every field as a string, which is exactly what we want ---


def _read_csv(source: ImportFile) -> Iterator[Row]:
    with _open_csv(source) as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise CliError(f"{source.path.name} is empty: a header line is required")
    columns = [c.strip() for c in header]
    require_columns(source, columns)
    return _csv_rows(source, columns)


def _open_csv(source: ImportFile) -> TextIO:
    # utf-8-sig: spreadsheets often prepend a byte-order mark that would end up in the first
    # column's name.
    return source.path.open(newline="", encoding="utf-8-sig")


def _csv_rows(source: ImportFile, columns: list[str]) -> Iterator[Row]:
    snap_at, value_at = columns.index(SNAP_COLUMN), columns.index(VALUE_COLUMN)
    unit_at = columns.index(source.unit_column) if source.unit_column in columns else None
    with _open_csv(source) as handle:
        reader = csv.reader(handle)
        next(reader)  # the header, checked already
        # A quoted field may span lines, so a record starts one line after the previous ended.
        start = reader.line_num + 1
        for record in reader:
            if record:
                yield Row(
                    start,
                    _field(record, snap_at),
                    _field(record, value_at),
                    "" if unit_at is None else _field(record, unit_at),
                )
            start = reader.line_num + 1


def _field(record: list[str], index: int) -> str:
    # A short record yields "": the server reports the field as missing, with this row's number.
    return record[index].strip() if index < len(record) else ""


# --- JSON: an array of objects, or JSON Lines (one object per line) ---


def _exact(text: str) -> str:
    return text


def _loads(text: str) -> Any:
    # Numbers keep their literal text: json's float parsing would round 0.1000000000000000055
    # to a binary double. NaN/Infinity stay text too, and the server rejects them.
    return json.loads(text, parse_float=_exact, parse_int=_exact, parse_constant=_exact)


def _read_json(source: ImportFile) -> FileRows:
    with source.path.open(encoding="utf-8-sig") as handle:
        is_array = handle.read(4096).lstrip().startswith("[")
    if not is_array:
        return _json_rows(source, "line", _json_lines(source))
    # An array is one JSON value: the stdlib cannot parse it piecewise.
    try:
        items = _loads(source.path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise CliError(f"{source.path.name} is not valid JSON: {error}") from None
    if not isinstance(items, list):
        raise CliError(f"{source.path.name}: expected an array of objects or JSON Lines")
    return _json_rows(source, "item", enumerate(items, start=1))


def _json_lines(source: ImportFile) -> Iterator[tuple[int, Any]]:
    with source.path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, _loads(line)
            except json.JSONDecodeError as error:
                raise CliError(
                    f"{source.path.name} line {number} is not JSON: {error.msg}"
                ) from None


def _json_rows(source: ImportFile, label: str, items: Iterable[tuple[int, Any]]) -> FileRows:
    """Checks the first object's keys now; a later object missing one is that row's problem,
    reported by the server with its number, not a reason to stop."""
    pending = iter(items)
    first = next(pending, None)
    if first is not None and isinstance(first[1], dict):
        require_columns(source, list(first[1]))
    rows = (
        _json_row(source, label, number, item)
        for number, item in itertools.chain([first] if first else [], pending)
    )
    return FileRows(label, rows)


def _json_row(source: ImportFile, label: str, number: int, item: Any) -> Row:
    if not isinstance(item, dict):
        raise CliError(f"{source.path.name} {label} {number} is not an object")
    return Row(
        number,
        _json_text(item.get(SNAP_COLUMN)),
        _json_text(item.get(VALUE_COLUMN)),
        _json_text(item.get(source.unit_column)),
    )


def _json_text(value: Any) -> str:
    return "" if value is None else str(value)
