"""Every read of official values from the MongoDB read store agrees with the reference of
tests/property/test_property_read_asof.py, on the FerretDB server the contract suite starts.

The same histories (publications and restatements written as the projector writes them, in
batches cut at random places, segments overflowing at random sizes) and the same reads
(QueryRange paged and resumed, GetValues, the store's per-point range reads, as of every
position and commit time ±1 µs); plus histories aimed at what MongoDB stores differently: snaps
at the ends of the accepted instants and on either side of a millisecond (BSON dates are
milliseconds; snaps and times must stay int64 µs), commit times a microsecond apart across a
millisecond edge and at the far end, and snaps either side of the epoch.

FerretDB is slow: few examples (the property profile's, a third of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qis_adapters.readstore.mongodb import MongoReadStore
from qis_adapters.readstore.port import (
    LATEST,
    MAX_SEGMENT_BYTES,
    OPEN_END,
    AsOf,
    AtPosition,
    KnownAt,
)
from qis_domain.bounds import MAX_INSTANT_US, MIN_INSTANT_US
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.limits import DEFAULT_LIMITS, QueryLimits
from qis_query.application.ranges import EARLIEST

from tests.property.profiles import PROPERTY
from tests.property.test_property_read_asof import (
    DAY,
    SERIES,
    T0,
    Commit,
    Scenario,
    check,
    per_point_range,
    scenarios,
    text_of,
    written,
)
from tests.service.query.conftest import FEED
from tests.support.mongo import drop_database

# A FerretDB example costs ~20 s of CPU: a third of the property profile's examples (2 in CI).
MONGO = settings(
    PROPERTY,
    max_examples=max(1, PROPERTY.max_examples // 3),
    suppress_health_check=[*PROPERTY.suppress_health_check, HealthCheck.function_scoped_fixture],
)


@contextlib.asynccontextmanager
async def _stores(uri: str) -> AsyncIterator[tuple[MongoReadStore, MongoReadStore]]:
    """A writer of g1 and a reader of the active generation, on a fresh database dropped after."""
    database = f"qis_asof_{uuid.uuid4().hex[:12]}"
    writer = await MongoReadStore.open(uri, database, "g1")
    reader = await MongoReadStore.open(uri, database)
    try:
        yield writer, reader
    finally:
        await reader.close()
        await writer.close()
        await drop_database(uri, database)


async def _check_on_mongo(uri: str, scenario: Scenario) -> None:
    async with _stores(uri) as (writer, reader):
        await check(scenario, writer, reader)


def _edge_snaps() -> list[int]:
    """Snaps MongoDB could get wrong: at the ends of the accepted instants and their buckets,
    around the epoch, and on and either side of a millisecond."""
    first_bucket = MIN_INSTANT_US - MIN_INSTANT_US % DAY + DAY
    last_bucket = MAX_INSTANT_US - MAX_INSTANT_US % DAY
    return [
        MIN_INSTANT_US,
        MIN_INSTANT_US + 1,
        first_bucket,
        last_bucket - 1,
        last_bucket,
        MAX_INSTANT_US - 1,
        MAX_INSTANT_US,
        -1,
        0,
        1,
        T0 + 999,
        T0 + 1_000,
        T0 + 1_001,
    ]


@st.composite
def edge_scenarios(draw: st.DrawFn) -> Scenario:
    pool = draw(st.lists(st.sampled_from(_edge_snaps()), min_size=1, max_size=6, unique=True))
    # Commit times that a millisecond clock would merge or split: x999, x000, x001 µs, and the
    # last accepted instant.
    at_us = draw(st.sampled_from([1_000_999, 1_700_000_000_000_999, MAX_INSTANT_US - 3]))
    commits = []
    position = draw(st.integers(1, 3))
    for _ in range(draw(st.integers(1, 5))):
        snaps = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
        commits.append(Commit(position, at_us, tuple(snaps)))
        position += draw(st.integers(1, 2))
        at_us += draw(st.sampled_from([0, 1, 2]))
    cuts = draw(st.sets(st.integers(0, len(commits) - 1)))
    limit = draw(st.sampled_from([MAX_SEGMENT_BYTES, 0, 5_100]))
    points = draw(st.sampled_from([DEFAULT_LIMITS.max_points_per_call, 1, 2]))
    limits = QueryLimits(
        max_points_per_call=points,
        max_value_bytes_per_call=DEFAULT_LIMITS.max_value_bytes_per_call,
    )
    return Scenario(tuple(commits), frozenset(cuts), max_segment_bytes=limit, limits=limits)


@MONGO
@given(scenario=scenarios())
def test_every_read_of_the_mongodb_store_agrees_with_the_reference(
    ferretdb_uri: str, scenario: Scenario
) -> None:
    asyncio.run(_check_on_mongo(ferretdb_uri, scenario))


_LAST_BUCKET = MAX_INSTANT_US - MAX_INSTANT_US % DAY
# Not left to chance: commit times a microsecond apart past 2**53 µs (where a double, or a
# millisecond, could not tell them apart), restating snaps as far apart as the bounds allow.
_FAR_END = Scenario(
    (
        Commit(1, MAX_INSTANT_US - 2, (MAX_INSTANT_US, MIN_INSTANT_US)),
        Commit(2, MAX_INSTANT_US - 1, (MAX_INSTANT_US - 1, MAX_INSTANT_US)),
        Commit(3, MAX_INSTANT_US, (_LAST_BUCKET, MIN_INSTANT_US, MAX_INSTANT_US)),
    ),
    frozenset({0}),
    limits=QueryLimits(max_points_per_call=1),
)


@MONGO
@given(scenario=edge_scenarios())
@example(scenario=_FAR_END)
def test_reads_at_the_edges_of_instants_and_milliseconds_agree_with_the_reference(
    ferretdb_uri: str, scenario: Scenario
) -> None:
    asyncio.run(_check_on_mongo(ferretdb_uri, scenario))


async def _check_far_positions(uri: str) -> None:
    """Positions either side of 2**53 (2**53 + 1 is no double), a position apart: asked as of
    each, and one either side. (Not nearer 2**63: the catalogue entry's time is its position in
    ms.)"""
    base = 2**53 - 2
    scenario = Scenario(
        (
            Commit(base + 1, 10, (T0, T0 + 1)),
            Commit(base + 2, 11, (T0,)),
            Commit(base + 3, 11, (T0 + 1, T0)),
        ),
        frozenset({1}),
    )
    async with _stores(uri) as (writer, reader):
        await written(scenario, writer)
        queries = QueryHandlers(reader, ReadPosition(reader, 0.3), FEED, scenario.limits)
        as_ofs: list[AsOf] = [LATEST, *(AtPosition(base + d) for d in range(5))]
        as_ofs += [KnownAt(t) for t in (9, 10, 11, 12)]
        for as_of in as_ofs:
            want = scenario.expected(as_of, EARLIEST, OPEN_END)
            assert await per_point_range(reader, as_of, EARLIEST, OPEN_END) == want, as_of
            got = await queries.values(SERIES, scenario.snaps, as_of, 0)
            assert [(v.snap_us, v.version, text_of(v.value)) for v in got.value] == want, as_of


def test_positions_past_two_to_the_53_are_told_apart(ferretdb_uri: str) -> None:
    asyncio.run(_check_far_positions(ferretdb_uri))
