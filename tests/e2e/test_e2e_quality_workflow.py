"""The data-quality workflow of docs/data-quality.md, end to end over gRPC: reconciliation
(priority waterfall with a late source, consensus with an outlier), rules that hold a point for
the exception queue (jump, positivity) and rules that only flag (stale, calendar), approve /
reject / override with the four-eyes rule, completeness against a real exchange calendar,
cut-off publication by the scheduler, and restatements reaching subscribers."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeAlias, TypeVar
from zoneinfo import ZoneInfo

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.type import date_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import quality_pb2, series_pb2, values_pb2
from qis.data.v1 import query_service_pb2 as q

from tests.e2e.harness import (
    US,
    Clients,
    Cluster,
    as_user,
    ingest_request,
    list_audit,
    list_issues,
    micros,
    point_history,
    price,
    query_all,
    rfc3339,
    setup_series,
    timestamp,
    unique,
)

pytestmark = pytest.mark.e2e

T = TypeVar("T")
Rule: TypeAlias = quality_pb2.QualityRule.ValueType
Status: TypeAlias = quality_pb2.QualityIssueStatus.ValueType
HOUR_US = 3_600 * US
# The contract's enums, for what the old string fields said ("jump", "warning", "open", ...).
JUMP, POSITIVE, STALE = (
    quality_pb2.QUALITY_RULE_JUMP,
    quality_pb2.QUALITY_RULE_POSITIVE,
    quality_pb2.QUALITY_RULE_STALE,
)
SOURCE_BREAK, CALENDAR = quality_pb2.QUALITY_RULE_SOURCE_BREAK, quality_pb2.QUALITY_RULE_CALENDAR
MISSED_CUTOFF = quality_pb2.QUALITY_RULE_MISSED_CUTOFF
WARNING, ERROR = quality_pb2.SEVERITY_WARNING, quality_pb2.SEVERITY_ERROR
OPEN, APPROVED = quality_pb2.QUALITY_ISSUE_STATUS_OPEN, quality_pb2.QUALITY_ISSUE_STATUS_APPROVED
REJECTED = quality_pb2.QUALITY_ISSUE_STATUS_REJECTED
OVERRIDDEN = quality_pb2.QUALITY_ISSUE_STATUS_OVERRIDDEN
PRIORITY, CONSENSUS, MANUAL = (
    q.VALUE_METHOD_PRIORITY,
    q.VALUE_METHOD_CONSENSUS,
    q.VALUE_METHOD_MANUAL,
)
CLOSE_HOUR_UTC = 21  # 16:00 in New York in winter (EST, UTC-5)
JAN_2024_HOLIDAYS = (date(2024, 1, 1), date(2024, 1, 15))  # New Year's Day, MLK Day


# --- small helpers ------------------------------------------------------------------------------


def close_us(day: date, hour: int = CLOSE_HOUR_UTC) -> int:
    """A daily close at `hour`:00 UTC on `day`, in µs."""
    moment = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return int(moment.timestamp()) * US


def utc_us(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * US


JANUARY = (utc_us(2024, 1, 1), utc_us(2024, 2, 1))  # a UTC month, for on-demand calculations
NEW_YORK = ZoneInfo("America/New_York")
# The scheduler's window of a daily series: the month from local midnight in its time zone.
JANUARY_IN_NEW_YORK = (
    int(datetime(2024, 1, 1, tzinfo=NEW_YORK).timestamp()) * 1_000_000,
    int(datetime(2024, 2, 1, tzinfo=NEW_YORK).timestamp()) * 1_000_000,
)


def weekdays(first: date, last: date) -> list[date]:
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [d for d in days if d.weekday() < 5]


def series_def(
    sources: Sequence[tuple[str, int]],
    *,
    method: series_pb2.ReconciliationMethod.ValueType = series_pb2.RECONCILIATION_METHOD_PRIORITY,
    tolerance_bps: str = "10",
    on_break: series_pb2.BreakAction.ValueType = series_pb2.BREAK_ACTION_FLAG,
    min_sources: int = 1,
    cutoff_s: int = 0,
    validation: series_pb2.ValidationRules | None = None,
    frequency: series_pb2.Frequency.ValueType = series_pb2.FREQUENCY_DAILY,
    calendar: str = "",
    time_zone: str = "",
    precision: int = 2,
) -> series_pb2.Series:
    return series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=frequency,
        unit="USD",
        precision=precision,
        calendar=calendar,
        time_zone=time_zone,
        sources=[series_pb2.SeriesSource(source=f"sources/{s}", priority=p) for s, p in sources],
        validation=validation or series_pb2.ValidationRules(),
        reconciliation=series_pb2.ReconciliationPolicy(
            method=method, tolerance_bps=tolerance_bps, on_break=on_break
        ),
        publication=series_pb2.PublicationPolicy(
            mode=series_pb2.PUBLICATION_MODE_AUTOMATIC,
            min_sources=min_sources,
            cutoff=duration_pb2.Duration(seconds=cutoff_s) if cutoff_s else None,
        ),
    )


async def ingest(
    c: Clients, series_id: str, source_id: str, items: Iterable[tuple[int, str]], user: str
) -> cmd.IngestPointsResponse:
    reply: cmd.IngestPointsResponse = await c.command.IngestPoints(
        ingest_request(unique("ing"), series_id, source_id, items), metadata=as_user(user)
    )
    return reply


def sources(*ids: str) -> list[str]:
    """OfficialValue.sources of values made from these sources: resource names."""
    return [f"sources/{i}" for i in ids]


async def history(
    c: Clients, series_id: str, snap_us: int, min_position: int
) -> q.GetPointHistoryResponse:
    """Every page of the point's history, merged."""
    merged, _ = await point_history(c, series_id, snap_us, min_position=min_position)
    return merged


def issue_filter(rule: Rule | None, status: Status | None) -> str:
    """The AIP-160 filter of a rule and a status (enum value names without their prefix)."""
    terms: list[str] = []
    if rule is not None:
        terms.append(f"rule = {quality_pb2.QualityRule.Name(rule).removeprefix('QUALITY_RULE_')}")
    if status is not None:
        name = quality_pb2.QualityIssueStatus.Name(status).removeprefix("QUALITY_ISSUE_STATUS_")
        terms.append(f"status = {name}")
    return " AND ".join(terms)


async def issues(
    c: Clients,
    series_id: str,
    min_position: int,
    *,
    rule: Rule | None = None,
    status: Status | None = OPEN,
) -> list[q.QualityIssue]:
    """The series' issues of `rule` (None: any rule) in `status`: the open queue unless told
    otherwise (None: every status, which is what an empty filter means)."""
    found = await list_issues(
        c, f"series/{series_id}", issue_filter(rule, status), min_position=min_position
    )
    assert {i.series for i in found} <= {f"series/{series_id}"}
    assert rule is None or {i.rule for i in found} <= {rule}
    assert status is None or {i.status for i in found} <= {status}
    return found


async def audit(
    c: Clients, series_id: str, min_position: int, snap_us: int | None = None
) -> list[q.AuditEntry]:
    """The series' audit trail, or the point's when `snap_us` is given."""
    filter_ = "" if snap_us is None else f'snap_time = "{rfc3339(snap_us)}"'
    found = await list_audit(c, f"series/{series_id}", filter_, min_position=min_position)
    assert {e.resource for e in found} <= {f"series/{series_id}"}
    assert snap_us is None or {micros(e.snap_time) for e in found} <= {snap_us}
    return found


@dataclass(frozen=True)
class Override:
    value: values_pb2.DataValue
    reason_code: str
    expire_time: timestamp_pb2.Timestamp


async def resolve(
    c: Clients,
    series_id: str,
    issue_ids: Sequence[str],
    resolution: cmd.Resolution.ValueType,
    user: str,
    reason: str,
    override: Override | None = None,
) -> cmd.CommandResponse:
    request = cmd.ResolveQualityIssuesRequest(
        command_id=unique("res"),
        series=f"series/{series_id}",
        issue_ids=issue_ids,
        resolution=resolution,
        reason=reason,
    )
    if override is not None:
        request.value.CopyFrom(override.value)
        request.reason_code = override.reason_code
        request.expire_time.CopyFrom(override.expire_time)
    reply: cmd.CommandResponse = await c.command.ResolveQualityIssues(
        request, metadata=as_user(user)
    )
    return reply


async def calculate_metrics(
    c: Clients, series_id: str, start_us: int, end_us: int
) -> q.QualityMetrics:
    """CalculateQualityMetrics on demand, then the window's metrics as ListQualityMetrics
    serves them."""
    done = await c.command.CalculateQualityMetrics(
        cmd.CalculateQualityMetricsRequest(
            command_id=unique("metrics"),
            series=f"series/{series_id}",
            start_time=timestamp(start_us),
            end_time=timestamp(end_us),
        ),
        metadata=as_user("dataops"),
    )
    listed = await c.query.ListQualityMetrics(
        q.ListQualityMetricsRequest(
            series=f"series/{series_id}",
            start_time=timestamp(start_us),
            end_time=timestamp(start_us + 1),
            min_position=done.commit_position,
        ),
        metadata=as_user("reader"),
    )
    (window,) = [m for m in listed.metrics if micros(m.end_time) == end_us]
    assert micros(window.start_time) == start_us
    return window


def latest_by_snap(rows: Iterable[q.OfficialValue]) -> dict[int, tuple[int, str]]:
    return {micros(v.snap_time): (v.version, v.value.price.value) for v in rows}


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within_s: float, every_s: float = 0.1
) -> T:
    deadline = time.monotonic() + within_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing within {within_s} s")
        await asyncio.sleep(every_s)


async def expect_denied(call: Awaitable[object], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    return raised.value


# --- 1. priority waterfall: a late top source restates the point --------------------------------


async def test_priority_waterfall_late_source_restates_and_as_of_reads_the_past(
    cluster: Cluster,
) -> None:
    series_id = unique("wf")
    top, second, third = unique("top"), unique("second"), unique("third")
    late, agreeing = close_us(date(2024, 3, 4)), close_us(date(2024, 3, 5))
    async with cluster.clients() as c:
        await setup_series(c, series_id, series_def([(top, 1), (second, 2), (third, 3)]))

        # The second source is first: its value is published as version 1.
        r1 = await ingest(c, series_id, second, [(late, "100.00"), (agreeing, "200.00")], "feed-2")
        assert (r1.accepted, r1.flagged, r1.published) == (2, 0, 2)
        first = latest_by_snap(await query_all(c, series_id, min_position=r1.commit_position))
        assert first == {late: (1, "100.00"), agreeing: (1, "200.00")}

        # The top source arrives: 100 bps away on one point (beyond 10 bps: restated), 5 bps
        # away on the other (within tolerance: nothing changes).
        r2 = await ingest(c, series_id, top, [(late, "101.00"), (agreeing, "200.10")], "feed-1")
        assert (r2.accepted, r2.published) == (2, 1)
        now = await query_all(c, series_id, min_position=r2.commit_position)
        assert latest_by_snap(now) == {late: (2, "101.00"), agreeing: (1, "200.00")}
        restated = now[0]
        assert (list(restated.sources), restated.method, restated.user) == (
            sources(top),
            PRIORITY,
            "feed-1",
        )
        assert "late source" in restated.reason
        assert top in restated.reason

        # The third source agrees with the top one within tolerance: no new version.
        r3 = await ingest(c, series_id, third, [(late, "101.05")], "feed-3")
        assert r3.published == 0

        # History: both versions, the cause of the second, and every source's observation.
        h = await history(c, series_id, late, r3.commit_position)
        v1, v2 = h.versions
        assert (v1.version, v1.value.price.value, list(v1.sources)) == (
            1,
            "100.00",
            sources(second),
        )
        assert (v2.version, v2.value.price.value, list(v2.sources)) == (2, "101.00", sources(top))
        assert v1.reason == ""
        assert v2.reason == f"late source {top}"
        assert v1.supersede_time == v2.record_time
        assert r1.commit_position < v2.record_position <= r2.commit_position
        assert [(o.source, o.value.price.value) for o in h.observations] == [
            (f"sources/{second}", "100.00"),
            (f"sources/{top}", "101.00"),
            (f"sources/{third}", "101.05"),
        ]
        restatements = [
            e
            for e in await audit(c, series_id, r3.commit_position, late)
            if e.action == "DataRestated"
        ]
        assert [(e.user, e.details["cause"]) for e in restatements] == [("feed-1", "late_source")]

        # As of a time between the two versions: version 1; from version 2's time on: version 2.
        t1, t2 = micros(v1.record_time), micros(v2.record_time)
        assert t1 < t2
        between = await query_all(c, series_id, as_of_us=(t1 + t2) // 2)
        assert latest_by_snap(between)[late] == (1, "100.00")
        just_before = await query_all(c, series_id, as_of_us=t2 - 1)
        assert latest_by_snap(just_before)[late] == (1, "100.00")
        at_restatement = await query_all(c, series_id, as_of_us=t2)
        assert latest_by_snap(at_restatement)[late] == (2, "101.00")
        assert late not in latest_by_snap(await query_all(c, series_id, as_of_us=t1 - 1))
        at_first = await query_all(c, series_id, as_of_position=r1.commit_position)
        assert latest_by_snap(at_first) == first


# --- 2. consensus: an outlier is left out and raises a source break ------------------------------


async def test_consensus_excludes_an_outlier_and_flags_a_source_break(cluster: Cluster) -> None:
    series_id = unique("cons")
    outlier, a, b = unique("outlier"), unique("a"), unique("b")
    snap = close_us(date(2024, 3, 6))
    async with cluster.clients() as c:
        # The outlier is the most trusted source: a priority waterfall would publish it.
        await setup_series(
            c,
            series_id,
            series_def(
                [(outlier, 1), (a, 2), (b, 3)],
                method=series_pb2.RECONCILIATION_METHOD_CONSENSUS,
                tolerance_bps="50",
                min_sources=3,
            ),
        )
        r1 = await ingest(c, series_id, a, [(snap, "100.00")], "feed-a")
        r2 = await ingest(c, series_id, b, [(snap, "100.20")], "feed-b")  # 20 bps from a
        assert (r1.published, r2.published) == (0, 0)  # waiting for the third source
        assert await query_all(c, series_id, min_position=r2.commit_position) == []
        r3 = await ingest(c, series_id, outlier, [(snap, "103.00")], "feed-x")  # ~300 bps off
        assert (r3.published, r3.flagged) == (1, 1)

        (official,) = await query_all(c, series_id, min_position=r3.commit_position)
        assert official.version == 1
        assert official.value.price.value in ("100.00", "100.20")
        assert official.method == CONSENSUS
        assert list(official.sources) == sources(a, b)
        assert official.quality_score == pytest.approx(0.8)  # one source beyond tolerance
        (v1,) = (await history(c, series_id, snap, r3.commit_position)).versions
        assert f"sources/{outlier}" not in v1.sources
        assert list(v1.sources) == sources(a, b)

        # The break waits in the exception queue, about the point, naming the outlier.
        (brk,) = await issues(c, series_id, r3.commit_position, rule=SOURCE_BREAK)
        assert (brk.severity, brk.status, brk.source) == (WARNING, OPEN, "")
        assert micros(brk.snap_time) == snap
        evidence = json_format.MessageToDict(brk.evidence)
        assert evidence["sources"] == {outlier: "103.00"}
        assert evidence["chosen"] == official.value.price.value


async def test_a_standing_break_is_one_open_issue(cluster: Cluster) -> None:
    series_id = unique("brk")
    top, second, third = unique("top"), unique("second"), unique("third")
    snap = close_us(date(2024, 3, 4))
    async with cluster.clients() as c:
        await setup_series(c, series_id, series_def([(top, 1), (second, 2), (third, 3)]))
        await ingest(c, series_id, second, [(snap, "100.00")], "feed-2")
        r2 = await ingest(c, series_id, top, [(snap, "101.00")], "feed-1")
        (brk,) = await issues(c, series_id, r2.commit_position, rule=SOURCE_BREAK)
        assert json_format.MessageToDict(brk.evidence)["sources"] == {second: "100.00"}
        # The third source agrees with the published value: the break is the same one.
        r3 = await ingest(c, series_id, third, [(snap, "101.05")], "feed-3")
        assert await issues(c, series_id, r3.commit_position, rule=SOURCE_BREAK) == [brk]
        assert (r3.flagged, r3.published) == (0, 0)


# --- 3. a jump is held until someone else approves it ------------------------------------------


async def test_a_jump_is_held_and_published_after_a_four_eyes_approval(cluster: Cluster) -> None:
    series_id, feed = unique("spike"), unique("feed")
    normal, spike = close_us(date(2024, 3, 7)), close_us(date(2024, 3, 8))
    async with cluster.clients() as c:
        await setup_series(
            c,
            series_id,
            series_def([(feed, 1)], validation=series_pb2.ValidationRules(max_jump_percent="10")),
        )
        r1 = await ingest(c, series_id, feed, [(normal, "100.00")], "feeder")
        r2 = await ingest(c, series_id, feed, [(spike, "130.00")], "feeder")  # +30 %
        assert (r1.published, r2.accepted, r2.flagged, r2.published) == (1, 1, 1, 0)
        held = await query_all(c, series_id, min_position=r2.commit_position)
        assert latest_by_snap(held) == {normal: (1, "100.00")}

        (issue,) = await issues(c, series_id, r2.commit_position, rule=JUMP)
        assert (issue.status, issue.severity, issue.source) == (OPEN, ERROR, f"sources/{feed}")
        assert micros(issue.snap_time) == spike
        evidence = json_format.MessageToDict(issue.evidence)
        assert (evidence["previous"], evidence["value"]) == ("100.00", "130.00")
        assert float(evidence["jump_percent"]) == 30
        assert float(evidence["limit_percent"]) == 10

        # Four-eyes: whoever sent the value may not approve it.
        await expect_denied(
            resolve(c, series_id, [issue.issue_id], cmd.RESOLUTION_APPROVE, "feeder", "it's fine"),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        reason = "index rebalancing, confirmed with the exchange"
        approved = await resolve(
            c, series_id, [issue.issue_id], cmd.RESOLUTION_APPROVE, "checker", reason
        )

        now = await query_all(c, series_id, min_position=approved.commit_position)
        assert latest_by_snap(now) == {normal: (1, "100.00"), spike: (1, "130.00")}
        published = now[1]
        assert published.user == "checker"
        assert reason in published.reason
        assert JUMP in published.flags

        (settled,) = await issues(c, series_id, approved.commit_position, rule=JUMP, status=None)
        assert (settled.issue_id, settled.status) == (issue.issue_id, APPROVED)
        assert (settled.resolved_by, settled.resolution_reason) == ("checker", reason)
        assert settled.HasField("resolve_time")
        assert await issues(c, series_id, approved.commit_position, rule=JUMP) == []

        trail = await audit(c, series_id, approved.commit_position, spike)
        approvals = [e for e in trail if e.action == "QualityApproved"]
        assert [(e.user, e.details["issue_id"], e.details["reason"]) for e in approvals] == [
            ("checker", issue.issue_id, reason)
        ]
        assert approvals[0].commit_position <= approved.commit_position


# --- 4. reject and override through the exception queue -----------------------------------------


async def test_reject_falls_back_to_another_source_and_override_publishes_a_manual_value(
    cluster: Cluster,
) -> None:
    series_id, primary, backup = unique("pos"), unique("primary"), unique("backup")
    rejected_snap, overridden_snap = close_us(date(2024, 3, 11)), close_us(date(2024, 3, 12))
    async with cluster.clients() as c:
        await setup_series(
            c,
            series_id,
            series_def(
                [(primary, 1), (backup, 2)],
                validation=series_pb2.ValidationRules(require_positive=True),
            ),
        )
        # Reject: the primary sends a negative price, held; the backup's value is not enough
        # while the primary's (more trusted) value still counts.
        r1 = await ingest(c, series_id, primary, [(rejected_snap, "-5.00")], "feed-p")
        assert (r1.flagged, r1.published) == (1, 0)
        r2 = await ingest(c, series_id, backup, [(rejected_snap, "50.00")], "feed-b")
        assert r2.published == 0
        assert await query_all(c, series_id, min_position=r2.commit_position) == []
        (negative,) = await issues(c, series_id, r2.commit_position, rule=POSITIVE)
        assert (negative.source, negative.severity) == (f"sources/{primary}", ERROR)
        assert micros(negative.snap_time) == rejected_snap

        rejected = await resolve(
            c, series_id, [negative.issue_id], cmd.RESOLUTION_REJECT, "checker", "bad tick"
        )
        (official,) = await query_all(c, series_id, min_position=rejected.commit_position)
        assert (micros(official.snap_time), official.version, official.value.price.value) == (
            rejected_snap,
            1,
            "50.00",
        )
        assert list(official.sources) == sources(backup)
        (settled,) = await issues(
            c, series_id, rejected.commit_position, rule=POSITIVE, status=REJECTED
        )
        assert (settled.issue_id, settled.resolved_by) == (negative.issue_id, "checker")
        # The rejected value stays in the lineage.
        lineage = (
            await history(c, series_id, rejected_snap, rejected.commit_position)
        ).observations
        assert {(o.source, o.value.price.value) for o in lineage} == {
            (f"sources/{primary}", "-5.00"),
            (f"sources/{backup}", "50.00"),
        }

        # Override: the backup's value is published, then the primary's negative value holds
        # the point; a person publishes a manual value instead.
        r3 = await ingest(c, series_id, backup, [(overridden_snap, "60.00")], "feed-b")
        assert r3.published == 1
        r4 = await ingest(c, series_id, primary, [(overridden_snap, "-7.00")], "feed-p")
        assert (r4.flagged, r4.published) == (1, 0)
        (negative2,) = await issues(c, series_id, r4.commit_position, rule=POSITIVE)
        assert micros(negative2.snap_time) == overridden_snap
        expiry = timestamp(int(time.time() + 3600) * US)
        override = Override(price("61.00"), "VENDOR_FIX", expiry)
        await expect_denied(
            resolve(
                c,
                series_id,
                [negative2.issue_id],
                cmd.RESOLUTION_OVERRIDE,
                "feed-p",
                "mine",
                override,
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        reason = "primary sent a sign error; value from the exchange file"
        overridden = await resolve(
            c,
            series_id,
            [negative2.issue_id],
            cmd.RESOLUTION_OVERRIDE,
            "checker",
            reason,
            override,
        )
        now = latest_by_snap(await query_all(c, series_id, min_position=overridden.commit_position))
        assert now == {rejected_snap: (1, "50.00"), overridden_snap: (2, "61.00")}
        h = await history(c, series_id, overridden_snap, overridden.commit_position)
        v1, v2 = h.versions
        assert (v1.value.price.value, list(v1.sources), v1.method) == (
            "60.00",
            sources(backup),
            PRIORITY,
        )
        assert (v2.value.price.value, list(v2.sources), v2.method) == ("61.00", [], MANUAL)
        assert (v2.user, v2.reason) == ("checker", reason)
        (settled2,) = await issues(
            c, series_id, overridden.commit_position, rule=POSITIVE, status=OVERRIDDEN
        )
        assert (settled2.issue_id, settled2.resolved_by) == (negative2.issue_id, "checker")
        trail = await audit(c, series_id, overridden.commit_position, overridden_snap)
        by_action = {e.action: e for e in trail}
        assert by_action["DataRestated"].details["cause"] == "override:VENDOR_FIX"
        assert by_action["ManualOverrideSet"].details["reason_code"] == "VENDOR_FIX"
        assert by_action["ManualOverrideSet"].details["expires_us"] == micros(expiry)
        assert by_action["QualityOverridden"].user == "checker"

        # As of before the override: what was official then.
        before = await query_all(c, series_id, as_of_us=micros(v2.record_time) - 1)
        assert latest_by_snap(before)[overridden_snap] == (1, "60.00")
        at_hold = await query_all(c, series_id, as_of_position=r4.commit_position)
        assert latest_by_snap(at_hold) == {
            rejected_snap: (1, "50.00"),
            overridden_snap: (1, "60.00"),
        }
        # ...and before the rejection, nothing was official.
        assert await query_all(c, series_id, as_of_position=r2.commit_position) == []


# --- 5. stale values are flagged, not held ------------------------------------------------------


async def test_stale_value_is_flagged_as_a_warning_and_still_published(cluster: Cluster) -> None:
    series_id, feed = unique("stale"), unique("feed")
    days = [close_us(date(2024, 3, d)) for d in (11, 12, 13, 14)]
    async with cluster.clients() as c:
        await setup_series(
            c,
            series_id,
            series_def([(feed, 1)], validation=series_pb2.ValidationRules(stale_after_snaps=3)),
        )
        r = await ingest(
            c, series_id, feed, zip(days, ["10.00", "10.00", "10.00", "10.50"], strict=True), "f"
        )
        assert (r.accepted, r.flagged, r.published) == (4, 1, 4)
        rows = await query_all(c, series_id, min_position=r.commit_position)
        assert [(micros(v.snap_time), v.value.price.value) for v in rows] == [
            (days[0], "10.00"),
            (days[1], "10.00"),
            (days[2], "10.00"),
            (days[3], "10.50"),
        ]
        assert [list(v.flags) for v in rows] == [[], [], [STALE], []]
        assert rows[2].quality_score == pytest.approx(0.8)
        (stale,) = await issues(c, series_id, r.commit_position, rule=STALE)
        assert (micros(stale.snap_time), stale.severity, stale.status) == (days[2], WARNING, OPEN)
        assert json_format.MessageToDict(stale.evidence)["value"] == "10.00"


# --- 6. completeness against the exchange calendar ----------------------------------------------


def january_sessions() -> list[date]:
    sessions = [
        d for d in weekdays(date(2024, 1, 1), date(2024, 1, 31)) if d not in JAN_2024_HOLIDAYS
    ]
    assert len(sessions) == 21
    return sessions


async def test_completeness_counts_exchange_sessions_and_calendar_flags_holidays(
    cluster: Cluster,
) -> None:
    complete_id, gappy_id, feed = unique("xnys"), unique("xnys-gap"), unique("feed")
    sessions = january_sessions()
    mlk_day = JAN_2024_HOLIDAYS[1]
    dropped = date(2024, 1, 22)
    window = JANUARY
    rules = series_pb2.ValidationRules(check_calendar=True)

    def nyse(feed_id: str) -> series_pb2.Series:
        return series_def(
            [(feed_id, 1)], calendar="XNYS", time_zone="America/New_York", validation=rules
        )

    async with cluster.clients() as c:
        await setup_series(c, complete_id, nyse(feed))
        await setup_series(c, gappy_id, nyse(feed), register_sources=False)
        closes = [(close_us(d), f"{4700 + i}.00") for i, d in enumerate(sessions)]

        # Every session, plus a value on MLK Day: flagged "calendar", published anyway.
        r = await ingest(c, complete_id, feed, [*closes, (close_us(mlk_day), "4710.00")], "f")
        assert (r.accepted, r.flagged, r.published) == (22, 1, 22)
        (holiday,) = await issues(c, complete_id, r.commit_position, rule=CALENDAR)
        assert (micros(holiday.snap_time), holiday.severity) == (close_us(mlk_day), WARNING)
        assert json_format.MessageToDict(holiday.evidence)["date"] == "2024-01-15"

        metrics = await calculate_metrics(c, complete_id, *window)
        assert metrics.completeness == 1.0  # 21 / 21: the holidays are not gaps
        assert metrics.consistency == float("0.954545")  # 21 of 22 values pass every rule
        assert (metrics.accuracy, metrics.timeliness) == (1.0, 1.0)

        # One session missing: 20 / 21.
        gappy = [(s, v) for s, v in closes if s != close_us(dropped)]
        r2 = await ingest(c, gappy_id, feed, gappy, "f")
        assert (r2.accepted, r2.flagged) == (20, 0)
        gap = await calculate_metrics(c, gappy_id, *window)
        assert gap.completeness == float("0.952381")
        assert (gap.expected_snaps, gap.received_snaps, gap.uncovered_days) == (21, 20, 0)
        assert list(gap.missing_sessions) == [  # what to fill
            date_pb2.Date(year=dropped.year, month=dropped.month, day=dropped.day)
        ]

        # The missing session arrives: calculated again, the window is complete.
        r3 = await ingest(c, gappy_id, feed, [(close_us(dropped), "4713.00")], "f")
        assert r3.published == 1
        assert (await calculate_metrics(c, gappy_id, *window)).completeness == 1.0


async def test_completeness_outside_the_calendars_coverage_is_unknown(cluster: Cluster) -> None:
    series_id, feed = unique("xnys-1965"), unique("feed")
    async with cluster.clients() as c:
        await setup_series(
            c, series_id, series_def([(feed, 1)], calendar="XNYS", time_zone="America/New_York")
        )
        days = weekdays(date(1965, 6, 1), date(1965, 6, 30))
        await ingest(c, series_id, feed, [(close_us(d), "100.00") for d in days], "f")
        metrics = await calculate_metrics(c, series_id, utc_us(1965, 6, 1), utc_us(1965, 7, 1))
        assert math.isnan(metrics.completeness)  # unknown, never "complete"
        assert (metrics.uncovered_days, metrics.expected_snaps) == (30, 0)


async def test_completeness_of_a_utc_month_whose_eve_is_a_session(cluster: Cluster) -> None:
    series_id, feed = unique("xnys-feb"), unique("feed")
    # February 2024: 21 weekdays, Presidents' Day (Feb 19) closed: 20 sessions. Jan 31 (the
    # New York day of 2024-02-01T00:00Z) is a session too, but its close is in January.
    sessions = [d for d in weekdays(date(2024, 2, 1), date(2024, 2, 29)) if d != date(2024, 2, 19)]
    assert len(sessions) == 20
    async with cluster.clients() as c:
        await setup_series(
            c, series_id, series_def([(feed, 1)], calendar="XNYS", time_zone="America/New_York")
        )
        r = await ingest(c, series_id, feed, [(close_us(d), "100.00") for d in sessions], "f")
        assert r.published == 20
        # The New York month counts its 20 sessions and finds them all...
        local = await calculate_metrics(
            c, series_id, utc_us(2024, 2, 1) + 5 * HOUR_US, utc_us(2024, 3, 1) + 5 * HOUR_US
        )
        assert local.completeness == 1.0
        # ...but the window the scheduler calculates for a daily series is the UTC month.
        metrics = await calculate_metrics(c, series_id, utc_us(2024, 2, 1), utc_us(2024, 3, 1))
        assert metrics.completeness == 1.0


# --- 7. cut-off publication by the scheduler ----------------------------------------------------

SCHEDULER_SETTINGS = {
    "QIS_SCHEDULER_TICK_S": "0.2",
    "QIS_METRICS_GRACE_S": "0",
    "QIS_METRICS_QUIET_S": "0.5",
    "QIS_QUERY_MAX_WAIT_S": "5",
}
CUTOFF_S = 2


@pytest.fixture(scope="module")
def scheduler_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """This module's own processes, with a scheduler that ticks fast and calculates metrics as
    soon as a window is closed and quiet for half a second; shared by its scheduler tests."""
    own = Cluster.create(tmp_path_factory.mktemp("qis-scheduler"), SCHEDULER_SETTINGS)
    try:
        own.start_all()
        yield own
    finally:
        own.stop_all()


def now_us() -> int:
    """Now, at millisecond precision, in µs: a snap whose cut-off is still ahead."""
    return (time.time_ns() // 1_000_000) * 1_000


def cutoff_series(sources: Sequence[str], *, require_positive: bool = False) -> series_pb2.Series:
    return series_def(
        [(s, i + 1) for i, s in enumerate(sources)],
        frequency=series_pb2.FREQUENCY_TICK,
        min_sources=len(sources),
        cutoff_s=CUTOFF_S,
        validation=series_pb2.ValidationRules(require_positive=require_positive),
    )


async def open_issue(
    c: Clients, series_id: str, rule: Rule, min_position: int
) -> q.QualityIssue | None:
    """The first open issue of `rule`, once the read model has the series (min_position: an
    unknown series is NOT_FOUND)."""
    found = await issues(c, series_id, min_position, rule=rule)
    return found[0] if found else None


async def test_scheduler_publishes_at_the_cutoff_with_the_sources_that_arrived(
    scheduler_cluster: Cluster,
) -> None:
    own = scheduler_cluster
    series_id, early, missing = unique("cutoff"), unique("early"), unique("missing")
    held_id, good, bad = unique("cutoff-held"), unique("good"), unique("bad")
    async with own.clients() as c:
        await setup_series(c, series_id, cutoff_series([early, missing]))
        await setup_series(c, held_id, cutoff_series([bad, good], require_positive=True))
        snap = now_us()
        r = await ingest(c, series_id, early, [(snap, "42.00")], "feed-early")
        # A second series: waiting for its top source at first, then held by its negative value.
        h1 = await ingest(c, held_id, good, [(snap, "10.00")], "feed-good")
        h2 = await ingest(c, held_id, bad, [(snap, "-10.00")], "feed-bad")
        assert (r.accepted, r.published, h1.published, h2.flagged, h2.published) == (1, 0, 0, 1, 0)
        assert await query_all(c, series_id, min_position=r.commit_position) == []
        scheduled = [
            e
            for e in await audit(c, series_id, r.commit_position, snap)
            if e.action == "PublicationScheduled"
        ]
        assert [e.details["due_us"] for e in scheduled] == [snap + CUTOFF_S * US]

        async def published() -> q.OfficialValue | None:
            rows = await query_all(c, series_id)
            return rows[0] if rows else None

        official = await eventually(published, within_s=CUTOFF_S + 8)
        assert (official.version, official.value.price.value) == (1, "42.00")
        assert micros(official.record_time) >= snap + CUTOFF_S * US
        assert list(official.sources) == sources(early)
        assert official.user == "qis-scheduler"
        assert "cut-off" in official.reason
        assert "1 of 2" in official.reason
        (v1,) = (await history(c, series_id, snap, official.record_position)).versions
        assert v1.reason == official.reason
        trail = await audit(c, series_id, official.record_position)
        cutoff_entries = [
            e
            for e in trail
            if e.action == "DataPublished" and e.commit_position == official.record_position
        ]
        assert [e.user for e in cutoff_entries] == ["qis-scheduler"]

        # The held point is not published at its cut-off: it is flagged "missed_cutoff".
        missed = await eventually(
            lambda: open_issue(c, held_id, MISSED_CUTOFF, h2.commit_position), within_s=5
        )
        assert (micros(missed.snap_time), missed.severity, missed.source) == (snap, WARNING, "")
        assert json_format.MessageToDict(missed.evidence)["status"] == "held"
        assert await query_all(c, held_id) == []


async def test_a_point_held_from_its_first_value_is_flagged_at_its_cutoff(
    scheduler_cluster: Cluster,
) -> None:
    own = scheduler_cluster
    series_id, bad, good = unique("cutoff-held"), unique("bad"), unique("good")
    async with own.clients() as c:
        await setup_series(c, series_id, cutoff_series([bad, good], require_positive=True))
        snap = now_us()
        r = await ingest(c, series_id, bad, [(snap, "-10.00")], "feed-bad")
        assert (r.flagged, r.published) == (1, 0)
        # docs/data-quality.md: missed_cutoff "a point is still held when its cut-off comes".
        missed = await eventually(
            lambda: open_issue(c, series_id, MISSED_CUTOFF, r.commit_position),
            within_s=CUTOFF_S + 3,
        )
        assert micros(missed.snap_time) == snap


async def metrics_after(
    c: Clients, series_id: str, window: tuple[int, int], position: int
) -> q.QualityMetrics | None:
    """The window's metrics once the scheduler has calculated them after `position`."""
    trail = await audit(c, series_id, position)  # the series is projected by then
    calculated = [e for e in trail if e.action == "QualityMetricsCalculated"]
    if not calculated or calculated[-1].commit_position <= position:
        return None
    # Read at that calculation: a read model a moment behind would answer the one before it.
    listed = await c.query.ListQualityMetrics(
        q.ListQualityMetricsRequest(
            series=f"series/{series_id}", min_position=calculated[-1].commit_position
        ),
        metadata=as_user("reader"),
    )
    found = [m for m in listed.metrics if micros(m.start_time) == window[0]]
    if not found:
        return None
    assert [e.user for e in calculated] == ["qis-scheduler"] * len(calculated)
    assert micros(found[0].end_time) == window[1]
    return found[0]


async def load_january_but_one(c: Clients, series_id: str, feed: str, dropped: date) -> int:
    await setup_series(
        c, series_id, series_def([(feed, 1)], calendar="XNYS", time_zone="America/New_York")
    )
    closes = [(close_us(d), "100.00") for d in january_sessions() if d != dropped]
    r = await ingest(c, series_id, feed, closes, "f")
    assert r.published == 20
    return r.commit_position


async def test_scheduler_calculates_metrics_of_a_closed_quiet_window(
    scheduler_cluster: Cluster,
) -> None:
    series_id, feed = unique("xnys-sched"), unique("feed")
    async with scheduler_cluster.clients() as c:
        loaded = await load_january_but_one(c, series_id, feed, date(2024, 1, 17))
        metrics = await eventually(
            lambda: metrics_after(c, series_id, JANUARY_IN_NEW_YORK, loaded), within_s=8
        )
        assert metrics.completeness == float("0.952381")  # 20 / 21


async def test_scheduler_recalculates_metrics_after_a_late_value(
    scheduler_cluster: Cluster,
) -> None:
    series_id, feed = unique("xnys-late"), unique("feed")
    dropped = date(2024, 1, 17)
    async with scheduler_cluster.clients() as c:
        loaded = await load_january_but_one(c, series_id, feed, dropped)
        first = await eventually(
            lambda: metrics_after(c, series_id, JANUARY_IN_NEW_YORK, loaded), within_s=8
        )
        assert first.completeness == float("0.952381")
        # The missing close arrives late, in one command: the window is no longer 20 / 21.
        late = await ingest(c, series_id, feed, [(close_us(dropped), "100.00")], "f")
        assert late.published == 1
        again = await eventually(
            lambda: metrics_after(c, series_id, JANUARY_IN_NEW_YORK, late.commit_position),
            within_s=5,
        )
        assert again.completeness == 1.0


# --- 8. restatements reach subscribers ---------------------------------------------------------


async def subscribe_and_restate(
    c: Clients, series_id: str, snap: int, reason: str, known_at: int
) -> tuple[list[q.OfficialValue], int]:
    """Subscribes to the series, reads its catch-up (one value), restates the point, and returns
    every value received by then with the restatement's commit position. `known_at`: a
    position the read model must have reached first (Subscribe answers NOT_FOUND for a series
    it does not know yet, as a client that just defined one would see without waiting)."""
    await query_all(c, series_id, min_position=known_at)
    call = c.query.Subscribe(
        q.SubscribeRequest(series=[f"series/{series_id}"]), metadata=as_user("subscriber")
    )
    received: list[q.OfficialValue] = []

    async def until(count: int) -> None:
        while len(received) < count:
            reply = await asyncio.wait_for(call.read(), 5)
            assert isinstance(reply, q.SubscribeResponse), reply
            received.extend(reply.values)

    try:
        await until(1)  # the catch-up: version 1, so the subscription is live now
        fixed = await c.command.RestatePoint(
            cmd.RestatePointRequest(
                command_id=unique("fix"),
                series=f"series/{series_id}",
                snap_time=timestamp(snap),
                value=price("77.50"),
                reason=reason,
                reason_code="EXCHANGE_CORRECTION",
            ),
            metadata=as_user("corrector"),
        )
        await until(2)
    finally:
        call.cancel()
    return received, fixed.commit_position


async def test_subscriber_receives_a_restatement_with_its_reason(cluster: Cluster) -> None:
    series_id, feed = unique("sub"), unique("feed")
    snap = close_us(date(2024, 3, 15))
    reason = "exchange corrected the closing auction"
    async with cluster.clients() as c:
        await setup_series(c, series_id, series_def([(feed, 1)]))
        r = await ingest(c, series_id, feed, [(snap, "77.00")], "feed")
        received, fixed = await subscribe_and_restate(c, series_id, snap, reason, r.commit_position)
        assert len(received) == 2
        first, restated = received
        assert (micros(first.snap_time), first.version, first.value.price.value) == (
            snap,
            1,
            "77.00",
        )
        assert (micros(restated.snap_time), restated.version, restated.value.price.value) == (
            snap,
            2,
            "77.50",
        )
        assert (restated.reason, restated.user) == (reason, "corrector")
        assert r.commit_position < restated.record_position <= fixed
        # What the subscriber got is what QueryRange serves as the latest version.
        (latest,) = await query_all(c, series_id, min_position=fixed)
        assert (latest.version, latest.value, latest.reason, latest.record_position) == (
            restated.version,
            restated.value,
            restated.reason,
            restated.record_position,
        )


async def test_subscribed_values_carry_their_lineage_like_query_range(cluster: Cluster) -> None:
    series_id, feed = unique("sub-lineage"), unique("feed")
    snap = close_us(date(2024, 3, 18))
    async with cluster.clients() as c:
        await setup_series(c, series_id, series_def([(feed, 1)]))
        r = await ingest(c, series_id, feed, [(snap, "77.00")], "feed")
        received, fixed = await subscribe_and_restate(
            c, series_id, snap, "manual fix", r.commit_position
        )
        history_ = await history(c, series_id, snap, fixed)

        def lineage(v: q.OfficialValue) -> tuple[int, list[str], int, list[int]]:
            return v.version, list(v.sources), v.method, list(v.flags)

        assert [lineage(v) for v in history_.versions] == [
            (1, sources(feed), PRIORITY, []),
            (2, [], MANUAL, []),
        ]
        assert [lineage(v) for v in received] == [lineage(v) for v in history_.versions]
