"""SQLite-only guarantees: every query is an index range scan, the benchmark baseline, and files
written by earlier code brought to the current shape."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from qis_adapters.readstore.port import (
    AuditEntry,
    AuditScope,
    ChangeFeedEntry,
    OfficialVersion,
    ProjectionBatch,
    QualityMetrics,
)
from qis_adapters.readstore.sqlite import SqliteReadStore, _Sql

# Every statement behind the port's queries. The issue query is built per filter: its every
# shape is listed by its suffix.
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
    lambda q: q.list_issues + " ORDER BY issue_id LIMIT ?",
    lambda q: q.list_issues + " AND series_id = ? ORDER BY issue_id LIMIT ?",
    lambda q: q.list_issues + " AND status = ? ORDER BY issue_id LIMIT ?",
    lambda q: q.list_issues + " AND series_id = ? AND status = ? ORDER BY issue_id LIMIT ?",
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


# The metrics table as the code before missing_sessions & co. created it (completeness NOT NULL),
# written out here so that the test keeps describing that file whatever the adapter becomes.
OLD_METRICS_DDL = (
    "CREATE TABLE g1_metrics (series_id TEXT NOT NULL, window_start_us INTEGER NOT NULL,"
    " window_end_us INTEGER NOT NULL, accuracy REAL NOT NULL, completeness REAL NOT NULL,"
    " timeliness REAL NOT NULL, consistency REAL NOT NULL, calculated_at_us INTEGER NOT NULL,"
    " position INTEGER NOT NULL, PRIMARY KEY (series_id, window_start_us, window_end_us))"
    " WITHOUT ROWID"
)


def _root_pages(path: Path) -> dict[str, int]:
    """Where each table starts in the file: a rebuilt table starts elsewhere."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'")
        return dict(rows.fetchall())
    finally:
        conn.close()


# The audit table before entries about sources named their source.
OLD_AUDIT_DDL = (
    "CREATE TABLE g1_audit (position INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " recorded_at_us INTEGER NOT NULL, series_id TEXT NOT NULL, snap_us INTEGER,"
    " action TEXT NOT NULL, user_id TEXT NOT NULL, command_id TEXT NOT NULL,"
    " details TEXT NOT NULL, PRIMARY KEY (position, idx)) WITHOUT ROWID"
)


def _old_file(path: Path, ddl: str, insert: str) -> None:
    """A database whose active generation g1, at checkpoint 7, has one table of an earlier
    shape holding one row."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("active", "g1"), ("generation:g1", 7)])
        conn.execute(ddl)
        conn.execute(insert)
    finally:
        conn.close()


async def test_a_generation_written_by_earlier_code_is_brought_to_the_current_shape(
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
    finally:
        await reader.close()
    writer = await SqliteReadStore.open(path, "g1")
    try:
        unknown = QualityMetrics(
            "S1", 300, 400, 1.0, None, 0.25, 0.75, 10, 8, 4, 3, ("2024-01-02",), 2
        )
        await writer.apply(ProjectionBatch(metrics=[unknown]), 8)
        assert await writer.metrics("S1", 0, 1000) == [old, unknown]
        assert await writer.checkpoint() == 8
    finally:
        await writer.close()


async def test_an_audit_trail_written_before_source_ids_reads_on(tmp_path: Path) -> None:
    path = tmp_path / "read.db"
    _old_file(
        path,
        OLD_AUDIT_DDL,
        "INSERT INTO g1_audit VALUES (5, 0, 9, 'S1', NULL, 'SchemaEvolved', 'u', 'c', '{}')",
    )
    old = AuditEntry(5, 0, 9, "S1", None, "SchemaEvolved", "u", "c", {})  # no source: ""
    writer = await SqliteReadStore.open(path, "g1")
    try:
        configured = AuditEntry(7, 0, 10, "", None, "DataSourceConfigured", "u", "d", {}, "bbg")
        await writer.apply(ProjectionBatch(audit=[configured]), 7)
        assert await writer.audit_trail(AuditScope(), None, 10) == [old, configured]
        assert await writer.audit_trail(AuditScope(source_id="bbg"), None, 10) == [configured]
    finally:
        await writer.close()


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
