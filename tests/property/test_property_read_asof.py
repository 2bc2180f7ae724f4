"""Every way the query side asks for official values agrees with a reference computed here from
the versions written, after random histories of publications and restatements.

The read model is written through the read-store port as the projector writes it (per-point
records, their closures, and the segment versions `add_segments` makes), in batches cut at
random places, on the in-memory and the SQLite store. The snaps sit on and around bucket starts
(also before 1970), a snap is restated several times (sometimes in one batch), and commit times
repeat (two commits in one microsecond) or move on.

Asked: QueryRange at every page size that matters (one, two, the whole range, more), resumed
across calls by its tokens, from and to snaps, bucket starts and far bounds; GetValues of every
snap and of snaps without values; and the store's own per-point range reads. As of: latest, every
commit position (and those around it), every commit time (and a microsecond either side).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1.values_pb2 import DataValue
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    LATEST,
    MAX_SEGMENT_BYTES,
    OPEN_END,
    AsOf,
    AtPosition,
    KnownAt,
    OfficialVersion,
    ProjectionBatch,
    ReadStore,
    VersionClosure,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.snaps import BUCKET_SPAN_US, Frequency
from qis_projector.application import segments as segment_builder
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.limits import DEFAULT_LIMITS, QueryLimits
from qis_query.application.ranges import EARLIEST, RangeQuery

from tests.contract.readstore.test_readstore_contract import change, price
from tests.property.service import PROPERTY
from tests.service.query.conftest import FEED
from tests.service.query.readmodel import catalogue_entry
from tests.support.segmenting import FREQUENCY, Segmenting

SERIES = "S1"
DAY = BUCKET_SPAN_US[FREQUENCY]  # the segments' bucket span (a minute series': one day)
MINUTE = 60_000_000
T0 = 1_700_000_000_000_000 - 1_700_000_000_000_000 % DAY  # a bucket start
FAR_FUTURE = 253_402_300_799_000_000  # 9999-12-31T23:59:59Z

Row = tuple[int, int, str]
"""(snap µs, version, value text)"""


@dataclass(frozen=True, slots=True)
class Commit:
    """One event: the snaps it publishes or restates, at its position and commit time."""

    position: int
    at_us: int
    snaps: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    commits: tuple[Commit, ...]
    cuts: frozenset[int]  # a batch ends after these commits (and after the last)
    series_id: str = SERIES
    max_segment_bytes: int = MAX_SEGMENT_BYTES
    """Smaller: buckets overflow (their values read from the per-point records) once their
    segment grows past it, some of them after versions that were segments."""
    limits: QueryLimits = DEFAULT_LIMITS
    """Smaller: a range takes several calls, cut by points or by value bytes."""

    def versions(self) -> list[tuple[Commit, OfficialVersion, OfficialVersion | None]]:
        """Each version written, with its commit and the version it supersedes."""
        current: dict[int, OfficialVersion] = {}
        out = []
        for commit in self.commits:
            for snap in commit.snaps:
                before = current.get(snap)
                number = 1 if before is None else before.version + 1
                made = OfficialVersion(
                    series_id=self.series_id,
                    snap_us=snap,
                    version=number,
                    value=price(f"{snap % 997}.{number:02d}{commit.position}"),
                    quality_score=0.5,
                    recorded_from_us=commit.at_us,
                    position_from=commit.position,
                    reason="" if before is None else "restated",
                    user_id="u",
                    command_id=f"c{commit.position}",
                    sources=("feed1",),
                    method="priority",
                )
                current[snap] = made
                out.append((commit, made, before))
        return out

    def batches(self) -> list[tuple[ProjectionBatch, int]]:
        by_commit: dict[int, ProjectionBatch] = {}
        for commit, made, before in self.versions():
            batch = by_commit.setdefault(commit.position, ProjectionBatch())
            batch.changes.append(change(made, len(batch.versions)))
            batch.versions.append(made)
            if before is not None:
                batch.closures.append(
                    VersionClosure(
                        self.series_id, made.snap_us, before.version, commit.at_us, commit.position
                    )
                )
        out: list[tuple[ProjectionBatch, int]] = []
        pending = ProjectionBatch()
        for i, commit in enumerate(self.commits):
            own = by_commit[commit.position]
            pending.versions.extend(own.versions)
            pending.closures.extend(own.closures)
            pending.changes.extend(own.changes)
            if i in self.cuts or i == len(self.commits) - 1:
                out.append((pending, commit.position))
                pending = ProjectionBatch()
        return out

    def expected(self, as_of: AsOf, start_us: int, end_us: int) -> list[Row]:
        """The reference: each snap's last version written by `as_of`."""
        official: dict[int, Row] = {}
        for commit, made, _ in self.versions():
            match as_of:
                case AtPosition(position):
                    if commit.position > position:
                        continue
                case KnownAt(at_us):
                    if commit.at_us > at_us:
                        continue
            official[made.snap_us] = (made.snap_us, made.version, text_of(made.value))
        return [official[s] for s in sorted(official) if start_us <= s < end_us]

    @property
    def snaps(self) -> list[int]:
        return sorted({s for c in self.commits for s in c.snaps})


def text_of(value: bytes) -> str:
    return DataValue.FromString(value).price.value


def candidate_snaps() -> list[int]:
    """Snaps on, just after and just before bucket starts, here and before 1970."""
    out = []
    for base in (T0, -2 * DAY):
        for day in range(3):
            start = base + day * DAY
            out += [start, start + 1, start + MINUTE, start + DAY - 1]
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    pool = draw(st.lists(st.sampled_from(candidate_snaps()), min_size=1, max_size=8, unique=True))
    commits = []
    position, at_us = draw(st.integers(1, 3)), 1_000_000
    for _ in range(draw(st.integers(1, 8))):
        snaps = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
        commits.append(Commit(position, at_us, tuple(snaps)))
        position += draw(st.integers(1, 3))
        at_us += draw(st.sampled_from([0, 1, 1000]))
    cuts = draw(st.sets(st.integers(0, len(commits) - 1)))
    # A segment of one price is some 4,900 bytes, of eight some 5,600; 0: every bucket overflows.
    limit = draw(st.sampled_from([MAX_SEGMENT_BYTES, 0, 5_100, 5_400]))
    points = draw(st.sampled_from([DEFAULT_LIMITS.max_points_per_call, 1, 2, 3]))
    value_bytes = draw(st.sampled_from([DEFAULT_LIMITS.max_value_bytes_per_call, 1, 40]))
    limits = QueryLimits(max_points_per_call=points, max_value_bytes_per_call=value_bytes)
    return Scenario(tuple(commits), frozenset(cuts), max_segment_bytes=limit, limits=limits)


def as_ofs(scenario: Scenario) -> list[AsOf]:
    out: list[AsOf] = [LATEST]
    last = scenario.commits[-1].position
    out += [AtPosition(p) for p in range(0, last + 2)]
    times = sorted({c.at_us for c in scenario.commits})
    out += [KnownAt(t + d) for t in times for d in (-1, 0, 1)]
    out += [KnownAt(0), KnownAt(OPEN_END - 1)]
    return out


def bounds(scenario: Scenario) -> list[tuple[int, int]]:
    snaps = scenario.snaps
    buckets = sorted({s - s % DAY for s in snaps} | {s - s % DAY + DAY for s in snaps})
    edges = sorted({EARLIEST, *snaps, *(s + 1 for s in snaps), *buckets, FAR_FUTURE})
    pairs = [(EARLIEST, OPEN_END), (-FAR_FUTURE, FAR_FUTURE), (FAR_FUTURE, OPEN_END)]
    pairs += [
        (edges[i], edges[j])
        for i in range(len(edges))
        for j in {i, min(i + 1, len(edges) - 1), len(edges) - 1}
    ]
    kept = sorted({(a, b) for a, b in pairs if a <= b})
    return kept[:: max(1, len(kept) // 30)]


async def written(scenario: Scenario, store: ReadStore) -> None:
    await store.set_active_generation("g1")  # type: ignore[attr-defined]
    defined_at = scenario.commits[0].position - 1
    entry = catalogue_entry(scenario.series_id, defined_at)
    entry.definition["frequency"] = f"FREQUENCY_{Frequency.MINUTE.name}"
    entry.definition["dataType"] = "DATA_TYPE_PRICE"
    await store.apply(ProjectionBatch(series=[entry]), defined_at)
    writer = Segmenting(store)
    with mock.patch.object(segment_builder, "MAX_SEGMENT_BYTES", scenario.max_segment_bytes):
        for batch, checkpoint in scenario.batches():
            await writer.apply(batch, checkpoint)


async def range_rows(
    queries: QueryHandlers, query: RangeQuery, size: int
) -> tuple[list[Row], list[int]]:
    """The whole range, page by page and call by call; and the sizes of its pages."""
    rows: list[Row] = []
    sizes: list[int] = []
    token = ""
    for _ in range(10_000):
        read = await queries.query_range(query, size, token, 0)
        token = ""
        async for page in read.value:
            table = page.rows
            sizes.append(table.num_rows)
            rows += [
                (s, v, text_of(b))
                for s, v, b in zip(
                    table["snap_us"].to_pylist(),
                    table["version"].to_pylist(),
                    table["value"].to_pylist(),
                    strict=True,
                )
            ]
            token = page.next_page_token
        if not token:
            return rows, sizes
    raise AssertionError("paging did not end")


async def check(scenario: Scenario, store: ReadStore, reader: ReadStore) -> None:
    await written(scenario, store)
    queries = QueryHandlers(reader, ReadPosition(reader, 0.3), FEED, scenario.limits)
    total = len(scenario.snaps)
    missing = [s + 7 for s in scenario.snaps if s + 7 not in scenario.snaps]
    for as_of in as_ofs(scenario):
        everything = scenario.expected(as_of, EARLIEST, OPEN_END)
        # GetValues of every snap (those without a value as of then answer nothing).
        got = await queries.values(SERIES, [*scenario.snaps, *missing], as_of, 0)
        assert [(v.snap_us, v.version, text_of(v.value)) for v in got.value] == everything, as_of
        assert all(v.position_to == OPEN_END for v in got.value)
        for start, end in bounds(scenario):
            want = scenario.expected(as_of, start, end)
            for size in sorted({1, 2, max(1, len(want)), total + 1}):
                rows, sizes = await range_rows(queries, RangeQuery(SERIES, start, end, as_of), size)
                assert rows == want, (as_of, start, end, size)
                assert all(n <= size for n in sizes)
            per_point = await per_point_range(reader, as_of, start, end)
            assert per_point == want, ("per-point records", as_of, start, end)


async def per_point_range(reader: ReadStore, as_of: AsOf, start: int, end: int) -> list[Row]:
    match as_of:
        case AtPosition(position):
            found = await reader.as_of_position_range(SERIES, start, end, position, 10_000)
        case KnownAt(at_us):
            found = await reader.as_of_time_range(SERIES, start, end, at_us, 10_000)
        case _:
            found = await reader.latest_range(SERIES, start, end, 10_000)
    return [(v.snap_us, v.version, text_of(v.value)) for v in found]


# Each example asks every read at every position and time of its history: half the profile's.
READS = settings(PROPERTY, max_examples=max(1, PROPERTY.max_examples // 2))


@READS
@given(scenarios())
def test_every_read_of_the_memory_store_agrees_with_the_reference(scenario: Scenario) -> None:
    database = InMemoryReadDatabase()
    asyncio.run(check(scenario, InMemoryReadStore(database, "g1"), InMemoryReadStore(database)))


@READS
@given(scenarios())
def test_every_read_of_the_sqlite_store_agrees_with_the_reference(scenario: Scenario) -> None:
    async def run(path: Path) -> None:
        writer = await SqliteReadStore.open(path, "g1")
        reader = await SqliteReadStore.open(path)
        try:
            await check(scenario, writer, reader)
        finally:
            await reader.close()
            await writer.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(Path(directory) / "read.db"))


def test_reference_sees_a_restatement_at_its_own_position_and_time() -> None:
    """The reference's inclusive as-of: a version is official from its own commit on."""
    scenario = Scenario((Commit(1, 10, (T0,)), Commit(2, 20, (T0,))), frozenset())
    assert [r[1] for r in scenario.expected(AtPosition(1), EARLIEST, OPEN_END)] == [1]
    assert [r[1] for r in scenario.expected(AtPosition(2), EARLIEST, OPEN_END)] == [2]
    assert [r[1] for r in scenario.expected(KnownAt(19), EARLIEST, OPEN_END)] == [1]
    assert [r[1] for r in scenario.expected(KnownAt(20), EARLIEST, OPEN_END)] == [2]
    assert scenario.expected(KnownAt(9), EARLIEST, OPEN_END) == []
    assert scenario.expected(AtPosition(0), EARLIEST, OPEN_END) == []
