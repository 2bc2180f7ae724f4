"""The SeriesBucket aggregate: ingest, validation, reconciliation, publication, restatement."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import TypeVar

import pytest
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.definitions import (
    BreakAction,
    PublicationMode,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DomainEvent,
    OfficialRow,
    QualityApproved,
    QualityIssueDetected,
    RawValue,
)
from qis_domain.quality import PointStatus
from qis_domain.series_bucket import Recorded, SeriesBucket, bucket_stream
from qis_domain.snaps import Frequency, Snap, bucket_of, parse_snap
from qis_domain.values import (
    CorporateAction,
    CorporateActionType,
    DataType,
    DataValue,
    OhlcBar,
    Price,
    decode_value,
)

E = TypeVar("E", bound=DomainEvent)

SNAP = parse_snap("2024-03-01T17:30:00-05:00")  # the New York close, sent with its offset
SNAP2 = parse_snap("2024-03-04T22:30:00Z")
SNAP3 = parse_snap("2024-03-05T22:30:00Z")
NOW_US = SNAP.utc_us + 3_600_000_000


def usd(text: str) -> Price:
    return Price(Decimal(text), "USD")


def series(
    *source_ids: str,
    method: ReconciliationMethod = ReconciliationMethod.PRIORITY,
    tolerance_bps: str = "10",
    tolerance_abs: str = "0",
    on_break: BreakAction = BreakAction.FLAG,
    require_positive: bool = True,
    mode: PublicationMode = PublicationMode.AUTOMATIC,
    min_sources: int = 1,
    min_quality_score: str | None = None,
    precision: int = 0,
    data_type: DataType = DataType.PRICE,
) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=data_type,
        frequency=Frequency.DAILY,
        unit="USD",
        precision=precision,
        time_zone="America/New_York",
        sources=tuple(
            SeriesSource(source_id=s, priority=i + 1) for i, s in enumerate(source_ids or ("a",))
        ),
        validation=ValidationRules(require_positive=require_positive),
        reconciliation=ReconciliationPolicy(
            method=method,
            tolerance_bps=Decimal(tolerance_bps),
            tolerance_abs=Decimal(tolerance_abs),
            on_break=on_break,
        ),
        publication=PublicationPolicy(
            mode=mode,
            min_sources=min_sources,
            min_quality_score=None if min_quality_score is None else Decimal(min_quality_score),
        ),
    )


class Harness:
    """One bucket plus a fake log: decides, then applies the events as the repository does
    (one commit position per command, stream versions counting up from 0)."""

    def __init__(self, definition: SeriesDefinition) -> None:
        self.definition = definition
        self.bucket = SeriesBucket("SPX", bucket_of(SNAP.utc_us, definition.frequency))
        self.position = 1000
        self._commands = 0
        self.last_command_id = ""
        # what a reader of the log sees: official (version, raw value) and status per snap
        self.officials: dict[int, tuple[int, RawValue]] = {}
        self.statuses: dict[int, str] = {}
        self.log: list[tuple[DomainEvent, Recorded]] = []

    def ctx(self, user: str = "feed", command_id: str | None = None) -> CommandContext:
        self._commands += 1
        self.last_command_id = command_id or f"cmd-{self._commands}"
        return CommandContext(self.last_command_id, user, NOW_US)

    def commit(self, events: list[DomainEvent], c: CommandContext) -> list[DomainEvent]:
        if not events:
            return events
        self.position += 7
        first = 0 if self.bucket.version is None else self.bucket.version + 1
        for offset, event in enumerate(events):
            meta = Recorded(c.command_id, c.user_id, self.position, first + offset)
            self.bucket.apply(event, meta)
            self.log.append((event, meta))
            if isinstance(event, DataReconciled):
                self.statuses.update(zip(event.snaps, event.statuses, strict=True))
            elif isinstance(event, DataPublished | DataRestated):
                for row in event.rows():
                    known = self.officials.get(row.snap_us)
                    assert row.version == (1 if known is None else known[0] + 1)
                    self.officials[row.snap_us] = (row.version, row.value)
        return events

    def ingest(
        self,
        source: str,
        points: Sequence[tuple[Snap, DataValue]],
        user: str = "feed",
        command_id: str | None = None,
    ) -> list[DomainEvent]:
        c = self.ctx(user, command_id)
        return self.commit(self.bucket.ingest(self.definition, source, points, c), c)

    def ingest1(self, source: str, value: DataValue, user: str = "feed") -> list[DomainEvent]:
        return self.ingest(source, [(SNAP, value)], user)

    def publish(self, user: str, *snaps: int, comment: str = "approved") -> list[DomainEvent]:
        c = self.ctx(user)
        pairs = [(f"snaps[{i}]", s) for i, s in enumerate(snaps)]
        return self.commit(self.bucket.publish(self.definition, pairs, comment, c), c)

    def restate(self, user: str, value: DataValue, reason: str) -> list[DomainEvent]:
        c = self.ctx(user)
        events = self.bucket.restate(self.definition, SNAP.utc_us, value, reason, c)
        return self.commit(events, c)

    def official(self, snap: Snap = SNAP) -> tuple[int, DataValue] | None:
        """Version and value of the official point, from the events published so far."""
        official = self.officials.get(snap.utc_us)
        if official is None:
            return None
        d = self.definition
        return official[0], decode_value(d.data_type, d.unit, official[1])

    def status(self, snap: Snap = SNAP) -> PointStatus:
        return PointStatus(self.statuses[snap.utc_us])


def types(events: Sequence[DomainEvent]) -> list[type[DomainEvent]]:
    return [type(e) for e in events]


def one(events: Sequence[DomainEvent], cls: type[E]) -> E:
    [found] = [e for e in events if isinstance(e, cls)]
    return found


def none_of(events: Sequence[DomainEvent], *classes: type[DomainEvent]) -> bool:
    return not any(isinstance(e, classes) for e in events)


def official_point(
    events: Sequence[DomainEvent], cls: type[DataPublished] | type[DataRestated]
) -> OfficialRow:
    [row] = one(events, cls).rows()
    return row


def reconciled_row(events: Sequence[DomainEvent], i: int = 0) -> dict[str, object]:
    r = one(events, DataReconciled)
    return {
        "snap_us": r.snaps[i],
        "value": r.values[i],
        "method": r.methods[i],
        "contributions": r.contributions[i],
        "excluded": r.excluded[i],
        "quality_score": r.quality_scores[i],
        "status": r.statuses[i],
    }


# --- first publication ---


def test_first_ingest_auto_publishes_version_1() -> None:
    h = Harness(series("a", "b"))
    events = h.ingest1("a", usd("5123.41"))
    assert types(events) == [DataIngested, DataReconciled, DataPublished]
    ingested = one(events, DataIngested)
    assert (ingested.series_id, ingested.source_id) == ("SPX", "a")
    assert (ingested.data_type, ingested.unit) == (DataType.PRICE, "USD")
    assert ingested.snaps == [SNAP.utc_us]
    assert ingested.offsets == [-5 * 3600]
    assert ingested.values == ["5123.41"]
    reconciled = reconciled_row(events)
    assert reconciled["status"] == "published"
    assert reconciled["contributions"] == {"a": "5123.41"}
    assert reconciled["quality_score"] == "1"
    assert reconciled["excluded"] == []
    published = one(events, DataPublished)
    assert published.mode == "automatic"
    [point] = published.rows()
    assert point.snap_us == SNAP.utc_us
    assert point.version == 1
    assert point.value == "5123.41"
    assert point.sources == ["a"]
    assert point.method == "priority"
    assert point.flags == []
    assert (point.reason, point.cause) == ("", "")
    assert h.official() == (1, usd("5123.41"))
    assert h.bucket.version == 2
    assert h.bucket.stream == bucket_stream("SPX", h.bucket.bucket_us)


def test_negative_price_is_stored_flagged_and_held() -> None:
    h = Harness(series("a", "b", require_positive=True))
    events = h.ingest1("a", usd("-3.5"))
    assert types(events) == [DataIngested, QualityIssueDetected, DataReconciled]
    assert one(events, DataIngested).values == ["-3.5"]  # stored, not dropped
    [issue] = one(events, QualityIssueDetected).issues
    assert issue.rule == "positive"
    assert issue.severity == "error"
    assert issue.blocking
    assert issue.source_id == "a"
    assert issue.snap_us == SNAP.utc_us
    assert issue.evidence == {"value": "-3.5"}
    reconciled = reconciled_row(events)
    assert reconciled["status"] == "held"
    assert reconciled["quality_score"] == "0.5"
    assert h.official() is None
    assert h.status() is PointStatus.HELD
    # The failure is remembered from the issue event: a later value from another source does
    # not re-run a's rules, yet a's value (top priority) is still held and flagged.
    events = h.ingest1("b", usd("5"))
    assert [i.rule for i in one(events, QualityIssueDetected).issues] == ["source_break"]
    reconciled = reconciled_row(events)
    assert (reconciled["status"], reconciled["quality_score"]) == ("held", "0.3")
    assert h.official() is None


def test_negative_price_is_published_when_positivity_is_not_required() -> None:
    h = Harness(series("a", require_positive=False))
    events = h.ingest1("a", usd("-37.63"))
    assert types(events) == [DataIngested, DataReconciled, DataPublished]
    assert h.official() == (1, usd("-37.63"))


def test_issue_ids_are_deterministic_per_command() -> None:
    definition = series("a")
    c = CommandContext("same-command", "feed", NOW_US)
    first = SeriesBucket("SPX", 0).ingest(definition, "a", [(SNAP, usd("-1"))], c)
    again = SeriesBucket("SPX", 0).ingest(definition, "a", [(SNAP, usd("-1"))], c)
    other = SeriesBucket("SPX", 0).ingest(
        definition, "a", [(SNAP, usd("-1"))], CommandContext("other", "feed", NOW_US)
    )
    [issue] = one(first, QualityIssueDetected).issues
    assert issue.issue_id == one(again, QualityIssueDetected).issues[0].issue_id
    assert issue.issue_id != one(other, QualityIssueDetected).issues[0].issue_id


# --- priority waterfall, late and corrected sources ---


def test_late_top_source_restates_beyond_tolerance() -> None:
    h = Harness(series("a", "b", "c", tolerance_bps="10"))
    events = h.ingest1("b", usd("100.00"))
    assert official_point(events, DataPublished).sources == ["b"]
    assert h.official() == (1, usd("100.00"))

    events = h.ingest1("a", usd("100.50"))  # 50 bps away: beyond 10 bps
    assert none_of(events, DataPublished)
    restated = official_point(events, DataRestated)
    assert restated.version == 2
    assert restated.cause == "late_source"
    assert "a" in restated.reason
    assert restated.sources == ["a"]
    assert restated.value == "100.50"
    [brk] = one(events, QualityIssueDetected).issues
    assert brk.rule == "source_break"
    assert brk.source_id == ""
    assert brk.severity == "warning"
    assert not brk.blocking
    assert brk.evidence == {"chosen": "100.50", "sources": {"b": "100.00"}}
    assert h.official() == (2, usd("100.50"))

    events = h.ingest1("c", usd("100.49"))  # a lower priority: the official value stays
    assert none_of(events, DataPublished, DataRestated)
    assert h.official() == (2, usd("100.50"))


def test_corrected_value_from_the_same_source_restates() -> None:
    h = Harness(series("a", "b"))
    h.ingest1("a", usd("100"))
    events = h.ingest1("a", usd("101"))
    assert types(events) == [DataIngested, DataReconciled, DataRestated]
    point = official_point(events, DataRestated)
    assert (point.version, point.cause) == (2, "corrected_source")
    assert "a" in point.reason
    events = h.ingest1("a", usd("99"))
    point = official_point(events, DataRestated)
    assert (point.version, point.cause) == (3, "corrected_source")
    assert h.official() == (3, usd("99"))


@pytest.mark.parametrize(
    ("tolerance_bps", "tolerance_abs", "new"),
    [("10", "0", "100.10"), ("0", "0.25", "99.75"), ("0", "0", "100.000")],
)
def test_a_change_within_tolerance_makes_no_new_version(
    tolerance_bps: str, tolerance_abs: str, new: str
) -> None:
    h = Harness(series("a", "b", tolerance_bps=tolerance_bps, tolerance_abs=tolerance_abs))
    h.ingest1("a", usd("100"))
    events = h.ingest1("a", usd(new))
    assert types(events) == [DataIngested, DataReconciled]
    assert h.official() == (1, usd("100"))


def test_a_late_top_source_within_tolerance_makes_no_new_version() -> None:
    h = Harness(series("a", "b", tolerance_bps="10"))
    h.ingest1("b", usd("100"))
    events = h.ingest1("a", usd("100.05"))
    assert none_of(events, DataPublished, DataRestated, QualityIssueDetected)
    assert h.official() == (1, usd("100"))


def test_corrected_bar_with_the_same_close_is_restated() -> None:
    h = Harness(series("a", data_type=DataType.OHLC_BAR, tolerance_bps="0"))
    h.ingest1("a", OhlcBar(Decimal(10), Decimal(12), Decimal(9), Decimal(11)))
    events = h.ingest1("a", OhlcBar(Decimal(10), Decimal(15), Decimal(9), Decimal(11)))
    assert DataRestated in types(events)
    assert official_point(events, DataRestated).version == 2


def test_corrected_corporate_action_date_is_restated() -> None:
    h = Harness(series("a", data_type=DataType.CORPORATE_ACTION))

    def dividend(ex_date: date) -> CorporateAction:
        return CorporateAction(
            CorporateActionType.CASH_DIVIDEND, ex_date, amount=Decimal("0.5"), currency="USD"
        )

    h.ingest1("a", dividend(date(2024, 3, 1)))
    events = h.ingest1("a", dividend(date(2024, 3, 4)))
    assert DataRestated in types(events)
    value = official_point(events, DataRestated).value
    assert isinstance(value, dict)
    assert value["corporate_action"]["ex_date"] == "2024-03-04"


# --- breaks and quality thresholds ---


def test_consensus_excludes_an_outlier_and_raises_a_source_break() -> None:
    h = Harness(series("a", "b", "c", method=ReconciliationMethod.CONSENSUS, tolerance_bps="10"))
    h.ingest1("a", usd("100.00"))
    h.ingest1("b", usd("100.04"))
    events = h.ingest1("c", usd("150"))
    reconciled = reconciled_row(events)
    assert reconciled["method"] == "consensus"
    assert reconciled["excluded"] == ["c"]
    assert reconciled["contributions"] == {"a": "100.00", "b": "100.04"}
    assert reconciled["status"] == "published"
    assert reconciled["quality_score"] == "0.8"
    [brk] = one(events, QualityIssueDetected).issues
    assert brk.rule == "source_break"
    assert brk.severity == "warning"
    assert brk.evidence["sources"] == {"c": "150"}
    assert none_of(events, DataRestated)  # still 100.00 (closest to the agreeing median)
    assert h.official() == (1, usd("100.00"))


def test_a_break_blocks_publication_when_the_policy_says_so() -> None:
    h = Harness(series("a", "b", on_break=BreakAction.BLOCK, min_sources=2))
    h.ingest1("a", usd("100"))
    events = h.ingest1("b", usd("110"))
    [brk] = one(events, QualityIssueDetected).issues
    assert (brk.rule, brk.severity, brk.blocking) == ("source_break", "error", True)
    assert none_of(events, DataPublished)
    assert h.status() is PointStatus.HELD


def test_below_the_quality_threshold_stays_pending() -> None:
    h = Harness(series("a", "b", min_quality_score="0.9"))
    events = h.ingest1("a", usd("100"))  # score 1: published
    assert official_point(events, DataPublished).quality_score == "1"
    events = h.ingest1("b", usd("120"))  # a break costs 0.2: 0.8 < 0.9
    reconciled = reconciled_row(events)
    assert (reconciled["quality_score"], reconciled["status"]) == ("0.8", "pending")
    h2 = Harness(series("a", "b", min_quality_score="0.9"))
    events = h2.ingest1("b", usd("120"))
    events = h2.ingest1("a", usd("100"))  # the late top source breaks with b: pending
    assert none_of(events, DataPublished, DataRestated)
    assert h2.official() == (1, usd("120"))


def test_min_sources_keeps_the_point_pending_until_enough_sources_arrive() -> None:
    h = Harness(series("a", "b", "c", min_sources=2))
    events = h.ingest1("b", usd("100"))
    assert types(events) == [DataIngested, DataReconciled]
    assert reconciled_row(events)["status"] == "pending"
    assert h.official() is None
    events = h.ingest1("b", usd("100.01"))  # the same source again is still one source
    assert none_of(events, DataPublished)
    events = h.ingest1("c", usd("100.02"))
    point = official_point(events, DataPublished)
    assert point.version == 1
    assert point.sources == ["b"]
    assert h.official() == (1, usd("100.01"))


# --- manual publication and four-eyes ---


def test_manual_mode_holds_then_another_user_publishes() -> None:
    h = Harness(series("a", "b", mode=PublicationMode.MANUAL))
    events = h.ingest1("a", usd("100"), user="alice")
    assert types(events) == [DataIngested, DataReconciled]
    assert h.status() is PointStatus.HELD
    events = h.publish("bob", SNAP.utc_us, comment="checked against the close")
    published = one(events, DataPublished)
    assert published.mode == "manual"
    [point] = published.rows()
    assert point.version == 1
    assert point.reason == "checked against the close"
    assert point.sources == ["a"]
    assert h.official() == (1, usd("100"))
    assert h.bucket.outcome_of(h.last_command_id) == CommandOutcome(h.position, published=1)


def test_four_eyes_the_submitter_cannot_publish() -> None:
    h = Harness(series("a", "b", mode=PublicationMode.MANUAL))
    h.ingest1("a", usd("100"), user="alice")
    with pytest.raises(PermissionDenied, match="four-eyes"):
        h.publish("alice", SNAP.utc_us)
    assert h.official() is None


def test_publishing_an_official_value_again_changes_nothing() -> None:
    h = Harness(series("a", "b", mode=PublicationMode.MANUAL))
    h.ingest1("a", usd("100"), user="alice")
    h.publish("bob", SNAP.utc_us)
    again = h.bucket.publish(h.definition, [("snaps[0]", SNAP.utc_us)], "again", h.ctx("carol"))
    assert again == []


def test_manual_mode_a_new_value_needs_a_new_approval() -> None:
    h = Harness(series("a", "b", mode=PublicationMode.MANUAL))
    h.ingest1("a", usd("100"), user="alice")
    h.publish("bob", SNAP.utc_us)
    events = h.ingest1("a", usd("105"), user="alice")
    assert none_of(events, DataPublished, DataRestated)
    events = h.publish("bob", SNAP.utc_us, comment="confirmed by phone")
    point = official_point(events, DataRestated)
    assert (point.version, point.cause, point.reason) == (
        2,
        "approved_change",
        "confirmed by phone",
    )
    assert h.official() == (2, usd("105"))


def test_publish_unknown_snap_names_the_field_path() -> None:
    h = Harness(series("a", mode=PublicationMode.MANUAL))
    h.ingest1("a", usd("100"), user="alice")
    with pytest.raises(NotFound) as info:
        h.bucket.publish(
            h.definition,
            [("snaps[0]", SNAP.utc_us), ("snaps[1]", SNAP2.utc_us)],
            "ok",
            h.ctx("bob"),
        )
    assert info.value.field == "snaps[1]"
    assert info.value.resource.name == f"series/{h.bucket.series_id}/points/{SNAP2.isoformat()}"
    assert info.value.reason == "POINT_NOT_FOUND"


def test_publish_the_same_snap_twice_in_one_command() -> None:
    h = Harness(series("a", mode=PublicationMode.MANUAL))
    h.ingest1("a", usd("100"), user="alice")
    c = h.ctx("bob")
    try:
        pairs = [("snaps[0]", SNAP.utc_us), ("snaps[1]", SNAP.utc_us)]
        events = h.bucket.publish(h.definition, pairs, "", c)
    except InvalidArgument:
        return
    points = [p for e in events if isinstance(e, DataPublished) for p in e.rows()]
    assert [p.version for p in points] == [1]


# --- manual restatement ---


def test_restate_an_unpublished_point_fails() -> None:
    h = Harness(series("a", "b", min_sources=2))
    h.ingest1("a", usd("100"))
    with pytest.raises(FailedPrecondition, match="not been published"):
        h.bucket.restate(h.definition, SNAP.utc_us, usd("101"), "fix", h.ctx("ops"))
    with pytest.raises(FailedPrecondition):
        h.bucket.restate(h.definition, SNAP2.utc_us, usd("101"), "fix", h.ctx("ops"))


@pytest.mark.parametrize("reason", ["", " \t"])
def test_restate_needs_a_reason(reason: str) -> None:
    h = Harness(series("a"))
    h.ingest1("a", usd("100"))
    with pytest.raises(InvalidArgument) as info:
        h.bucket.restate(h.definition, SNAP.utc_us, usd("101"), reason, h.ctx("ops"))
    assert [v.field for v in info.value.violations] == ["reason"]


def test_manual_restatement_is_a_new_version_that_automation_does_not_override() -> None:
    h = Harness(series("a", "b"))
    h.ingest1("a", usd("100"))
    events = h.restate("ops", usd("100.75"), "exchange busted the closing trade")
    point = official_point(events, DataRestated)
    assert point.version == 2
    assert point.method == "manual"
    assert point.sources == ["manual"]
    assert point.cause == "manual_correction"
    assert point.reason == "exchange busted the closing trade"
    assert point.value == "100.75"
    assert h.official() == (2, usd("100.75"))

    events = h.ingest1("a", usd("90"))  # a later, very different automatic update
    assert none_of(events, DataPublished, DataRestated)
    events = h.ingest1("b", usd("80"))
    assert none_of(events, DataPublished, DataRestated)
    assert h.official() == (2, usd("100.75"))

    events = h.restate("ops", usd("100.70"), "second look")
    assert official_point(events, DataRestated).version == 3


# --- command shape and outcomes ---


def test_duplicate_snaps_within_one_ingest_are_rejected() -> None:
    h = Harness(series("a"))
    same_instant = parse_snap("2024-03-01T22:30:00Z")  # SNAP in UTC, other offset
    assert same_instant.utc_us == SNAP.utc_us
    with pytest.raises(InvalidArgument) as info:
        h.bucket.ingest(h.definition, "a", [(SNAP, usd("1")), (same_instant, usd("2"))], h.ctx())
    assert [v.field for v in info.value.violations] == ["points"]
    assert h.bucket.version is None


def test_outcome_of_counts_accepted_flagged_and_published() -> None:
    h = Harness(series("a", require_positive=True))
    points = [(SNAP, usd("100")), (SNAP2, usd("-1")), (SNAP3, usd("101"))]
    assert h.bucket.outcome_of("load-1") is None
    h.ingest("a", points, command_id="load-1")
    assert h.bucket.outcome_of("load-1") == CommandOutcome(
        h.position, accepted=3, flagged=1, published=2
    )
    h.ingest("a", [(SNAP, usd("102"))], command_id="load-2")  # restates one point
    assert h.bucket.outcome_of("load-2") == CommandOutcome(h.position, accepted=1, published=1)
    assert h.bucket.outcome_of("load-1") is not None
    assert h.bucket.outcome_of("load-1") != h.bucket.outcome_of("load-2")


def test_flagged_counts_points_not_issues() -> None:
    h = Harness(series("a", data_type=DataType.OHLC_BAR, require_positive=True))
    bad = OhlcBar(Decimal(-1), Decimal(-2), Decimal(0), Decimal(-3))  # two rules fail
    events = h.ingest("a", [(SNAP, bad)], command_id="bars")
    assert sorted(i.rule for i in one(events, QualityIssueDetected).issues) == [
        "ohlc_consistency",
        "positive",
    ]
    assert h.bucket.outcome_of("bars") == CommandOutcome(h.position, accepted=1, flagged=1)


def test_one_command_carries_a_batch_in_one_event_each() -> None:
    h = Harness(series("a"))
    events = h.ingest("a", [(SNAP, usd("1")), (SNAP2, usd("2")), (SNAP3, usd("3"))])
    assert types(events) == [DataIngested, DataReconciled, DataPublished]
    assert [p.snap_us for p in one(events, DataPublished).rows()] == [
        SNAP.utc_us,
        SNAP2.utc_us,
        SNAP3.utc_us,
    ]


@pytest.mark.parametrize(
    ("raw", "official"),
    [
        ("1.005", "1.00"),  # half even: down to the even digit
        ("1.015", "1.02"),  # half even: up to the even digit
        ("1.0251", "1.03"),  # above half
        ("-1.005", "-1.00"),
        ("2", "2.00"),  # scale is fixed too
    ],
)
def test_official_value_is_rounded_half_even_to_the_precision(raw: str, official: str) -> None:
    h = Harness(series("a", precision=2, require_positive=False))
    events = h.ingest1("a", usd(raw))
    assert one(events, DataIngested).values == [raw]  # the observation is kept as sent
    assert official_point(events, DataPublished).value == official


def test_rounding_applies_to_every_price_of_a_bar_but_not_its_volume() -> None:
    h = Harness(series("a", precision=1, data_type=DataType.OHLC_BAR))
    bar = OhlcBar(
        Decimal("10.25"), Decimal("10.35"), Decimal("10.15"), Decimal("10.26"), Decimal("7.77")
    )
    events = h.ingest1("a", bar)
    assert official_point(events, DataPublished).value == {
        "bar": {"open": "10.2", "high": "10.4", "low": "10.2", "close": "10.3", "volume": "7.77"}
    }


def test_a_huge_value_does_not_crash_rounding() -> None:
    h = Harness(series("a", precision=2))
    with contextlib.suppress(DomainError):  # refusing it would be fine; crashing is not
        h.ingest1("a", usd("1e26"))


def test_rounded_values_are_what_restatement_compares() -> None:
    h = Harness(series("a", "b", precision=2, tolerance_bps="0"))
    events = h.ingest1("b", usd("2.345"))  # sole source: rounded half even
    assert official_point(events, DataPublished).value == "2.34"
    events = h.ingest1("b", usd("2.3449"))  # still 2.34 once rounded: nothing new
    assert none_of(events, DataPublished, DataRestated)
    events = h.ingest1("a", usd("2.355"))  # reconciled from two sources, rounded too
    restated = official_point(events, DataRestated)
    assert (restated.version, restated.value, restated.cause) == (2, "2.36", "late_source")


def test_manual_restatement_respects_the_precision() -> None:
    h = Harness(series("a", precision=2))
    h.ingest1("a", usd("100.25"))
    try:
        events = h.restate("ops", usd("100.255"), "typo")
    except InvalidArgument:
        return
    assert official_point(events, DataRestated).value in ("100.26", "100.25")


def test_a_warning_flags_but_does_not_hold() -> None:
    h = Harness(series("a", data_type=DataType.CORPORATE_ACTION))
    action = CorporateAction(
        CorporateActionType.CASH_DIVIDEND,
        date(2024, 3, 1),
        record_date=date(2024, 2, 29),
        amount=Decimal("0.24"),
        currency="USD",
    )
    events = h.ingest1("a", action)
    [issue] = one(events, QualityIssueDetected).issues
    assert (issue.rule, issue.severity, issue.blocking) == (
        "corporate_action_dates",
        "warning",
        False,
    )
    point = official_point(events, DataPublished)
    assert point.flags == ["corporate_action_dates"]
    assert point.quality_score == "0.8"
    assert h.official() == (1, action)
    assert h.bucket.outcome_of(h.last_command_id) == CommandOutcome(
        h.position, accepted=1, flagged=1, published=1
    )


def test_four_eyes_covers_every_contributing_source() -> None:
    h = Harness(
        series("a", "b", "c", method=ReconciliationMethod.MEDIAN, mode=PublicationMode.MANUAL)
    )
    h.ingest1("a", usd("100"), user="alice")
    h.ingest1("b", usd("100.01"), user="bob")
    h.ingest1("c", usd("100.02"), user="carol")
    for submitter in ("alice", "bob", "carol"):
        with pytest.raises(PermissionDenied):
            h.publish(submitter, SNAP.utc_us)
    events = h.publish("dave", SNAP.utc_us)
    point = official_point(events, DataPublished)
    assert (point.method, point.sources, point.value) == ("median", ["a", "b", "c"], "100.01")


def test_a_held_point_is_published_once_a_clean_value_replaces_the_bad_one() -> None:
    h = Harness(series("a", require_positive=True))
    h.ingest1("a", usd("-1"))
    assert h.status() is PointStatus.HELD
    events = h.ingest1("a", usd("1"))
    assert none_of(events, QualityIssueDetected)
    point = official_point(events, DataPublished)
    assert (point.version, point.value, point.flags) == (1, "1", [])


def test_a_bucket_rebuilt_from_its_events_decides_the_same() -> None:
    definition = series("a", "b", "c", method=ReconciliationMethod.CONSENSUS, tolerance_bps="10")
    h = Harness(definition)
    h.ingest("a", [(SNAP, usd("100")), (SNAP2, usd("-5"))], user="alice")
    h.ingest("b", [(SNAP, usd("100.05")), (SNAP2, usd("7"))], user="bob")
    h.ingest("c", [(SNAP, usd("130"))], user="carol")
    rebuilt = SeriesBucket(h.bucket.series_id, h.bucket.bucket_us)
    for event, meta in h.log:
        rebuilt.apply(event, meta)
    assert rebuilt.version == h.bucket.version
    for _, meta in h.log:
        assert rebuilt.outcome_of(meta.command_id) == h.bucket.outcome_of(meta.command_id)
    c = CommandContext("next", "dave", NOW_US)
    points = [(SNAP, usd("101")), (SNAP2, usd("6")), (SNAP3, usd("1"))]
    assert rebuilt.ingest(definition, "b", points, c) == h.bucket.ingest(definition, "b", points, c)
    # SNAP2 is held (a's -5 fails positivity); who submitted it survives the replay
    approve = [("snaps[0]", SNAP2.utc_us)]
    with pytest.raises(PermissionDenied):
        rebuilt.publish(definition, approve, "", CommandContext("p1", "alice", NOW_US))
    approved, published = rebuilt.publish(
        definition, approve, "ok", CommandContext("p2", "dave", NOW_US)
    )
    # publishing a held point settles its open issues: they are approved, on the record
    assert isinstance(approved, QualityApproved)
    assert set(approved.snaps) == {SNAP2.utc_us}
    assert isinstance(published, DataPublished)
    assert published.values == ["-5"]
