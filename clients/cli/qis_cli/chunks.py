"""An import file cut into chunks with deterministic command ids, and a rejected chunk's field
violations mapped back to the rows of the file.

A row's snap is read here: the contract carries instants (a Timestamp and the offset the file
stated), not the file's text, so a row whose snap is not an RFC 3339 date-time with an offset
is refused with its reason before anything is sent, never read in this machine's zone.

The server remembers the command ids it has handled and answers a repeat with the first outcome,
appending nothing. Deriving every id from the file's content and the import's parameters makes a
re-run of the same import a no-op, and a re-run after a broken stream a resume.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qis_domain.snaps import Snap, parse_snap

from qis_cli.errors import Violation
from qis_cli.readers import SNAP, Row

# Fixed forever: changing it would give every past import new ids, so re-running one would
# ingest it again instead of being answered with duplicates.
_NAMESPACE = uuid.UUID("5b0c3f0e-8d7a-4f43-9a61-2f1c8f4e7d20")

# The server names a point by its index in the request: "points[17].value.price.value".
_POINT_FIELD = re.compile(r"points\[(\d+)\](?:\.(.+))?")


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True, slots=True)
class ImportKey:
    """Everything that decides which rows go into which chunk, hence the chunk ids. The chunk
    size is part of it: the same file cut differently is a different set of commands."""

    file_sha256: str
    series_id: str
    source_id: str
    chunk_size: int
    renamed: Mapping[str, str] = field(default_factory=dict)
    """--columns: the same file read through other columns is other rows."""

    def chunk_id(self, index: int) -> str:
        name = (
            f"qis-ingest|{self.file_sha256}|{self.series_id}|{self.source_id}"
            f"|{index}|{self.chunk_size}"
        )
        if self.renamed:
            # Only when given: the ids of imports without --columns stay what they always were.
            name += "|" + ",".join(f"{k}={v}" for k, v in sorted(self.renamed.items()))
        return str(uuid.uuid5(_NAMESPACE, name))


def retry_id(command_id: str) -> str:
    """Id of the chunk re-sent with the valid rows of rejected chunk `command_id`: derived, so
    a re-run re-sends it under the same id and gets a duplicate instead of a second copy."""
    return str(uuid.uuid5(_NAMESPACE, f"{command_id}|retry"))


@dataclass(frozen=True, slots=True)
class Point:
    """A row whose snap was read: what a request carries."""

    row: Row
    snap: Snap


@dataclass(frozen=True, slots=True)
class Chunk:
    command_id: str
    index: int
    """Position of the chunk in the file; a re-sent chunk keeps the index of its original."""
    points: tuple[Point, ...]
    resent: bool = False


@dataclass(frozen=True, slots=True)
class RowProblem:
    rows: tuple[Row, ...]
    """Usually one row; all the rows concerned when the server named no point (e.g. "points":
    snaps must be unique), since then no row of the chunk can be told apart as the bad one."""
    field: str
    reason: str


Refuse = Callable[[RowProblem], None]


def chunks_of(rows: Iterable[Row], key: ImportKey, refuse: Refuse) -> Iterator[Chunk]:
    """Chunks of `key.chunk_size` points. A row whose snap cannot be read (no offset, finer
    than a microsecond, not RFC 3339, out of range) goes to `refuse` with the reason, and the
    chunk fills up with the next rows: the same file always makes the same chunks."""
    index = 0
    batch: list[Point] = []
    for row in rows:
        try:
            batch.append(Point(row, parse_snap(row.snap)))
        except ValueError as error:
            refuse(RowProblem((row,), SNAP, str(error)))
            continue
        if len(batch) == key.chunk_size:
            yield Chunk(key.chunk_id(index), index, tuple(batch))
            index += 1
            batch = []
    if batch:
        yield Chunk(key.chunk_id(index), index, tuple(batch))


@dataclass(frozen=True, slots=True)
class Rejection:
    problems: tuple[RowProblem, ...]
    rejected_rows: int
    retry: Chunk | None
    """The chunk's other rows, to be sent alone; None when no row could be told apart."""


# A volume's quantity comes from the row's "value", like a price's value; a point's instant and
# offset both come from the row's snap.
_COLUMN_OF_FIELD = {"quantity": "value", "snap_time": SNAP, "utc_offset": SNAP}


def column_of(point_field: str | None) -> str:
    """The row field a violation's sub-path is about: "value.price.value" -> "value",
    "value.volume.quantity" -> "value", "value.price.currency" -> "currency",
    "value.bar.high" -> "high", "snap_time" and "utc_offset" -> "snap"; the point as a whole
    -> "point"."""
    if point_field is None:
        return "point"
    last = point_field.rsplit(".", 1)[-1]
    return _COLUMN_OF_FIELD.get(last, last)


def judge_rejection(chunk: Chunk, violations: Sequence[Violation], reason: str) -> Rejection:
    """Which rows a rejection is about, and which rows deserve a second chance.

    `reason` stands in when the server gave no field violation at all (e.g. ABORTED).
    """
    by_row: dict[int, list[Violation]] = {}
    chunk_wide: list[Violation] = []
    for violation in violations:
        match = _POINT_FIELD.fullmatch(violation.field)
        if match is not None and int(match[1]) < len(chunk.points):
            column = column_of(match[2])
            by_row.setdefault(int(match[1]), []).append(Violation(column, violation.description))
        else:
            chunk_wide.append(violation)
    if not by_row and not chunk_wide:
        chunk_wide.append(Violation("", reason))
    problems = [
        RowProblem((chunk.points[i].row,), v.field, v.description)
        for i, found in sorted(by_row.items())
        for v in found
    ]
    others = tuple(point for i, point in enumerate(chunk.points) if i not in by_row)
    if chunk_wide:
        if others:
            rows = tuple(point.row for point in others)
            problems.extend(RowProblem(rows, v.field, v.description) for v in chunk_wide)
        return Rejection(tuple(problems), len(chunk.points), None)
    retry = Chunk(retry_id(chunk.command_id), chunk.index, others, resent=True) if others else None
    return Rejection(tuple(problems), len(by_row), retry)
