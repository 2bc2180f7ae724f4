"""The day_over_day rule through the command application: the prior session's official value
read across bucket boundaries and holidays (the XNYS calendar, no assumed weekends), for daily
closes and intraday bars, the same whether the sessions came in one command or several; a held
prior session is no prior official; a restatement of the prior day re-decides nothing, and a
value ingested after it compares with the new version."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_command.application.commands import IngestPoints, RestatePoint
from qis_domain.definitions import DayOverDayCheck, SeriesDefinition, ValidationRules
from qis_domain.errors import InvalidArgument
from qis_domain.events import DomainEvent, SeriesDefined
from qis_domain.series_bucket import bucket_stream
from qis_domain.service_levels import Deadline, ServiceLevel
from qis_domain.snaps import Frequency, Snap, bucket_of, format_snap
from qis_domain.values import Price

from tests.service.command.command_support import (
    NEW_YORK,
    NOW_US,
    App,
    close,
    daily_series,
    issues,
    official_versions,
)

D = Decimal
CODEC = EventCodec()
THREE = ValidationRules(day_over_day=DayOverDayCheck(max_percent=D(3)))
HELD = ValidationRules(day_over_day=DayOverDayCheck(max_percent=D(3), severity="error"))
# 2025: Thursday 3 July, then the 4th (a Friday) is a holiday: Monday 7 July follows.
WED, THU, MON = date(2025, 7, 2), date(2025, 7, 3), date(2025, 7, 7)


async def app(rules: ValidationRules, definition: SeriesDefinition | None = None) -> App:
    made = App.on(InMemoryEventStore(clock=lambda: NOW_US))
    await made.define(definition or daily_series("feed", rules=rules))
    return made


def rule_issues(events: list[DomainEvent]) -> list[tuple[int, dict[str, object]]]:
    return sorted((i.snap_us, i.evidence) for i in issues(events, "day_over_day"))


async def test_across_a_holiday_the_prior_session_is_the_one_before_it() -> None:
    stock = await app(THREE)
    await stock.ingest("feed", [(WED, "100"), (THU, "104.3")])
    await stock.ingest("feed", [(MON, "98.1")])
    events = await stock.events([WED, MON])
    [(thu, first), (mon, second)] = rule_issues(events)
    assert (thu, mon) == (close(THU).utc_us, close(MON).utc_us)
    assert first["prior_snap"] == close(WED).isoformat()
    assert first["prior"] == "100"
    assert first["change_percent"] == "4.3000"
    assert first["prior_version"] == 1
    # Not Friday the 4th (a holiday, no value), nor "no prior session": Thursday.
    assert second["prior_snap"] == close(THU).isoformat()
    assert second["prior"] == "104.3"
    assert second["value"] == "98.1"
    assert second["limit_percent"] == "3"


async def test_the_prior_session_in_the_previous_bucket_is_read_from_that_bucket() -> None:
    days = [date(2025, 1, 2) + timedelta(n) for n in range(400)]
    sessions = [d for d in days if d.weekday() < 5 and d not in (date(2025, 1, 9),)]
    # Two sessions on either side of a daily bucket boundary (buckets span 364 days).
    before, after = next(
        (a, b)
        for a, b in itertools.pairwise(sessions)
        if bucket_of(close(a).utc_us, Frequency.DAILY)
        != bucket_of(close(b).utc_us, Frequency.DAILY)
    )
    stock = await app(THREE)
    await stock.ingest("feed", [(before, "50")])
    await stock.ingest("feed", [(after, "40")])
    [(snap, evidence)] = rule_issues(await stock.events([after]))
    assert snap == close(after).utc_us
    assert evidence["prior"] == "50"
    assert evidence["prior_snap"] == close(before).isoformat()


def bar(day: date, hour: int, minute: int) -> Snap:
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)
    return Snap(int(moment.timestamp()) * 1_000_000)


async def test_intraday_bars_compare_with_the_same_time_of_the_previous_session() -> None:
    """Minute bars: one bucket a day, so every prior session is in an earlier bucket (Monday's
    four back); one command or a command per day, the same issues."""
    definition = daily_series("feed", rules=THREE).model_copy(
        update={"frequency": Frequency.MINUTE}
    )
    bars = [
        (bar(WED, 10, 30), "100"),
        (bar(WED, 12, 0), "101"),
        (bar(THU, 10, 30), "106"),  # +6 % on Wednesday's 10:30
        (bar(THU, 12, 0), "102"),  # +1 % on Wednesday's 12:00
        (bar(MON, 10, 30), "100"),  # -5.7 % on Thursday's 10:30
        (bar(MON, 12, 0), "102"),
        (bar(MON, 12, 1), "150"),  # no bar at 12:01 on Thursday: nothing to compare with
    ]
    found = []
    for chunks in ([bars], [bars[:2], bars[2:4], bars[4:]]):
        intraday = await app(THREE, definition)
        for chunk in chunks:
            points = [(snap, Price(D(text), "")) for snap, text in chunk]
            command = IngestPoints(intraday.series_id, "feed", points)
            await intraday.handlers.ingest(command, intraday.ctx())
        events: list[DomainEvent] = []
        for bucket_us in sorted({bucket_of(s.utc_us, Frequency.MINUTE) for s, _ in bars}):
            stream = bucket_stream(intraday.series_id, bucket_us)
            events.extend(CODEC.decode(r).event for r in await intraday.store.read_stream(stream))
        found.append(rule_issues(events))
    assert found[0] == found[1]
    assert [(s, e["prior_snap"]) for s, e in found[0]] == [
        (bars[2][0].utc_us, format_snap(bars[0][0].utc_us)),
        (bars[4][0].utc_us, format_snap(bars[2][0].utc_us)),
    ]


async def test_a_held_prior_session_is_no_prior_official_in_the_same_command_or_not() -> None:
    closes = [(WED, "100"), (THU, "110"), (MON, "111")]
    for chunks in ([closes], [closes[:2], closes[2:]]):
        stock = await app(HELD)
        for chunk in chunks:
            await stock.ingest("feed", chunk)
        events = await stock.events([WED])
        [(snap, _)] = rule_issues(events)
        assert snap == close(THU).utc_us  # held: Thursday is not official
        assert [i.blocking for i in issues(events, "day_over_day")] == [True]
        assert close(THU).utc_us not in official_versions(events)
        assert close(MON).utc_us in official_versions(events)  # nothing to compare with


async def test_a_restated_prior_day_re_decides_nothing_and_later_values_see_the_new_version() -> (
    None
):
    stock = await app(THREE)
    await stock.ingest("feed", [(WED, "100"), (THU, "110")])
    before = rule_issues(await stock.events([WED]))
    assert [e["prior_version"] for _, e in before] == [1]
    restate = RestatePoint(stock.series_id, close(WED), Price(D("109"), ""), "vendor correction")
    await stock.handlers.restate(restate, stock.ctx(user="ops"))
    assert rule_issues(await stock.events([WED])) == before  # Thursday is not judged again
    restate = RestatePoint(stock.series_id, close(THU), Price(D("120"), ""), "busted trade")
    await stock.handlers.restate(restate, stock.ctx(user="ops"))
    await stock.ingest("feed", [(MON, "113")])
    [*_, (snap, evidence)] = rule_issues(await stock.events([WED]))
    assert snap == close(MON).utc_us
    assert (evidence["prior"], evidence["prior_version"]) == ("120", 2)


async def test_without_a_calendar_the_sessions_are_the_service_level_weekdays() -> None:
    level = ServiceLevel(first_snap_s=16 * 3600, publication=Deadline(after_s=3600))
    no_calendar = daily_series("feed", rules=THREE).model_copy(
        update={"calendar": "", "service_level": level}
    )
    fund = await app(THREE, no_calendar)
    # Friday 4 July is a weekday of the level (no calendar: no holiday); Monday follows it
    await fund.ingest("feed", [(THU, "100"), (date(2025, 7, 4), "104.3")])
    await fund.ingest("feed", [(MON, "98.1")])
    [friday, monday] = [e for _, e in rule_issues(await fund.events([THU, MON]))]
    assert (friday["prior_snap"], monday["prior_snap"]) == (
        close(THU).isoformat(),
        close(date(2025, 7, 4)).isoformat(),
    )


async def test_without_a_calendar_or_a_service_level_the_rule_is_refused() -> None:
    bare = daily_series("feed", rules=THREE).model_copy(update={"calendar": ""})
    with pytest.raises(InvalidArgument) as refused:
        await app(THREE, bare)
    assert [v.field for v in refused.value.violations] == ["series.validation.day_over_day"]
    # a definition stored before keeps decoding
    stored = SeriesDefined(series_id="SPX", definition=bare)
    data = CODEC.registry.encode(stored)
    assert CODEC.registry.decode(stored.event_type, data, stored.event_version) == stored
