"""The "day_over_day" rule (qis_domain.day_over_day): its bands (percent either way, a side's
own, absolute, all beyond), the prior snap it compares with (the previous session of a
calendar, the same local time of day, across daylight-saving changes), its evidence, and how a
bucket decision settles each point before checking the next, so that a point decided by the
same command is the prior official of the next session."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from qis_domain.cross_series import OfficialFigure
from qis_domain.day_over_day import PriorOfficials, SessionDays, Weekdays, check_day_over_day
from qis_domain.decisions import SeriesView
from qis_domain.definitions import DayOverDayCheck, SeriesDefinition, ValidationRules
from qis_domain.snaps import Snap, format_snap
from qis_domain.values import Price

from tests.unit.domain.test_domain_quality_workflow import Desk, issues, series, statuses

D = Decimal
NEW_YORK = ZoneInfo("America/New_York")
# XNYS around the 4th of July 2025 (a Friday) and the March 2025 change to summer time.
SESSIONS = SessionDays(
    (date(2025, 3, 7), date(2025, 3, 10), date(2025, 7, 2), date(2025, 7, 3), date(2025, 7, 7)),
    last=date(2025, 12, 31),
)


def at(day: date, hour: int = 16, minute: int = 0) -> int:
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)
    return int(moment.timestamp()) * 1_000_000


def fired(figure: str, prior: str, check: DayOverDayCheck) -> bool:
    return check_day_over_day(D(figure), 0, OfficialFigure(D(prior), 1), check) is not None


def test_a_change_beyond_the_percent_band_either_way_is_a_warning_with_its_figures() -> None:
    check = DayOverDayCheck(max_percent=D(3))
    failure = check_day_over_day(
        D("98.1"), at(date(2025, 7, 3)), OfficialFigure(D("104.3"), 2), check
    )
    assert failure is not None
    assert (failure.rule, failure.severity.value, failure.blocking) == (
        "day_over_day",
        "warning",
        False,
    )
    assert failure.evidence == {
        "prior_snap": format_snap(at(date(2025, 7, 3))),
        "prior": "104.3",
        "prior_version": 2,
        "value": "98.1",
        "change": "-6.2",
        "change_percent": "5.9444",
        "limit_percent": "3",
    }
    assert fired("103.01", "100", check)
    assert not fired("103", "100", check)  # at the limit: within
    assert not fired("97", "100", check)
    assert not fired("100", "100", check)


def test_an_asymmetric_band_judges_each_side_by_its_own_limit() -> None:
    check = DayOverDayCheck(max_rise_percent=D("0.35"), max_fall_percent=D("0.25"))
    assert fired("100.36", "100", check)
    assert not fired("100.35", "100", check)
    assert fired("99.74", "100", check)
    assert not fired("99.75", "100", check)
    failure = check_day_over_day(D("99.7"), 0, OfficialFigure(D(100), 1), check)
    assert failure is not None
    assert failure.evidence["direction"] == "fall"
    rises_only = DayOverDayCheck(max_rise_percent=D(1))
    assert not fired("50", "100", rises_only)  # a fall is not checked


def test_with_both_bands_a_change_must_break_both() -> None:
    check = DayOverDayCheck(max_percent=D(5), max_abs=D("0.05"))
    assert not fired("0.13", "0.10", check)  # +30 % of a tiny price, but 0.03
    assert not fired("101", "100", check)  # 1.00 but 1 %
    assert fired("106", "100", check)
    only_abs = DayOverDayCheck(max_abs=D(2))
    assert fired("3", "0", only_abs)  # an absolute band judges a move from 0
    assert not fired("3", "0", DayOverDayCheck(max_percent=D(1)))  # a percent band cannot


def test_a_change_of_1e24_percent_or_more_is_evidence_in_plain_figures() -> None:
    check = DayOverDayCheck(max_percent=D(5))
    failure = check_day_over_day(D("1e15"), 0, OfficialFigure(D("1e-10"), 1), check)
    assert failure is not None
    # (1e15 - 1e-10) / 1e-10 * 100 exactly, to four decimals, without an exponent
    assert failure.evidence["change_percent"] == "999999999999999999999999900.0000"
    tiny = check_day_over_day(D("1.00000001"), 0, OfficialFigure(D("1"), 1), check)
    assert tiny is None
    small = check_day_over_day(D("0.0000002"), 0, OfficialFigure(D("0.0000001"), 1), check)
    assert small is not None
    assert (small.evidence["change"], small.evidence["change_percent"]) == ("0.0000001", "100.0000")


def test_from_a_prior_of_0_the_absolute_band_decides() -> None:
    both = DayOverDayCheck(max_percent=D(5), max_abs=D(10))
    assert fired("1000000", "0", both)
    assert fired("-11", "0", both)
    assert not fired("10", "0", both)
    assert fired("1000000", "0", DayOverDayCheck(max_abs=D(10)))
    # a percent band alone: a change from 0 has no percent, not checked
    assert not fired("1000000", "0", DayOverDayCheck(max_percent=D(5)))
    failure = check_day_over_day(D("11"), 0, OfficialFigure(D("0"), 3), both)
    assert failure is not None
    assert failure.evidence == {
        "prior_snap": format_snap(0),
        "prior": "0",
        "prior_version": 3,
        "value": "11",
        "change": "11",
        "limit_abs": "10",
    }


def test_an_error_severity_holds_and_a_check_needs_a_band() -> None:
    check = DayOverDayCheck(max_percent=D(1), severity="error")
    failure = check_day_over_day(D(110), 0, OfficialFigure(D(100), 1), check)
    assert failure is not None
    assert failure.blocking
    with pytest.raises(ValidationError, match="needs a band"):
        DayOverDayCheck(severity="error")
    with pytest.raises(ValidationError):
        DayOverDayCheck(max_percent=D(0))


def test_the_prior_snap_is_the_same_wall_clock_time_of_the_previous_session() -> None:
    prior = PriorOfficials(DayOverDayCheck(max_percent=D(1)), NEW_YORK, SESSIONS)
    # Across the holiday: Monday 7 July's 10:30 compares with Thursday 3 July's 10:30.
    assert prior.prior_snap(at(date(2025, 7, 7), 10, 30)) == at(date(2025, 7, 3), 10, 30)
    # Across the change to summer time: 16:00 on both days, 23 hours apart in UTC.
    monday, friday = at(date(2025, 3, 10)), at(date(2025, 3, 7))
    assert prior.prior_snap(monday) == friday
    assert monday - friday == (3 * 24 - 1) * 3_600_000_000
    assert prior.prior_snap(at(date(2025, 3, 7))) is None  # before the first session known
    assert prior.prior_snap(at(date(2026, 1, 2))) is None  # beyond the calendar
    every_day = PriorOfficials(prior.rule, NEW_YORK, None)  # stored before: the day before
    assert every_day.prior_snap(at(date(2025, 7, 7))) == at(date(2025, 7, 6))
    # no calendar: the service level's weekdays, a Monday compares with the Friday before
    weekdays = PriorOfficials(prior.rule, NEW_YORK, Weekdays((1, 2, 3, 4, 5)))
    assert weekdays.prior_snap(at(date(2025, 7, 7))) == at(date(2025, 7, 4))
    assert weekdays.prior_snap(at(date(2025, 7, 8))) == at(date(2025, 7, 7))


LONDON = ZoneInfo("Europe/London")


def london(day: date, hour: int, minute: int = 0, fold: int = 0) -> int:
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=LONDON, fold=fold)
    return int(moment.timestamp()) * 1_000_000


def test_a_wall_time_the_prior_day_skips_has_no_prior_snap() -> None:
    # 31 March 2024: London's clocks go from 01:00 GMT to 02:00 BST
    prior = PriorOfficials(DayOverDayCheck(max_percent=D(1)), LONDON, None)
    skipped, monday = date(2024, 3, 31), date(2024, 4, 1)
    assert prior.prior_snap(london(monday, 1)) is None
    assert prior.prior_snap(london(monday, 1, 30)) is None
    assert prior.prior_snap(london(monday, 2)) == london(skipped, 2)
    assert prior.prior_snap(london(monday, 0, 59)) == london(skipped, 0, 59)


def test_a_repeated_hour_keeps_its_pass() -> None:
    # 27 October 2024: London's clocks go from 02:00 BST back to 01:00 GMT
    prior = PriorOfficials(DayOverDayCheck(max_percent=D(1)), LONDON, None)
    saturday, repeated, monday = date(2024, 10, 26), date(2024, 10, 27), date(2024, 10, 28)
    first, second = london(repeated, 1, 30), london(repeated, 1, 30, fold=1)
    assert second - first == 3_600_000_000
    # both passes compare with the prior day's one 01:30, the day after with the first pass
    assert prior.prior_snap(first) == prior.prior_snap(second) == london(saturday, 1, 30)
    assert prior.prior_snap(london(monday, 1, 30)) == first


def daily(severity: str = "warning") -> SeriesDefinition:
    rules = ValidationRules(
        day_over_day=DayOverDayCheck(
            max_percent=D(3), severity="error" if severity == "error" else "warning"
        )
    )
    return series(require_positive=False).model_copy(update={"validation": rules})


def view(definition: SeriesDefinition) -> SeriesView:
    check = definition.validation.day_over_day
    assert check is not None
    return SeriesView(prior=PriorOfficials(check, NEW_YORK, SESSIONS))


WED, THU, MON = date(2025, 7, 2), date(2025, 7, 3), date(2025, 7, 7)


def closes(*pairs: tuple[date, str]) -> list[tuple[Snap, Price]]:
    return [(Snap(at(day)), Price(D(text), "USD")) for day, text in pairs]


def test_a_point_settled_by_the_same_command_is_the_prior_official_of_the_next() -> None:
    definition = daily()
    desk = Desk(definition, Snap(at(WED)))
    events = desk.ingest(
        "a", closes((WED, "100"), (THU, "104"), (MON, "100")), view=view(definition)
    )
    found = issues(events, "day_over_day")
    assert [(i.snap_us, i.evidence["prior"]) for i in found] == [(at(THU), "100"), (at(MON), "104")]
    assert set(statuses(events).values()) == {"published"}  # warnings flag, never hold


def test_a_held_point_is_no_prior_official_even_within_one_command() -> None:
    definition = daily("error")
    desk = Desk(definition, Snap(at(WED)))
    events = desk.ingest(
        "a", closes((WED, "100"), (THU, "110"), (MON, "111")), view=view(definition)
    )
    assert [i.snap_us for i in issues(events, "day_over_day")] == [at(THU)]
    assert statuses(events) == {at(WED): "published", at(THU): "held", at(MON): "published"}


def test_without_the_prior_officials_the_rule_does_not_run() -> None:
    desk = Desk(daily(), Snap(at(WED)))
    assert not issues(desk.ingest("a", closes((WED, "100"), (THU, "150"))), "day_over_day")


def test_a_definition_without_the_rule_stores_what_it_stored() -> None:
    assert "day_over_day" not in ValidationRules(max_jump_percent=D(1)).model_dump_json()
    with_it = ValidationRules(day_over_day=DayOverDayCheck(max_abs=D(1)))
    assert ValidationRules.model_validate_json(with_it.model_dump_json()) == with_it
