"""Issue 7's bugs found with twenty years of real market history, each replayed through the
command application on the in-memory store (each failed on the code before the fix)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from decimal import Decimal

import exchange_calendars
import pytest
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import EventStore, NewEvent, StreamAppend, StreamState
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_command.application.commands import (
    CalculateQualityMetrics,
    ConfigureSource,
    DefineSeries,
    IngestPoints,
    RegisterSource,
    ResolveIssues,
)
from qis_command.application.scheduler import Scheduler
from qis_domain.bounds import MAX_INSTANT_US, MIN_INSTANT_US
from qis_domain.command_log import COMMAND_REUSED, legacy_fingerprint
from qis_domain.commands import CommandContext
from qis_domain.definitions import DataSourceConfig, Update, ValidationRules
from qis_domain.errors import AlreadyExists, InvalidArgument
from qis_domain.events import CommandAccepted, DataPublished, QualityMetricsCalculated
from qis_domain.quality_window import quality_stream
from qis_domain.series_bucket import bucket_stream
from qis_domain.snaps import Frequency, Snap, bucket_of
from qis_domain.values import Price
from qis_projector.application.projector import Projector

from tests.service.command.command_support import (
    NEW_YORK,
    NOW_US,
    App,
    close,
    daily_series,
    flagged_days,
    issues,
    new_app,
    official_versions,
    prices,
)


def xnys_sessions(start: str, end: str) -> list[date]:
    """From exchange_calendars directly, bounded explicitly: the test's own reference."""
    calendar = exchange_calendars.get_calendar("XNYS", start="1990-01-02", end="2030-12-31")
    return [ts.date() for ts in calendar.sessions_in_range(start, end)]


# --- calendars over the whole history, never relative to today ---


def test_calendar_coverage_does_not_follow_todays_date() -> None:
    calendars = ExchangeCalendars()
    assert calendars.coverage("XNYS") == (date(1970, 1, 1), date(2099, 12, 31))
    assert calendars.coverage("XSHG")[1] == date(2026, 12, 31)  # the library's own bound
    january_2002 = calendars.sessions("XNYS", date(2002, 1, 1), date(2002, 1, 31))
    assert sorted(january_2002) == xnys_sessions("2002-01-01", "2002-01-31")
    assert len(january_2002) == 21  # New Year's Day and Martin Luther King Jr. Day closed


async def test_real_sessions_before_2006_are_not_flagged_and_closed_days_are() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules(check_calendar=True)))
    days = xnys_sessions("2002-01-01", "2002-03-31")
    await app.ingest("a", [(d, "100") for d in days])
    mlk_2002, before_1970 = date(2002, 1, 21), date(1965, 6, 1)
    await app.ingest("a", [(mlk_2002, "100"), (before_1970, "90")])
    events = [*await app.events(days), *await app.events([before_1970])]
    assert flagged_days(events, "calendar") == [mlk_2002]
    # nothing is known of 1965: of unknown coverage, not "not a session"
    assert flagged_days(events, "calendar_coverage") == [before_1970]


async def test_a_missing_session_in_2002_is_a_gap_of_the_month() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))
    days = xnys_sessions("2002-01-01", "2002-01-31")
    missing = date(2002, 1, 17)
    await app.ingest("a", [(d, "100") for d in days if d != missing])
    start, end = midnight(date(2002, 1, 1)), midnight(date(2002, 2, 1))
    await app.handlers.calculate_metrics(
        CalculateQualityMetrics(app.series_id, start, end), app.ctx()
    )
    records = await app.store.read_stream(quality_stream(app.series_id, start, end))
    [metrics] = [EventCodec().decode(r).event for r in records]
    assert isinstance(metrics, QualityMetricsCalculated)
    assert (metrics.expected_snaps, metrics.received_snaps) == (21, 20)
    assert metrics.missing_sessions == ["2002-01-17"]
    assert Decimal(metrics.completeness) < 1


def midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()) * 10**6


def first_points_of_buckets(days: list[date]) -> list[int]:
    """Indexes of the days that start a new (364-day) bucket."""
    buckets = [bucket_of(close(d).utc_us, Frequency.DAILY) for d in days]
    return [i for i in range(1, len(days)) if buckets[i] != buckets[i - 1]]


# --- jump: close to close from the previous received value ---


async def test_one_held_crash_day_does_not_hold_the_days_after_it_and_a_later_drop_is_seen() -> (
    None
):
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules(max_jump_percent=Decimal(8))))
    days = xnys_sessions("2008-10-01", "2008-10-31")
    figures = ["100", "101", "90", "90.5", "91", "82.6", "83"] + ["83.5"] * (len(days) - 7)
    await app.ingest("a", list(zip(days, figures, strict=True)))
    events = await app.events(days)
    # -10.9 % on the 3rd session, -9.2 % on the 6th: exactly those two days
    assert flagged_days(events, "jump") == [days[2], days[5]]
    published = {s for e in events if isinstance(e, DataPublished) for s in e.snaps}
    held = {close(days[2]).utc_us, close(days[5]).utc_us}
    assert published == {close(d).utc_us for d in days} - held


async def test_the_day_after_a_held_day_is_compared_with_the_held_value() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules(max_jump_percent=Decimal(8))))
    days = xnys_sessions("2020-03-09", "2020-03-13")
    await app.ingest("a", [(days[0], "100"), (days[1], "88")])  # held: -12 %
    await app.ingest("a", [(days[2], "80")])  # -9.1 % from the held 88
    [jump] = issues(await app.events(days[2:3]), "jump")[-1:]
    assert jump.snap_us == close(days[2]).utc_us
    assert jump.evidence["previous"] == "88"


# --- the same file, chunked differently, gives the same answers ---


async def test_a_bucket_edge_inside_a_command_compares_with_the_point_just_before() -> None:
    rules = ValidationRules(max_jump_percent=Decimal(5), stale_after_snaps=3)
    days = xnys_sessions("2003-01-02", "2006-12-29")
    figures = []
    level = Decimal(100)
    for i, _ in enumerate(days):
        level *= Decimal("1.07") if i % 97 == 50 else Decimal("1.001")  # a 7 % jump now and then
        figures.append(str(level.quantize(Decimal("0.01"))))
    # make the first point of every bucket after the first a jump from the point before it
    firsts = first_points_of_buckets(days)
    for i in firsts:
        figures[i] = str((Decimal(figures[i - 1]) * Decimal("1.06")).quantize(Decimal("0.01")))
    points = list(zip(days, figures, strict=True))
    whole, chunked = new_app(), new_app()
    for app in (whole, chunked):
        await app.define(daily_series("a", rules=rules))
    await whole.ingest("a", points)
    for start in range(0, len(points), 1000):  # qis ingest's chunks: edges fall mid-chunk
        await chunked.ingest("a", points[start : start + 1000])
    a, b = await whole.events(days), await chunked.events(days)
    assert official_versions(a) == official_versions(b)
    assert flagged_days(a, "jump") == flagged_days(b, "jump")
    assert len(firsts) >= 3  # the history spans several buckets
    assert set(flagged_days(a, "jump")) >= {days[i] for i in firsts}


# --- out-and-back spike ---


async def test_a_spike_is_raised_on_the_point_in_between_even_in_the_previous_bucket() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules(max_spike_percent=Decimal(5))))
    days = xnys_sessions("2004-01-01", "2005-12-31")
    edge = first_points_of_buckets(days)[0]
    days = days[edge - 20 : edge + 20]
    boundary = 20
    figures = ["100"] * len(days)
    figures[boundary - 1] = "120"  # the last point of a bucket is a bad print
    points = list(zip(days, figures, strict=True))
    await app.ingest("a", points[:boundary])  # the move back comes in the next command
    await app.ingest("a", points[boundary:])
    earlier = bucket_stream(app.series_id, bucket_of(close(days[0]).utc_us, Frequency.DAILY))
    assert earlier != bucket_stream(
        app.series_id, bucket_of(close(days[boundary]).utc_us, Frequency.DAILY)
    )
    events = await app.events(days)
    [spike] = issues(events, "spike")
    assert spike.snap_us == close(days[boundary - 1]).utc_us
    assert (spike.severity, spike.blocking) == ("warning", False)
    # recorded in the stream of the bucket that owns the point
    records = await app.store.read_stream(earlier)
    assert any(r.type == "QualityIssueDetected" for r in records)
    # the point after it, a good print, is not held
    published = {s for e in events if isinstance(e, DataPublished) for s in e.snaps}
    assert close(days[boundary]).utc_us in published


# --- warnings never hold ---


async def test_an_approved_error_publishes_while_a_warning_stays_open() -> None:
    app = new_app()
    rules = ValidationRules(max_jump_percent=Decimal(8), check_calendar=True)
    await app.define(daily_series("a", rules=rules))
    friday, holiday = date(2024, 1, 12), date(2024, 1, 15)  # MLK day: a calendar warning
    await app.ingest("a", [(friday, "100"), (holiday, "120")], user="alice")
    events = await app.events([holiday])
    [jump] = issues(events, "jump")
    [warning] = issues(events, "calendar")
    assert jump.snap_us == warning.snap_us == close(holiday).utc_us
    await app.handlers.resolve_issues(
        ResolveIssues(app.series_id, [jump.issue_id], "approve", "index rebalanced"),
        app.ctx(user="bob"),
    )
    versions = official_versions(await app.events([holiday]))
    assert versions[close(holiday).utc_us] == [(1, "120", "calendar,jump")]


# --- command ids unique per series, whichever buckets the command touches ---


async def test_a_command_id_is_answered_once_whichever_buckets_it_touches() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))
    first = await app.ingest("a", [(date(2022, 3, 1), "100")], command_id="load-1")
    head = await app.store.head_position()
    again = await App.on(app.store).ingest("a", [(date(2022, 3, 1), "100")], command_id="load-1")
    assert (again.duplicate, again.outcome) == (True, first.outcome)
    # the same id with a snap two years later: another bucket, another command
    with pytest.raises(AlreadyExists) as refused:
        await app.ingest("a", [(date(2024, 3, 1), "100")], command_id="load-1")
    assert refused.value.reason == COMMAND_REUSED
    assert await app.store.head_position() == head  # nothing appended by either


async def written_before_scheme_2(store: EventStore, command: object) -> InMemoryEventStore:
    """`store`'s log as the code before the fingerprint's scheme 2 wrote it: the same events at
    the same positions, the command's record holding its legacy digest."""
    old = InMemoryEventStore(clock=lambda: NOW_US)
    codec = EventCodec()
    head = await store.head_position()
    async for record in store.subscribe(0):
        decoded = codec.decode(record)
        data = record.data
        if isinstance(accepted := decoded.event, CommandAccepted):
            legacy = accepted.model_copy(update={"fingerprint": legacy_fingerprint(command)})
            ctx = CommandContext(decoded.metadata.command_id, decoded.metadata.user_id, NOW_US)
            [encoded] = codec.encode(record.stream, [legacy], ctx)
            data = encoded.data
        event = NewEvent(record.event_id, record.type, data, record.metadata)
        await old.append([StreamAppend(record.stream, StreamState.ANY, [event])])
        if record.position == head:
            return old
    raise AssertionError("unreachable: the log ends at its head")


async def test_a_command_recorded_before_the_fingerprint_changed_is_still_recognised() -> None:
    """Its record holds the legacy digest: a retry gets the first outcome, and the same id with
    other arguments is refused, as before."""
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))
    days = [(date(2022, 3, 1), "100.50"), (date(2022, 3, 2), "101")]
    first = await app.ingest("a", days, command_id="load-1")
    command = IngestPoints(app.series_id, "a", prices(days))
    old = App.on(await written_before_scheme_2(app.store, command))
    [record] = await old.store.read_stream("series/SPX/commands/load-1")
    assert isinstance(accepted := EventCodec().decode(record).event, CommandAccepted)
    assert accepted.fingerprint == legacy_fingerprint(command)
    head = await old.store.head_position()
    again = await old.ingest("a", days, command_id="load-1")
    assert (again.duplicate, again.outcome) == (True, first.outcome)
    other = [(date(2022, 3, 1), "100.5"), days[1]]
    with pytest.raises(AlreadyExists) as refused:
        await App.on(old.store).ingest("a", other, command_id="load-1")
    assert refused.value.reason == COMMAND_REUSED
    assert await old.store.head_position() == head  # nothing appended by either


async def test_command_ids_are_scoped_to_their_series() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))
    other = App.on(app.store)
    other.series_id = "NDX"
    await other.handlers.define_series(
        DefineSeries("NDX", daily_series("a", rules=ValidationRules())), other.ctx()
    )
    await app.ingest("a", [(date(2022, 3, 1), "100")], command_id="load-1")
    result = await other.ingest("a", [(date(2022, 3, 1), "200")], command_id="load-1")
    assert not result.duplicate
    assert result.outcome.accepted == 1


async def test_the_position_a_command_returns_is_one_the_read_side_sees() -> None:
    """The read side follows `series/` and `sources/` only: a client waiting for min_position
    must be able to reach the position its command returned."""
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))
    result = await app.ingest("a", [(date(2022, 3, 1), "100"), (date(2024, 3, 1), "101")])
    head = await app.store.head_position()
    followed = []
    async for record in app.store.subscribe(None, None):
        if record.stream.startswith(("series/", "sources/")):
            followed.append(record.position)
        if record.position >= head:
            break
    assert result.outcome.position == max(followed)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
async def test_snaps_at_the_ends_of_the_bounds_are_decided_and_measured(zone: str) -> None:
    """A local day beyond year 9999 (Tokyo) or before year 1 (New York) once crashed the
    decision with UNKNOWN; these are accepted values of unknown calendar coverage."""
    app = new_app()
    rules = ValidationRules(check_calendar=True, max_jump_percent=Decimal(5))
    await app.define(daily_series("a", rules=rules).model_copy(update={"time_zone": zone}))
    first, last = Snap(MIN_INSTANT_US), Snap(MAX_INSTANT_US)
    command = IngestPoints(
        app.series_id, "a", [(first, Price(Decimal(1), "")), (last, Price(Decimal(2), ""))]
    )
    result = await app.handlers.ingest(command, app.ctx())
    assert result.outcome.accepted == 2
    codec = EventCodec()
    events = []
    for snap in (first, last):
        stream = bucket_stream(app.series_id, bucket_of(snap.utc_us, Frequency.DAILY))
        events += [codec.decode(r).event for r in await app.store.read_stream(stream)]
    assert {i.rule for i in issues(events)} == {"calendar_coverage"}
    window = MAX_INSTANT_US - 10 * 86_400_000_000, MAX_INSTANT_US
    await app.handlers.calculate_metrics(CalculateQualityMetrics(app.series_id, *window), app.ctx())
    scheduler = Scheduler(app.store, app.handlers, lambda: NOW_US)
    for event in events:
        scheduler.observe(event)  # the windows of such snaps are skipped, not a crash


async def test_a_definition_reports_an_unknown_calendar_with_its_other_faults() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))
    bad = daily_series("a", rules=ValidationRules()).model_copy(
        update={"calendar": "NOPE", "time_zone": "Mars/Olympus"}
    )
    with pytest.raises(InvalidArgument) as refused:
        await app.handlers.define_series(DefineSeries("OTHER", bad), app.ctx())
    assert {v.field for v in refused.value.violations} == {"series.calendar", "series.time_zone"}


async def test_a_command_that_changes_nothing_still_holds_its_id() -> None:
    """Found by fuzzing: a command with no effect was not recorded, so its id could be reused
    for other arguments and applied. Its answer is a position the read side reaches."""
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))
    same = Update(values={"provider": "test"})
    first = await app.handlers.configure_source(ConfigureSource("a", same), app.ctx("cfg-1"))
    other = Update(values={"provider": "refinitiv"})
    with pytest.raises(AlreadyExists) as refused:
        await app.handlers.configure_source(ConfigureSource("a", other), app.ctx("cfg-1"))
    assert refused.value.reason == COMMAND_REUSED
    assert first.outcome.position == await app.store.head_position()
    read = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await read.set_active_generation("g1")
    await asyncio.wait_for(
        Projector(app.store, read).run(until_position=first.outcome.position), 10
    )
    assert await read.checkpoint() == first.outcome.position


async def test_a_retry_whose_map_arrives_in_another_order_is_the_same_command() -> None:
    """Found in review: the fingerprint was the command's repr, which follows the order a map's
    entries were decoded in (and a client need not send them in the same order twice)."""
    app = new_app()
    first = RegisterSource("vendor", DataSourceConfig(provider="p", settings={"a": "1", "b": "2"}))
    again = RegisterSource("vendor", DataSourceConfig(provider="p", settings={"b": "2", "a": "1"}))
    done = await app.handlers.register_source(first, app.ctx("reg-1"))
    retried = await app.handlers.register_source(again, app.ctx("reg-1"))
    assert (retried.duplicate, retried.outcome) == (True, done.outcome)


def source(**settings: str) -> RegisterSource:
    return RegisterSource("vendor", DataSourceConfig(provider="p", settings=settings))


async def test_a_source_registered_before_scheme_2_is_recognised_whatever_its_maps_order() -> None:
    """A field written as sorted-key JSON in both schemes: an old record of it answers a retry
    whose map arrives in another order, and refuses other settings."""
    app = new_app()
    first = source(a="1", b="2")
    done = await app.handlers.register_source(first, app.ctx("reg-1"))
    old = App.on(await written_before_scheme_2(app.store, first))
    head = await old.store.head_position()
    again = await old.handlers.register_source(source(b="2", a="1"), old.ctx("reg-1"))
    assert (again.duplicate, again.outcome) == (True, done.outcome)
    with pytest.raises(AlreadyExists) as refused:
        await old.handlers.register_source(source(a="1", b="3"), old.ctx("reg-1"))
    assert refused.value.reason == COMMAND_REUSED
    assert await old.store.head_position() == head
