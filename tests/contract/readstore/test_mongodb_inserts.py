"""MongoReadStore inserts new records (a duplicate _id: already written) where earlier code
upserted them with $setOnInsert. What the projector relies on, on FerretDB (and a real MongoDB when configured): documents are
stored exactly as the `$setOnInsert` upserts of earlier code stored them; such documents met
again are left as they are (or replaced by their guard only); a batch applied in part (a crash
between the two write phases, or mid-command) and then replayed gives exactly the state of one
clean apply; a duplicate key that is not "this record was already written" is not swallowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from bson.int64 import Int64
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError
from qis.data.v1.values_pb2 import DataValue
from qis_adapters.readstore import mongodb
from qis_adapters.readstore.mongodb import MongoReadStore
from qis_adapters.readstore.port import (
    OPEN_END,
    AccessPolicyEntry,
    ConsumerGroupEntry,
    IssueResolution,
    ParkedEntry,
    ParkedState,
    ProjectionBatch,
    Segment,
    SegmentClosure,
    SourceEntry,
    SourceHealthEntry,
    TopicEntry,
    TopicVersion,
)

from tests.contract.readstore.test_readstore_contract import (
    EVERYTHING,
    MINUTE,
    T0,
    audit,
    change,
    closure,
    issue,
    metric,
    observation,
    series,
    version,
)
from tests.support.mongo import drop_database

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Backend

Doc = dict[str, Any]
GENERATION = "g1"
POINTS = 210  # more than FerretDB's 100 documents a transaction, and than 2 * 100 of them


def _first_batch(points: int = POINTS) -> ProjectionBatch:
    """Every record kind, first publications only, with edge values (unicode, empty documents,
    extreme times, None-able fields set to None, an empty DataValue)."""
    versions = [
        version(T0 + i * MINUTE, 1, f"{i}.00", at=1000, position=10, series_id="S\u00e9")
        for i in range(points)
    ]
    versions[0] = versions[0]._replace(value=DataValue().SerializeToString(), snap_us=-1)
    versions[-1] = versions[-1]._replace(snap_us=2**62, flags=("\u2603", "spike"))
    return ProjectionBatch(
        versions=versions,
        observations=[
            observation("S\u00e9", v.snap_us, "bbg", 10, i) for i, v in enumerate(versions)
        ],
        audit=[audit(10, i, "S\u00e9", v.snap_us) for i, v in enumerate(versions)]
        + [audit(11, 0, "", None, source_id="bbg")],
        changes=[change(v, i) for i, v in enumerate(versions)],
        issues=[issue("I1", 10, evidence={}), issue("I2", 10, series_id="S\u00e9")],
        series=[series("S\u00e9", 1, 10)],
        metrics=[metric(T0, 10, completeness=None, missing=())],
        segments=[
            Segment("S\u00e9", T0, T0, T0 + MINUTE, 2, b"\x00\xffpayload", 1000, 10),
            Segment("S\u00e9", T0 + 86_400_000_000, T0, T0, 1, b"", 1000, 10),
        ],
        policies=[
            AccessPolicyEntry("p1", 1, 1, 1000, 10, {"principals": ["user:\u00e9"]}),
            AccessPolicyEntry("p2", 1, 2, 1000, 10, None),
        ],
        sources=[SourceEntry("bbg", {"a.b": {"$x": 1}, "k": []}, 1000, 10)],
        source_health=[SourceHealthEntry("bbg", T0, {"status": "ok", "cost": {}}, 1000, 10)],
        topics=[
            TopicVersion("t1", 10, 1000, {"filter": "S*"}),
            TopicVersion("t2", 10, 1000, None),
        ],
        topic_entries=[
            TopicEntry("t1", 10, i, "S\u00e9", "DataPublished", b"x", 1000) for i in (0, 1)
        ],
        consumer_groups=[ConsumerGroupEntry("t1", "g", 10, 0, 1000, 10)],
        parked=[ParkedEntry("t1", "g", 10, 0, 1, "boom \u00e9", 1000, "parked", 10)],
    )


def _second_batch(first: ProjectionBatch) -> ProjectionBatch:
    """Restates every point of `first` and moves each guarded kind on: > 100 closures and > 100
    guarded replacements of `current`, plus every second-phase update kind."""
    seconds = [
        version(v.snap_us, 2, "9.99", at=2000, position=20, series_id=v.series_id)
        for v in first.versions
    ]
    segment = first.segments[0]
    successor = Segment(segment.series_id, segment.bucket_us, T0, T0, 3, b"new", 2000, 20)
    return ProjectionBatch(
        versions=seconds,
        closures=[closure(a, b) for a, b in zip(first.versions, seconds, strict=True)],
        changes=[change(v, i) for i, v in enumerate(seconds)],
        issues=[issue("I1", 20, status="open", evidence={"n": "2"})],
        resolutions=[IssueResolution("S\u00e9", "I2", "approved", "bob", "fine", 2000, 20)],
        series=[series("S\u00e9", 2, 20)],
        metrics=[metric(T0, 20, accuracy=0.75)],
        segments=[successor],
        segment_closures=[
            SegmentClosure(segment.series_id, segment.bucket_us, segment.position_from, 2000, 20)
        ],
        policies=[AccessPolicyEntry("p1", 2, 3, 2000, 20, None)],
        sources=[SourceEntry("bbg", {"k": ["v"]}, 2000, 20)],
        source_health=[SourceHealthEntry("bbg", T0, {"status": "down"}, 2000, 20)],
        topics=[TopicVersion("t1", 20, 2000, None)],
        topic_entries=[TopicEntry("t1", 20, 0, "S\u00e9", "DataPublished", b"y", 2000)],
        consumer_groups=[ConsumerGroupEntry("t1", "g", 20, 0, 2000, 20)],
        parked=[ParkedEntry("t1", "g", 20, 0, 1, "again", 2000, "parked", 20)],
        parked_states=[ParkedState("t1", "g", 10, 0, "replayed", 21)],
    )


async def _raw_generation(backend: Backend, database: str | None = None) -> dict[str, list[Doc]]:
    """Every document of the generation as stored, field order included (as lists of pairs
    would show it: dicts keep BSON order)."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(backend.uri)
    try:
        db = client[database or backend.database]
        return {
            kind.suffix: [
                doc async for doc in db[f"{GENERATION}_{kind.suffix}"].find({}, sort=[("_id", 1)])
            ]
            for kind in mongodb._KINDS
        }
    finally:
        await client.close()


def _ordered(raw: dict[str, list[Doc]]) -> dict[str, list[list[tuple[str, Any]]]]:
    return {kind: [list(doc.items()) for doc in docs] for kind, docs in raw.items()}


class _Upsert(UpdateOne):
    """What f4d8ecc^ sent for a new record: an upsert whose $setOnInsert is the document."""

    def __init__(self, document: Doc) -> None:
        rest = {k: v for k, v in document.items() if k != "_id"}
        super().__init__({"_id": document["_id"]}, {"$setOnInsert": rest}, upsert=True)


@pytest.fixture
async def other_database(mongo_backend: Backend) -> AsyncIterator[str]:
    """A second fresh database on the same server: the clean apply to compare with."""
    name = mongo_backend.database + "_b"
    yield name
    await drop_database(mongo_backend.uri, name)


async def _apply(uri: str, database: str, *batches: tuple[ProjectionBatch, int]) -> None:
    store = await MongoReadStore.open(uri, database, GENERATION)
    try:
        for batch, checkpoint in batches:
            await asyncio.wait_for(store.apply(batch, checkpoint), timeout=120)
    finally:
        await store.close()


async def _both_ways(
    backend: Backend, other_database: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, list[Doc]], dict[str, list[Doc]]]:
    """Every record kind (two batches: first writes, then guarded replacements and updates)
    as this code stores it, and as the code before stored it."""
    first = _first_batch(3)
    second = _second_batch(first)
    await _apply(backend.uri, backend.database, (first, 10), (second, 20))
    new = await _raw_generation(backend)
    monkeypatch.setattr(mongodb, "InsertOne", _Upsert)
    await _apply(backend.uri, other_database, (first, 10), (second, 20))
    old = await _raw_generation(backend, other_database)
    for kind in old:
        assert old[kind], kind  # every kind is really compared
    return new, old


async def _applied_cleanly(
    backend: Backend, database: str
) -> tuple[ProjectionBatch, ProjectionBatch, dict[str, list[Doc]]]:
    """The two batches of these tests, and what one clean apply of them stores (in `database`)."""
    first = _first_batch()
    second = _second_batch(first)
    await _apply(backend.uri, database, (first, 10), (second, 20))
    return first, second, await _raw_generation(backend, database)


async def test_every_kind_is_stored_with_the_fields_the_setoninsert_upserts_stored(
    mongo_backend: Backend, other_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, old = await _both_ways(mongo_backend, other_database, monkeypatch)
    assert new == old


async def test_every_kind_is_stored_in_the_field_order_the_setoninsert_upserts_stored(
    mongo_backend: Backend, other_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, old = await _both_ways(mongo_backend, other_database, monkeypatch)
    assert _ordered(new) == _ordered(old)


async def test_documents_stored_before_are_left_as_they_are_then_replaced_by_their_guards(
    mongo_backend: Backend, other_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, clean = await _applied_cleanly(mongo_backend, other_database)
    uri = mongo_backend.uri

    with monkeypatch.context() as before:
        before.setattr(mongodb, "InsertOne", _Upsert)
        await _apply(uri, mongo_backend.database, (first, 10))
    stored_before = await _raw_generation(mongo_backend)
    await _apply(uri, mongo_backend.database, (first, 10))  # met again by the new code
    assert _ordered(await _raw_generation(mongo_backend)) == _ordered(stored_before)
    await _apply(uri, mongo_backend.database, (second, 20), (first, 10), (second, 20))
    assert await _raw_generation(mongo_backend) == clean


class _Crash(Exception):
    pass


async def test_a_crash_between_the_two_write_phases_then_the_replay_is_one_clean_apply(
    mongo_backend: Backend, other_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, clean = await _applied_cleanly(mongo_backend, other_database)
    uri = mongo_backend.uri

    await _apply(uri, mongo_backend.database, (first, 10))
    store = await MongoReadStore.open(uri, mongo_backend.database, GENERATION)
    try:
        write = store._write
        calls = 0

        async def crashing(*writes: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:  # the phase of current records, closures and the change feed
                raise _Crash
            await write(*writes)

        monkeypatch.setattr(store, "_write", crashing)
        with pytest.raises(_Crash):
            await store.apply(second, 20)
        monkeypatch.setattr(store, "_write", write)
        assert await store.checkpoint() == 10
        await asyncio.wait_for(store.apply(second, 20), timeout=120)
    finally:
        await store.close()
    assert await _raw_generation(mongo_backend) == clean


def _every_third(batch: ProjectionBatch, offset: int) -> ProjectionBatch:
    """A part of `batch`'s records, as a command cut short could have left them: every third
    record of each list, from `offset`."""
    return ProjectionBatch(
        **{f.name: getattr(batch, f.name)[offset::3] for f in dataclasses.fields(batch)}
    )


@pytest.mark.parametrize("offset", [0, 2])
async def test_a_batch_written_in_part_then_replayed_is_one_clean_apply(
    mongo_backend: Backend, other_database: str, offset: int
) -> None:
    # Stored and new records interleave inside each insert command, across FerretDB's
    # transactions of 100 documents: every new one must land and none be reported wrongly.
    first, second, clean = await _applied_cleanly(mongo_backend, other_database)
    uri = mongo_backend.uri

    await _apply(
        uri,
        mongo_backend.database,
        (_every_third(first, offset), 9),
        (first, 10),
        (_every_third(second, offset), 19),
        (second, 20),
    )
    assert await _raw_generation(mongo_backend) == clean


async def test_a_duplicate_key_of_another_document_is_not_taken_for_already_written(
    mongo_backend: Backend,
) -> None:
    """A stored current record of the point under another _id (not written by this code: a
    hand repair, a migration): the unique (series_id, snap_us) index refuses the insert with
    E11000 like an _id duplicate. The code before failed the batch; this one takes it for
    "already written", its guarded update matches no _id, and the restatement is lost
    silently: latest reads keep answering version 1."""
    v1 = version(T0, 1, "1.00", at=1000, position=10)
    v2 = version(T0, 2, "2.00", at=2000, position=20)
    store = await mongo_backend.open(GENERATION)
    await store.set_active_generation(GENERATION)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_backend.uri)
    try:
        _, doc = mongodb._CURRENT.encode(v1, mongodb._value_doc)
        current = client[mongo_backend.database][f"{GENERATION}_current"]
        await current.insert_one({"_id": "legacy-S1-point", **doc})
    finally:
        await client.close()
    batch = ProjectionBatch(versions=[v2], closures=[closure(v1, v2)])
    try:
        await store.apply(batch, 20)
    # What the code before did: a BulkWriteError on MongoDB; on FerretDB, whose reply to the
    # failed upsert lacks nModified, a KeyError out of PyMongo. Loud either way.
    except (BulkWriteError, KeyError):
        return
    assert await store.latest_range("S1", *EVERYTHING, 10) == [v2]


async def test_extreme_int64_times_round_trip(mongo_backend: Backend) -> None:
    edge = version(-(2**63), 1, "1.00", at=2**63 - 2, position=2**63 - 2)
    store = await mongo_backend.open(GENERATION)
    await store.set_active_generation(GENERATION)
    await store.apply(ProjectionBatch(versions=[edge]), 1)
    await store.apply(ProjectionBatch(versions=[edge]), 1)
    assert await store.history("S1", -(2**63)) == [edge]
    raw = (await _raw_generation(mongo_backend))["versions"][0]
    assert type(raw["recorded_to_us"]) is Int64
    assert raw["recorded_to_us"] == OPEN_END
