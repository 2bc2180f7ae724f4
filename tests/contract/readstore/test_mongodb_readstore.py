"""MongoDB-only guarantees: the indexes the queries rely on (and that each form of the issue
listing is served by one), the document layout, documents and generations written by earlier
code, and the round trips a batch costs.

Runs on FerretDB always and on a real MongoDB when QIS_TEST_MONGODB_URI is set (conftest).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest
from bson.int64 import Int64
from pymongo import AsyncMongoClient, IndexModel
from qis.data.v1.values_pb2 import DataValue, Price
from qis_adapters.readstore.mongodb import _INDEXES, MongoReadStore
from qis_adapters.readstore.port import (
    OPEN_END,
    AuditEntry,
    AuditScope,
    ChangeFeedEntry,
    GenerationFormatError,
    IssueFilter,
    OfficialVersion,
    ProjectionBatch,
    QualityIssue,
    QualityMetrics,
)

from tests.contract.readstore.test_readstore_contract import (
    EVERYTHING,
    MINUTE,
    SHARED_ISSUES,
    T0,
    audit,
    change,
    closed,
    closure,
    issue,
    observation,
    series,
    version,
)
from tests.support.ferretdb import CommandLog

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Adapter, Backend

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
    ("issues", (("series_id", 1), ("issue_id", 1)), True),
    ("issues", (("status", 1), ("series_id", 1), ("issue_id", 1)), False),
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


# Every form of list_issues: (filter, after_series_id, after_issue_id).
ISSUE_LISTINGS = [
    (IssueFilter(), "", ""),
    (IssueFilter(), "B", "I1"),
    (IssueFilter(status="open"), "", ""),
    (IssueFilter(status="open"), "B", "I1"),
    (IssueFilter(series_id="A"), "", ""),
    (IssueFilter(series_id="A"), "", "I1"),
    (IssueFilter(series_id="A", status="open"), "", "I1"),
]


def _branches(query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The conjunctions a query is made of: one, or one per branch of a top-level $or."""
    common = {k: v for k, v in query.items() if k != "$or"}
    for branch in query.get("$or", [{}]):
        yield {**common, **branch}


def _served(conditions: dict[str, Any], sort: Sequence[str], keys: Sequence[str]) -> bool:
    """Whether an index on `keys` reads the documents matching `conditions` in `sort` order as
    one range: its leading fields are those compared for equality, then the sort fields not
    among them, with the one range condition on the first of those (MongoDB's "ESR" rule)."""
    equal = {f for f, c in conditions.items() if not isinstance(c, dict)}
    ranged = [f for f, c in conditions.items() if isinstance(c, dict)]
    order = [f for f in sort if f not in equal]
    return (
        set(keys[: len(equal)]) == equal
        and list(keys[len(equal) : len(equal) + len(order)]) == order
        and all(f in order[:1] for f in ranged)
    )


def _spy_on_issue_queries(
    store: Adapter, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[dict[str, Any], list[tuple[str, int]]]]:
    """Records the (query, sort) of each read of the issues collection `store` makes."""
    assert isinstance(store, MongoReadStore)
    sent: list[tuple[dict[str, Any], list[tuple[str, int]]]] = []
    query = store._query

    async def spy(generation: str, kind: Any, where: Any, sort: Any, limit: int = 0) -> Any:
        if kind.suffix == "issues":
            sent.append((where, list(sort)))
        return await query(generation, kind, where, sort, limit)

    monkeypatch.setattr(store, "_query", spy)
    return sent


async def test_every_form_of_the_issue_listing_is_served_by_an_index(
    mongo_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IssueFilter promise: each form is one bounded index range scan, never a sort."""
    store = await mongo_backend.open("g1")
    await store.set_active_generation("g1")
    sent = _spy_on_issue_queries(store, monkeypatch)
    indexes = [list(model.document["key"]) for model in _INDEXES["issues"]]
    for issue_filter, after_series, after_issue in ISSUE_LISTINGS:
        sent.clear()
        await store.list_issues(issue_filter, after_issue, 10, after_series_id=after_series)
        ((query, sort),) = sent
        fields = [name for name, _ in sort]
        for branch in _branches(query):
            assert any(_served(branch, fields, keys) for keys in indexes), (branch, fields)


def _stages(plan: Any) -> Iterator[str]:
    """The name of every stage of a query plan, however nested."""
    if isinstance(plan, dict):
        if isinstance(plan.get("stage"), str):
            yield plan["stage"]
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _stages(value)


async def test_explain_shows_each_issue_listing_reads_an_index_without_a_sort(
    mongo_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the test above checks by rule, asked of a real MongoDB's planner (FerretDB v1 has
    no such planner to ask)."""
    if mongo_backend.name != "mongodb":
        pytest.skip("explain() plans are a real MongoDB's")
    store = await mongo_backend.open("g1")
    await store.apply(ProjectionBatch(issues=SHARED_ISSUES), 17)
    await store.set_active_generation("g1")
    sent = _spy_on_issue_queries(store, monkeypatch)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_backend.uri)
    try:
        issues = client[mongo_backend.database]["g1_issues"]
        for issue_filter, after_series, after_issue in ISSUE_LISTINGS:
            sent.clear()
            await store.list_issues(issue_filter, after_issue, 3, after_series_id=after_series)
            ((query, sort),) = sent
            explained = await issues.find(query, sort=sort, limit=3).explain()
            stages = set(_stages(explained["queryPlanner"]["winningPlan"]))
            assert "IXSCAN" in stages, (query, stages)
            assert not stages & {"COLLSCAN", "SORT"}, (query, stages)
    finally:
        await client.close()


async def test_an_issue_is_keyed_by_its_series_and_id(mongo_backend: Backend) -> None:
    store = await mongo_backend.open("g1")
    same = [issue("I1", 10), issue("I1", 10, series_id="S2")]
    await store.apply(ProjectionBatch(issues=same), 10)
    ids = [doc["_id"] for doc in await _raw(mongo_backend, "g1_issues")]
    assert ids == ['["S1","I1"]', '["S2","I1"]']


async def test_a_generation_built_before_formats_is_refused_before_its_indexes(
    mongo_backend: Backend,
) -> None:
    """An old generation holds a non-unique (series_id, issue_id) index: creating the unique
    one would fail on the conflict. The writer is refused for its format first."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_backend.uri)
    try:
        database = client[mongo_backend.database]
        await database["meta"].insert_many(
            [
                {"_id": "generation:g1", "generation": "g1", "checkpoint": Int64(7)},
                {"_id": "active", "generation": "g1", "switched_at_us": Int64(0)},
            ]
        )
        await database["g1_issues"].create_indexes(
            [IndexModel([("series_id", 1), ("issue_id", 1)])]
        )
        await database["g1_issues"].insert_one(
            {
                "_id": "I1",
                "issue_id": "I1",
                "series_id": "S1",
                "snap_us": Int64(1),
                "rule": "jump",
                "severity": "warning",
                "evidence": {},
                "status": "open",
                "raised_at_us": Int64(1),
                "position": Int64(1),
                "source_id": "bbg",
            }
        )
    finally:
        await client.close()
    with pytest.raises(GenerationFormatError, match="format 1"):
        await mongo_backend.open("g1")
    reader = await mongo_backend.open(None)  # reads it on until the projector's rebuild
    assert await reader.generation_format("g1") == 1
    expected = QualityIssue("I1", "S1", 1, "jump", "warning", {}, "open", 1, 1, "bbg")
    assert await reader.list_issues(IssueFilter(), "", 10) == [expected]


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
    batch = ProjectionBatch(versions=[VERSION._replace(value=reversed_price)])
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


def _published(first_snap: int, points: int, position: int) -> ProjectionBatch:
    """A command's first publication of `points` snaps: versions with their lineage, change-feed
    entries and the series entry it updates."""
    versions = [
        version(first_snap + i * MINUTE, 1, "1.00", at=position * 100, position=position)
        for i in range(points)
    ]
    return ProjectionBatch(
        versions=versions,
        observations=[
            observation("S1", v.snap_us, "bbg", position, i) for i, v in enumerate(versions)
        ],
        audit=[audit(position, i, "S1", v.snap_us) for i, v in enumerate(versions)],
        changes=[change(v, i) for i, v in enumerate(versions)],
        series=[series("S1", 1, position)],
    )


async def test_a_batch_costs_one_command_per_collection_whatever_its_size(
    mongo_backend: Backend,
) -> None:
    # Upserts cost FerretDB a statement each, which it takes ~50 at a time: 300 points were 6
    # commands per collection (and ~30 ms per point); inserts are one command however many.
    log = CommandLog()
    store = await MongoReadStore.open(
        mongo_backend.uri, mongo_backend.database, "g1", event_listeners=[log]
    )
    try:
        sent = []
        for first_snap, points, position in ((T0, 2, 10), (T0 + 10 * MINUTE, 300, 20)):
            log.take()
            await store.apply(_published(first_snap, points, position), position)
            sent.append(Counter((c.name, c.collection) for c in log.take()))
        dump = await store.dump_all()
    finally:
        await store.close()
    # Writes: one command per collection, whatever the size. A record met again (the series'
    # entry, in the second batch) adds one query of its collection, to tell its duplicate _id
    # from another key's.
    writes = [Counter({k: n for k, n in s.items() if k[0] != "find"}) for s in sent]
    assert writes[0] == writes[1]
    assert set(writes[1].values()) == {1}, sent[1]
    assert all(n == 1 for (name, _), n in sent[1].items() if name == "find"), sent[1]
    assert sent[1][("insert", "g1_versions")] == 1
    written = {kind: len(rows) for kind, rows in dump.items() if isinstance(rows, list)}
    assert written["versions"] == written["current"] == written["changes"] == 302


async def test_a_restatement_of_more_than_a_hundred_points_and_its_replay(
    mongo_backend: Backend,
) -> None:
    # More than 100 updates that match stored documents in one batch (the closures and the
    # current records of a restatement): FerretDB v1 waits forever on such a command, which
    # the adapter splits (see MongoReadStore.open).
    store = await mongo_backend.open("g1")
    await store.set_active_generation("g1")
    snaps = [T0 + i * MINUTE for i in range(101)]
    firsts = [version(s, 1, "1.00", at=1000, position=10) for s in snaps]
    seconds = [version(s, 2, "2.00", at=2000, position=20) for s in snaps]
    await store.apply(ProjectionBatch(versions=firsts), 10)
    closures = [closure(v, successor) for v, successor in zip(firsts, seconds, strict=True)]
    restatement = ProjectionBatch(versions=seconds, closures=closures)
    await asyncio.wait_for(store.apply(restatement, 20), timeout=60)
    await asyncio.wait_for(store.apply(restatement, 20), timeout=60)
    assert await store.latest_range("S1", *EVERYTHING, 1000) == seconds
    assert await store.history("S1", snaps[-1]) == [closed(firsts[-1], seconds[-1]), seconds[-1]]
