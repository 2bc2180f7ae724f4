"""Lateness judged when a value arrives: the decision of a value that comes after its arrival
deadline raises late_arrival itself, by the command's time (qis_domain.service_levels
`Arrivals`); history older than the level is not judged; the scheduler and the arrival raise
one issue per point and source between them; the time a level took effect is the commit time
of the event that set it (ReferenceData)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_domain.commands import CommandContext
from qis_domain.decisions import SeriesView
from qis_domain.events import QualityIssueDetected, SchemaEvolved, SeriesDefined
from qis_domain.reference_data import MAX_LEVELS, ReferenceData
from qis_domain.rules import Severity
from qis_domain.series_bucket import Recorded
from qis_domain.service_levels import (
    LATE_ARRIVAL,
    Arrivals,
    Deadline,
    ServiceLevel,
    expected_among,
    expected_snaps,
)
from qis_domain.snaps import Frequency

from tests.unit.domain.test_domain_series_bucket import SNAP, Harness, series, usd

NEW_YORK = ZoneInfo("America/New_York")
HOUR_US = 3_600_000_000
LEVEL = ServiceLevel(arrival=Deadline(after_s=3600))
DEADLINE = SNAP.utc_us + HOUR_US


def no_calendar(first: date, last: date) -> None:
    return None


def arrivals(since_us: int, level: ServiceLevel = LEVEL) -> Arrivals:
    level = level.model_copy(update={"first_snap_s": 1800 * 35})  # SNAP: 17:30 New York
    assert level.arrival is not None
    return Arrivals(level, Frequency.DAILY, NEW_YORK, since_us, level.arrival, no_calendar)


def arrive(h: Harness, source: str, text: str, now_us: int, view: SeriesView) -> list[str]:
    """Ingests `source`'s value of SNAP at `now_us`: the late_arrival issues raised, by source."""
    ctx = CommandContext(f"cmd-{len(h.log)}", "feed", now_us)
    events = h.commit(h.bucket.ingest(h.definition, source, [(SNAP, usd(text))], ctx, view), ctx)
    return [
        i.source_id
        for e in events
        if isinstance(e, QualityIssueDetected)
        for i in e.issues
        if i.rule == LATE_ARRIVAL
    ]


def test_a_value_after_its_deadline_is_late_on_arrival_once() -> None:
    h = Harness(series("a", "b"))
    view = SeriesView(arrivals=(arrivals(SNAP.utc_us - HOUR_US),))
    assert arrive(h, "b", "100", DEADLINE, view) == []  # at the deadline: on time
    assert arrive(h, "a", "100", DEADLINE + 1, view) == ["a"]
    [issue] = [i for e, _ in h.log if isinstance(e, QualityIssueDetected) for i in e.issues]
    assert issue.evidence == {
        "source_id": "a",
        "deadline_us": DEADLINE,
        "arrived_at_us": DEADLINE + 1,
    }
    assert (issue.severity, issue.blocking) == ("warning", False)
    # lateness is no failure of the value: it neither holds it nor counts as a failed check
    assert h.bucket.observed[SNAP.utc_us]["a"].failures == ()
    assert h.statuses[SNAP.utc_us] == "published"
    # a correction of a value that came is no arrival; nor is a repeated late value
    assert arrive(h, "a", "100.01", DEADLINE + 2, view) == []
    assert arrive(h, "b", "100.01", DEADLINE + 3, view) == []


def test_the_scheduler_and_the_arrival_raise_one_issue_between_them() -> None:
    h = Harness(series("a"))
    ctx = CommandContext("check", "qis-scheduler", DEADLINE + 1)
    due = [(SNAP.utc_us, DEADLINE)]
    h.commit(h.bucket.raise_lateness(LATE_ARRIVAL, "a", due, Severity.WARNING, ctx), ctx)
    view = SeriesView(arrivals=(arrivals(SNAP.utc_us - HOUR_US),))
    assert arrive(h, "a", "100", DEADLINE + 5, view) == []  # found missing already
    later = CommandContext("check-again", "qis-scheduler", DEADLINE + 9)
    assert h.bucket.raise_lateness(LATE_ARRIVAL, "a", due, Severity.WARNING, later) == []


def test_history_older_than_the_level_and_unexpected_snaps_are_not_judged() -> None:
    h = Harness(series("a"))
    assert (
        arrive(h, "a", "100", DEADLINE + HOUR_US, SeriesView(arrivals=(arrivals(SNAP.utc_us + 1),)))
        == []
    )
    other = Harness(series("a"))
    # a grid that does not hold SNAP (17:30): nothing expected there, nothing late
    off_grid = Arrivals(LEVEL, Frequency.DAILY, NEW_YORK, 0, Deadline(after_s=3600), no_calendar)
    assert arrive(other, "a", "100", DEADLINE + HOUR_US, SeriesView(arrivals=(off_grid,))) == []


AROUND_DST = [date(2024, 3, 9), date(2024, 11, 2), date(2024, 6, 14)]


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from(AROUND_DST),
    st.sampled_from([Frequency.MINUTE, Frequency.HOURLY, Frequency.DAILY]),
    st.integers(0, 23 * 60),
    st.sets(st.integers(1, 7), min_size=1),
    st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=60),
)
def test_expected_among_agrees_with_the_expected_snaps(
    day: date, frequency: Frequency, first_min: int, weekdays: set[int], offsets: list[int]
) -> None:
    level = ServiceLevel(
        first_snap_s=first_min * 60 if frequency is not Frequency.HOURLY else 0,
        weekdays=tuple(sorted(weekdays)),
        arrival=Deadline(after_s=60),
    )
    start = int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()) * 10**6
    # minutes, and a few instants that are not on any grid
    snaps = sorted({start + m * 60_000_000 + (7 if m % 11 == 0 else 0) for m in offsets})
    end = snaps[-1] + 1
    walked = set(expected_snaps(level, frequency, NEW_YORK, snaps[0], end, no_calendar))
    assert expected_among(level, frequency, NEW_YORK, snaps, no_calendar) == [
        s in walked for s in snaps
    ]


def definition_events(level: ServiceLevel | None) -> tuple[SeriesDefined, SchemaEvolved]:
    defined = series("a").model_copy(update={"service_level": LEVEL})
    evolved = defined.model_copy(update={"service_level": level})
    return (
        SeriesDefined(series_id="SPX", definition=defined),
        SchemaEvolved(series_id="SPX", definition=evolved, schema_version=2, reason="r"),
    )


def test_a_level_takes_effect_at_the_commit_time_of_the_event_that_set_it() -> None:
    t0 = SNAP.utc_us
    for level, since in ((LEVEL, t0), (ServiceLevel(arrival=Deadline(after_s=60)), t0 + 5)):
        series_ = ReferenceData("SPX")
        defined, evolved = definition_events(level)
        series_.apply(defined, Recorded("c1", "u", 1, 0, t0))
        assert [start for start, _, _ in series_.level_periods()] == [t0]
        series_.apply(evolved, Recorded("c2", "u", 2, 1, t0 + 5))
        # an unchanged level keeps its start
        assert series_.level_periods()[-1][0] == since
    cleared = ReferenceData("SPX")
    defined, evolved = definition_events(None)
    cleared.apply(defined, Recorded("c1", "u", 1, 0, t0))
    cleared.apply(evolved, Recorded("c2", "u", 2, 1, t0 + 5))
    assert cleared.level is None
    # the level of before still covers the snaps until the change
    [(start, end, _)] = cleared.level_periods()
    assert (start, end) == (t0, t0 + 5)
    # applied right after an append, without the commit time: not known in that copy
    fresh = ReferenceData("SPX")
    fresh.apply(defined, Recorded("c1", "u", 1, 0))
    assert fresh.level is not None
    assert [c.since_us for c in fresh.levels] == [None]


def test_a_late_value_leaves_its_point_in_the_columns_with_the_same_answers() -> None:
    view = SeriesView(arrivals=(arrivals(SNAP.utc_us - HOUR_US),))
    late, on_time = Harness(series("a", "b")), Harness(series("a", "b"))
    for h, a_at in ((late, DEADLINE + 1), (on_time, DEADLINE)):
        arrive(h, "b", "100", DEADLINE, view)
        arrive(h, "a", "100.01", a_at, view)
    assert [i.rule for i in late.bucket.issues.values()] == [LATE_ARRIVAL]
    # a point of two clean values stays one row of the pair columns, no dict of its own
    assert SNAP.utc_us in late.bucket.observed.pairs
    assert late.bucket.observed.mixed == {}
    assert late.bucket.observed[SNAP.utc_us] == on_time.bucket.observed[SNAP.utc_us]
    assert late.bucket.observed.rows([SNAP.utc_us]) == on_time.bucket.observed.rows([SNAP.utc_us])
    assert late.statuses == on_time.statuses
    assert late.officials == on_time.officials


def test_a_series_remembers_its_last_levels_each_until_the_next() -> None:
    series_ = ReferenceData("SPX")
    defined, _ = definition_events(LEVEL)
    series_.apply(defined, Recorded("c0", "u", 1, 0, 0))
    for n in range(1, MAX_LEVELS + 4):
        level = ServiceLevel(arrival=Deadline(after_s=n))
        _, evolved = definition_events(level)
        series_.apply(evolved, Recorded(f"c{n}", "u", n + 1, n, n * HOUR_US))
    periods = series_.level_periods()
    assert len(periods) == MAX_LEVELS
    assert [(start, end) for start, end, _ in periods] == [
        (n * HOUR_US, None if n == MAX_LEVELS + 3 else (n + 1) * HOUR_US)
        for n in range(4, MAX_LEVELS + 4)
    ]
