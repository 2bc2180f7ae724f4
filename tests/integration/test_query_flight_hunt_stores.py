"""The Flight endpoint's fast path (prices and volumes straight from the segments) answers as
its pages do over the SQLite and MongoDB (FerretDB) read stores, not only the in-memory one,
where the store's segment reads meet the fast path's read sizes (one segment a read, as after
large buckets): a bucket that overflows a segment in one version and not in the version
before, as-of times and positions exactly at and beside version boundaries, ranges that start
and end inside the overflowing bucket, and tickets naming series with no values among others.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from qis.data.v1 import values_pb2
from qis_adapters.readstore.mongodb import MongoReadStore
from qis_adapters.readstore.port import (
    LATEST,
    OPEN_END,
    OVERFLOW_ROWS,
    AtPosition,
    OfficialVersion,
    ProjectionBatch,
    VersionClosure,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.snaps import format_snap
from qis_projector.application import segments as projector_segments
from qis_query.application import segment_export

from tests.service.query.test_query_flight import version
from tests.service.query.test_query_flight_fast_path import DAY, T0, _entry, both, endpoints
from tests.support.ferretdb import start_ferretdb
from tests.support.mongo import drop_database
from tests.support.segmenting import Segmenting

STEP = 8 * 3_600_000_000  # three snaps a day bucket
DAYS = 6
SMALL_SEGMENT = 5_300
"""Segment bytes at most: a bucket of three rows fits, one of four overflows (its values are in
the per-point records)."""
RESTATED = {20: [(0, 2 * 3 + 1)], 30: [(0, 4 * 3), (2, 0)]}
"""At position (and knowledge time in ms) 20 and 30: the (series, snap) restated. Bucket 2 of
S0 overflows from position 20 on, bucket 4 from 30; S1 has no values."""


def _price(text: str) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=text, currency="USD"))


async def write_history(store: Any) -> None:
    """S0 and S2 prices (three a day for DAYS days), S1 none, then RESTATED, as the projector
    writes them with segments of at most SMALL_SEGMENT bytes."""
    writer = Segmenting(store)
    entries = [_entry(name, "price", "USD", True) for name in ("S0", "S1", "S2")]
    await writer.apply(ProjectionBatch(series=entries), 5)
    current: dict[tuple[int, int], OfficialVersion] = {}
    for series in (0, 2):
        for snap in range(DAYS * 3):
            value = _price(f"{series}{snap}.25")
            current[series, snap] = version(
                f"S{series}", T0 + snap * STEP, 1, value, at=10_000, position=10
            )
    await writer.apply(ProjectionBatch(versions=list(current.values())), 10)
    for position, restated in RESTATED.items():
        versions, closures = [], []
        for series, snap in restated:
            old = current[series, snap]
            new = version(
                old.series_id,
                old.snap_us,
                old.version + 1,
                _price(f"{position}.5"),
                at=position * 1_000,
                position=position,
                flags=("jump",),
            )
            versions.append(new)
            closures.append(
                VersionClosure(old.series_id, old.snap_us, old.version, position * 1_000, position)
            )
            current[series, snap] = new
        await writer.apply(ProjectionBatch(versions=versions, closures=closures), position)


@pytest.fixture(scope="module")
def ferretdb_uri() -> Iterator[str]:
    server = start_ferretdb()
    try:
        yield server.uri
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Any]:
    path = tmp_path / "read.db"
    writer = await SqliteReadStore.open(path, "g1")
    try:
        await writer.set_active_generation("g1")
        await write_history(writer)
    finally:
        await writer.close()
    reader = await SqliteReadStore.open(path)
    try:
        yield reader
    finally:
        await reader.close()


@contextlib.asynccontextmanager
async def mongo_store(uri: str) -> AsyncIterator[Any]:
    database = f"qis_flight_hunt_{uuid.uuid4().hex[:12]}"
    writer = await MongoReadStore.open(uri, database, "g1")
    try:
        await writer.set_active_generation("g1")
        await write_history(writer)
        reader = await MongoReadStore.open(uri, database)
        try:
            yield reader
        finally:
            await reader.close()
    finally:
        await writer.close()
        await drop_database(uri, database)


def _instant(us: int) -> str:
    return format_snap(us)


def tickets() -> list[dict[str, Any]]:
    bucket_2 = T0 + 2 * DAY
    every: list[dict[str, Any]] = [{"series": ["series/S0", "series/S1", "series/S2"]}]
    every += [{"series": ["series/S1"]}, {"series": ["series/S2", "series/S1", "series/S0"]}]
    every += [
        {"series": ["series/S0", "series/S2"], "as_of_position": p}
        for p in (5, 9, 10, 19, 20, 21, 29, 30)
    ]
    every += [
        {"series": ["series/S0", "series/S2"], "as_of_time": _instant(ms * 1_000)}
        for ms in (9_999, 10_000, 19_999, 20_000, 20_001, 29_999, 30_000)
    ]
    # Ranges starting or ending inside the overflowing bucket, on either side of its snaps.
    inside = [bucket_2 + 1, bucket_2 + STEP, bucket_2 + STEP + 1, bucket_2 + 3 * STEP - 1]
    every += [{"series": ["series/S0"], "start_time": _instant(t)} for t in inside]
    every += [{"series": ["series/S0"], "end_time": _instant(t)} for t in inside]
    every += [
        {"series": ["series/S0"], "start_time": _instant(a), "end_time": _instant(b), **as_of}
        for a, b in ((inside[0], inside[2]), (inside[1], inside[3]))
        for as_of in ({}, {"as_of_position": 10}, {"as_of_position": 20})
    ]
    return every


@pytest.fixture(params=["sqlite", "ferretdb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    with mock.patch.object(projector_segments, "MAX_SEGMENT_BYTES", SMALL_SEGMENT):
        opened = (
            sqlite_store(tmp_path)
            if request.param == "sqlite"
            else mongo_store(request.getfixturevalue("ferretdb_uri"))
        )
        reader = await opened.__aenter__()
    try:
        yield reader
    finally:
        await opened.__aexit__(None, None, None)


@pytest.mark.parametrize("rows_per_read", [1, segment_export.ROWS_PER_READ])
async def test_the_fast_path_answers_as_the_pages_do_on_each_store(
    store: Any, rows_per_read: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    overflowing = {LATEST: {2, 4}, AtPosition(19): set(), AtPosition(20): {2}}
    for as_of, buckets in overflowing.items():
        found = await store.segments("S0", T0, OPEN_END, as_of, DAYS)
        assert {(s.bucket_us - T0) // DAY for s in found if s.rows == OVERFLOW_ROWS} == buckets
    monkeypatch.setattr(segment_export, "SEGMENTS_PER_READ", 1)
    monkeypatch.setattr(segment_export, "ROWS_PER_READ", rows_per_read)
    async with endpoints(store) as where:
        for ticket in tickets():
            fast, paged = await both(where, ticket)
            assert fast.equals(paged, check_metadata=True), ticket
        latest, _ = await both(where, {"series": ["series/S0"]})
    assert latest.num_rows == DAYS * 3
