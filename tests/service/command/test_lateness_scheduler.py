"""Service levels through the command application and the scheduler, on the in-memory store
with a fake clock and the real XNYS calendar: every expected snap arrives on time or gets
exactly one lateness issue; holidays expect nothing; running twice or restarting adds nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_command.application.commands import EvolveSeries, IngestPoints
from qis_command.application.scheduler import Scheduler
from qis_domain.commands import CommandContext
from qis_domain.definitions import SeriesDefinition, Update, ValidationRules
from qis_domain.events import DomainEvent, Issue, QualityIssueDetected
from qis_domain.service_levels import Deadline, ServiceLevel, SourceDeadline
from qis_domain.values import Price

from tests.service.command.command_support import NEW_YORK, App, close, daily_series

CLOSE_S = 16 * 3600
LEVEL = ServiceLevel(
    first_snap_s=CLOSE_S,
    arrival=Deadline(local_time_s=18 * 3600),  # source a: 18:00 New York
    source_arrivals=(SourceDeadline(source_id="b", deadline=Deadline(after_s=3 * 3600)),),
    publication=Deadline(local_time_s=20 * 3600),
    publication_severity="error",
)
HOUR_US = 3600 * 1_000_000


def at(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=NEW_YORK).timestamp()) * 10**6


class Clocked:
    """An app whose store and commands read one fake clock."""

    def __init__(self, start_us: int) -> None:
        self.now = [start_us]
        self.store = InMemoryEventStore(clock=lambda: self.now[0])
        self.app = App.on(self.store)
        self.seen = 0  # log position the schedulers have observed up to

    def ctx(self, command_id: str) -> CommandContext:
        return CommandContext(command_id, "feed", self.now[0])

    async def define(self, definition: SeriesDefinition) -> None:
        await self.app.define(definition)

    async def ingest(self, source: str, day: date) -> None:
        cmd = IngestPoints("SPX", source, [(close(day), Price(Decimal(100), ""))])
        await self.app.handlers.ingest(cmd, self.ctx(f"{source}-{day}"))

    def scheduler(self) -> Scheduler:
        return Scheduler(self.store, self.app.handlers, lambda: self.now[0], calendar=CALENDAR)

    async def observe(self, scheduler: Scheduler) -> None:
        """What the scheduler's subscription would have delivered so far."""
        codec = EventCodec()
        head = await self.store.head_position()
        async for record in self.store.subscribe(None, None):
            if record.position > head:
                break
            scheduler.observe(codec.decode(record).event, record.recorded_at_us)
            if record.position >= head:
                break

    async def issues(self) -> list[Issue]:
        codec = EventCodec()
        found = []
        head = await self.store.head_position()
        async for record in self.store.subscribe(None, None):
            event: DomainEvent = codec.decode(record).event
            if isinstance(event, QualityIssueDetected):
                found.extend(event.issues)
            if record.position >= head:
                break
        return found


CALENDAR = ExchangeCalendars()


def sessions(first: date, last: date) -> list[date]:
    return sorted(CALENDAR.sessions("XNYS", first, last))


def late(found: Sequence[Issue], rule: str, source: str = "") -> list[date]:
    days = [
        datetime.fromtimestamp(i.snap_us / 1e6, NEW_YORK).date()
        for i in found
        if i.rule == rule and i.source_id == source
    ]
    return sorted(days)


def with_level(level: ServiceLevel | None) -> SeriesDefinition:
    return daily_series("a", "b", rules=ValidationRules()).model_copy(
        update={"service_level": level}
    )


async def test_twenty_years_without_values_raise_one_issue_per_session_once() -> None:
    start = date(2005, 1, 3)
    clocked = Clocked(at(start, 9))
    await clocked.define(with_level(LEVEL))
    clocked.now[0] = at(date(2025, 1, 2), 9)
    first = clocked.scheduler()
    await clocked.observe(first)
    await first.fire_due()
    expected = sessions(start, date(2024, 12, 31))
    assert len(expected) > 5000
    found = await clocked.issues()
    assert late(found, "late_arrival", "a") == expected
    assert late(found, "late_arrival", "b") == expected
    assert late(found, "late_publication") == expected
    assert {(i.severity, i.blocking) for i in found if i.rule == "late_publication"} == {
        ("error", True)
    }
    assert {i.severity for i in found if i.rule == "late_arrival"} == {"warning"}
    # one command per bucket and deadline: bounded by buckets, not snaps
    assert first.fired <= 3 * 22
    head = await clocked.store.head_position()
    await first.fire_due()  # again: nothing new is due
    restarted = clocked.scheduler()  # a restart walks again from the start
    await clocked.observe(restarted)
    await restarted.fire_due()
    assert await clocked.store.head_position() == head


async def test_a_holiday_expects_nothing_and_a_new_level_applies_from_the_next_snap() -> None:
    clocked = Clocked(at(date(2024, 7, 1), 9))
    await clocked.define(with_level(LEVEL))
    scheduler = clocked.scheduler()
    await clocked.observe(scheduler)
    # Thursday 4 July 2024: Independence Day, no session; the 3rd and 5th are sessions
    clocked.now[0] = at(date(2024, 7, 5), 12)
    await scheduler.fire_due()
    found = await clocked.issues()
    assert late(found, "late_arrival", "a") == [date(2024, 7, d) for d in (1, 2, 3)]
    # From Friday 5 July on, only publication is checked, by 17:00
    level = ServiceLevel(first_snap_s=CLOSE_S, publication=Deadline(after_s=3600))
    evolve = EvolveSeries("SPX", Update(values={"service_level": level}), "SLA renegotiated")
    await clocked.app.handlers.evolve_series(evolve, clocked.ctx("evolve"))
    await clocked.observe(scheduler)
    clocked.now[0] = at(date(2024, 7, 9), 12)
    await scheduler.fire_due()
    found = await clocked.issues()
    assert late(found, "late_arrival", "a") == [date(2024, 7, d) for d in (1, 2, 3)]
    assert late(found, "late_publication") == [date(2024, 7, d) for d in (1, 2, 3, 5, 8)]


DAYS = sessions(date(2023, 1, 3), date(2023, 12, 29))
# per session: hours after 16:00 source a's value arrives (None: never)
ARRIVALS = st.lists(st.sampled_from([0, 1, 2, 3, 5, None]), min_size=len(DAYS), max_size=len(DAYS))


@settings(max_examples=4, deadline=None, derandomize=True)
@given(ARRIVALS)
async def test_every_expected_snap_arrives_on_time_or_gets_exactly_one_issue(
    arrivals: list[int | None],
) -> None:
    level = ServiceLevel(
        first_snap_s=CLOSE_S,
        arrival=Deadline(local_time_s=18 * 3600),
        publication=Deadline(after_s=4 * 3600),
    )
    definition = daily_series("a", rules=ValidationRules()).model_copy(
        update={"service_level": level}
    )
    clocked = Clocked(at(DAYS[0] - timedelta(days=1), 9))
    await clocked.define(definition)
    schedulers = [clocked.scheduler(), clocked.scheduler()]
    for s in schedulers:
        await clocked.observe(s)
    # what happens, in time order: arrivals (0) before checks (1) at the same instant
    happenings: list[tuple[int, int, date]] = []
    for day, hours in zip(DAYS, arrivals, strict=True):
        if hours is not None:
            happenings.append((at(day, 16 + hours), 0, day))
        happenings.append((at(day, 18), 1, day))
        happenings.append((at(day, 20), 1, day))
    for moment, kind, day in sorted(happenings):
        clocked.now[0] = moment
        if kind == 0:
            await clocked.ingest("a", day)
        else:
            await schedulers[0].fire_due()
    head = await clocked.store.head_position()
    await schedulers[1].fire_due()  # a second scheduler, the same clock: nothing twice
    assert await clocked.store.head_position() == head
    found = await clocked.issues()
    late_days = [d for d, h in zip(DAYS, arrivals, strict=True) if h is None or h > 2]
    assert late(found, "late_arrival", "a") == late_days
    unpublished = [d for d, h in zip(DAYS, arrivals, strict=True) if h is None or h > 4]
    assert late(found, "late_publication") == unpublished
