"""SQLite-only guarantees: every query is an index range scan, the benchmark baseline, and files
written by earlier code: given the columns and indexes they lack without a copy of their rows,
read on, and refused to writers when of an older read-model format."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from qis_adapters.readstore.port import (
    UNRECORDED_FORMAT,
    AuditEntry,
    AuditScope,
    ChangeFeedEntry,
    GenerationFormatError,
    IssueFilter,
    IssueResolution,
    OfficialVersion,
    ProjectionBatch,
    QualityIssue,
    QualityMetrics,
)
from qis_adapters.readstore.sqlite import _INT, _INT_0, SqliteReadStore, _Sql, _Table

# Every statement behind the port's queries, the issue listing in each of its forms, and the
# resolution of an issue (an update by key).
STATEMENTS: list[Callable[[_Sql], str]] = [
    lambda q: q.latest_range,
    lambda q: q.as_of_time_range,
    lambda q: q.as_of_position_range,
    lambda q: q.history,
    lambda q: q.observations,
    lambda q: q.changes_after,
    lambda q: q.changes_after_series,
    lambda q: q.audit_all,
    lambda q: q.audit_series,
    lambda q: q.audit_point,
    lambda q: q.audit_source,
    lambda q: q.list_series,
    lambda q: q.get_series,
    lambda q: q.metrics,
    lambda q: q.list_issues[False, False],  # every series, any status
    lambda q: q.list_issues[False, True],  # every series, one status
    lambda q: q.list_issues[True, False],  # one series, any status
    lambda q: q.list_issues[True, True],  # one series, one status
    lambda q: q.resolve_issue,
]


@pytest.mark.parametrize("statement", STATEMENTS)
async def test_query_is_an_index_range_scan_in_result_order(
    tmp_path: Path, statement: Callable[[_Sql], str]
) -> None:
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await store.close()
    sql = statement(_Sql.for_generation("g1"))
    conn = sqlite3.connect(tmp_path / "read.db")
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", [1] * sql.count("?"))]
    finally:
        conn.close()
    # One SEARCH bounded by key columns: a SCAN would read the whole table, a second step (TEMP
    # B-TREE) would sort the range.
    assert len(plan) == 1, plan
    assert plan[0].startswith("SEARCH"), plan
    assert "=" in plan[0] or ">" in plan[0], plan


async def test_raw_bulk_insert_writes_the_same_rows_into_a_scratch_generation(
    tmp_path: Path,
) -> None:
    version = OfficialVersion("S1", 1, 1, b"\n\x00", 1.0, 10, 10, "", "u", "c", ("a",), "m")
    change = ChangeFeedEntry(10, 0, "S1", 1, 1, b"\n\x00", 1.0, 10, "", "u")
    batch = ProjectionBatch(versions=[version], changes=[change])
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    try:
        assert await store.raw_bulk_insert(batch, "scratch") == 3  # version, current, change
        assert await store.raw_bulk_insert(batch, "scratch") == 3  # emptied first: no conflict
        assert await store.list_generations() == ["g1"]  # the scratch is never registered
        await store.drop_generation("scratch")
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "read.db")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert not {t for t in tables if t.startswith("scratch_")}


# Tables as earlier code created them, written out here so that the tests keep describing those
# files whatever the adapter becomes. Metrics before missing_sessions & co. (completeness NOT
# NULL):
OLD_METRICS_DDL = (
    "CREATE TABLE g1_metrics (series_id TEXT NOT NULL, window_start_us INTEGER NOT NULL,"
    " window_end_us INTEGER NOT NULL, accuracy REAL NOT NULL, completeness REAL NOT NULL,"
    " timeliness REAL NOT NULL, consistency REAL NOT NULL, calculated_at_us INTEGER NOT NULL,"
    " position INTEGER NOT NULL, PRIMARY KEY (series_id, window_start_us, window_end_us))"
    " WITHOUT ROWID"
)
# The audit table before entries about sources named their source:
OLD_AUDIT_DDL = (
    "CREATE TABLE g1_audit (position INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " recorded_at_us INTEGER NOT NULL, series_id TEXT NOT NULL, snap_us INTEGER,"
    " action TEXT NOT NULL, user_id TEXT NOT NULL, command_id TEXT NOT NULL,"
    " details TEXT NOT NULL, PRIMARY KEY (position, idx)) WITHOUT ROWID"
)
# Issues keyed by their id alone (commit 0599311 and before), with that code's indexes:
OLD_ISSUES_DDL = (
    "CREATE TABLE g1_issues (issue_id TEXT NOT NULL, series_id TEXT NOT NULL,"
    " snap_us INTEGER NOT NULL, rule TEXT NOT NULL, severity TEXT NOT NULL,"
    " evidence TEXT NOT NULL, status TEXT NOT NULL, raised_at_us INTEGER NOT NULL,"
    " position INTEGER NOT NULL, source_id TEXT NOT NULL, resolved_by TEXT NOT NULL,"
    " resolution_reason TEXT NOT NULL, resolved_at_us INTEGER NOT NULL,"
    " PRIMARY KEY (issue_id)) WITHOUT ROWID",
    "CREATE INDEX g1_issues_by_status_issue_id ON g1_issues (status, issue_id)",
    "CREATE INDEX g1_issues_by_series_id_issue_id ON g1_issues (series_id, issue_id)",
    "CREATE INDEX g1_issues_by_series_id_status_issue_id"
    " ON g1_issues (series_id, status, issue_id)",
)


def _root_pages(path: Path) -> dict[str, int]:
    """Where each table starts in the file: a rebuilt (copied) table starts elsewhere."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'")
        return dict(rows.fetchall())
    finally:
        conn.close()


def _columns(path: Path, table: str) -> list[tuple[str, str, int, str | None]]:
    """(name, type, NOT NULL, default) of each column of `table`, in table order."""
    conn = sqlite3.connect(path)
    try:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        return [(name, type_, notnull, default) for _, name, type_, notnull, default, _ in info]
    finally:
        conn.close()


def _indexes(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
        )
        return {name for (name,) in rows if not name.startswith("sqlite_autoindex")}
    finally:
        conn.close()


def _old_file(path: Path, *statements: str) -> None:
    """A database whose active generation g1, at checkpoint 7, has tables of an earlier shape
    (`statements`: their DDL and rows) and no format record, as before formats were recorded."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("active", "g1"), ("generation:g1", 7)])
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


async def test_a_generation_written_by_earlier_code_reads_on_and_is_refused_to_writers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read.db"
    _old_file(
        path,
        OLD_METRICS_DDL,
        "INSERT INTO g1_metrics VALUES ('S1', 100, 200, 1.0, 0.5, 0.25, 0.75, 9, 7)",
    )
    old = QualityMetrics("S1", 100, 200, 1.0, 0.5, 0.25, 0.75, 9, 7)  # the new fields' defaults

    reader = await SqliteReadStore.open(path)  # a query service may open the file first
    try:
        assert await reader.metrics("S1", 0, 1000) == [old]
        assert await reader.generation_format("g1") == UNRECORDED_FORMAT
    finally:
        await reader.close()
    # Columns added in place, after the old ones; what ADD COLUMN cannot change stays.
    assert [c[0] for c in _columns(path, "g1_metrics")][-4:] == [
        "expected_snaps",
        "received_snaps",
        "missing_sessions",
        "uncovered_days",
    ]
    assert ("completeness", "REAL", 1, None) in _columns(path, "g1_metrics")
    # The projector rebuilds it instead of writing into it.
    with pytest.raises(GenerationFormatError, match="format 1"):
        await SqliteReadStore.open(path, "g1")
    reader = await SqliteReadStore.open(path)
    try:
        assert await reader.metrics("S1", 0, 1000) == [old]
        assert await reader.checkpoint() == 7
    finally:
        await reader.close()


async def test_an_audit_table_written_before_source_ids_gains_the_columns_in_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read.db"
    _old_file(
        path,
        OLD_AUDIT_DDL,
        "INSERT INTO g1_audit VALUES (5, 0, 9, 'S1', NULL, 'SchemaEvolved', 'u', 'c', '{}')",
    )
    before = _root_pages(path)["g1_audit"]
    reader = await SqliteReadStore.open(path)
    try:
        # No source, no other resource: "".
        old = AuditEntry(5, 0, 9, "S1", None, "SchemaEvolved", "u", "c", {}, "", "")
        assert await reader.audit_trail(AuditScope(), None, 10) == [old]
        assert await reader.audit_trail(AuditScope(series_id="S1"), None, 10) == [old]
        assert await reader.audit_trail(AuditScope(source_id="bbg"), None, 10) == []
    finally:
        await reader.close()
    # ALTER TABLE ... ADD COLUMN, not a copy (which held the write lock ~7 s for 2M rows, next
    # to the other process's busy_timeout of 10 s): the table still starts where it did.
    assert _root_pages(path)["g1_audit"] == before
    assert _columns(path, "g1_audit")[-2:] == [
        ("source_id", "TEXT", 1, "''"),
        ("resource", "TEXT", 1, "''"),
    ]
    # Nor a pass over its rows to index them: the generation is read only until its rebuild.
    assert "g1_audit_by_source_id_position_idx" not in _indexes(path, "g1_audit")
    again = await SqliteReadStore.open(path)  # idempotent: the column is there now
    await again.close()
    assert _root_pages(path)["g1_audit"] == before


async def test_a_generation_of_the_current_format_gets_the_indexes_it_lacks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read.db"
    store = await SqliteReadStore.open(path, "g1")
    await store.close()
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP INDEX g1_audit_by_source_id_position_idx")
        conn.commit()
    finally:
        conn.close()
    store = await SqliteReadStore.open(path)
    await store.close()
    assert "g1_audit_by_source_id_position_idx" in _indexes(path, "g1_audit")


async def test_issues_keyed_by_their_id_alone_read_on_in_the_new_order(tmp_path: Path) -> None:
    """The query service serves an old generation until the projector's rebuild switches."""
    path = tmp_path / "read.db"

    def insert(issue_id: str, series_id: str, status: str) -> str:
        return (
            f"INSERT INTO g1_issues VALUES ('{issue_id}', '{series_id}', 1, 'jump', 'warning',"
            f" '{{}}', '{status}', 1, 1, 'bbg', '', '', 0)"
        )

    _old_file(
        path,
        *OLD_ISSUES_DDL,
        insert("I1", "S2", "open"),
        insert("I2", "S1", "open"),
        insert("I3", "S1", "rejected"),
    )
    reader = await SqliteReadStore.open(path)
    try:

        async def keys(f: IssueFilter, after: tuple[str, str] = ("", "")) -> list[tuple[str, str]]:
            found = await reader.list_issues(f, after[1], 10, after_series_id=after[0])
            return [(i.series_id, i.issue_id) for i in found]

        assert await keys(IssueFilter()) == [("S1", "I2"), ("S1", "I3"), ("S2", "I1")]
        assert await keys(IssueFilter(), ("S1", "I3")) == [("S2", "I1")]
        assert await keys(IssueFilter(status="open")) == [("S1", "I2"), ("S2", "I1")]
        assert await keys(IssueFilter(series_id="S1", status="rejected")) == [("S1", "I3")]
    finally:
        await reader.close()


def test_a_column_without_a_default_cannot_be_added_to_an_existing_table() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        _Table((("a", _INT),), ("a",)).migrate(conn, "t")
        _Table((("a", _INT), ("b", _INT_0)), ("a",)).migrate(conn, "t")  # with a default: added
        with pytest.raises(ValueError, match=r"t\.c cannot be added"):
            _Table((("a", _INT), ("b", _INT_0), ("c", _INT)), ("a",)).migrate(conn, "t")
    finally:
        conn.close()


async def test_a_resolution_updates_only_the_issue_of_its_series(tmp_path: Path) -> None:
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    try:
        await store.set_active_generation("g1")
        raised = [
            QualityIssue("I1", s, 1, "jump", "warning", {}, "open", 1, 1, "bbg")
            for s in ("S1", "S2")
        ]
        resolved = IssueResolution("S2", "I1", "approved", "bob", "ok", 2, 2)
        await store.apply(ProjectionBatch(issues=raised, resolutions=[resolved]), 2)
        statuses = [(i.series_id, i.status) for i in await store.list_issues(IssueFilter(), "", 9)]
        assert statuses == [("S1", "open"), ("S2", "approved")]
    finally:
        await store.close()


async def test_opening_a_store_of_the_current_shape_rebuilds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "read.db"
    for generation in ("g1", "g2", None):
        store = await SqliteReadStore.open(path, generation)
        await store.close()
    before = _root_pages(path)
    assert {"g1_metrics", "g2_versions"} <= before.keys()
    store = await SqliteReadStore.open(path)
    await store.close()
    assert _root_pages(path) == before
