"""SQLite-only guarantees: every query is an index range scan, and the benchmark baseline."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from qis_adapters.readstore.port import ChangeFeedEntry, OfficialVersion, ProjectionBatch
from qis_adapters.readstore.sqlite import SqliteReadStore, _Sql

# Every statement behind the port's queries. The issue query is built per filter: its common
# shapes are listed by their suffix.
STATEMENTS: list[Callable[[_Sql], str]] = [
    lambda q: q.latest_range,
    lambda q: q.as_of_time_range,
    lambda q: q.as_of_position_range,
    lambda q: q.history,
    lambda q: q.observations,
    lambda q: q.changes_after,
    lambda q: q.changes_after_series,
    lambda q: q.audit_series,
    lambda q: q.audit_point,
    lambda q: q.list_series,
    lambda q: q.get_series,
    lambda q: q.metrics,
    lambda q: q.list_issues + " ORDER BY issue_id LIMIT ?",
    lambda q: q.list_issues + " AND status = ? ORDER BY issue_id LIMIT ?",
    lambda q: q.list_issues + " AND series_id = ? AND status = ? ORDER BY issue_id LIMIT ?",
    lambda q: (
        q.list_issues + " AND series_id = ? AND status = ? AND rule = ? ORDER BY issue_id LIMIT ?"
    ),
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
