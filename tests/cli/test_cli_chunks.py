"""Deterministic chunk ids, rows whose snap cannot be read refused before sending, and a
rejected chunk's violations mapped back to file rows."""

from __future__ import annotations

from pathlib import Path

from qis_cli.chunks import (
    Chunk,
    ImportKey,
    Point,
    RowProblem,
    chunks_of,
    column_of,
    file_digest,
    judge_rejection,
    retry_id,
)
from qis_cli.errors import Violation
from qis_cli.readers import Row
from qis_domain.snaps import Snap

SNAP_0 = "2024-03-01T16:00:00-05:00"


def _ids(
    path: Path,
    series: str = "spx",
    source: str = "csv",
    size: int = 2,
    renamed: dict[str, str] | None = None,
) -> list[str]:
    key = ImportKey(file_digest(path), series, source, size, renamed or {})
    rows = (Row(n, SNAP_0, ("1", "")) for n in range(2, 7))
    return [chunk.command_id for chunk in chunks_of(rows, key, _unexpected)]


def _unexpected(problem: RowProblem) -> None:
    raise AssertionError(f"refused: {problem}")


def test_the_same_file_gives_the_same_ids(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"snap,value\n2024-01-01T00:00:00Z,1.5\n")
    first = _ids(path)
    assert len(first) == 3 == len(set(first))
    assert _ids(path) == first
    copy = tmp_path / "elsewhere.csv"
    copy.write_bytes(path.read_bytes())
    assert _ids(copy) == first, "ids depend on content, not on the file's name"


def test_any_change_of_input_gives_new_ids(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"snap,value\n2024-01-01T00:00:00Z,1.5\n")
    first = set(_ids(path))
    path.write_bytes(b"snap,value\n2024-01-01T00:00:00Z,1.6\n")  # one byte
    assert first.isdisjoint(_ids(path))
    path.write_bytes(b"snap,value\n2024-01-01T00:00:00Z,1.5\n")
    assert first.isdisjoint(_ids(path, series="ndx"))
    assert first.isdisjoint(_ids(path, source="feed"))
    assert first.isdisjoint(_ids(path, size=3))
    assert first.isdisjoint(_ids(path, renamed={"value": "Close"}))


def _points(*rows: Row) -> tuple[Point, ...]:
    return tuple(Point(row, Snap(row.number)) for row in rows)


def _chunk(size: int, first_line: int = 2) -> Chunk:
    rows = (Row(first_line + i, f"s{i}", (f"{i}.5", "")) for i in range(size))
    return Chunk("chunk-0", 0, _points(*rows))


def test_snaps_are_read_with_their_offset_and_unreadable_ones_refused() -> None:
    rows = [
        Row(2, SNAP_0, ("1", "")),
        Row(3, "2024-03-01T16:00:00", ("2", "")),  # no offset: never read in this machine's zone
        Row(4, "2024-03-01T21:00:00.000001Z", ("3", "")),
        Row(5, "2024-03-01T21:00:00.0000001Z", ("4", "")),  # finer than a microsecond
        Row(6, "2024-03-01 21:00:00Z", ("5", "")),
        Row(7, "", ("6", "")),
        Row(8, "2024-03-04T16:00:00+05:30", ("7", "")),
    ]
    refused: list[RowProblem] = []
    key = ImportKey("ab" * 32, "spx", "csv", 2)
    chunks = list(chunks_of(rows, key, refused.append))
    # The chunks fill up with the rows that can be sent: the same file, the same chunks.
    assert [(c.index, [p.row.number for p in c.points]) for c in chunks] == [(0, [2, 4]), (1, [8])]
    assert [c.command_id for c in chunks] == [key.chunk_id(0), key.chunk_id(1)]
    assert [p.snap for c in chunks for p in c.points] == [
        Snap(1_709_326_800_000_000, -18_000),
        Snap(1_709_326_800_000_001, 0),
        Snap(1_709_548_200_000_000, 19_800),
    ]
    assert [(p.rows[0].number, p.field) for p in refused] == [
        (3, "snap"),
        (5, "snap"),
        (6, "snap"),
        (7, "snap"),
    ]
    assert refused[0].reason == "'2024-03-01T16:00:00' has no UTC offset: add 'Z' or '+hh:mm'"
    assert "finer than microsecond precision" in refused[1].reason
    assert "is not an RFC 3339 timestamp" in refused[2].reason


def test_violations_map_to_file_rows_and_the_other_rows_are_resent() -> None:
    chunk = _chunk(5)
    rejection = judge_rejection(
        chunk,
        [
            Violation("points[3].snap_time", "outside 0001..9999"),
            Violation("points[1].value.price.value", "'NaN' is not a finite decimal number"),
            Violation("points[3].value.price.currency", "series is in USD"),
        ],
        "unused",
    )
    assert [(p.rows[0].number, p.field, p.reason) for p in rejection.problems] == [
        (3, "value", "'NaN' is not a finite decimal number"),
        (5, "snap", "outside 0001..9999"),
        (5, "currency", "series is in USD"),
    ]
    assert rejection.rejected_rows == 2
    retry = rejection.retry
    assert retry is not None
    assert retry.command_id == retry_id("chunk-0") != "chunk-0"
    assert retry.resent
    assert [p.row.number for p in retry.points] == [2, 4, 6]
    assert [p.snap for p in retry.points] == [Snap(2), Snap(4), Snap(6)], "snaps go along"


def test_indexes_of_a_resent_chunk_refer_to_its_own_rows() -> None:
    rows = (Row(2, "a", ("1", "")), Row(4, "b", ("x", "")), Row(6, "c", ("3", "")))
    resent = Chunk(retry_id("chunk-0"), 0, _points(*rows))
    rejection = judge_rejection(resent, [Violation("points[1].value", "wrong kind")], "unused")
    assert [p.rows[0].number for p in rejection.problems] == [4]
    assert rejection.retry is not None
    assert rejection.retry.command_id == retry_id(resent.command_id)
    assert [p.row.number for p in rejection.retry.points] == [2, 6]


def test_a_violation_naming_no_point_rejects_the_whole_chunk() -> None:
    chunk = _chunk(4)
    rejection = judge_rejection(
        chunk,
        [
            Violation("points[2].value.price.value", "'x' is not a finite decimal number"),
            Violation("points", "snaps must be unique within one command"),
        ],
        "unused",
    )
    assert rejection.retry is None
    assert rejection.rejected_rows == 4
    whole = rejection.problems[-1]
    assert [r.number for r in whole.rows] == [2, 3, 5]
    assert (whole.field, whole.reason) == ("points", "snaps must be unique within one command")


def test_an_index_beyond_the_chunk_is_not_trusted() -> None:
    rejection = judge_rejection(_chunk(2), [Violation("points[9].snap_time", "?")], "unused")
    assert rejection.retry is None
    assert rejection.rejected_rows == 2


def test_a_status_without_violations_rejects_the_chunk_with_its_message() -> None:
    rejection = judge_rejection(_chunk(2), [], "ABORTED: gave up after 5 conflicting attempts")
    assert rejection.retry is None
    assert [(p.field, p.reason) for p in rejection.problems] == [
        ("", "ABORTED: gave up after 5 conflicting attempts")
    ]


def test_a_chunk_with_only_bad_rows_is_not_resent() -> None:
    rejection = judge_rejection(_chunk(1), [Violation("points[0].snap_time", "?")], "unused")
    assert rejection.retry is None
    assert rejection.rejected_rows == 1


def test_column_names_for_violation_paths() -> None:
    assert column_of("snap_time") == "snap"
    assert column_of("utc_offset") == "snap"
    assert column_of("value.price.value") == "value"
    assert column_of("value.volume.quantity") == "value"
    assert column_of("value.price.currency") == "currency"
    assert column_of("value.volume.unit") == "unit"
    assert column_of("value.bar.high") == "high"
    assert column_of("value.bar.volume") == "volume"
    assert column_of(None) == "point"
