"""Columnar segments in every read-store adapter (port.Segment, ReadModelReader.segments,
ReadModelWriter.last_segment), plus what each adapter's segment reads rely on: the indexes
(MongoDB) and the query plans (SQLite).

The scenario most tests read: buckets B[0..3] of series S1; at position 10 (time 1000) the
first versions of B0, B1 and B2; at 20 (time 2000) a new version of B1, closing the one of 10;
at 30 (time 3000) another of B1, closing the one of 20, and the first of B3.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pymongo import AsyncMongoClient
from qis_adapters.readstore.port import (
    LATEST,
    OPEN_END,
    OVERFLOW_ROWS,
    AsOf,
    AtPosition,
    KnownAt,
    ProjectionBatch,
    Segment,
    SegmentClosure,
)
from qis_adapters.readstore.sqlite import SqliteReadStore, _Sql

from tests.contract.readstore.test_readstore_contract import BATCH_1, T0, _eventually

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Adapter, Backend

DAY = 86_400_000_000
B = [T0 + i * DAY for i in range(4)]
EVERY_BUCKET = (0, 2**62)


def segment(
    bucket: int, position: int, *, series_id: str = "S1", payload: bytes | None = None
) -> Segment:
    """A version of a bucket's segment recorded at time position * 100, with a payload that
    names it (so a wrong choice of version shows)."""
    return Segment(
        series_id=series_id,
        bucket_us=bucket,
        first_snap_us=bucket + 60_000_000,
        last_snap_us=bucket + 3_600_000_000,
        rows=3,
        payload=f"{series_id}/{bucket}/{position}".encode() if payload is None else payload,
        recorded_from_us=position * 100,
        position_from=position,
    )


def closure(s: Segment, successor: Segment) -> SegmentClosure:
    return SegmentClosure(
        s.series_id,
        s.bucket_us,
        s.position_from,
        successor.recorded_from_us,
        successor.position_from,
    )


def closed(s: Segment, successor: Segment) -> Segment:
    return dataclasses.replace(
        s, recorded_to_us=successor.recorded_from_us, position_to=successor.position_from
    )


V10 = [segment(b, 10) for b in B[:3]]
B1_20, B1_30, B3_30 = segment(B[1], 20), segment(B[1], 30), segment(B[3], 30)
BATCH_10 = ProjectionBatch(segments=V10)
BATCH_20 = ProjectionBatch(segments=[B1_20], segment_closures=[closure(V10[1], B1_20)])
BATCH_30 = ProjectionBatch(segments=[B1_30, B3_30], segment_closures=[closure(B1_20, B1_30)])
# Every version of the scenario once it is applied, by key.
ALL = [V10[0], closed(V10[1], B1_20), closed(B1_20, B1_30), B1_30, V10[2], B3_30]


async def scenario(store: Adapter) -> None:
    await store.apply(BATCH_10, 10)
    await store.apply(BATCH_20, 20)
    await store.apply(BATCH_30, 30)


async def read(store: Adapter, as_of: AsOf, limit: int = 100) -> list[Segment]:
    found = await store.segments("S1", *EVERY_BUCKET, as_of, limit)
    assert found is not None
    return found


async def test_latest_is_the_open_version_of_each_bucket(store: Adapter) -> None:
    await scenario(store)
    assert await read(store, LATEST) == [V10[0], B1_30, V10[2], B3_30]


async def test_known_at_selects_by_knowledge_time_to_excluded(store: Adapter) -> None:
    await scenario(store)
    at_1000 = [V10[0], closed(V10[1], B1_20), V10[2]]
    assert await read(store, KnownAt(999)) == []
    assert await read(store, KnownAt(1000)) == at_1000  # recorded_from is inclusive
    assert await read(store, KnownAt(1999)) == at_1000
    # t == recorded_to_us of B1's first version: the next one only.
    assert await read(store, KnownAt(2000)) == [V10[0], closed(B1_20, B1_30), V10[2]]
    assert await read(store, KnownAt(2999)) == [V10[0], closed(B1_20, B1_30), V10[2]]
    assert await read(store, KnownAt(3000)) == [V10[0], B1_30, V10[2], B3_30]
    assert await read(store, KnownAt(OPEN_END - 1)) == [V10[0], B1_30, V10[2], B3_30]


async def test_at_position_selects_by_log_position_from_included(store: Adapter) -> None:
    await scenario(store)
    assert await read(store, AtPosition(9)) == []
    assert await read(store, AtPosition(10)) == [V10[0], closed(V10[1], B1_20), V10[2]]
    assert await read(store, AtPosition(19)) == [V10[0], closed(V10[1], B1_20), V10[2]]
    assert await read(store, AtPosition(20)) == [V10[0], closed(B1_20, B1_30), V10[2]]
    assert await read(store, AtPosition(29)) == [V10[0], closed(B1_20, B1_30), V10[2]]
    assert await read(store, AtPosition(30)) == [V10[0], B1_30, V10[2], B3_30]


async def test_the_end_of_an_interval_is_excluded_without_a_successor_too(
    store: Adapter,
) -> None:
    # Above, the successor of a closed version hides a wrong end: here there is none.
    await store.apply(BATCH_10, 10)
    end = SegmentClosure("S1", B[2], 10, 2500, 25)
    await store.apply(ProjectionBatch(segment_closures=[end]), 25)
    b2_closed = dataclasses.replace(V10[2], recorded_to_us=2500, position_to=25)
    assert await read(store, KnownAt(2499)) == [*V10[:2], b2_closed]
    assert await read(store, KnownAt(2500)) == V10[:2]
    assert await read(store, AtPosition(24)) == [*V10[:2], b2_closed]
    assert await read(store, AtPosition(25)) == V10[:2]
    assert await read(store, LATEST) == V10[:2]


@pytest.mark.parametrize("as_of", [LATEST, KnownAt(4500), AtPosition(45)])
async def test_of_two_matching_versions_of_a_bucket_the_newer_is_read(
    store: Adapter, as_of: AsOf
) -> None:
    """Between a new version's insert and its predecessor's closure (a writer that stopped
    between the two), both versions match: the one with the greater position_from wins, also
    when the older ones take places a limit counts."""
    await scenario(store)
    newer = [segment(b, 40) for b in B]
    await store.apply(ProjectionBatch(segments=newer), 40)  # no closures yet
    assert await read(store, as_of) == newer
    for limit in range(1, 5):
        assert await read(store, as_of, limit) == newer[:limit], limit
    assert await store.segments("S1", B[1], B[3], as_of, 1) == newer[1:2]
    # A position or time before the newer versions still reads the older ones.
    assert await read(store, AtPosition(39)) == [V10[0], B1_30, V10[2], B3_30]
    assert await read(store, KnownAt(3999)) == [V10[0], B1_30, V10[2], B3_30]


async def test_bucket_bounds_are_from_inclusive_end_exclusive(store: Adapter) -> None:
    await scenario(store)
    latest = [V10[0], B1_30, V10[2], B3_30]
    assert await store.segments("S1", B[1], B[3], LATEST, 100) == latest[1:3]
    assert await store.segments("S1", B[1] + 1, B[3] + 1, LATEST, 100) == latest[2:4]
    assert await store.segments("S1", B[1], B[1], LATEST, 100) == []
    assert await store.segments("S1", B[3] + 1, 2**62, LATEST, 100) == []
    at_20 = [V10[0], closed(B1_20, B1_30), V10[2]]
    assert await store.segments("S1", B[1], B[2], AtPosition(20), 100) == at_20[1:2]
    assert await store.segments("S1", B[0], B[2], KnownAt(2000), 100) == at_20[:2]


async def test_ascending_by_bucket_at_most_limit_and_by_series(store: Adapter) -> None:
    shuffled = [segment(B[i], 10 + i) for i in (3, 0, 2, 1)]
    other = [segment(b, 10, series_id="S2") for b in B]
    await store.apply(ProjectionBatch(segments=[*shuffled, *other]), 13)
    in_order = sorted(shuffled, key=lambda s: s.bucket_us)
    for as_of in (LATEST, KnownAt(1300), AtPosition(13)):
        assert await read(store, as_of) == in_order
        assert await read(store, as_of, 2) == in_order[:2]
        assert await read(store, as_of, 0) == []
    assert await store.segments("S2", *EVERY_BUCKET, LATEST, 100) == other
    assert await store.segments("S3", *EVERY_BUCKET, LATEST, 100) == []


async def test_replaying_inserts_and_closures_changes_nothing(store: Adapter) -> None:
    await scenario(store)
    expected = await store.dump_all()
    assert expected["segments"] == ALL  # the dump holds them, by key
    assert expected["checkpoint"] == 30

    await store.apply(BATCH_30, 30)  # the same batch again
    assert await store.dump_all() == expected
    # The replayed insert of B1_20 does not reopen it, not even for a moment.
    await store.apply(BATCH_20, 30)
    assert await store.dump_all() == expected
    # A restart replaying the whole suffix.
    await store.apply(BATCH_10, 10)
    await store.apply(BATCH_20, 20)
    await store.apply(BATCH_30, 30)
    assert await store.dump_all() == expected
    # Insert if absent: a version already stored keeps its content, every field of it.
    other = dataclasses.replace(segment(B[0], 10, payload=b"other"), rows=9, last_snap_us=B[1])
    await store.apply(ProjectionBatch(segments=[other]), 30)
    assert (await store.dump_all())["segments"] == ALL


async def test_a_closure_is_idempotent_and_closes_only_its_version(store: Adapter) -> None:
    await store.apply(BATCH_10, 10)
    await store.apply(BATCH_20, 20)
    for _ in range(2):
        await store.apply(ProjectionBatch(segment_closures=BATCH_20.segment_closures), 20)
        assert (await store.dump_all())["segments"] == [
            V10[0],
            closed(V10[1], B1_20),
            B1_20,
            V10[2],
        ]
    # A closure of a version that is not there creates nothing.
    ghost = SegmentClosure("S1", B[3], 10, 2000, 20)
    await store.apply(ProjectionBatch(segment_closures=[ghost]), 21)
    assert len((await store.dump_all())["segments"]) == 4  # type: ignore[arg-type]


async def test_a_version_and_its_successor_in_one_batch(store: Adapter) -> None:
    # Inserts come before closures, whatever the batch holds.
    batch = ProjectionBatch(segments=[V10[1], B1_20], segment_closures=[closure(V10[1], B1_20)])
    await store.apply(batch, 20)
    assert await read(store, LATEST) == [B1_20]
    assert await read(store, AtPosition(15)) == [closed(V10[1], B1_20)]


async def test_last_segment_is_the_greatest_position_from_in_any_state(store: Adapter) -> None:
    assert await store.last_segment("S1", B[1]) is None
    await scenario(store)
    assert await store.last_segment("S1", B[1]) == B1_30
    assert await store.last_segment("S1", B[0]) == V10[0]
    assert await store.last_segment("S1", B[0] + 1) is None
    assert await store.last_segment("S2", B[0]) is None
    newer = segment(B[1], 40)
    await store.apply(ProjectionBatch(segments=[newer]), 40)  # still open: B1_30
    assert await store.last_segment("S1", B[1]) == newer
    end = SegmentClosure("S1", B[1], 40, 5000, 50)  # closed without a successor
    await store.apply(ProjectionBatch(segment_closures=[end]), 50)
    assert await store.last_segment("S1", B[1]) == dataclasses.replace(
        newer, recorded_to_us=5000, position_to=50
    )


async def test_last_segment_reads_the_writers_own_generation(backend: Backend) -> None:
    g1 = await backend.open("g1")
    await g1.apply(BATCH_10, 10)
    await g1.set_active_generation("g1")
    g2 = await backend.open("g2")  # a rebuild, not active
    assert await g2.last_segment("S1", B[0]) is None
    await g2.apply(ProjectionBatch(segments=[segment(B[0], 5)]), 5)
    assert await g2.last_segment("S1", B[0]) == segment(B[0], 5)
    assert await g1.last_segment("S1", B[0]) == V10[0]
    with pytest.raises(RuntimeError):
        await (await backend.open(None)).last_segment("S1", B[0])


async def test_payloads_round_trip_byte_exactly(store: Adapter) -> None:
    big = random.Random(7).randbytes(2 * 2**20)  # 2 MiB of every byte value
    payloads = [big, b"", bytes(range(256)), b"\x00" * 17]
    versions = [segment(b, 10, payload=p) for b, p in zip(B, payloads, strict=True)]
    overflow = dataclasses.replace(
        segment(B[0], 10, series_id="S2"), rows=OVERFLOW_ROWS, payload=b""
    )
    await store.apply(ProjectionBatch(segments=[*versions, overflow]), 10)
    assert await read(store, LATEST) == versions
    assert [s.payload for s in await read(store, AtPosition(10))] == payloads
    assert await store.segments("S2", *EVERY_BUCKET, KnownAt(1000), 10) == [overflow]
    assert await store.last_segment("S1", B[0]) == versions[0]


async def test_segments_follow_the_active_generation_and_go_with_it(backend: Backend) -> None:
    g1 = await backend.open("g1")
    reader = await backend.open(None)
    await g1.apply(BATCH_10, 10)
    assert await reader.segments("S1", *EVERY_BUCKET, LATEST, 100) == []  # nothing active
    await g1.set_active_generation("g1")
    assert await _eventually(lambda: reader.segments("S1", *EVERY_BUCKET, LATEST, 100), V10)

    g2 = await backend.open("g2")  # the rebuild: invisible until the switch
    await g2.apply(ProjectionBatch(segments=[segment(B[3], 5)]), 5)
    assert await reader.segments("S1", *EVERY_BUCKET, LATEST, 100) == V10
    await g2.set_active_generation("g2")
    only_g2 = [segment(B[3], 5)]
    assert await _eventually(lambda: reader.segments("S1", *EVERY_BUCKET, LATEST, 100), only_g2)

    await reader.drop_generation("g1")
    again = await backend.open("g1")  # created anew: its segments went with the drop
    assert (await again.dump_all("g1"))["segments"] == []
    assert await again.last_segment("S1", B[0]) is None
    assert await reader.segments("S1", *EVERY_BUCKET, LATEST, 100) == only_g2


async def test_other_records_and_segments_share_a_batch(store: Adapter) -> None:
    batch = dataclasses.replace(BATCH_1, segments=V10)
    await store.apply(batch, 10)
    dump = await store.dump_all()
    assert dump["segments"] == V10
    assert dump["versions"] == BATCH_1.versions
    await store.apply(batch, 10)
    assert await store.dump_all() == dump


# --- what the adapters' segment reads rely on -----------------------------------------------

# (key pattern, unique) of each index of a generation's segments collection: the reads filter
# on every field of the index they use, and sort position_from newest first.
EXPECTED_MONGO_INDEXES = {
    (
        (
            ("series_id", 1),
            ("bucket_us", 1),
            ("position_from", -1),
            ("position_to", 1),
            ("recorded_from_us", 1),
            ("recorded_to_us", 1),
        ),
        False,
    ),
    ((("series_id", 1), ("position_to", 1), ("bucket_us", 1), ("position_from", -1)), False),
}


async def test_mongodb_segment_indexes_exist(mongo_backend: Backend) -> None:
    await mongo_backend.open("g1")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_backend.uri)
    try:
        found = {
            (tuple((k, int(v)) for k, v in index["key"].items()), bool(index.get("unique")))
            async for index in await client[mongo_backend.database]["g1_segments"].list_indexes()
        }
    finally:
        await client.close()
    assert found >= EXPECTED_MONGO_INDEXES, EXPECTED_MONGO_INDEXES - found


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        ("segments_latest", "COVERING INDEX g1_segments_by_series_id_position_to_bucket_us"),
        ("segments_known_at", "PRIMARY KEY (series_id=? AND bucket_us>? AND bucket_us<?)"),
        ("segments_at_position", "PRIMARY KEY (series_id=? AND bucket_us>? AND bucket_us<?)"),
        ("last_segment", "PRIMARY KEY (series_id=? AND bucket_us=?)"),
    ],
)
async def test_sqlite_segment_reads_choose_versions_before_reading_payloads(
    tmp_path: Path, statement: str, index: str
) -> None:
    """The versions a read returns are chosen from the small metadata rows (a range of the key or
    of the covering latest index, grouped in index order: no sort), then only their payloads are
    looked up by key."""
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await store.close()
    sql = getattr(_Sql.for_generation("g1"), statement)
    conn = sqlite3.connect(tmp_path / "read.db")
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", [1] * sql.count("?"))]
    finally:
        conn.close()
    assert not [step for step in plan if "TEMP B-TREE" in step or step.startswith("SCAN g1")]
    assert any(step.startswith("SEARCH") and index in step for step in plan), plan
    payloads = "SEARCH p USING INDEX g1_segment_payloads_key"
    assert [step for step in plan if step.startswith(payloads)], plan


async def test_sqlite_generation_written_before_segments_reads_as_without_any(
    tmp_path: Path,
) -> None:
    """A generation of an older format, without segments tables, which the query service
    serves until the projector's rebuild switches: its segments read as None (read the
    per-point records), not as an error nor as no values."""
    path = tmp_path / "read.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("active", "g1"), ("generation:g1", 7)])
    finally:
        conn.close()
    reader = await SqliteReadStore.open(path)
    try:
        assert await reader.generation_format("g1") == 1
        for as_of in (LATEST, KnownAt(1), AtPosition(1)):
            assert await reader.segments("S1", *EVERY_BUCKET, as_of, 10) is None
    finally:
        await reader.close()


async def test_a_generation_of_a_format_before_segments_has_none_to_read(
    backend: Backend,
) -> None:
    """Its values are in the per-point records only: None says so, where an empty list would
    say the range holds no values."""
    writer = await backend.open("g1")
    await writer.set_active_generation("g1")
    await scenario(writer)
    await backend.unrecord("g1")  # now it looks built before formats were recorded (format 1)
    reader = await backend.open()
    for as_of in (LATEST, KnownAt(1), AtPosition(1)):
        assert await reader.segments("S1", *EVERY_BUCKET, as_of, 10) is None
