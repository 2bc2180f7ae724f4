"""MongoDB-only guarantees: the indexes the queries rely on, the document layout, and documents
written by earlier code.

Runs on FerretDB always and on a real MongoDB when QIS_TEST_MONGODB_URI is set (conftest).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest
from bson.int64 import Int64
from pymongo import AsyncMongoClient
from qis.data.v1.values_pb2 import DataValue, Price
from qis_adapters.readstore.port import (
    OPEN_END,
    AuditEntry,
    AuditScope,
    ChangeFeedEntry,
    OfficialVersion,
    ProjectionBatch,
    QualityMetrics,
)

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Backend

# (collection suffix, key pattern, unique): what the adapter's queries need, written out here
# independently of the adapter's own list, so that a dropped index fails this test.
EXPECTED_INDEXES = {
    ("versions", (("series_id", 1), ("snap_us", 1), ("version", 1)), True),
    ("current", (("series_id", 1), ("snap_us", 1)), True),
    ("observations", (("series_id", 1), ("snap_us", 1), ("position", 1), ("index", 1)), False),
    ("audit", (("position", 1), ("index", 1)), True),
    ("audit", (("series_id", 1), ("position", 1), ("index", 1)), False),
    ("audit", (("series_id", 1), ("snap_us", 1), ("position", 1), ("index", 1)), False),
    ("audit", (("source_id", 1), ("position", 1), ("index", 1)), False),
    ("changes", (("position", 1), ("index", 1)), True),
    ("changes", (("series_id", 1), ("position", 1), ("index", 1)), False),
    ("issues", (("status", 1), ("issue_id", 1)), False),
    ("issues", (("series_id", 1), ("issue_id", 1)), False),
    ("issues", (("series_id", 1), ("status", 1), ("issue_id", 1)), False),
    ("metrics", (("series_id", 1), ("window_start_us", 1), ("window_end_us", 1)), True),
}


SNAP = 1_700_000_000_000_000
VALUE = DataValue(price=Price(value="100.00", currency="USD")).SerializeToString()
VERSION = OfficialVersion(
    series_id="S1",
    snap_us=SNAP,
    version=1,
    value=VALUE,
    quality_score=1.0,
    recorded_from_us=1000,
    position_from=10,
    reason="",
    user_id="alice",
    command_id="cmd-10",
    sources=("bbg",),
    method="waterfall",
)
CHANGE = ChangeFeedEntry(10, 0, "S1", SNAP, 1, VALUE, 1.0, 1000, "", "alice")


async def _raw(backend: Backend, collection: str) -> list[dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.uri)
    try:
        return [
            doc async for doc in client[backend.database][collection].find({}, sort=[("_id", 1)])
        ]
    finally:
        await client.close()


async def test_every_index_the_queries_rely_on_exists(mongo_backend: Backend) -> None:
    await mongo_backend.open("g1")  # opening a writer creates its generation's indexes
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_backend.uri)
    try:
        database = client[mongo_backend.database]
        found = set()
        for suffix in {suffix for suffix, _, _ in EXPECTED_INDEXES}:
            async for index in await database[f"g1_{suffix}"].list_indexes():
                keys = tuple((k, int(v)) for k, v in index["key"].items())
                found.add((suffix, keys, bool(index.get("unique", False))))
    finally:
        await client.close()
    assert found >= EXPECTED_INDEXES, EXPECTED_INDEXES - found


async def test_documents_are_readable_and_keyed_by_natural_key(mongo_backend: Backend) -> None:
    store = await mongo_backend.open("g1")
    await store.apply(ProjectionBatch(versions=[VERSION], changes=[CHANGE]), 10)
    version = (await _raw(mongo_backend, "g1_versions"))[0]
    assert version["_id"] == f'["S1",{SNAP},1]'
    assert version["value"] == {"price": {"value": "100.00", "currency": "USD"}}
    for name in ("snap_us", "recorded_from_us", "position_from", "recorded_to_us"):
        assert type(version[name]) is Int64, name  # int64 µs, never BSON dates or int32
    assert version["recorded_to_us"] == OPEN_END
    assert version["sources"] == ["bbg"]
    assert "flags" not in version  # empty: left out (FerretDB's $setOnInsert drops it anyway)
    current = (await _raw(mongo_backend, "g1_current"))[0]
    assert current["_id"] == f'["S1",{SNAP}]'
    change = (await _raw(mongo_backend, "g1_changes"))[0]
    assert change["_id"] == "[10,0]"


async def test_a_non_canonical_value_is_refused(mongo_backend: Backend) -> None:
    # Price with its fields in reverse order: valid protobuf, but re-serialising it would not
    # give these bytes back, so storing its readable form would silently change the value.
    reversed_price = b"\n\r\x12\x03USD\n\x06100.00"
    store = await mongo_backend.open("g1")
    batch = ProjectionBatch(versions=[dataclasses.replace(VERSION, value=reversed_price)])
    with pytest.raises(ValueError, match="canonical"):
        await store.apply(batch, 10)


async def test_a_document_written_before_a_field_existed_reads_with_its_default(
    mongo_backend: Backend,
) -> None:
    store = await mongo_backend.open("g1")
    await store.set_active_generation("g1")
    # A metrics document as the code before missing_sessions & co. wrote it.
    old = {
        "_id": f'["S1",{SNAP},{SNAP + 60}]',
        "series_id": "S1",
        "window_start_us": Int64(SNAP),
        "window_end_us": Int64(SNAP + 60),
        "accuracy": 1.0,
        "completeness": 0.5,
        "timeliness": 0.25,
        "consistency": 0.75,
        "calculated_at_us": Int64(9),
        "position": Int64(7),
    }
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_backend.uri)
    try:
        await client[mongo_backend.database]["g1_metrics"].insert_one(old)
    finally:
        await client.close()
    expected = QualityMetrics("S1", SNAP, SNAP + 60, 1.0, 0.5, 0.25, 0.75, 9, 7)
    assert await store.metrics("S1", SNAP, SNAP + 1) == [expected]


async def test_an_audit_entry_written_before_source_ids_reads_with_none(
    mongo_backend: Backend,
) -> None:
    store = await mongo_backend.open("g1")
    await store.set_active_generation("g1")
    await store.apply(ProjectionBatch(), 7)  # audit reads stop at the checkpoint
    old = {
        "_id": "[5,0]",
        "position": Int64(5),
        "index": 0,
        "recorded_at_us": Int64(9),
        "series_id": "S1",
        "action": "SchemaEvolved",
        "user_id": "u",
        "command_id": "c",
        "details": {"schema_version": 2},
    }
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_backend.uri)
    try:
        await client[mongo_backend.database]["g1_audit"].insert_one(old)
    finally:
        await client.close()
    expected = AuditEntry(5, 0, 9, "S1", None, "SchemaEvolved", "u", "c", {"schema_version": 2})
    assert await store.audit_trail(AuditScope(), None, 10) == [expected]
    assert await store.audit_trail(AuditScope(series_id="S1"), None, 10) == [expected]
