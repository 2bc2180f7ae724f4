"""Quality metrics of a window (accuracy, completeness, timeliness, consistency) computed from
the summaries of a SeriesBucket, and the QualityWindow aggregate that records them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.decisions import Decider
from qis_domain.events import QualityMetricsCalculated
from qis_domain.metrics import calculate
from qis_domain.quality_window import QualityWindow, quality_stream
from qis_domain.rules import CalendarView
from qis_domain.series_bucket import Recorded
from qis_domain.snaps import Snap, bucket_of, parse_snap

from tests.unit.domain.test_domain_quality_workflow import (
    HOUR_US,
    JAN_CALENDAR,
    JAN_HOLIDAYS,
    JAN_SESSIONS,
    MINUTE_US,
    Desk,
    close,
    series,
    the_issue,
    usd,
)

JAN_START = parse_snap("2024-01-01T00:00:00-05:00").utc_us  # midnight in New York
JAN_END = parse_snap("2024-02-01T00:00:00-05:00").utc_us
SESSION_CLOSES = sorted(close(d) for d in JAN_SESSIONS)
FIRST = SESSION_CLOSES[0]
DAY_US = 86_400_000_000


def metrics(desk: Desk, calendar: CalendarView | None = JAN_CALENDAR) -> QualityMetricsCalculated:
    decider = Decider(desk.definition, CommandContext("metrics", "qis-scheduler", JAN_END))
    points = desk.bucket.summaries(JAN_START, JAN_END, decider)
    return calculate(desk.definition, "SPX", JAN_START, JAN_END, points, calendar, decider)


def load(desk: Desk, snaps: list[Snap]) -> None:
    desk.ingest("a", [(s, usd(str(4700 + i))) for i, s in enumerate(snaps)], now_us=JAN_END)


def test_january_fits_one_bucket() -> None:
    assert bucket_of(JAN_START, Desk(series("a")).definition.frequency) == bucket_of(
        JAN_END, Desk(series("a")).definition.frequency
    )


# --- completeness against the exchange calendar ---


def test_completeness_is_one_when_every_session_has_a_value() -> None:
    desk = Desk(series("a"), first=FIRST)
    load(desk, SESSION_CLOSES)
    m = metrics(desk)
    assert (m.expected_snaps, m.received_snaps, m.completeness) == (21, 21, "1")
    assert (m.series_id, m.window_start_us, m.window_end_us) == ("SPX", JAN_START, JAN_END)


def test_completeness_with_one_session_missing() -> None:
    desk = Desk(series("a"), first=FIRST)
    load(desk, [s for s in SESSION_CLOSES if s != close(date(2024, 1, 17))])
    m = metrics(desk)
    assert (m.expected_snaps, m.received_snaps) == (21, 20)
    assert Decimal(m.completeness) == round(Decimal(20) / Decimal(21), 6)
    assert m.completeness == "0.952381"
    assert m.missing_sessions == ["2024-01-17"]  # what data operations has to fill
    assert m.uncovered_days == 0


def test_a_window_the_calendar_does_not_cover_has_unknown_completeness() -> None:
    desk = Desk(series("a"), first=FIRST)
    load(desk, SESSION_CLOSES[:5])
    # a calendar that knows nothing before January 10th
    partial = CalendarView(JAN_CALENDAR.sessions, date(2024, 1, 10), date(2099, 12, 31))
    m = metrics(desk, partial)
    assert m.completeness == ""  # unknown: never "complete"
    assert m.uncovered_days == 9
    # counts speak of the covered days: sessions from the 10th, of which none has a value
    covered = sorted(d for d in JAN_CALENDAR.sessions if d >= date(2024, 1, 10))
    assert m.expected_snaps == len(covered)
    assert m.received_snaps == 0
    assert m.missing_sessions == [d.isoformat() for d in covered]


def test_a_value_on_a_holiday_does_not_count_towards_completeness() -> None:
    desk = Desk(series("a"), first=FIRST)
    missing = close(date(2024, 1, 17))
    load(desk, [*(s for s in SESSION_CLOSES if s != missing), close(date(2024, 1, 15))])
    m = metrics(desk)
    assert m.publications == 21  # the holiday value is published...
    assert (m.expected_snaps, m.received_snaps, m.completeness) == (21, 20, "0.952381")

    full = Desk(series("a"), first=FIRST)
    load(full, [*SESSION_CLOSES, *(close(d) for d in JAN_HOLIDAYS)])
    m = metrics(full)
    assert (m.publications, m.expected_snaps, m.received_snaps, m.completeness) == (
        23,
        21,
        21,
        "1",
    )


def test_completeness_counts_the_local_trading_day_not_the_utc_one() -> None:
    desk = Desk(series("a"), first=FIRST)
    evening = parse_snap("2024-01-16T03:00:00Z")  # Monday 15 January in New York: a holiday
    load(desk, [*(s for s in SESSION_CLOSES if s != close(date(2024, 1, 16))), evening])
    m = metrics(desk)
    assert (m.received_snaps, m.completeness) == (20, "0.952381")


def test_completeness_counts_only_published_points() -> None:
    desk = Desk(series("a", require_positive=True), first=FIRST)
    points = [(s, usd("-1" if i == 0 else "4700")) for i, s in enumerate(SESSION_CLOSES)]
    desk.ingest("a", points, now_us=JAN_END)
    m = metrics(desk)
    assert (m.publications, m.received_snaps) == (20, 20)


# --- accuracy, consistency ---


def test_accuracy_counts_points_whose_sources_agree_within_tolerance() -> None:
    desk = Desk(series("a", "b", tolerance_bps="10"), first=FIRST)
    d2, d3, d4, d5 = (close(date(2024, 1, d)) for d in (2, 3, 4, 5))
    desk.ingest("a", [(d2, usd("100")), (d3, usd("100")), (d4, usd("100")), (d5, usd("-1"))])
    desk.ingest("b", [(d2, usd("100.05")), (d3, usd("101"))])  # 5 bps: agrees; 100 bps: not
    m = metrics(desk)
    assert (m.compared_points, m.agreeing_points, m.accuracy) == (2, 1, "0.5")
    # consistency: six source values checked, the negative one failed a rule
    assert (m.checked_values, m.clean_values, m.consistency) == (6, 5, "0.833333")
    assert m.publications == 3  # d5 is held


def test_accuracy_ignores_rejected_values() -> None:
    desk = Desk(series("a", "b", tolerance_bps="10"), first=FIRST)
    d2 = close(date(2024, 1, 2))
    events = desk.ingest("a", [(d2, usd("-100"))], user="feed-a")
    desk.ingest("b", [(d2, usd("100"))], user="feed-b")
    desk.resolve("ops", [the_issue(events, "positive").issue_id], "reject")
    m = metrics(desk)
    assert (m.publications, m.compared_points, m.accuracy) == (1, 0, "1")
    assert (m.checked_values, m.clean_values) == (2, 1)  # the rejected value was still checked


def test_an_empty_window_scores_one_everywhere_but_completeness() -> None:
    m = metrics(Desk(series("a"), first=FIRST))
    assert (m.accuracy, m.timeliness, m.consistency) == ("1", "1", "1")
    assert (m.expected_snaps, m.received_snaps, m.completeness) == (21, 0, "0")


# --- timeliness: the deciding command's clock against the snap ---


def test_timeliness_against_the_sla() -> None:
    desk = Desk(series("a", "b", sla_seconds=3600), first=FIRST)
    d2, d3, d4 = (close(date(2024, 1, d)) for d in (2, 3, 4))
    desk.ingest1("a", usd("100"), snap=d2, now_us=d2.utc_us + 10 * MINUTE_US)
    desk.ingest1("a", usd("100"), snap=d3, now_us=d3.utc_us + 2 * HOUR_US)  # late
    desk.ingest1("a", usd("100"), snap=d4, now_us=d4.utc_us + HOUR_US)  # at the SLA: on time
    # a later restatement does not change when the point was first published
    desk.ingest1("a", usd("105"), snap=d2, now_us=d2.utc_us + 3 * DAY_US)
    m = metrics(desk)
    assert (m.publications, m.on_time, m.timeliness) == (3, 2, "0.666667")


def test_timeliness_of_a_cutoff_publication_is_the_cutoff_commands_clock() -> None:
    desk = Desk(series("a", "b", min_sources=2, cutoff_seconds=60, sla_seconds=600), first=FIRST)
    d2, d3 = close(date(2024, 1, 2)), close(date(2024, 1, 3))
    desk.ingest1("a", usd("100"), snap=d2, now_us=d2.utc_us)
    desk.ingest1("a", usd("100"), snap=d3, now_us=d3.utc_us)
    desk.publish_due(d2.utc_us + 5 * MINUTE_US)  # d2 only: d3 is not due yet
    desk.publish_due(d3.utc_us + HOUR_US)  # d3, long after its cut-off
    m = metrics(desk)
    assert (m.publications, m.on_time, m.timeliness) == (2, 1, "0.5")


def test_without_an_sla_every_publication_is_on_time() -> None:
    desk = Desk(series("a"), first=FIRST)
    d2 = close(date(2024, 1, 2))
    desk.ingest1("a", usd("100"), snap=d2, now_us=d2.utc_us + 30 * DAY_US)
    m = metrics(desk)
    assert (m.on_time, m.timeliness) == (1, "1")


# --- the QualityWindow aggregate ---


def test_quality_window_answers_a_repeated_command_with_its_outcome() -> None:
    desk = Desk(series("a"), first=FIRST)
    load(desk, SESSION_CLOSES)
    window = QualityWindow("SPX", JAN_START, JAN_END)
    assert window.stream == quality_stream("SPX", JAN_START, JAN_END)
    assert window.stream == f"series/SPX/quality/{JAN_START}-{JAN_END}"
    assert (window.version, window.latest, window.outcome_of("m-1")) == (None, None, None)

    first = metrics(desk)
    window.apply(first, Recorded("m-1", "qis-scheduler", 500, 0))
    assert window.outcome_of("m-1") == CommandOutcome(500)
    assert (window.version, window.latest) == (0, first)
    assert window.outcome_of("m-2") is None

    load(desk, [close(date(2024, 1, 15))])  # late data: a later calculation of the same window
    second = metrics(desk)
    assert second != first
    window.apply(second, Recorded("m-2", "qis-scheduler", 900, 1))
    assert (window.version, window.latest) == (1, second)
    assert window.outcome_of("m-1") == CommandOutcome(500)  # still known
    assert window.outcome_of("m-2") == CommandOutcome(900)
