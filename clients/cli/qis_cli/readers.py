"""Rows of an import file (CSV, JSON, Parquet) as exact text.

Values stay text from the file to the wire: a decimal that went through a float on the way would
no longer be the number the file holds. Snaps stay text here too, and are never given a time
zone: chunks.chunks_of reads each as RFC 3339 and refuses, with the row's number, a timestamp
without an offset, rather than read it in this machine's zone.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from qis_cli.errors import CliError

SNAP = "snap"


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
class RowFields:
    """The fields of a row of one data type after its snap, in the order `Row.values` holds
    them; the optional ones may be absent from a file (they are then sent empty)."""

    names: tuple[str, ...]
    optional: frozenset[str] = frozenset()

    @property
    def with_snap(self) -> tuple[str, ...]:
        return (SNAP, *self.names)


@dataclass(frozen=True, slots=True)
class Row:
    """One observation as the file holds it; `number` is where a person finds it in the file."""

    number: int
    snap: str
    values: tuple[str, ...]


def column_map(text: str, fields: RowFields) -> dict[str, str]:
    """`--columns snap=Date,close=Close`: the file column of each field that is named otherwise
    in the file. Checked before the file is opened, so a typo is reported as such."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, column = (p.strip() for p in item.partition("="))
        if not sep or not name or not column:
            raise CliError(f"--columns: {item!r} is not FIELD=COLUMN, e.g. snap=Date")
        if name not in fields.with_snap:
            known = ", ".join(fields.with_snap)
            raise CliError(f"--columns: {name!r} is not a field of these rows (fields: {known})")
        if name in mapping:
            raise CliError(f"--columns: {name!r} is given twice")
        mapping[name] = column
    return mapping


@dataclass(frozen=True, slots=True)
class ImportFile:
    path: Path
    format: FileFormat
    fields: RowFields
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Field -> file column, for the fields whose column has another name (--columns)."""

    def column(self, name: str) -> str:
        return self.renamed.get(name, name)

    def locate(self, present: Sequence[str]) -> list[int | None]:
        """Where each field's column is among `present`, the snap first; None for an optional
        field the file does not have. Every missing column is reported in one message."""
        found: list[int | None] = []
        missing: list[str] = []
        for name in self.fields.with_snap:
            column = self.column(name)
            if column in present:
                found.append(list(present).index(column))
            elif name in self.fields.optional and name not in self.renamed:
                found.append(None)
            else:
                missing.append(repr(column) if column == name else f"{column!r} (for {name})")
                found.append(None)
        if missing:
            have = ", ".join(present) or "none"
            hint = "" if self.renamed else "; name the columns with --columns FIELD=COLUMN,..."
            raise CliError(
                f"{self.path.name} has no {' or '.join(missing)} column (columns: {have}){hint}"
            )
        return found


@dataclass(frozen=True, slots=True)
class FileRows:
    label: str
    """What `Row.number` counts: "line" where a person finds the row by line number in an
    editor or spreadsheet (CSV, JSON Lines), else "row"/"item" (1-based)."""
    rows: Iterator[Row]
    expected: int | None = None
    """About how many rows there are (blank or multi-line records make lines an estimate), for
    a progress bar; None when unknown."""


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
            return _read_csv(source)
        if source.format is FileFormat.JSON:
            return _read_json(source)
        # Imported here: pyarrow takes longer to import than the rest of the CLI together, and
        # only Parquet needs it.
        from qis_cli.parquet import read_parquet

        return read_parquet(source, warn)
    except (OSError, ValueError, csv.Error) as error:
        # ValueError covers undecodable text (UnicodeDecodeError) and Arrow's ArrowInvalid.
        raise CliError(f"cannot read {source.path}: {error}") from None


def _count_lines(path: Path) -> int:
    """Lines of a text file, counted in bytes: fast enough to do before a long import."""
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


# --- CSV: the stdlib reader yields every field as a string, which is exactly what we want ---


def _read_csv(source: ImportFile) -> FileRows:
    with _open_csv(source) as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise CliError(f"{source.path.name} is empty: a header line is required")
    located = source.locate([c.strip() for c in header])
    return FileRows("line", _csv_rows(source, located), _count_lines(source.path) - 1)


def _open_csv(source: ImportFile) -> TextIO:
    # utf-8-sig: spreadsheets often prepend a byte-order mark that would end up in the first
    # column's name.
    return source.path.open(newline="", encoding="utf-8-sig")


def _csv_rows(source: ImportFile, located: list[int | None]) -> Iterator[Row]:
    snap_at, *value_at = located
    with _open_csv(source) as handle:
        reader = csv.reader(handle)
        next(reader)  # the header, checked already
        # A quoted field may span lines, so a record starts one line after the previous ended.
        start = reader.line_num + 1
        for record in reader:
            if record:
                values = tuple(_field(record, at) for at in value_at)
                yield Row(start, _field(record, snap_at), values)
            start = reader.line_num + 1


def _field(record: list[str], index: int | None) -> str:
    # A short record yields "": the server reports the field as missing, with this row's number.
    return record[index].strip() if index is not None and index < len(record) else ""


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
        return _json_rows(source, "line", _json_lines(source), _count_lines(source.path))
    # An array is one JSON value: the stdlib cannot parse it piecewise.
    try:
        items = _loads(source.path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise CliError(f"{source.path.name} is not valid JSON: {error}") from None
    if not isinstance(items, list):
        raise CliError(f"{source.path.name}: expected an array of objects or JSON Lines")
    return _json_rows(source, "item", enumerate(items, start=1), len(items))


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


def _json_rows(
    source: ImportFile, label: str, items: Iterable[tuple[int, Any]], expected: int
) -> FileRows:
    """Checks the first object's keys now; a later object missing one is that row's problem,
    reported by the server with its number, not a reason to stop."""
    pending = iter(items)
    first = next(pending, None)
    if first is not None and isinstance(first[1], dict):
        source.locate(list(first[1]))
    keys = [source.column(name) for name in source.fields.with_snap]
    rows = (
        _json_row(source, keys, label, number, item)
        for number, item in itertools.chain([first] if first else [], pending)
    )
    return FileRows(label, rows, expected)


def _json_row(source: ImportFile, keys: list[str], label: str, number: int, item: Any) -> Row:
    if not isinstance(item, dict):
        raise CliError(f"{source.path.name} {label} {number} is not an object")
    snap, *values = (_json_text(item.get(key)) for key in keys)
    return Row(number, snap, tuple(values))


def _json_text(value: Any) -> str:
    return "" if value is None else str(value)
