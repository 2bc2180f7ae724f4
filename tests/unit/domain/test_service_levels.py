"""Service levels in the domain: deadlines (a span after the snap, or a local time of day),
the expected snaps (against an independent minute-by-minute reference, across daylight-saving
changes), what a series can take, and the bucket's lateness decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import field_mask_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from qis.data.v1 import series_pb2
from qis_adapters.proto.definitions import (
    series_from_proto,
    series_to_proto,
    series_update_from_proto,
)
from qis_domain.commands import CommandContext
from qis_domain.definitions import SeriesDefinition, Update
from qis_domain.errors import InvalidArgument
from qis_domain.events import QualityApproved, QualityIssueDetected, SeriesDefined
from qis_domain.rules import Severity
from qis_domain.service_levels import (
    LATE_ARRIVAL,
    LATE_PUBLICATION,
    Deadline,
    ServiceLevel,
    SourceDeadline,
    expected_snaps,
    problems,
)
from qis_domain.snaps import Frequency

from tests.unit.domain.test_domain_series_bucket import SNAP, Harness, series, usd

NEW_YORK = ZoneInfo("America/New_York")
MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US


def local_us(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).timestamp()) * 1_000_000


# --- deadlines ---


def test_a_deadline_is_a_span_after_the_snap_or_a_local_time_days_later() -> None:
    friday_close = local_us(2024, 3, 8, 16)
    assert Deadline(after_s=5400).at(friday_close, NEW_YORK) == friday_close + 90 * MINUTE_US
    # Monday 09:00 is EDT: the clocks moved on Sunday, the deadline is still 09:00 local
    monday = Deadline(local_time_s=9 * 3600, days_after=3).at(friday_close, NEW_YORK)
    assert monday == local_us(2024, 3, 11, 9)
    assert monday - friday_close == (3 * 24 - 7 - 1) * HOUR_US


@pytest.mark.parametrize(
    "fields",
    [{}, {"after_s": 60, "local_time_s": 60}, {"after_s": 60, "days_after": 1}],
)
def test_a_deadline_has_exactly_one_form(fields: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Deadline.model_validate(fields)


def test_a_service_level_states_a_deadline_once_per_source() -> None:
    with pytest.raises(ValidationError, match="at least one deadline"):
        ServiceLevel()
    twice = SourceDeadline(source_id="a", deadline=Deadline(after_s=1))
    with pytest.raises(ValidationError, match="one deadline per source"):
        ServiceLevel(source_arrivals=(twice, twice))
    with pytest.raises(ValidationError, match="each ISO weekday once"):
        ServiceLevel(arrival=Deadline(after_s=1), weekdays=(1, 1))


def test_what_a_series_cannot_take() -> None:
    local = Deadline(local_time_s=10 * 3600)
    level = ServiceLevel(
        first_snap_s=16 * 3600,
        arrival=local,
        source_arrivals=(SourceDeadline(source_id="x", deadline=Deadline(after_s=1)),),
        last_snap_s=17 * 3600,
    )
    assert problems(level, Frequency.DAILY, ("a",)) == [
        ("arrival", "falls before the snap: add days_after"),
        ("last_snap_s", "a daily series has one snap a day, at first_snap_s"),
        ("source_arrivals[0].source_id", "not a source of the series"),
    ]
    assert [p for p, _ in problems(level, Frequency.MINUTE, None)] == ["arrival"]
    weekly = ServiceLevel(arrival=Deadline(after_s=1))
    assert [p for p, _ in problems(weekly, Frequency.WEEKLY, None)] == [""]
    fine = ServiceLevel(first_snap_s=16 * 3600, arrival=local.model_copy(update={"days_after": 1}))
    assert problems(fine, Frequency.DAILY, ("a",)) == []


# --- expected snaps ---


def naive(level: ServiceLevel, step_s: int, start_us: int, end_us: int) -> list[int]:
    """Every whole minute in [start, end) whose New York wall clock is on the grid, on a
    weekday of the level, and its first occurrence (not the repeat of a fall-back hour)."""
    out = []
    t = start_us - start_us % MINUTE_US + (MINUTE_US if start_us % MINUTE_US else 0)
    last = 86_399 if level.last_snap_s is None else level.last_snap_s
    while t < end_us:
        moment = datetime.fromtimestamp(t // 1_000_000, UTC).astimezone(NEW_YORK)
        wall = moment.hour * 3600 + moment.minute * 60
        if (
            moment.fold == 0
            and moment.isoweekday() in level.weekdays
            and level.first_snap_s <= wall <= last
            and (wall - level.first_snap_s) % step_s == 0
        ):
            out.append(t)
        t += MINUTE_US
    return out


AROUND_DST = [date(2024, 3, 9), date(2024, 11, 2), date(2024, 6, 14)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.sampled_from(AROUND_DST),
    st.integers(0, 47 * 60),
    st.integers(1, 36 * 60),
    st.sampled_from([Frequency.MINUTE, Frequency.HOURLY]),
    st.integers(0, 23 * 60),
    st.one_of(st.none(), st.integers(0, 23 * 60)),
    st.sets(st.integers(1, 7), min_size=1),
)
def test_intraday_snaps_are_the_wall_clock_grid(
    day: date,
    start_min: int,
    length_min: int,
    frequency: Frequency,
    first_min: int,
    last_min: int | None,
    weekdays: set[int],
) -> None:
    if last_min is not None and last_min < first_min:
        first_min, last_min = last_min, first_min
    level = ServiceLevel(
        first_snap_s=first_min * 60,
        last_snap_s=None if last_min is None else last_min * 60,
        weekdays=tuple(sorted(weekdays)),
        arrival=Deadline(after_s=60),
    )
    start = local_us(day.year, day.month, day.day) + start_min * MINUTE_US + 17
    end = start + length_min * MINUTE_US
    got = list(expected_snaps(level, frequency, NEW_YORK, start, end, lambda a, b: None))
    step = 60 if frequency is Frequency.MINUTE else 3600
    assert got == naive(level, step, start, end)


def test_daily_snaps_are_the_calendar_sessions_it_covers() -> None:
    level = ServiceLevel(first_snap_s=16 * 3600, arrival=Deadline(after_s=60))
    sessions = frozenset({date(2024, 7, 3), date(2024, 7, 5), date(2024, 7, 8)})
    covered_until = date(2024, 7, 5)

    def calendar(first: date, last: date) -> tuple[frozenset[date], date, date]:
        return sessions, date(2024, 1, 1), covered_until

    start, end = local_us(2024, 7, 3), local_us(2024, 7, 10)
    got = list(expected_snaps(level, Frequency.DAILY, NEW_YORK, start, end, calendar))
    # the 4th is no session; the 8th is beyond the calendar's coverage: nothing known there
    assert got == [local_us(2024, 7, 3, 16), local_us(2024, 7, 5, 16)]
    without = list(expected_snaps(level, Frequency.DAILY, NEW_YORK, start, end, lambda a, b: None))
    assert [datetime.fromtimestamp(s / 1e6, NEW_YORK).day for s in without] == [3, 4, 5, 8, 9]
    assert list(expected_snaps(level, Frequency.TICK, NEW_YORK, start, end, calendar)) == []


# --- the bucket's decision ---

LEVEL = ServiceLevel(arrival=Deadline(after_s=3600), publication=Deadline(after_s=7200))
DEADLINE = SNAP.utc_us + 3_600_000_000


def checked(h: Harness, rule: str, source: str, severity: Severity = Severity.WARNING) -> int:
    """Issues raised by a lateness check of SNAP at its deadline."""
    ctx = CommandContext(f"late-{len(h.log)}", "qis-scheduler", DEADLINE + 1)
    events = h.bucket.raise_lateness(rule, source, [(SNAP.utc_us, DEADLINE)], severity, ctx)
    h.commit(events, ctx)
    return sum(len(e.issues) for e in events if isinstance(e, QualityIssueDetected))


def test_a_missing_value_is_late_once_and_a_later_value_does_not_erase_it() -> None:
    h = Harness(series("a", "b"))
    h.ingest1("b", usd("100"))
    assert checked(h, LATE_ARRIVAL, "b") == 0  # b delivered
    assert checked(h, LATE_ARRIVAL, "a") == 1
    [issue] = h.bucket.issues.values()
    assert (issue.rule, issue.source_id, issue.blocking) == (LATE_ARRIVAL, "a", False)
    detected = next(e for e, _ in h.log if isinstance(e, QualityIssueDetected))
    assert detected.issues[0].evidence == {
        "source_id": "a",
        "deadline_us": DEADLINE,
        "checked_at_us": DEADLINE + 1,
    }
    assert checked(h, LATE_ARRIVAL, "a") == 0  # checked again: still one issue
    h.ingest1("a", usd("100.01"))  # the late value comes: the issue stays open
    assert [i.status.value for i in h.bucket.issues.values()] == ["open"]
    c = h.ctx("supervisor")
    [iid] = h.bucket.issues
    h.commit(h.bucket.resolve(h.definition, [("issue_ids[0]", iid)], "approve", "ok", c), c)
    assert any(isinstance(e, QualityApproved) for e, _ in h.log)
    assert checked(h, LATE_ARRIVAL, "a") == 0  # resolved stays resolved, never raised again


def test_a_late_publication_is_an_error_when_the_level_says_so() -> None:
    h = Harness(series("a"))
    assert checked(h, LATE_PUBLICATION, "", Severity.ERROR) == 1
    [issue] = h.bucket.issues.values()
    assert (issue.rule, issue.source_id, issue.blocking) == (LATE_PUBLICATION, "", True)
    published = Harness(series("a"))
    published.ingest1("a", usd("100"))
    assert checked(published, LATE_PUBLICATION, "", Severity.ERROR) == 0


def test_a_deadline_not_reached_is_refused() -> None:
    h = Harness(series("a"))
    ctx = CommandContext("early", "qis-scheduler", DEADLINE - 1)
    with pytest.raises(InvalidArgument):
        h.bucket.raise_lateness(LATE_ARRIVAL, "a", [(SNAP.utc_us, DEADLINE)], Severity.WARNING, ctx)
    with pytest.raises(InvalidArgument):
        h.bucket.raise_lateness("stale", "a", [], Severity.WARNING, ctx)


# --- stored and sent ---


def test_a_definition_without_a_service_level_is_stored_as_before() -> None:
    definition = series("a")
    data = SeriesDefined(series_id="SPX", definition=definition).model_dump_json()
    assert "service_level" not in data
    with_level = definition.model_copy(update={"service_level": LEVEL})
    data = SeriesDefined(series_id="SPX", definition=with_level).model_dump_json()
    back = SeriesDefined.model_validate_json(data).definition
    assert isinstance(back, SeriesDefinition)
    assert back.service_level == LEVEL


def test_a_service_level_goes_through_the_contract_and_back() -> None:
    level = ServiceLevel(
        first_snap_s=16 * 3600,
        weekdays=(1, 2, 3, 4, 5, 6),
        source_arrivals=(
            SourceDeadline(source_id="a", deadline=Deadline(local_time_s=1800, days_after=1)),
        ),
        publication=Deadline(local_time_s=20 * 3600),
        publication_severity="error",
    )
    definition = series("a").model_copy(update={"service_level": level})
    message = series_to_proto("SPX", definition, 1)
    assert isinstance(message, series_pb2.Series)
    assert series_from_proto(message) == definition
    assert series_from_proto(series_to_proto("SPX", series("a"), 1)).service_level is None


def test_an_intraday_level_expects_no_snap_past_the_window() -> None:
    level = ServiceLevel(first_snap_s=9 * 3600 + 1800, last_snap_s=16 * 3600, arrival=LEVEL.arrival)
    start = local_us(2024, 6, 14)
    snaps = list(
        expected_snaps(
            level, Frequency.MINUTE, NEW_YORK, start, start + 86_400_000_000, lambda a, b: None
        )
    )
    assert len(snaps) == 6 * 60 + 30 + 1
    assert snaps[0] == local_us(2024, 6, 14, 9, 30)
    assert snaps[-1] == local_us(2024, 6, 14, 16)
    assert snaps[1] - snaps[0] == MINUTE_US
    assert timedelta(microseconds=snaps[-1] - snaps[0]) == timedelta(hours=6, minutes=30)


def test_an_update_names_the_service_level_alone_or_clears_it() -> None:
    level = ServiceLevel(first_snap_s=16 * 3600, publication=Deadline(after_s=3600))
    message = series_to_proto("SPX", series("a").model_copy(update={"service_level": level}), 1)
    only = series_pb2.Series(service_level=message.service_level)  # no frequency, no sources
    named = field_mask_pb2.FieldMask(paths=["service_level"])
    assert series_update_from_proto(only, named) == Update(values={"service_level": level})
    assert series_update_from_proto(series_pb2.Series(), named) == Update(
        values={"service_level": None}
    )
