"""Semantics every read-store adapter must share (qis_adapters/readstore/port.py).

Every test runs on a fresh database (see conftest). Data stays small: FerretDB scans whole
collections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
from google.type.date_pb2 import Date
from qis.data.v1.values_pb2 import (
    CorporateAction,
    CorporateActionType,
    DataValue,
    OhlcBar,
    OptionQuote,
    OptionRight,
    OptionsChain,
    Price,
    Volume,
)
from qis_adapters.readstore.port import (
    OPEN_END,
    READ_MODEL_FORMAT,
    UNRECORDED_FORMAT,
    AccessPolicyEntry,
    AuditEntry,
    AuditScope,
    ChangeFeedEntry,
    GenerationFormatError,
    IssueFilter,
    IssueResolution,
    Observation,
    OfficialVersion,
    ProjectionBatch,
    QualityIssue,
    QualityMetrics,
    ResumeToken,
    SeriesEntry,
    VersionClosure,
)
from qis_domain.decisions import issue_id

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Adapter, Backend

T0 = 1_700_000_000_000_000  # a snap, µs since the epoch
MINUTE = 60_000_000
EVERYTHING = (0, 2**62)  # a snap range covering all test data


def price(text: str) -> bytes:
    return DataValue(price=Price(value=text, currency="USD")).SerializeToString()


def version(
    snap: int,
    number: int,
    text: str,
    *,
    at: int,
    position: int,
    series_id: str = "S1",
    reason: str = "",
) -> OfficialVersion:
    return OfficialVersion(
        series_id=series_id,
        snap_us=snap,
        version=number,
        value=price(text),
        quality_score=0.75,
        recorded_from_us=at,
        position_from=position,
        reason=reason,
        user_id="alice",
        command_id=f"cmd-{position}",
        sources=("bbg", "lseg"),
        method="priority",
        flags=("spike",) if number > 1 else (),
    )


def closure(v: OfficialVersion, successor: OfficialVersion) -> VersionClosure:
    return VersionClosure(
        v.series_id, v.snap_us, v.version, successor.recorded_from_us, successor.position_from
    )


def closed(v: OfficialVersion, successor: OfficialVersion) -> OfficialVersion:
    return v._replace(
        recorded_to_us=successor.recorded_from_us, position_to=successor.position_from
    )


def change(v: OfficialVersion, index: int) -> ChangeFeedEntry:
    return ChangeFeedEntry(
        v.position_from,
        index,
        v.series_id,
        v.snap_us,
        v.version,
        v.value,
        v.quality_score,
        v.recorded_from_us,
        v.reason,
        v.user_id,
        v.sources,
        v.method,
        v.flags,
    )


def observation(series_id: str, snap: int, source: str, position: int, index: int) -> Observation:
    return Observation(
        series_id=series_id,
        snap_us=snap,
        source_id=source,
        value=price(f"{position}.{index}"),
        snap_offset_s=-18000,
        recorded_at_us=position * 1000,
        position=position,
        index=index,
        command_id=f"cmd-{position}",
        user_id="feed",
        flags=("stale",) if index % 2 else (),
    )


def audit(
    position: int, index: int, series_id: str, snap: int | None, source_id: str = ""
) -> AuditEntry:
    """An entry about a series (its point `snap` when given), or about the source `source_id`
    (series_id "")."""
    action = "DataSourceConfigured" if source_id else "SchemaEvolved"
    return AuditEntry(
        position=position,
        index=index,
        recorded_at_us=position * 1000,
        series_id=series_id,
        snap_us=snap,
        action="DataPublished" if snap is not None else action,
        user_id="alice",
        command_id=f"cmd-{position}",
        details={"n": index, "nested": {"ok": True, "list": [1, "two"]}},
        source_id=source_id,
    )


def of_series(series_id: str, snap_us: int | None = None) -> AuditScope:
    return AuditScope(series_id=series_id, snap_us=snap_us)


def issue(issue_id: str, position: int, **overrides: object) -> QualityIssue:
    fields: dict[str, object] = {
        "series_id": "S1",
        "snap_us": T0,
        "rule": "spike",
        "severity": "warning",
        "evidence": {"previous": "100.00", "jump_pct": "12.5"},
        "status": "open",
        "raised_at_us": position * 1000,
        "source_id": "bbg",
    }
    fields.update(overrides)
    return QualityIssue(issue_id=issue_id, position=position, **fields)  # type: ignore[arg-type]


def series(series_id: str, schema_version: int, position: int, unit: str = "USD") -> SeriesEntry:
    return SeriesEntry(
        series_id=series_id,
        schema_version=schema_version,
        definition={"series_id": series_id, "unit": unit, "sources": ["bbg", "lseg"]},
        updated_at_us=position * 1000,
        position=position,
    )


def metric(
    start: int,
    position: int,
    accuracy: float = 0.5,
    completeness: float | None = 0.5,
    missing: tuple[str, ...] = ("2023-11-14", "2023-11-16"),
    uncovered_days: int = 0,
) -> QualityMetrics:
    return QualityMetrics(
        "S1",
        start,
        start + MINUTE,
        accuracy,
        completeness,
        0.25,
        0.75,
        position,
        position,
        expected_snaps=4,
        received_snaps=4 - len(missing),
        missing_sessions=missing,
        uncovered_days=uncovered_days,
    )


# The restatement scenario most tests read: five snaps published at position 10 (time 1000),
# snap 2 restated at position 20 (time 2000) and again at position 30 (time 3000).
SNAPS = [T0 + i * MINUTE for i in range(5)]
V1 = [version(s, 1, f"10{i}.00", at=1000, position=10) for i, s in enumerate(SNAPS)]
V2 = version(SNAPS[2], 2, "202.00", at=2000, position=20, reason="vendor correction")
V3 = version(SNAPS[2], 3, "203.00", at=3000, position=30, reason="second correction")
BATCH_1 = ProjectionBatch(
    versions=V1,
    changes=[change(v, i) for i, v in enumerate(V1)],
    observations=[observation("S1", s, "bbg", 10, i) for i, s in enumerate(SNAPS)],
    audit=[audit(10, i, "S1", s) for i, s in enumerate(SNAPS)],
)
BATCH_2 = ProjectionBatch(versions=[V2], closures=[closure(V1[2], V2)], changes=[change(V2, 0)])
BATCH_3 = ProjectionBatch(versions=[V3], closures=[closure(V2, V3)], changes=[change(V3, 0)])


async def restated(store: Adapter) -> None:
    await store.apply(BATCH_1, 10)
    await store.apply(BATCH_2, 20)
    await store.apply(BATCH_3, 30)


async def test_latest_range_is_current_highest_version(store: Adapter) -> None:
    await restated(store)
    latest = await store.latest_range("S1", *EVERYTHING, 100)
    assert latest == [V1[0], V1[1], V3, V1[3], V1[4]]


async def test_latest_range_boundaries_are_start_inclusive_end_exclusive(store: Adapter) -> None:
    await store.apply(BATCH_1, 10)
    assert await store.latest_range("S1", SNAPS[1], SNAPS[3], 100) == V1[1:3]
    assert await store.latest_range("S1", SNAPS[1] + 1, SNAPS[3] + 1, 100) == V1[2:4]
    assert await store.latest_range("S1", SNAPS[1], SNAPS[1], 100) == []


async def test_current_ignores_versions_arriving_out_of_order(store: Adapter) -> None:
    # Higher versions first, in one batch and across batches: the current record never regresses.
    await store.apply(ProjectionBatch(versions=[V3, V2, V1[2]]), 30)
    assert await store.latest_range("S1", *EVERYTHING, 100) == [V3]
    await store.apply(ProjectionBatch(versions=[V2]), 31)
    await store.apply(BATCH_1, 32)
    assert (await store.latest_range("S1", *EVERYTHING, 100))[2] == V3
    assert [v.version for v in await store.history("S1", SNAPS[2])] == [1, 2, 3]


async def test_replayed_older_batch_does_not_regress_current(store: Adapter) -> None:
    await restated(store)
    await store.apply(BATCH_2, 20)  # a restart replaying an old suffix of the log
    assert (await store.latest_range("S1", *EVERYTHING, 100))[2] == V3


async def test_as_of_time_sees_the_version_known_then(store: Adapter) -> None:
    await restated(store)

    async def snap2_known_at(t: int) -> list[OfficialVersion]:
        return await store.as_of_time_range("S1", SNAPS[2], SNAPS[3], t, 100)

    assert await snap2_known_at(999) == []  # before the first publication
    assert await snap2_known_at(1000) == [closed(V1[2], V2)]  # recorded_from is inclusive
    assert await snap2_known_at(1999) == [closed(V1[2], V2)]
    assert await snap2_known_at(2000) == [closed(V2, V3)]  # recorded_to is exclusive
    assert await snap2_known_at(3000) == [V3]
    assert await snap2_known_at(OPEN_END - 1) == [V3]
    whole = await store.as_of_time_range("S1", *EVERYTHING, 2500, 100)
    assert whole == [V1[0], V1[1], closed(V2, V3), V1[3], V1[4]]


async def test_as_of_position_sees_the_version_current_then(store: Adapter) -> None:
    await restated(store)

    async def snap2_at(position: int) -> list[OfficialVersion]:
        return await store.as_of_position_range("S1", SNAPS[2], SNAPS[3], position, 100)

    assert await snap2_at(9) == []
    assert await snap2_at(10) == [closed(V1[2], V2)]
    assert await snap2_at(19) == [closed(V1[2], V2)]
    assert await snap2_at(20) == [closed(V2, V3)]
    assert await snap2_at(29) == [closed(V2, V3)]
    assert await snap2_at(30) == [V3]
    assert [v.snap_us for v in await store.as_of_position_range("S1", *EVERYTHING, 25, 3)] == (
        SNAPS[:3]
    )


async def test_history_lists_versions_with_their_closures(store: Adapter) -> None:
    await restated(store)
    assert await store.history("S1", SNAPS[2]) == [closed(V1[2], V2), closed(V2, V3), V3]
    assert await store.history("S1", SNAPS[0]) == [V1[0]]
    assert await store.history("S1", SNAPS[0] + 1) == []
    assert await store.history("S2", SNAPS[0]) == []


async def test_closure_in_the_same_batch_as_its_version(store: Adapter) -> None:
    await store.apply(ProjectionBatch(versions=[V1[2], V2], closures=[closure(V1[2], V2)]), 20)
    assert await store.history("S1", SNAPS[2]) == [closed(V1[2], V2), V2]
    assert await store.latest_range("S1", *EVERYTHING, 10) == [V2]


def full_batch() -> ProjectionBatch:
    """One of everything, with keys repeated inside the batch where the port allows it."""
    return ProjectionBatch(
        versions=[*V1, V2],
        closures=[closure(V1[2], V2)],
        observations=[observation("S1", s, "bbg", 10, i) for i, s in enumerate(SNAPS)],
        issues=[issue("I1", 10), issue("I1", 11, status="approved", resolved_by="bob")],
        audit=[audit(10, 0, "S1", SNAPS[0]), audit(11, 0, "S1", None)],
        changes=[change(v, i) for i, v in enumerate([*V1, V2])],
        series=[series("S1", 1, 10), series("S1", 2, 11)],
        metrics=[metric(T0, 10), metric(T0, 11, accuracy=0.75)],
    )


async def test_replaying_batches_changes_nothing(store: Adapter) -> None:
    first, second = full_batch(), BATCH_3
    await store.apply(first, 20)
    await store.apply(second, 30)
    expected = await store.dump_all()
    assert expected["checkpoint"] == 30
    for kind in ("versions", "current", "observations", "audit", "changes", "issues"):
        assert expected[kind], kind  # the dump really covers every kind
    assert expected["series"] == [series("S1", 2, 11)]
    assert expected["metrics"] == [metric(T0, 11, accuracy=0.75)]

    await store.apply(second, 30)  # the same batch again
    assert await store.dump_all() == expected
    await store.apply(first, 20)  # a restart from an older checkpoint replays the whole suffix
    await store.apply(second, 30)
    assert await store.dump_all() == expected


async def test_a_batch_of_more_than_a_hundred_points_and_its_replay(store: Adapter) -> None:
    # A replay is more than 100 writes that meet stored documents in one batch (for more than
    # 100 matching updates, see the MongoDB tests: FerretDB v1 hangs on them in one command).
    versions = [version(T0 + i * MINUTE, 1, "1.00", at=1000, position=10) for i in range(101)]
    batch = ProjectionBatch(versions=versions)
    await asyncio.wait_for(store.apply(batch, 10), timeout=30)
    await asyncio.wait_for(store.apply(batch, 10), timeout=30)
    assert await store.latest_range("S1", *EVERYTHING, 1000) == versions


async def test_checkpoint_is_written_and_read(backend: Backend) -> None:
    writer = await backend.open("g1")
    assert await writer.checkpoint() is None
    await writer.apply(ProjectionBatch(), 7)  # an empty batch still moves the checkpoint
    assert await writer.checkpoint() == 7
    await writer.apply(BATCH_1, 12)
    assert await writer.checkpoint() == 12
    reader = await backend.open(None)
    assert await reader.checkpoint() is None  # nothing is active yet
    await writer.set_active_generation("g1")
    assert await _eventually(reader.checkpoint, 12)


async def _eventually(
    read: Callable[[], Awaitable[object]], expected: object, within_s: float = 1.5
) -> bool:
    """True once `await read()` returns `expected`: readers may cache the active pointer ~1 s."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await read() == expected:
            return True
        await asyncio.sleep(0.05)
    return bool(await read() == expected)


async def test_change_feed_is_strictly_after_the_token(store: Adapter) -> None:
    await restated(store)
    feed = await store.changes_after(ResumeToken(-1, -1), [], 100)
    assert feed == [*BATCH_1.changes, *BATCH_2.changes, *BATCH_3.changes]
    assert await store.changes_after(ResumeToken(10, 2), [], 100) == feed[3:]
    assert await store.changes_after(ResumeToken(10, 4), [], 100) == feed[5:]
    assert await store.changes_after(ResumeToken(15, 0), [], 100) == feed[5:]
    assert await store.changes_after(ResumeToken(30, 0), [], 100) == []

    # Paging with the last token read rebuilds the feed exactly, without gaps or repeats.
    paged: list[ChangeFeedEntry] = []
    token = ResumeToken(-1, -1)
    while page := await store.changes_after(token, [], 2):
        assert len(page) <= 2
        paged += page
        token = ResumeToken(page[-1].position, page[-1].index)
    assert paged == feed


async def test_change_feed_filters_by_series(store: Adapter) -> None:
    s2 = [version(s, 1, "1.00", at=1500, position=15, series_id="S2") for s in SNAPS[:2]]
    s3 = version(SNAPS[0], 1, "3.00", at=1600, position=16, series_id="S3")
    await store.apply(BATCH_1, 10)
    await store.apply(
        ProjectionBatch(
            versions=[*s2, s3], changes=[change(s2[0], 0), change(s2[1], 1), change(s3, 2)]
        ),
        16,
    )
    await store.apply(BATCH_2, 20)
    start = ResumeToken(10, 4)
    only_s2 = await store.changes_after(start, ["S2"], 100)
    assert [(c.series_id, c.position, c.index) for c in only_s2] == [("S2", 15, 0), ("S2", 15, 1)]
    both = await store.changes_after(start, ["S1", "S3"], 100)
    assert [(c.series_id, c.position, c.index) for c in both] == [("S3", 16, 2), ("S1", 20, 0)]
    assert await store.changes_after(ResumeToken(15, 0), ["S2"], 100) == only_s2[1:]
    assert await store.changes_after(start, ["S1", "S3"], 1) == both[:1]
    assert await store.changes_after(start, ["nope"], 100) == []


async def test_feeds_stop_at_the_checkpoint(store: Adapter) -> None:
    # Entries above the checkpoint belong to a batch that may still be half-written (MongoDB has
    # no transactions): paging past them could skip the missing ones forever.
    batch = ProjectionBatch(
        changes=[change(V1[0], 0), change(V2, 0)],
        audit=[audit(10, 0, "S1", SNAPS[0]), audit(20, 0, "S1", SNAPS[0])],
    )
    await store.apply(batch, 15)
    assert await store.changes_after(ResumeToken(-1, -1), [], 10) == batch.changes[:1]
    assert await store.changes_after(ResumeToken(-1, -1), ["S1"], 10) == batch.changes[:1]
    assert await store.audit_trail(of_series("S1"), None, 10) == batch.audit[:1]
    assert await store.audit_trail(of_series("S1", SNAPS[0]), None, 10) == batch.audit[:1]
    assert await store.audit_trail(AuditScope(), None, 10) == batch.audit[:1]
    await store.apply(ProjectionBatch(), 20)
    assert await store.changes_after(ResumeToken(-1, -1), [], 10) == batch.changes
    assert await store.audit_trail(of_series("S1", SNAPS[0]), None, 10) == batch.audit


async def test_audit_trail_of_a_series_and_of_a_point_with_pagination(store: Adapter) -> None:
    entries = [
        audit(10, 0, "S1", SNAPS[0]),
        audit(10, 1, "S1", SNAPS[1]),
        audit(11, 0, "S1", None),
        audit(12, 0, "S2", SNAPS[0]),
        audit(13, 0, "S1", SNAPS[0]),
        audit(13, 1, "S1", SNAPS[0]),
    ]
    await store.apply(ProjectionBatch(audit=entries), 13)
    s1 = [e for e in entries if e.series_id == "S1"]
    assert await store.audit_trail(of_series("S1"), None, 100) == s1
    assert await store.audit_trail(of_series("S1"), ResumeToken(10, 1), 100) == s1[2:]
    assert await store.audit_trail(of_series("S1"), None, 2) == s1[:2]
    point = [entries[0], entries[4], entries[5]]
    assert await store.audit_trail(of_series("S1", SNAPS[0]), None, 100) == point
    page1 = await store.audit_trail(of_series("S1", SNAPS[0]), None, 2)
    assert page1 == point[:2]
    after = ResumeToken(page1[-1].position, page1[-1].index)
    assert await store.audit_trail(of_series("S1", SNAPS[0]), after, 2) == point[2:]
    assert await store.audit_trail(of_series("S1", SNAPS[0]), ResumeToken(13, 1), 2) == []
    assert await store.audit_trail(of_series("S2"), None, 100) == [entries[3]]
    assert await store.audit_trail(of_series("S1", SNAPS[3]), None, 100) == []


async def test_audit_trail_of_a_source_and_of_everything_with_pagination(
    store: Adapter,
) -> None:
    entries = [
        audit(10, 0, "", None, source_id="bbg"),
        audit(11, 0, "S1", None),
        audit(12, 0, "", None, source_id="lseg"),
        audit(12, 1, "S1", SNAPS[0]),
        audit(13, 0, "", None, source_id="bbg"),
    ]
    await store.apply(ProjectionBatch(audit=entries[::-1]), 13)
    bbg = AuditScope(source_id="bbg")
    assert await store.audit_trail(bbg, None, 100) == [entries[0], entries[4]]
    assert await store.audit_trail(bbg, None, 1) == [entries[0]]
    assert await store.audit_trail(bbg, ResumeToken(10, 0), 1) == [entries[4]]
    assert await store.audit_trail(AuditScope(source_id="nope"), None, 100) == []
    # A source's entries are no series' entries, and a series' none of a source's.
    assert await store.audit_trail(of_series("S1"), None, 100) == [entries[1], entries[3]]
    everything = AuditScope()
    assert await store.audit_trail(everything, None, 100) == entries
    assert await store.audit_trail(everything, None, 2) == entries[:2]
    assert await store.audit_trail(everything, ResumeToken(12, 0), 100) == entries[3:]
    assert await store.audit_trail(everything, ResumeToken(13, 0), 100) == []


async def test_an_entry_about_another_resource_keeps_its_name(store: Adapter) -> None:
    about_policy = dataclasses.replace(
        audit(11, 0, "", None), action="AccessPolicyAdded", resource="accessPolicies/ops"
    )
    entries = [audit(10, 0, "S1", None), about_policy, audit(12, 0, "", None, source_id="bbg")]
    await store.apply(ProjectionBatch(audit=entries), 12)
    assert await store.audit_trail(AuditScope(), None, 100) == entries
    # Neither a series' nor a source's entry; theirs keep an empty resource.
    assert await store.audit_trail(of_series("S1"), None, 100) == entries[:1]
    assert await store.audit_trail(AuditScope(source_id="bbg"), None, 100) == entries[2:]
    assert [e.resource for e in await store.audit_trail(AuditScope(), None, 100)] == [
        "",
        "accessPolicies/ops",
        "",
    ]


def test_an_audit_scope_is_a_series_or_a_source() -> None:
    with pytest.raises(ValueError, match="not both"):
        AuditScope(series_id="S1", source_id="bbg")
    with pytest.raises(ValueError, match="within a series"):
        AuditScope(source_id="bbg", snap_us=T0)


async def test_observations_of_a_point_in_log_order(store: Adapter) -> None:
    lineage = [
        observation("S1", SNAPS[0], "lseg", 12, 3),
        observation("S1", SNAPS[0], "bbg", 11, 0),
        observation("S1", SNAPS[1], "bbg", 11, 1),
        observation("S1", SNAPS[0], "bbg", 12, 0),
        observation("S2", SNAPS[0], "bbg", 12, 1),
    ]
    await store.apply(ProjectionBatch(observations=lineage), 12)
    assert await store.observations("S1", SNAPS[0]) == [lineage[1], lineage[3], lineage[0]]
    assert await store.observations("S2", SNAPS[0]) == [lineage[4]]
    assert await store.observations("S1", SNAPS[2]) == []


async def test_issues_upsert_by_id_and_keep_the_newest(store: Adapter) -> None:
    await store.apply(ProjectionBatch(issues=[issue("I1", 10)]), 10)
    approved = issue(
        "I1",
        12,
        status="approved",
        resolved_by="bob",
        resolution_reason="ok",
        resolved_at_us=12_500,
    )
    await store.apply(ProjectionBatch(issues=[approved]), 12)
    assert await store.list_issues(IssueFilter(), "", 10) == [approved]
    await store.apply(ProjectionBatch(issues=[issue("I1", 10)]), 10)  # a replay of the old write
    assert await store.list_issues(IssueFilter(), "", 10) == [approved]
    assert await store.list_issues(IssueFilter(status="open"), "", 10) == []


async def test_a_resolution_closes_its_issue_and_a_replay_never_reopens_it(store: Adapter) -> None:
    resolved = IssueResolution("S1", "I1", "approved", "bob", "vendor confirmed", 15_000, 15)
    # raised and resolved in one batch: the resolution applies after the issue
    await store.apply(ProjectionBatch(issues=[issue("I1", 10)], resolutions=[resolved]), 15)
    expected = issue(
        "I1",
        15,
        status="approved",
        resolved_by="bob",
        resolution_reason="vendor confirmed",
        resolved_at_us=15_000,
        raised_at_us=10_000,
    )
    assert await store.list_issues(IssueFilter(), "", 10) == [expected]
    for replay in (
        ProjectionBatch(issues=[issue("I1", 10)]),  # the raise alone, after a crash
        ProjectionBatch(resolutions=[resolved]),  # the resolution alone
        ProjectionBatch(issues=[issue("I1", 10)], resolutions=[resolved]),
    ):
        await store.apply(replay, 15)
        assert await store.list_issues(IssueFilter(), "", 10) == [expected]
    assert await store.list_issues(IssueFilter(status="open"), "", 10) == []


async def test_a_retraction_by_the_system_closes_its_issue_apart_from_a_persons(
    store: Adapter,
) -> None:
    """QualityRetracted projects as a resolution of its own status: out of the open queue,
    found by `status = RETRACTED`, with the reason the system gave."""
    retracted = IssueResolution(
        "S1", "I1", "retracted", "feed", "look-back judged again", 15_000, 15
    )
    approved = IssueResolution("S1", "I2", "approved", "bob", "fine", 16_000, 16)
    batch = ProjectionBatch(issues=[issue("I1", 10), issue("I2", 11)], resolutions=[retracted])
    await store.apply(batch, 15)
    await store.apply(ProjectionBatch(resolutions=[approved]), 16)
    assert await store.list_issues(IssueFilter(status="open"), "", 10) == []
    [found] = await store.list_issues(IssueFilter(status="retracted"), "", 10)
    assert (found.issue_id, found.resolution_reason) == ("I1", "look-back judged again")
    [person] = await store.list_issues(IssueFilter(status="approved"), "", 10)
    assert person.issue_id == "I2"


async def test_issue_filters_and_pagination(store: Adapter) -> None:
    issues = [
        issue("I1", 10),
        issue("I2", 11, severity="error"),
        issue("I3", 12, rule="stale", series_id="S2"),
        issue("I4", 13, status="rejected"),
        issue("I5", 14, rule="stale"),
    ]
    await store.apply(ProjectionBatch(issues=issues), 14)

    async def ids(
        f: IssueFilter, after: str = "", limit: int = 100, after_series: str = ""
    ) -> list[str]:
        found = await store.list_issues(f, after, limit, after_series_id=after_series)
        return [i.issue_id for i in found]

    # Every series: by (series_id, issue_id).
    assert await ids(IssueFilter()) == ["I1", "I2", "I4", "I5", "I3"]
    assert await ids(IssueFilter(status="open")) == ["I1", "I2", "I5", "I3"]
    assert await ids(IssueFilter(status="rejected")) == ["I4"]
    assert await ids(IssueFilter(series_id="S2")) == ["I3"]
    assert await ids(IssueFilter(series_id="S1")) == ["I1", "I2", "I4", "I5"]
    assert await ids(IssueFilter(series_id="S1", status="open")) == ["I1", "I2", "I5"]
    assert await ids(IssueFilter(series_id="S2", status="rejected")) == []
    assert await ids(IssueFilter(), limit=2) == ["I1", "I2"]
    assert await ids(IssueFilter(), after="I2", limit=2, after_series="S1") == ["I4", "I5"]
    assert await ids(IssueFilter(), after="I5", limit=2, after_series="S1") == ["I3"]
    assert await ids(IssueFilter(), after_series="S2") == ["I3"]  # from the start of S2
    assert await ids(IssueFilter(), after="I3", after_series="S2") == []
    # One series: by issue_id after the issue id alone (a series in the key changes nothing).
    assert await ids(IssueFilter(series_id="S1"), after="I2", limit=2) == ["I4", "I5"]
    assert await ids(IssueFilter(series_id="S1"), after="I2", after_series="S9") == ["I4", "I5"]
    assert await ids(IssueFilter(series_id="S1"), after="I5") == []
    assert (await store.list_issues(IssueFilter(), "", 1)) == [issues[0]]
    assert await store.list_issues(IssueFilter(), "", 0) == []


async def test_issues_of_two_series_with_the_same_id_are_kept_apart(store: Adapter) -> None:
    # Issue ids are unique within a series only: the same command id, snap, source and rule in
    # two series give the same id.
    same = issue_id("cmd-1", T0, "bbg", "jump")
    assert same == issue_id("cmd-1", T0, "bbg", "jump")
    s1 = issue(same, 10, rule="jump", evidence={"previous": "100.00"})
    s2 = issue(same, 10, rule="jump", series_id="S2", evidence={"previous": "7.00"})
    await store.apply(ProjectionBatch(issues=[s2, s1]), 10)  # one batch holds both
    assert await store.list_issues(IssueFilter(), "", 10) == [s1, s2]
    assert await store.list_issues(IssueFilter(series_id="S1"), "", 10) == [s1]
    assert await store.list_issues(IssueFilter(series_id="S2"), "", 10) == [s2]

    # Resolving the issue of S1 leaves the one of S2 open, and the other way round.
    rejected = IssueResolution("S1", same, "rejected", "bob", "bad print", 15_000, 15)
    await store.apply(ProjectionBatch(resolutions=[rejected]), 15)
    s1_rejected = dataclasses.replace(
        s1,
        status="rejected",
        resolved_by="bob",
        resolution_reason="bad print",
        resolved_at_us=15_000,
        position=15,
    )
    assert await store.list_issues(IssueFilter(), "", 10) == [s1_rejected, s2]
    assert await store.list_issues(IssueFilter(status="open"), "", 10) == [s2]
    assert await store.list_issues(IssueFilter(status="rejected"), "", 10) == [s1_rejected]
    approved = IssueResolution("S2", same, "approved", "carol", "fine", 16_000, 16)
    await store.apply(ProjectionBatch(resolutions=[approved]), 16)
    s2_approved = dataclasses.replace(
        s2,
        status="approved",
        resolved_by="carol",
        resolution_reason="fine",
        resolved_at_us=16_000,
        position=16,
    )
    assert await store.list_issues(IssueFilter(), "", 10) == [s1_rejected, s2_approved]

    # A replay of the raises and resolutions reopens neither nor mixes them up.
    await store.apply(ProjectionBatch(issues=[s1, s2], resolutions=[rejected, approved]), 16)
    assert await store.list_issues(IssueFilter(), "", 10) == [s1_rejected, s2_approved]
    assert (await store.dump_all())["issues"] == [s1_rejected, s2_approved]
    # A resolution naming a series the issue is not in changes nothing.
    stray = IssueResolution("S3", same, "overridden", "eve", "wrong series", 17_000, 17)
    await store.apply(ProjectionBatch(resolutions=[stray]), 17)
    assert await store.list_issues(IssueFilter(), "", 10) == [s1_rejected, s2_approved]


# Issues of three series whose ids repeat across series and are out of order between them.
SHARED_ISSUES = [
    issue("I2", 10, series_id="B"),
    issue("I1", 11, series_id="C", status="approved"),
    issue("I3", 12, series_id="A"),
    issue("I1", 13, series_id="A", status="rejected"),
    issue("I2", 14, series_id="A"),
    issue("I1", 15, series_id="B"),
    issue("I4", 16, series_id="B", status="rejected"),
    issue("I0", 17, series_id="C"),
]


@pytest.mark.parametrize("status", ["", "open", "rejected", "approved"])
async def test_every_series_pages_in_series_then_issue_order(store: Adapter, status: str) -> None:
    await store.apply(ProjectionBatch(issues=SHARED_ISSUES), 17)
    expected = sorted(
        (i for i in SHARED_ISSUES if not status or i.status == status),
        key=lambda i: (i.series_id, i.issue_id),
    )
    f = IssueFilter(status=status)
    assert await store.list_issues(f, "", 100) == expected
    for size in range(1, len(expected) + 2):
        paged: list[QualityIssue] = []
        after_series, after_issue = "", ""
        while True:
            page = await store.list_issues(f, after_issue, size, after_series_id=after_series)
            assert len(page) <= size
            paged += page
            if len(page) < size:
                break
            after_series, after_issue = page[-1].series_id, page[-1].issue_id
        assert paged == expected, size  # nothing lost, nothing twice


@pytest.mark.parametrize("series_id", ["A", "B", "C"])
async def test_one_series_pages_in_issue_order(store: Adapter, series_id: str) -> None:
    await store.apply(ProjectionBatch(issues=SHARED_ISSUES), 17)
    expected = sorted(
        (i for i in SHARED_ISSUES if i.series_id == series_id), key=lambda i: i.issue_id
    )
    f = IssueFilter(series_id=series_id)
    for size in range(1, len(expected) + 2):
        paged: list[QualityIssue] = []
        after = ""
        while page := await store.list_issues(f, after, size):  # the issue id is the whole key
            assert len(page) <= size
            paged += page
            after = page[-1].issue_id
        assert paged == expected, size


async def test_a_page_of_every_series_needs_the_series_of_its_key(store: Adapter) -> None:
    await store.apply(ProjectionBatch(issues=SHARED_ISSUES), 17)
    # "I1" alone names an issue of A, B and C: where the last page ended is unknown.
    with pytest.raises(ValueError, match="after_series_id"):
        await store.list_issues(IssueFilter(), "I1", 10)
    with pytest.raises(ValueError, match="after_series_id"):
        await store.list_issues(IssueFilter(status="open"), "I1", 10)


async def test_catalogue_pagination_and_schema_versions(store: Adapter) -> None:
    await store.apply(ProjectionBatch(series=[series(s, 1, 10) for s in ("C", "A", "B", "D")]), 10)
    assert [s.series_id for s in await store.list_series("", 100)] == ["A", "B", "C", "D"]
    assert [s.series_id for s in await store.list_series("", 2)] == ["A", "B"]
    assert [s.series_id for s in await store.list_series("B", 2)] == ["C", "D"]
    assert await store.list_series("D", 2) == []

    await store.apply(ProjectionBatch(series=[series("A", 3, 11, unit="EUR")]), 11)
    await store.apply(ProjectionBatch(series=[series("A", 2, 12, unit="GBP")]), 12)  # lower: kept
    assert await store.get_series("A") == series("A", 3, 11, unit="EUR")
    await store.apply(ProjectionBatch(series=[series("A", 3, 13, unit="CHF")]), 13)  # equal: wins
    assert await store.get_series("A") == series("A", 3, 13, unit="CHF")
    await store.apply(ProjectionBatch(series=[series("A", 3, 11, unit="EUR")]), 11)  # replay
    assert await store.get_series("A") == series("A", 3, 13, unit="CHF")
    assert await store.get_series("nope") is None


async def test_metrics_by_window_start(store: Adapter) -> None:
    windows = [metric(T0 + i * MINUTE, 10 + i) for i in range(4)]
    await store.apply(ProjectionBatch(metrics=windows[::-1]), 13)
    assert await store.metrics("S1", T0 + MINUTE, T0 + 3 * MINUTE) == windows[1:3]
    assert await store.metrics("S1", *EVERYTHING) == windows
    recalculated = metric(T0, 20, accuracy=1.0)
    await store.apply(ProjectionBatch(metrics=[recalculated]), 20)
    await store.apply(ProjectionBatch(metrics=[windows[0]]), 13)  # replay of the older value
    assert (await store.metrics("S1", *EVERYTHING))[0] == recalculated
    assert await store.metrics("S2", *EVERYTHING) == []


async def test_metrics_of_unknown_completeness_and_recalculations_in_both_directions(
    store: Adapter,
) -> None:
    # A window partly outside the calendar's coverage: completeness unknown, never a number.
    unknown = metric(T0, 10, completeness=None, missing=("2023-11-14",), uncovered_days=3)
    await store.apply(ProjectionBatch(metrics=[unknown]), 10)
    assert await store.metrics("S1", *EVERYTHING) == [unknown]
    # Each recalculation replaces every field, including one the newer record leaves empty.
    complete = metric(T0, 20, completeness=1.0, missing=())
    await store.apply(ProjectionBatch(metrics=[complete]), 20)
    assert await store.metrics("S1", *EVERYTHING) == [complete]
    unknown_again = metric(T0, 30, completeness=None, missing=("2023-11-15",), uncovered_days=1)
    await store.apply(ProjectionBatch(metrics=[unknown_again]), 30)
    assert await store.metrics("S1", *EVERYTHING) == [unknown_again]


async def test_a_higher_version_without_flags_clears_them_from_the_current_record(
    store: Adapter,
) -> None:
    flagged, clean = V2, V3._replace(flags=())
    await store.apply(ProjectionBatch(versions=[flagged]), 20)
    await store.apply(ProjectionBatch(versions=[clean]), 30)
    assert await store.latest_range("S1", *EVERYTHING, 10) == [clean]


async def test_rebuild_into_a_new_generation_and_switch(backend: Backend) -> None:
    g1 = await backend.open("g1")
    reader = await backend.open(None)
    assert await reader.active_generation() is None
    assert await reader.latest_range("S1", *EVERYTHING, 100) == []  # nothing active: empty
    await g1.apply(BATCH_1, 10)
    await g1.set_active_generation("g1")
    assert await reader.active_generation() == "g1"
    assert await _eventually(lambda: reader.latest_range("S1", *EVERYTHING, 100), V1)

    g2 = await backend.open("g2")  # the rebuild, while queries keep reading g1
    await g2.apply(BATCH_1, 10)
    await g2.apply(BATCH_2, 20)
    assert sorted(await reader.list_generations()) == ["g1", "g2"]
    assert await reader.latest_range("S1", *EVERYTHING, 100) == V1
    assert await g2.checkpoint() == 20
    assert await g1.checkpoint() == 10

    await g2.set_active_generation("g2")
    started = time.monotonic()
    expected = [V1[0], V1[1], V2, V1[3], V1[4]]
    assert await _eventually(lambda: reader.latest_range("S1", *EVERYTHING, 100), expected)
    assert time.monotonic() - started < 1.5  # the switch is seen within about a second
    assert await reader.checkpoint() == 20

    with pytest.raises(ValueError, match="active"):
        await reader.drop_generation("g2")
    await reader.drop_generation("g1")
    assert await reader.list_generations() == ["g2"]
    assert await reader.latest_range("S1", *EVERYTHING, 100) == expected
    with pytest.raises(ValueError, match="unknown"):
        await reader.set_active_generation("g1")


async def test_any_generation_checkpoint_is_read_by_name(backend: Backend) -> None:
    """Whichever generation is active and whichever a store writes: a rebuild reads the active
    one's from its own writer before it switches."""
    g1 = await backend.open("g1")
    g2 = await backend.open("g2")
    reader = await backend.open(None)
    assert await reader.generation_checkpoint("g1") is None  # created, nothing applied
    await g1.apply(BATCH_1, 10)
    await g1.set_active_generation("g1")
    await g2.apply(BATCH_1, 7)
    for store in (reader, g1, g2):
        assert [
            await store.generation_checkpoint("g1"),
            await store.generation_checkpoint("g2"),
        ] == [10, 7]
    await g1.apply(BATCH_2, 20)
    assert await g2.generation_checkpoint("g1") == 20  # read afresh, not remembered
    with pytest.raises(ValueError, match="unknown"):
        await reader.generation_checkpoint("g9")


async def test_a_generation_records_the_format_it_was_built_with(backend: Backend) -> None:
    g1 = await backend.open("g1")
    await g1.apply(BATCH_1, 10)
    await g1.set_active_generation("g1")
    reader = await backend.open(None)
    assert await reader.generation_format("g1") == READ_MODEL_FORMAT
    with pytest.raises(ValueError, match="unknown"):
        await reader.generation_format("g9")
    reopened = await backend.open("g1")  # a writer of a generation of the current format
    assert await reopened.checkpoint() == 10

    await backend.unrecord("g1")  # as if built before formats were recorded
    assert await reader.generation_format("g1") == UNRECORDED_FORMAT
    # Readers read it on (the query service, until a rebuild switches); writers refuse it.
    assert await reader.latest_range("S1", *EVERYTHING, 100) == V1
    with pytest.raises(GenerationFormatError, match="format 1"):
        await backend.open("g1")
    assert await reader.generation_format("g1") == UNRECORDED_FORMAT  # the refusal wrote none
    assert await reader.latest_range("S1", *EVERYTHING, 100) == V1

    g2 = await backend.open("g2")  # the rebuild
    assert await reader.generation_format("g2") == READ_MODEL_FORMAT
    await g2.set_active_generation("g2")
    await reader.drop_generation("g1")
    assert await reader.list_generations() == ["g2"]
    await backend.open("g1")  # created anew: of the current format
    assert await reader.generation_format("g1") == READ_MODEL_FORMAT


async def test_a_reader_cannot_write(backend: Backend) -> None:
    reader = await backend.open(None)
    with pytest.raises(RuntimeError):
        await reader.apply(BATCH_1, 10)


async def test_limits_are_honoured(store: Adapter) -> None:
    await restated(store)
    everything = (*EVERYTHING, 2)
    assert len(await store.latest_range("S1", *everything)) == 2
    assert len(await store.as_of_time_range("S1", *EVERYTHING, 2500, 2)) == 2
    assert len(await store.as_of_position_range("S1", *EVERYTHING, 25, 2)) == 2
    assert len(await store.changes_after(ResumeToken(-1, -1), [], 2)) == 2
    assert len(await store.audit_trail(of_series("S1"), None, 2)) == 2
    assert len(await store.audit_trail(AuditScope(), None, 2)) == 2
    assert await store.latest_range("S1", *EVERYTHING, 0) == []
    assert await store.changes_after(ResumeToken(-1, -1), [], 0) == []


async def test_empty_store_answers_empty(store: Adapter) -> None:
    assert await store.checkpoint() is None
    assert await store.latest_range("S1", *EVERYTHING, 10) == []
    assert await store.as_of_time_range("S1", *EVERYTHING, 1, 10) == []
    assert await store.as_of_position_range("S1", *EVERYTHING, 1, 10) == []
    assert await store.history("S1", T0) == []
    assert await store.observations("S1", T0) == []
    assert await store.changes_after(ResumeToken(-1, -1), ["S1"], 10) == []
    assert await store.audit_trail(of_series("S1", T0), None, 10) == []
    assert await store.audit_trail(AuditScope(), None, 10) == []
    assert await store.list_series("", 10) == []
    assert await store.get_series("S1") is None
    assert await store.list_issues(IssueFilter(), "", 10) == []
    assert await store.metrics("S1", *EVERYTHING) == []
    assert await store.access_policies() == []


def policy_entry(
    policy_id: str, revision: int, position: int, *, deleted: bool = False
) -> AccessPolicyEntry:
    document = {
        "principals": ["role:desk", "user:é"],
        "resources": [f"series/{policy_id}.*"],
        "permissions": ["read"],
        "conditions": [{"kind": "data_classification", "max_level": "confidential"}],
        "description": f"revision {revision}",
    }
    return AccessPolicyEntry(
        policy_id=policy_id,
        revision=revision,
        stream_version=position - 10,
        updated_at_us=position * 1000,
        position=position,
        policy=None if deleted else document,
    )


async def test_policies_keep_the_latest_change_and_a_deletion(store: Adapter) -> None:
    added, changed = policy_entry("ops", 1, 11), policy_entry("ops", 2, 13)
    desk = policy_entry("desk", 1, 12)
    deleted = policy_entry("desk", 1, 14, deleted=True)
    # Two changes of one policy in a batch: the later wins, whatever order a store applies.
    await store.apply(ProjectionBatch(policies=[added, desk, changed]), 13)
    assert await store.access_policies() == [desk, changed]  # by policy id
    await store.apply(ProjectionBatch(policies=[deleted]), 14)
    assert await store.access_policies() == [deleted, changed]
    # A replay of earlier batches brings neither the deleted policy nor an old revision back.
    await store.apply(ProjectionBatch(policies=[added, desk, changed]), 13)
    assert await store.access_policies() == [deleted, changed]
    assert (await store.dump_all())["policies"] == [deleted, changed]


VALUES = [
    DataValue(price=Price(value="101.25", currency="USD")),
    DataValue(price=Price()),  # a set but empty oneof case
    DataValue(volume=Volume(quantity="1E+3", unit="shares")),
    DataValue(bar=OhlcBar(open="1", high="2.5", low="0.75", close="-0.5")),
    DataValue(
        options_chain=OptionsChain(
            underlying_price="4500.5",
            quotes=[
                OptionQuote(
                    expiry=Date(year=2025, month=3, day=21),
                    strike="4500",
                    right=OptionRight.OPTION_RIGHT_CALL,
                    bid="10.1",
                    ask="10.3",
                ),
                OptionQuote(
                    strike="4600", right=OptionRight.OPTION_RIGHT_PUT, implied_volatility="0.25"
                ),
            ],
        )
    ),
    DataValue(
        corporate_action=CorporateAction(
            type=CorporateActionType.CORPORATE_ACTION_TYPE_CASH_DIVIDEND,
            amount="0.24",
            currency="USD",
        )
    ),
]


async def test_values_round_trip_byte_exactly(store: Adapter) -> None:
    versions = [
        V1[0]._replace(snap_us=T0 + i, value=m.SerializeToString()) for i, m in enumerate(VALUES)
    ]
    await store.apply(
        ProjectionBatch(
            versions=versions,
            changes=[change(v, i) for i, v in enumerate(versions)],
            observations=[
                observation("S1", T0, "bbg", 10, i)._replace(value=v.value)
                for i, v in enumerate(versions)
            ],
        ),
        10,
    )
    stored = [v.value for v in await store.latest_range("S1", *EVERYTHING, 100)]
    assert stored == [m.SerializeToString() for m in VALUES]
    assert [c.value for c in await store.changes_after(ResumeToken(-1, -1), [], 100)] == stored
    assert [o.value for o in await store.observations("S1", T0)] == stored
    assert [h.value for h in await store.history("S1", T0 + 4)] == [stored[4]]
