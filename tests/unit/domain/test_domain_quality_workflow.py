"""The data-quality workflow of a SeriesBucket: late sources, consensus breaks, look-back rules
(jump, z-score, stale), calendar checks, the exception queue (approve, reject, override with
four-eyes), cut-off publication and override expiry.

Pure: every decision gets its clock from the CommandContext and its calendar as data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.decisions import Decider, SeriesView, Timeline, snap_of_issue
from qis_domain.definitions import (
    BreakAction,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DomainEvent,
    Issue,
    ManualOverrideExpired,
    ManualOverrideSet,
    OfficialRow,
    PublicationScheduled,
    QualityApproved,
    QualityIssueDetected,
    QualityOverridden,
    QualityRejected,
)
from qis_domain.rules import CalendarView, Received
from qis_domain.series_bucket import NO_VIEW, Recorded, SeriesBucket
from qis_domain.snaps import Frequency, Snap, bucket_of, parse_snap
from qis_domain.values import DataType, DataValue, Price, decode_value

from tests.unit.domain.test_domain_series_bucket import none_of, one, types
from tests.unit.domain.test_domain_series_bucket import official_point as row_of

E = TypeVar("E", bound=DomainEvent)

S_US = 1_000_000
MINUTE_US = 60 * S_US
HOUR_US = 60 * MINUTE_US

SNAP = parse_snap("2024-03-01T16:00:00-05:00")  # a Friday close in New York
T0 = SNAP.utc_us
NOW = T0 + 5 * MINUTE_US
PREVIOUS_CLOSE = parse_snap("2024-02-29T16:00:00-05:00").utc_us

JAN_HOLIDAYS = {date(2024, 1, 1), date(2024, 1, 15)}  # New Year's Day, Martin Luther King Jr. Day
JAN_SESSIONS = frozenset(
    d
    for d in (date(2024, 1, 1) + timedelta(days=i) for i in range(31))
    if d.weekday() < 5 and d not in JAN_HOLIDAYS
)


JAN_CALENDAR = CalendarView(JAN_SESSIONS, date(1970, 1, 1), date(2099, 12, 31))


def _view_of(*received: tuple[int, Decimal]) -> SeriesView:
    """A view whose timeline holds received figures of an earlier bucket."""
    timeline = Timeline()
    timeline.add(0, [Received(s, f, ("a",)) for s, f in received])
    return SeriesView(timeline)


def usd(text: str) -> Price:
    return Price(Decimal(text), "USD")


def close(day: date) -> Snap:
    """The 16:00 New York close of `day` (EST: every date used here is before the DST change)."""
    return parse_snap(f"{day.isoformat()}T16:00:00-05:00")


def series(
    *source_ids: str,
    method: ReconciliationMethod = ReconciliationMethod.PRIORITY,
    tolerance_bps: str = "10",
    on_break: BreakAction = BreakAction.FLAG,
    require_positive: bool = True,
    max_jump_percent: str | None = None,
    max_zscore: str | None = None,
    zscore_window: int = 20,
    stale_after_snaps: int = 0,
    check_calendar: bool = False,
    min_sources: int = 1,
    cutoff_seconds: int = 0,
    sla_seconds: int = 0,
) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.DAILY,
        unit="USD",
        time_zone="America/New_York",
        calendar="XNYS",
        sources=tuple(
            SeriesSource(source_id=s, priority=i + 1) for i, s in enumerate(source_ids or ("a",))
        ),
        validation=ValidationRules(
            require_positive=require_positive,
            max_jump_percent=None if max_jump_percent is None else Decimal(max_jump_percent),
            max_zscore=None if max_zscore is None else Decimal(max_zscore),
            zscore_window=zscore_window,
            stale_after_snaps=stale_after_snaps,
            check_calendar=check_calendar,
        ),
        reconciliation=ReconciliationPolicy(
            method=method, tolerance_bps=Decimal(tolerance_bps), on_break=on_break
        ),
        publication=PublicationPolicy(
            min_sources=min_sources,
            cutoff_seconds=cutoff_seconds,
            timeliness_sla_seconds=sla_seconds,
        ),
    )


class Desk:
    """One bucket plus a fake log, with a clock per command: decides, then applies the events
    the way the repository does (one commit position per command, stream versions from 0)."""

    def __init__(self, definition: SeriesDefinition, first: Snap = SNAP) -> None:
        self.definition = definition
        self.bucket = SeriesBucket("SPX", bucket_of(first.utc_us, definition.frequency))
        self.position = 0
        self._commands = 0
        self.last_ctx = CommandContext("", "", 0)
        # what a reader of the log sees: every official version per snap, in order
        self.versions: dict[int, list[OfficialRow]] = {}

    def ctx(self, user: str, now_us: int, command_id: str | None = None) -> CommandContext:
        self._commands += 1
        self.last_ctx = CommandContext(command_id or f"cmd-{self._commands}", user, now_us)
        return self.last_ctx

    def commit(self, events: list[DomainEvent], c: CommandContext) -> list[DomainEvent]:
        if not events:
            return events
        self.position += 10
        first = 0 if self.bucket.version is None else self.bucket.version + 1
        for offset, event in enumerate(events):
            self.bucket.apply(
                event, Recorded(c.command_id, c.user_id, self.position, first + offset)
            )
            if isinstance(event, DataPublished | DataRestated):
                for row in event.rows():
                    known = self.versions.setdefault(row.snap_us, [])
                    assert row.version == len(known) + 1, "versions count up by one"
                    known.append(row)
        return events

    def ingest(
        self,
        source: str,
        points: Sequence[tuple[Snap, DataValue]],
        *,
        user: str = "feed",
        now_us: int = NOW,
        view: SeriesView = NO_VIEW,
    ) -> list[DomainEvent]:
        c = self.ctx(user, now_us)
        return self.commit(self.bucket.ingest(self.definition, source, points, c, view), c)

    def ingest1(
        self,
        source: str,
        value: DataValue,
        *,
        snap: Snap = SNAP,
        user: str = "feed",
        now_us: int = NOW,
        view: SeriesView = NO_VIEW,
    ) -> list[DomainEvent]:
        return self.ingest(source, [(snap, value)], user=user, now_us=now_us, view=view)

    def resolve(
        self,
        user: str,
        issue_ids: Sequence[str],
        action: str,
        *,
        reason: str = "checked with the vendor",
        value: DataValue | None = None,
        reason_code: str = "",
        expires_us: int = 0,
        now_us: int = NOW,
    ) -> list[DomainEvent]:
        c = self.ctx(user, now_us)
        pairs = [(f"issue_ids[{i}]", iid) for i, iid in enumerate(issue_ids)]
        events = self.bucket.resolve(
            self.definition, pairs, action, reason, c, value, reason_code, expires_us
        )
        return self.commit(events, c)

    def publish_due(self, now_us: int, command_id: str | None = None) -> list[DomainEvent]:
        c = self.ctx("qis-scheduler", now_us, command_id)
        return self.commit(self.bucket.publish_due(self.definition, c), c)

    def expire_overrides(self, now_us: int) -> list[DomainEvent]:
        c = self.ctx("qis-scheduler", now_us)
        return self.commit(self.bucket.expire_overrides(self.definition, c), c)

    def decider(self) -> Decider:
        return Decider(self.definition, self.last_ctx)

    def official(self, snap: Snap = SNAP) -> tuple[int, DataValue] | None:
        """Version and value of the official point, from the events published so far."""
        rows = self.versions.get(snap.utc_us)
        if not rows:
            return None
        d = self.definition
        return rows[-1].version, decode_value(d.data_type, d.unit, rows[-1].value)


def issues(events: Sequence[DomainEvent], rule: str | None = None) -> list[Issue]:
    found = [i for e in events if isinstance(e, QualityIssueDetected) for i in e.issues]
    return [i for i in found if rule is None or i.rule == rule]


def the_issue(events: Sequence[DomainEvent], rule: str) -> Issue:
    [issue] = issues(events, rule)
    return issue


def statuses(events: Sequence[DomainEvent]) -> dict[int, str]:
    r = one(events, DataReconciled)
    return dict(zip(r.snaps, r.statuses, strict=True))


def test_the_january_2024_nyse_calendar_used_here() -> None:
    assert len(JAN_SESSIONS) == 21
    assert date(2024, 1, 2) in JAN_SESSIONS
    assert JAN_HOLIDAYS.isdisjoint(JAN_SESSIONS)
    assert all(d.weekday() < 5 for d in JAN_SESSIONS)


# --- 1. priority waterfall: a late top source restates ---


def test_late_top_source_is_a_restatement_from_the_next_source_in_the_waterfall() -> None:
    desk = Desk(series("a", "b", "c", tolerance_bps="10"))
    events = desk.ingest1("b", usd("100.00"), now_us=T0 + MINUTE_US)
    point = row_of(events, DataPublished)
    assert (point.version, point.value, point.sources, point.method) == (
        1,
        "100.00",
        ["b"],
        "priority",
    )
    assert (point.reason, point.cause) == ("", "")
    assert one(events, DataPublished).decided_at_us == T0 + MINUTE_US

    events = desk.ingest1("c", usd("99.00"), now_us=T0 + 2 * MINUTE_US)  # lower priority
    assert none_of(events, DataPublished, DataRestated)
    assert desk.official() == (1, usd("100.00"))

    events = desk.ingest1("a", usd("100.50"), now_us=T0 + HOUR_US)  # 50 bps: beyond 10
    assert none_of(events, DataPublished)
    restated = one(events, DataRestated)
    assert restated.decided_at_us == T0 + HOUR_US  # the command's clock, for the as-of read
    [point] = restated.rows()
    assert point.version == 2
    assert point.cause == "late_source"
    assert "late source" in point.reason
    assert "a" in point.reason
    assert (point.value, point.sources) == ("100.50", ["a"])
    assert desk.official() == (2, usd("100.50"))
    # the first publication's time is what timeliness measures, not the restatement's
    [summary] = desk.bucket.summaries(T0, T0 + 1, desk.decider())
    assert summary.published_at_us == T0 + MINUTE_US


def test_late_top_source_within_tolerance_changes_nothing() -> None:
    desk = Desk(series("a", "b", "c", tolerance_bps="10"))
    desk.ingest1("b", usd("100.00"))
    events = desk.ingest1("a", usd("100.05"))  # 5 bps
    assert none_of(events, DataPublished, DataRestated, QualityIssueDetected)
    assert desk.official() == (1, usd("100.00"))


# --- 2. consensus with an outlier ---


def test_consensus_leaves_an_outlier_out_and_flags_a_source_break() -> None:
    desk = Desk(series("a", "b", "c", method=ReconciliationMethod.CONSENSUS, min_sources=3))
    desk.ingest1("a", usd("100.00"), user="feed-a")
    desk.ingest1("b", usd("100.04"), user="feed-b")
    events = desk.ingest1("c", usd("150"), user="feed-c")
    reconciled = one(events, DataReconciled)
    assert reconciled.excluded == [["c"]]
    assert reconciled.contributions == [{"a": "100.00", "b": "100.04"}]
    assert reconciled.statuses == ["published"]
    brk = the_issue(events, "source_break")
    assert (brk.severity, brk.blocking, brk.source_id) == ("warning", False, "")
    assert brk.evidence["sources"] == {"c": "150"}
    point = row_of(events, DataPublished)
    assert point.value == "100.00"
    assert "c" not in point.sources
    assert point.method == "consensus"


def test_consensus_break_blocks_when_the_policy_says_so_until_approved() -> None:
    desk = Desk(
        series(
            "a",
            "b",
            "c",
            method=ReconciliationMethod.CONSENSUS,
            on_break=BreakAction.BLOCK,
            min_sources=3,
        )
    )
    desk.ingest1("a", usd("100.00"), user="feed-a")
    desk.ingest1("b", usd("100.04"), user="feed-b")
    events = desk.ingest1("c", usd("150"), user="feed-c")
    assert one(events, DataReconciled).excluded == [["c"]]
    brk = the_issue(events, "source_break")
    assert (brk.severity, brk.blocking) == ("error", True)
    assert statuses(events) == {T0: "held"}
    assert none_of(events, DataPublished)
    assert desk.official() is None
    # the break is about the point: none of its submitters may approve it
    for submitter in ("feed-a", "feed-b", "feed-c"):
        with pytest.raises(PermissionDenied):
            desk.resolve(submitter, [brk.issue_id], "approve")
    events = desk.resolve("lead", [brk.issue_id], "approve")
    assert one(events, QualityApproved).issue_ids == [brk.issue_id]
    point = row_of(events, DataPublished)
    assert (point.version, point.value) == (1, "100.00")
    assert desk.bucket.issues[brk.issue_id].status == "approved"


# --- 3. jump: held, four-eyes approval ---


def test_a_jump_from_the_previous_received_value_in_the_same_batch_is_held() -> None:
    desk = Desk(series("a", max_jump_percent="10"))
    d1, d2, d3, d4 = (close(date(2024, 2, d)) for d in (26, 27, 28, 29))
    batch = [(d4, usd("133")), (d3, usd("130")), (d2, usd("105")), (d1, usd("100"))]
    events = desk.ingest("a", batch, user="alice")  # out of order on purpose
    spike = the_issue(events, "jump")
    assert (spike.snap_us, spike.source_id, spike.severity, spike.blocking) == (
        d3.utc_us,
        "a",
        "error",
        True,
    )
    assert spike.evidence["previous"] == "105"
    assert spike.evidence["previous_snap"] == "2024-02-27T21:00:00Z"
    assert spike.evidence["value"] == "130"
    assert Decimal(spike.evidence["jump_percent"]) == Decimal("23.8095")
    assert Decimal(spike.evidence["limit_percent"]) == 10
    assert snap_of_issue(spike.issue_id) == d3.utc_us  # the id locates the point
    # d4 is compared with d3's received value (held or not), a 2.3 % move: no cascade
    assert len(issues(events)) == 1
    assert statuses(events)[d3.utc_us] == "held"
    published = one(events, DataPublished)
    assert sorted(published.snaps) == [d1.utc_us, d2.utc_us, d4.utc_us]
    assert desk.official(d3) is None
    assert desk.bucket.outcome_of(desk.last_ctx.command_id) == CommandOutcome(
        desk.position, accepted=4, flagged=1, published=3
    )

    # four-eyes: the submitter may not approve their own value
    with pytest.raises(PermissionDenied, match="four-eyes"):
        desk.resolve("alice", [spike.issue_id], "approve")
    assert desk.bucket.issues[spike.issue_id].status == "open"
    events = desk.resolve("bob", [spike.issue_id], "approve", reason="index rebalanced")
    assert types(events) == [QualityApproved, DataReconciled, DataPublished]
    approved = one(events, QualityApproved)
    assert (approved.issue_ids, approved.snaps) == ([spike.issue_id], [d3.utc_us])
    assert approved.reason == "index rebalanced"
    point = row_of(events, DataPublished)
    assert (point.snap_us, point.version, point.value, point.flags) == (
        d3.utc_us,
        1,
        "130",
        ["jump"],
    )
    assert one(events, DataPublished).decided_at_us == NOW
    assert desk.official(d3) == (1, usd("130"))
    assert desk.bucket.issues[spike.issue_id].status == "approved"


def test_a_jump_against_the_tail_of_the_previous_bucket() -> None:
    desk = Desk(series("a", max_jump_percent="10"))
    tail = _view_of((PREVIOUS_CLOSE - 86_400 * S_US, Decimal(95)), (PREVIOUS_CLOSE, Decimal(100)))
    events = desk.ingest1("a", usd("120"), view=tail)
    spike = the_issue(events, "jump")
    assert (spike.evidence["previous"], spike.evidence["value"]) == ("100", "120")
    assert Decimal(spike.evidence["jump_percent"]) == 20
    assert statuses(events) == {T0: "held"}
    # without the tail there is nothing to compare with: published as it is
    other = Desk(series("a", max_jump_percent="10"))
    events = other.ingest1("a", usd("120"))
    assert issues(events) == []
    assert other.official() == (1, usd("120"))


def test_a_jump_at_the_limit_is_not_flagged() -> None:
    desk = Desk(series("a", max_jump_percent="10"))
    tail = _view_of((PREVIOUS_CLOSE, Decimal(100)))
    events = desk.ingest1("a", usd("90"), view=tail)  # exactly 10 %
    assert issues(events) == []
    assert desk.official() == (1, usd("90"))


# --- 4. z-score and stale ---

CALM = (Decimal(100), Decimal(101), Decimal(100), Decimal(101), Decimal(100))
WILD = (Decimal(100), Decimal(150), Decimal(100), Decimal(150))


def _history(*figures: Decimal) -> SeriesView:
    """Received figures on the days just before T0 (the last one the day before)."""
    n = len(figures)
    return _view_of(*((T0 - (n - i) * 86_400 * S_US, f) for i, f in enumerate(figures)))


def test_zscore_flags_a_move_unusual_for_the_window() -> None:
    desk = Desk(series("a", max_zscore="3", zscore_window=4))
    events = desk.ingest1("a", usd("110"), view=_history(*WILD, *CALM))
    z = the_issue(events, "spike_zscore")
    assert (z.severity, z.blocking) == ("error", True)
    assert (z.evidence["previous"], z.evidence["value"]) == ("100", "110")
    assert abs(Decimal(z.evidence["zscore"])) > 3
    assert statuses(events) == {T0: "held"}


def test_the_zscore_window_holds_when_another_rule_looks_further_back() -> None:
    desk = Desk(series("a", max_zscore="3", zscore_window=4, stale_after_snaps=12))
    events = desk.ingest1("a", usd("110"), view=_history(*WILD, *CALM))
    assert [i.rule for i in issues(events)] == ["spike_zscore"]


def test_zscore_does_not_flag_an_ordinary_move() -> None:
    desk = Desk(series("a", max_zscore="3", zscore_window=4))
    events = desk.ingest1("a", usd("101"), view=_history(*WILD, *CALM))
    assert issues(events) == []
    assert desk.official() == (1, usd("101"))


def test_zscore_only_looks_at_its_window() -> None:
    # With a window reaching back to the wild moves, a 10 % move is ordinary.
    desk = Desk(series("a", max_zscore="3", zscore_window=8))
    events = desk.ingest1("a", usd("110"), view=_history(*WILD, *CALM))
    assert issues(events) == []
    assert desk.official() == (1, usd("110"))


def test_zscore_uses_values_received_earlier_in_the_same_batch() -> None:
    desk = Desk(series("a", max_zscore="3", zscore_window=4))
    days = [close(date(2024, 2, d)) for d in (23, 26, 27, 28, 29)]
    calm = list(zip(days, (usd(str(f)) for f in CALM), strict=True))
    events = desk.ingest("a", [*calm, (SNAP, usd("110"))])
    [z] = issues(events)
    assert (z.rule, z.snap_us) == ("spike_zscore", T0)


def test_stale_after_n_unchanged_snaps_warns_without_holding() -> None:
    desk = Desk(series("a", stale_after_snaps=3))
    days = [close(date(2024, 2, d)) for d in (23, 26, 27, 28, 29)]
    figures = ["100", "100", "100", "100.5", "100.5"]
    events = desk.ingest("a", [(d, usd(f)) for d, f in zip(days, figures, strict=True)])
    [stale] = issues(events)
    assert (stale.rule, stale.snap_us, stale.severity, stale.blocking) == (
        "stale",
        days[2].utc_us,
        "warning",
        False,
    )
    assert stale.evidence == {
        "value": "100",
        "unchanged_snaps": 3,
        "since_snap": "2024-02-23T21:00:00Z",
    }
    published = one(events, DataPublished)
    assert sorted(published.snaps) == [d.utc_us for d in days]  # a warning does not hold
    flags = dict(zip(published.snaps, published.flags, strict=True))
    assert flags[days[2].utc_us] == ["stale"]
    assert flags[days[1].utc_us] == []  # below N: nothing
    assert flags[days[4].utc_us] == []  # two unchanged only


def test_stale_counts_the_tail_of_the_previous_bucket() -> None:
    desk = Desk(series("a", stale_after_snaps=3))
    events = desk.ingest1("a", usd("100"), view=_history(Decimal(100), Decimal(100)))
    assert [i.rule for i in issues(events)] == ["stale"]
    events = Desk(series("a", stale_after_snaps=3)).ingest1(
        "a", usd("100"), view=_history(Decimal(99), Decimal(100))
    )
    assert issues(events) == []


# --- 5. calendar ---


def test_a_value_dated_on_a_holiday_in_the_series_time_zone_is_flagged() -> None:
    desk = Desk(series("a", check_calendar=True), first=close(date(2024, 1, 12)))
    friday = close(date(2024, 1, 12))
    friday_evening = parse_snap("2024-01-13T02:00:00Z")  # Saturday in UTC, Friday in New York
    mlk_day = close(date(2024, 1, 15))
    mlk_evening = parse_snap("2024-01-16T03:00:00Z")  # Tuesday in UTC, Monday in New York
    tuesday = close(date(2024, 1, 16))
    snaps = (friday, friday_evening, mlk_day, mlk_evening, tuesday)
    points = [(s, usd(str(4800 + i))) for i, s in enumerate(snaps)]
    events = desk.ingest("a", points, view=SeriesView(calendar=JAN_CALENDAR))
    found = issues(events)
    assert {i.snap_us for i in found} == {mlk_day.utc_us, mlk_evening.utc_us}
    for issue in found:
        assert (issue.rule, issue.severity, issue.blocking) == ("calendar", "warning", False)
        assert issue.evidence["date"] == "2024-01-15"
    published = one(events, DataPublished)
    assert len(published.snaps) == 5  # flagged, not held
    flags = dict(zip(published.snaps, published.flags, strict=True))
    assert flags[mlk_day.utc_us] == ["calendar"]
    assert flags[tuesday.utc_us] == []


def test_calendar_needs_both_the_rule_and_the_sessions() -> None:
    holiday = close(date(2024, 1, 15))
    without_rule = Desk(series("a"), first=holiday)
    events = without_rule.ingest1(
        "a", usd("1"), snap=holiday, view=SeriesView(calendar=JAN_CALENDAR)
    )
    assert issues(events) == []
    without_sessions = Desk(series("a", check_calendar=True), first=holiday)
    events = without_sessions.ingest1("a", usd("1"), snap=holiday)
    assert issues(events) == []


# --- 6. reject ---


def _held_by_a_bad_top_source() -> tuple[Desk, Issue, Issue]:
    desk = Desk(series("a", "b"))
    events = desk.ingest1("a", usd("-1"), user="feed-a")
    positive = the_issue(events, "positive")
    events = desk.ingest1("b", usd("100"), user="feed-b")
    brk = the_issue(events, "source_break")
    assert statuses(events) == {T0: "held"}  # a, the top source, still holds the point
    assert desk.official() is None
    return desk, positive, brk


def test_reject_excludes_the_value_and_publishes_from_the_other_sources() -> None:
    desk, positive, _ = _held_by_a_bad_top_source()
    events = desk.resolve("ops", [positive.issue_id], "reject", reason="vendor sent a bad tick")
    assert types(events) == [QualityRejected, DataReconciled, DataPublished]
    rejected = one(events, QualityRejected)
    assert (rejected.issue_ids, rejected.snaps) == ([positive.issue_id], [T0])
    assert rejected.reason == "vendor sent a bad tick"
    reconciled = one(events, DataReconciled)
    assert reconciled.contributions == [{"b": "100"}]
    assert reconciled.statuses == ["published"]
    point = row_of(events, DataPublished)
    assert (point.version, point.value, point.sources) == (1, "100", ["b"])
    assert desk.official() == (1, usd("100"))
    assert desk.bucket.issues[positive.issue_id].status == "rejected"
    # lineage: the rejected observation is kept, but no longer counts
    kept = desk.bucket.observed[T0]["a"]
    assert (kept.raw, kept.rejected) == ("-1", True)
    [summary] = desk.bucket.summaries(T0, T0 + 1, desk.decider())
    assert set(summary.figures) == {"b"}
    assert (summary.checked, summary.clean) == (2, 1)


def test_a_rejected_value_stays_out_when_other_sources_update() -> None:
    desk, positive, _ = _held_by_a_bad_top_source()
    desk.resolve("ops", [positive.issue_id], "reject")
    events = desk.ingest1("b", usd("101"), user="feed-b")
    assert one(events, DataReconciled).contributions == [{"b": "101"}]
    point = row_of(events, DataRestated)
    assert (point.version, point.value, point.cause) == (2, "101", "corrected_source")


def test_a_source_break_cannot_be_rejected() -> None:
    desk, _, brk = _held_by_a_bad_top_source()
    version = desk.bucket.version
    with pytest.raises(FailedPrecondition):
        desk.resolve("ops", [brk.issue_id], "reject")
    assert desk.bucket.version == version
    assert desk.bucket.issues[brk.issue_id].status == "open"


def test_resolving_an_issue_twice_is_a_failed_precondition() -> None:
    desk, positive, _ = _held_by_a_bad_top_source()
    desk.resolve("ops", [positive.issue_id], "reject")
    for action in ("reject", "approve"):
        with pytest.raises(FailedPrecondition, match="already rejected"):
            desk.resolve("lead", [positive.issue_id], action)


def test_an_unknown_issue_is_not_found_with_its_field_path() -> None:
    desk, positive, _ = _held_by_a_bad_top_source()
    unknown = f"{T0}-00000000-0000-0000-0000-000000000000"
    with pytest.raises(NotFound) as info:
        desk.resolve("ops", [positive.issue_id, unknown], "reject")
    assert info.value.field == "issue_ids[1]"
    assert info.value.resource.name == f"series/SPX/issues/{unknown}"
    assert info.value.reason == "ISSUE_NOT_FOUND"
    assert desk.bucket.issues[positive.issue_id].status == "open"  # nothing half-done


def test_a_resolution_needs_a_reason() -> None:
    desk, positive, _ = _held_by_a_bad_top_source()
    with pytest.raises(InvalidArgument) as info:
        desk.resolve("ops", [positive.issue_id], "reject", reason="  ")
    assert [v.field for v in info.value.violations] == ["reason"]


def test_the_reason_of_a_publication_caused_by_a_rejection() -> None:
    desk, positive, _ = _held_by_a_bad_top_source()
    events = desk.resolve("ops", [positive.issue_id], "reject", reason="bad tick")
    assert row_of(events, DataPublished).reason == "rejected: bad tick"


def test_an_unknown_action_is_refused() -> None:
    desk, positive, _ = _held_by_a_bad_top_source()
    with pytest.raises(InvalidArgument):
        desk.resolve("ops", [positive.issue_id], "aprove")


def test_rejecting_an_issue_of_a_replaced_value_leaves_the_new_value_counting() -> None:
    desk = Desk(series("a", "b"))
    events = desk.ingest1("a", usd("-1"), user="feed-a")
    old = the_issue(events, "positive")
    desk.ingest1("a", usd("100"), user="feed-a")  # the vendor's correction: published
    desk.ingest1("b", usd("105"), user="feed-b")  # beyond tolerance: a break, a stays official
    assert desk.official() == (1, usd("100"))
    try:
        events = desk.resolve("ops", [old.issue_id], "reject", reason="that -1 was wrong")
    except FailedPrecondition:
        events = []  # refusing to resolve an issue about a replaced value is fine too
    assert not desk.bucket.observed[T0]["a"].rejected
    assert none_of(events, DataRestated)
    assert desk.official() == (1, usd("100"))


def test_a_point_whose_every_value_was_rejected_cannot_be_published() -> None:
    desk = Desk(series("a", "b"))
    events = desk.ingest1("a", usd("-1"), user="feed-a")
    desk.resolve("ops", [the_issue(events, "positive").issue_id], "reject")
    c = desk.ctx("lead", NOW)
    try:
        published = desk.bucket.publish(desk.definition, [("snaps[0]", T0)], "looks fine", c)
    except (NotFound, FailedPrecondition):
        published = []
    assert none_of(published, DataPublished)


def test_a_cutoff_does_not_publish_a_rejected_value() -> None:
    desk = Desk(series("a", "b", stale_after_snaps=2, min_sources=2, cutoff_seconds=60))
    events = desk.ingest1("a", usd("100"), view=_history(Decimal(100)), now_us=T0)
    stale = the_issue(events, "stale")
    assert one(events, PublicationScheduled).due_us == [T0 + MINUTE_US]
    desk.resolve("ops", [stale.issue_id], "reject", reason="the vendor's feed froze", now_us=T0)
    events = desk.publish_due(T0 + 2 * MINUTE_US)
    assert none_of(events, DataPublished)
    assert desk.official() is None


# --- 7. override ---


def _spike_held() -> tuple[Desk, Issue]:
    desk = Desk(series("a", "b", max_jump_percent="10"))
    events = desk.ingest1("a", usd("130"), user="feed-a", view=_history(Decimal(100)))
    return desk, the_issue(events, "jump")


def test_override_publishes_a_manual_value_and_settles_the_issues() -> None:
    desk, spike = _spike_held()
    expiry = NOW + HOUR_US
    events = desk.resolve(
        "ops",
        [spike.issue_id],
        "override",
        reason="vendor glitch, close taken from the exchange",
        value=usd("101"),
        reason_code="vendor_error",
        expires_us=expiry,
    )
    assert types(events) == [QualityOverridden, DataPublished, ManualOverrideSet]
    overridden = one(events, QualityOverridden)
    assert (overridden.issue_ids, overridden.snaps) == ([spike.issue_id], [T0])
    published = one(events, DataPublished)
    assert published.mode == "manual"
    assert published.decided_at_us == NOW
    [point] = published.rows()
    assert (point.version, point.value, point.method, point.sources) == (
        1,
        "101",
        "manual",
        ["manual"],
    )
    assert point.cause == "override:vendor_error"
    assert point.reason == "vendor glitch, close taken from the exchange"
    override = one(events, ManualOverrideSet)
    assert (override.snaps, override.expires_us, override.reason_codes) == (
        [T0],
        [expiry],
        ["vendor_error"],
    )
    assert desk.bucket.issues[spike.issue_id].status == "overridden"
    assert desk.official() == (1, usd("101"))

    # automatic updates do not override a manual value
    for source, figure in (("a", "131"), ("b", "99")):
        events = desk.ingest1(source, usd(figure), user=f"feed-{source}")
        assert none_of(events, DataPublished, DataRestated)
    assert desk.official() == (1, usd("101"))
    # before its expiry, an override stays
    assert desk.expire_overrides(expiry - 1) == []
    assert desk.bucket.overrides == {T0: expiry}


def test_the_submitter_cannot_override_their_own_value() -> None:
    desk, spike = _spike_held()
    with pytest.raises(PermissionDenied):
        desk.resolve("feed-a", [spike.issue_id], "override", value=usd("101"))
    assert desk.official() is None


@pytest.mark.parametrize("expires_in_us", [-1, 0])
def test_an_override_expiring_in_the_past_is_invalid(expires_in_us: int) -> None:
    desk, spike = _spike_held()
    with pytest.raises(InvalidArgument) as info:
        desk.resolve(
            "ops",
            [spike.issue_id],
            "override",
            value=usd("101"),
            expires_us=NOW + expires_in_us,
            now_us=NOW,
        )
    assert [v.field for v in info.value.violations] == ["expire_time"]
    assert desk.official() is None
    assert desk.bucket.issues[spike.issue_id].status == "open"


def test_an_override_needs_a_value() -> None:
    desk, spike = _spike_held()
    with pytest.raises(InvalidArgument) as info:
        desk.resolve("ops", [spike.issue_id], "override")
    assert [v.field for v in info.value.violations] == ["value"]


def _overridden_break(value: str, expiry: int) -> Desk:
    """a=100 published (priority), b=101 a flagged break; ops overrides it until `expiry`."""
    desk = Desk(series("a", "b", tolerance_bps="10"))
    desk.ingest1("a", usd("100"), user="feed-a")
    brk = the_issue(desk.ingest1("b", usd("101"), user="feed-b"), "source_break")
    events = desk.resolve(
        "ops", [brk.issue_id], "override", value=usd(value), reason_code="fx", expires_us=expiry
    )
    point = row_of(events, DataRestated)
    assert (point.version, point.value, point.method, point.cause) == (
        2,
        value,
        "manual",
        "override:fx",
    )
    return desk


def test_resolving_another_issue_of_an_overridden_point_keeps_the_manual_value() -> None:
    desk, positive, brk = _held_by_a_bad_top_source()
    events = desk.resolve("ops", [brk.issue_id], "override", value=usd("100.5"))
    assert row_of(events, DataPublished).method == "manual"
    events = desk.resolve("lead", [positive.issue_id], "reject")
    assert one(events, DataReconciled).contributions == [{"b": "100"}]
    assert none_of(events, DataPublished, DataRestated)
    assert desk.official() == (1, usd("100.5"))


def test_an_expired_override_gives_way_to_the_reconciled_value() -> None:
    expiry = NOW + HOUR_US
    desk = _overridden_break("100.70", expiry)
    events = desk.ingest1("a", usd("99"), user="feed-a")  # would restate without the override
    assert none_of(events, DataPublished, DataRestated)
    assert desk.official() == (2, usd("100.70"))

    assert desk.expire_overrides(expiry - 1) == []
    events = desk.expire_overrides(expiry + MINUTE_US)
    assert types(events) == [ManualOverrideExpired, DataReconciled, DataRestated]
    assert one(events, ManualOverrideExpired).snaps == [T0]
    restated = one(events, DataRestated)
    assert restated.decided_at_us == expiry + MINUTE_US
    [point] = restated.rows()
    assert (point.version, point.value, point.sources, point.method) == (3, "99", ["a"], "priority")
    assert point.cause == "redecided"
    assert "override expired" in point.reason
    assert desk.official() == (3, usd("99"))
    assert desk.bucket.overrides == {}
    assert desk.expire_overrides(expiry + HOUR_US) == []  # once only

    # automatic reconciliation governs again
    point = row_of(desk.ingest1("a", usd("98"), user="feed-a"), DataRestated)
    assert (point.version, point.cause) == (4, "corrected_source")


def test_an_expired_override_within_tolerance_of_the_reconciled_value_stays() -> None:
    expiry = NOW + HOUR_US
    desk = _overridden_break("100.05", expiry)  # 5 bps from a's 100
    events = desk.expire_overrides(expiry)
    assert types(events) == [ManualOverrideExpired, DataReconciled]
    assert desk.official() == (2, usd("100.05"))


def test_an_override_without_expiry_never_expires() -> None:
    desk = _overridden_break("100.70", 0)
    assert desk.expire_overrides(NOW + 365 * 86_400 * S_US) == []
    assert desk.official() == (2, usd("100.70"))


def test_a_manual_restatement_with_an_expiry_is_an_override_too() -> None:
    desk = Desk(series("a"))
    desk.ingest1("a", usd("100"))
    c = desk.ctx("ops", NOW)
    events = desk.bucket.restate(
        desk.definition, T0, usd("100.70"), "busted trade", c, "busted", NOW + HOUR_US
    )
    desk.commit(events, c)
    point = row_of(events, DataRestated)
    assert (point.version, point.cause, point.reason) == (2, "override:busted", "busted trade")
    assert one(events, ManualOverrideSet).expires_us == [NOW + HOUR_US]
    events = desk.expire_overrides(NOW + HOUR_US)
    assert row_of(events, DataRestated).value == "100"
    assert desk.official() == (3, usd("100"))


# --- 8. cut-off ---


def test_cutoff_publishes_a_pending_point_with_what_has_arrived() -> None:
    desk = Desk(series("a", "b", min_sources=2, cutoff_seconds=60))
    events = desk.ingest1("a", usd("100"), now_us=T0 + 5 * S_US)
    assert types(events) == [DataIngested, DataReconciled, PublicationScheduled]
    assert statuses(events) == {T0: "pending"}
    scheduled = one(events, PublicationScheduled)
    assert (scheduled.snaps, scheduled.due_us) == ([T0], [T0 + 60 * S_US])
    events = desk.ingest1("a", usd("100.01"), now_us=T0 + 10 * S_US)  # already scheduled
    assert none_of(events, PublicationScheduled, DataPublished)

    assert desk.publish_due(T0 + 59 * S_US) == []
    events = desk.publish_due(T0 + 60 * S_US, command_id="cutoff-1")
    published = one(events, DataPublished)
    assert published.mode == "cutoff"
    assert published.decided_at_us == T0 + 60 * S_US
    [point] = published.rows()
    assert (point.version, point.value, point.cause) == (1, "100.01", "cutoff")
    assert "1 of 2" in point.reason
    assert desk.official() == (1, usd("100.01"))

    # again, by the same or another command: nothing more
    c = CommandContext("cutoff-1", "qis-scheduler", T0 + 60 * S_US)
    assert desk.bucket.publish_due(desk.definition, c) == []
    assert desk.publish_due(T0 + HOUR_US) == []
    assert desk.bucket.outcome_of("cutoff-1") is not None
    assert desk.bucket.due_cutoffs(T0 + HOUR_US) == []
    # the second source arrives later: reconciled as usual, never a second first version
    events = desk.ingest1("b", usd("100.02"))
    assert statuses(events) == {T0: "published"}
    assert none_of(events, DataPublished, DataRestated)
    assert desk.official() == (1, usd("100.01"))


def test_enough_sources_before_the_cutoff_publish_at_once() -> None:
    desk = Desk(series("a", "b", min_sources=2, cutoff_seconds=60))
    desk.ingest1("a", usd("100"), now_us=T0)
    events = desk.ingest1("b", usd("100.01"), now_us=T0 + 20 * S_US)
    point = row_of(events, DataPublished)
    assert (point.version, point.cause) == (1, "")
    assert desk.publish_due(T0 + HOUR_US) == []


def test_a_held_point_at_cutoff_is_flagged_not_published() -> None:
    desk = Desk(series("a", "b", min_sources=2, cutoff_seconds=60))
    events = desk.ingest1("b", usd("100"), now_us=T0)  # pending: scheduled
    assert one(events, PublicationScheduled).due_us == [T0 + 60 * S_US]
    events = desk.ingest1("a", usd("-1"), now_us=T0 + S_US)  # the top source holds it
    assert statuses(events) == {T0: "held"}
    events = desk.publish_due(T0 + 2 * MINUTE_US)
    assert none_of(events, DataPublished, DataRestated)
    missed = the_issue(events, "missed_cutoff")
    assert (missed.snap_us, missed.source_id, missed.severity, missed.blocking) == (
        T0,
        "",
        "warning",
        False,
    )
    assert missed.evidence == {"due_us": T0 + 60 * S_US, "status": "held"}
    assert desk.publish_due(T0 + 3 * MINUTE_US) == []  # flagged once
    assert desk.official() is None


def test_the_cutoff_reason_counts_the_sources_that_arrived() -> None:
    desk = Desk(series("a", "b", "c", min_sources=3, cutoff_seconds=60))
    desk.ingest1("a", usd("100"), now_us=T0)
    desk.ingest1("b", usd("100.01"), now_us=T0)
    point = row_of(desk.publish_due(T0 + MINUTE_US), DataPublished)
    assert "2 of 3" in point.reason


def test_an_approved_point_waiting_for_sources_is_published_at_cutoff() -> None:
    desk = Desk(series("a", "b", min_sources=2, cutoff_seconds=60, max_jump_percent="10"))
    events = desk.ingest1("a", usd("130"), user="feed-a", view=_history(Decimal(100)), now_us=T0)
    spike = the_issue(events, "jump")
    events = desk.resolve("ops", [spike.issue_id], "approve", now_us=T0 + 30 * S_US)
    assert statuses(events) == {T0: "pending"}  # approved, still waiting for a second source
    events = desk.publish_due(T0 + 2 * MINUTE_US)
    point = row_of(events, DataPublished)
    assert (point.value, point.cause) == ("130", "cutoff")


def test_approving_a_point_level_spike_does_not_approve_later_source_breaks() -> None:
    """Found in review: any approved issue about no single value (a spike on a point made of
    several sources, a missed cut-off) used to mark the point's breaks approved, so a later
    break that policy blocks was published."""
    desk = Desk(
        series("a", "b", "c", method=ReconciliationMethod.CONSENSUS, on_break=BreakAction.BLOCK)
    )
    desk.ingest1("a", usd("100.00"), user="feed-a")
    desk.ingest1("b", usd("100.04"), user="feed-b")
    spike = Issue(
        issue_id=f"{T0}-spike",
        snap_us=T0,
        source_id="",  # the point's consensus of a and b, as the spike router raises it
        rule="spike",
        severity="warning",
        blocking=False,
        evidence={},
    )
    c = desk.ctx("router", NOW)
    desk.commit([QualityIssueDetected(series_id="SPX", issues=[spike])], c)
    desk.resolve("lead", [spike.issue_id], "approve")
    events = desk.ingest1("c", usd("150"), user="feed-c")
    assert the_issue(events, "source_break").blocking
    assert statuses(events) == {T0: "held"}
