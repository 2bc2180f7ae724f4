"""The scheduler reads of a publication only its series and snaps (`peek_columns`, and metrics
windows found per window rather than per snap): it fires the very commands, and holds the very
checkpoint contents, of the scheduler that decoded every publication whole and found each
snap's window alone (metamorphic, over random histories of intraday, daily, weekly and monthly
series published and restated around DST changes and month ends)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qis_adapters.eventstore.codec import DecodedEvent, EventCodec, peek_columns
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import EventStore, RecordedEvent
from qis_command.application import scheduler as scheduler_module
from qis_command.application.scheduler import WATCHED, Scheduler, _window
from qis_domain.bounds import MAX_INSTANT_US, MIN_INSTANT_US
from qis_domain.commands import CommandContext
from qis_domain.definitions import SeriesDefinition, SeriesSource, ValidationRules
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataRestated,
    DomainEvent,
    ManualOverrideSet,
    PublicationScheduled,
    SeriesDefined,
)
from qis_domain.events.scheduler import SchedulerSnapshot
from qis_domain.snaps import Frequency
from qis_domain.values import DataType

from tests.service.command.test_scheduler_checkpoint import CALENDAR, CODEC, Recording, append

US = 1_000_000
MINUTE_US = 60 * US
DAY_US = 86_400 * US
SNAPS = st.integers(MIN_INSTANT_US, MAX_INSTANT_US)


def _us(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * US


T0 = _us(2024, 1, 1)
# DST changes (New York, London, Lord Howe's half hour), month and year ends, a leap day.
ANCHORS = [
    _us(2024, 3, 10, 7),
    _us(2024, 11, 3, 6),
    _us(2024, 3, 31, 1),
    _us(2024, 10, 27, 1),
    _us(2024, 4, 6, 15),
    _us(2024, 10, 5, 16),
    _us(2024, 2, 29, 23),
    _us(2024, 5, 1),
    _us(2024, 12, 31, 23),
]
# series id -> (frequency, zone); a quote and a non-ASCII letter in two ids: the first is left
# to the full decode (escaped in JSON), the second is read as is.
SERIES = {
    "MIN": (Frequency.MINUTE, "UTC"),
    "TICK": (Frequency.TICK, "Asia/Kolkata"),
    "D.NY": (Frequency.DAILY, "America/New_York"),
    "W.LON": (Frequency.WEEKLY, "Europe/London"),
    'M."LH"': (Frequency.MONTHLY, "Australia/Lord_Howe"),
    "É.D": (Frequency.DAILY, "Europe/Paris"),
}
UNDEFINED = "NOBODY"


def definition(frequency: Frequency, zone: str) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=frequency,
        unit="USD",
        time_zone=zone,
        sources=(SeriesSource(source_id="a", priority=1),),
        validation=ValidationRules(),
    )


def official(kind: str, series_id: str, snaps: list[int]) -> DataPublished | DataRestated:
    n = len(snaps)
    columns: dict[str, Any] = {
        "series_id": series_id,
        "data_type": DataType.PRICE,
        "unit": "USD",
        "snaps": snaps,
        "values": ["1.5"] * n,
        "quality_scores": ["1"] * n,
        "sources": [["a"]] * n,
        "methods": ["priority"] * n,
        "flags": [[]] * n,
        "causes": [""] * n,
    }
    if kind == "publish":
        return DataPublished(**columns, versions=[1] * n, reasons=[""] * n, mode="automatic")
    return DataRestated(**columns, versions=[2] * n, reasons=["late"] * n)


@dataclass(frozen=True)
class Step:
    advance_s: int
    kind: str  # "", "publish", "restate", "cutoff", "override"
    series_id: str
    offsets_min: tuple[int, ...]  # the snaps, in minutes from the anchor, in this order
    anchor: int


STEPS = st.builds(
    Step,
    st.sampled_from([0, 30, 90, 3600, 26 * 3600, 20 * 86_400]),
    st.sampled_from(["", "publish", "publish", "restate", "cutoff", "override"]),
    st.sampled_from([*SERIES, UNDEFINED]),
    # some snaps within an hour and a half of the anchor, where many windows meet
    st.lists(st.integers(-3 * 1440, 3 * 1440) | st.integers(-90, 90), min_size=1, max_size=8).map(
        tuple
    ),
    st.sampled_from(ANCHORS),
)


def event_of(step: Step, now_us: int) -> DomainEvent | None:
    snaps = [step.anchor + m * MINUTE_US for m in step.offsets_min]
    if step.kind in ("publish", "restate"):
        return official(step.kind, step.series_id, snaps)
    if step.kind == "cutoff":
        due = [now_us + abs(m) * US for m in step.offsets_min]
        return PublicationScheduled(series_id=step.series_id, snaps=snaps, due_us=due)
    if step.kind == "override":
        expiries = [now_us + abs(m) * US if m % 2 else 0 for m in step.offsets_min]
        reasons = ["x"] * len(snaps)
        return ManualOverrideSet(
            series_id=step.series_id, snaps=snaps, expires_us=expiries, reason_codes=reasons
        )
    return None


def per_snap_windows(
    snaps_us: Sequence[int], frequency: Frequency, zone: ZoneInfo
) -> set[tuple[int, int]]:
    """The windows as the scheduler found them before: each snap's alone."""
    return {w for s in snaps_us if (w := _window(s, frequency, zone)) is not None}


async def catch_up(scheduler: Scheduler, store: EventStore, light: bool) -> None:
    head = await store.head_position()
    if head <= scheduler.position:
        return
    async for record in store.subscribe(scheduler.position or None, None):
        if record.stream.startswith(WATCHED.stream_prefixes) and record.type in WATCHED.event_types:
            if light:
                scheduler.observe_record(record)
            else:
                event = CODEC.decode(record).event
                scheduler.observe(event, record.recorded_at_us, record.position)
        if record.position >= head:
            break


def contents(snapshot: SchedulerSnapshot) -> SchedulerSnapshot:
    """A checkpoint's contents: the order of its due work and windows means nothing (a restore
    maps them), and the old set of a publication's windows listed them in hash order."""
    return snapshot.model_copy(
        update={
            "due": tuple(sorted(snapshot.due, key=repr)),
            "windows": tuple(sorted(snapshot.windows, key=repr)),
        }
    )


async def history_run(
    steps: Sequence[Step], light: bool
) -> list[tuple[list[str], SchedulerSnapshot]]:
    """The command ids fired so far and the checkpoint contents, after each step's tick."""
    now = [T0]
    store = InMemoryEventStore(clock=lambda: now[0])
    handlers = Recording(store)
    scheduler = Scheduler(store, handlers, lambda: now[0], 0.01, 3600.0, 60.0, CALENDAR)
    for series_id, (frequency, zone) in SERIES.items():
        defined = SeriesDefined(series_id=series_id, definition=definition(frequency, zone))
        await append(store, defined, f"define {series_id}")
    after = []
    for i, step in enumerate([*steps, Step(800 * 86_400, "", "MIN", (0,), T0)]):
        now[0] += step.advance_s * US
        if (event := event_of(step, now[0])) is not None:
            await append(store, event, f"e{i}")
        await catch_up(scheduler, store, light)
        await scheduler.fire_due()
        after.append((sorted(handlers.sent), contents(scheduler.snapshot())))
    return after


EXPLICIT = [
    Step(60, "publish", "D.NY", (-1440, 0, 1440, -2, 32_000, 60), ANCHORS[0]),  # DST, April
    Step(90, "restate", "MIN", (1500, -1500, 0), ANCHORS[6]),  # three UTC days, unsorted
    Step(3600, "publish", "TICK", (0, 1), ANCHORS[8]),  # across the year's end
    Step(30, "publish", "MIN", (30, -30), ANCHORS[7]),  # half an hour either side of midnight
    Step(30, "publish", 'M."LH"', (0, 4000), ANCHORS[4]),  # escaped id: decoded whole
    Step(30, "restate", "É.D", (-200, 100), ANCHORS[7]),  # across a month's local start
    Step(30, "cutoff", "W.LON", (5, 7), ANCHORS[2]),
    Step(26 * 3600, "override", "D.NY", (3, 4), ANCHORS[1]),
    Step(30, "publish", UNDEFINED, (0,), ANCHORS[0]),
]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(STEPS, min_size=1, max_size=12))
@example(EXPLICIT)
def test_reading_only_series_and_snaps_fires_what_decoding_everything_fired(
    steps: list[Step],
) -> None:
    async def both() -> None:
        with mock.patch.object(scheduler_module, "_windows", per_snap_windows):
            full = await history_run(steps, light=False)
        light = await history_run(steps, light=True)
        assert light == full

    asyncio.run(both())


def test_the_explicit_history_measures_windows() -> None:
    """The example above is not vacuous: its publications open windows whose metrics fire."""
    after = asyncio.run(history_run(EXPLICIT, light=True))
    sent, _ = after[-1]
    opened = {(w.series_id, w.start_us, w.end_us) for _, state in after for w in state.windows}
    # D.NY: March, April; MIN: five UTC days; TICK: one; M."LH": a year; É.D: April, May
    assert len(opened) == 11
    assert len(sent) == len(opened) + 2  # and a cut-off (one bucket), an override expiry


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.sampled_from(ANCHORS) | SNAPS, min_size=1, max_size=4),
    st.lists(st.integers(-40 * 1440, 40 * 1440), max_size=40),
    st.sampled_from([Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY, Frequency.MINUTE]),
    st.sampled_from([v[1] for v in SERIES.values()] + ["America/Sao_Paulo", "Asia/Beirut"]),
)
def test_the_windows_walk_finds_each_snaps_window(
    anchors: list[int], offsets_min: list[int], frequency: Frequency, zone: str
) -> None:
    """Snaps dense around DST changes and month ends (midnight changes in Sao Paulo and Beirut):
    skipping to a window's end never skips a window."""
    snaps = [
        min(max(a + m * MINUTE_US, MIN_INSTANT_US), MAX_INSTANT_US)
        for a in anchors
        for m in offsets_min
    ]
    walked = scheduler_module._windows(snaps, frequency, ZoneInfo(zone))
    assert walked == per_snap_windows(snaps, frequency, ZoneInfo(zone))


def test_a_publication_is_observed_without_decoding_it() -> None:
    """Fails on the scheduler that decoded every publication: its codec refuses to here."""
    store = InMemoryEventStore(clock=lambda: T0)
    scheduler = Scheduler(store, Recording(store), lambda: T0, calendar=CALENDAR)
    defined = SeriesDefined(series_id="MIN", definition=definition(Frequency.MINUTE, "UTC"))
    scheduler.observe(defined, T0, 1)
    record = recorded(official("publish", "MIN", [T0 + 5, T0 + DAY_US]), position=2)

    class Refusing(EventCodec):
        def decode(self, record: RecordedEvent) -> DecodedEvent:
            raise AssertionError(f"{record.type} decoded whole")

    with mock.patch.object(scheduler, "_codec", Refusing()):
        scheduler.observe_record(record)
    assert {(w.start_us, w.end_us) for w in scheduler.snapshot().windows} == {
        (T0, T0 + DAY_US),
        (T0 + DAY_US, T0 + 2 * DAY_US),
    }
    assert scheduler.position == 2


def recorded(event: DomainEvent, position: int) -> RecordedEvent:
    stream = f"series/{getattr(event, 'series_id', '')}/b"
    new = CODEC.encode(stream, [event], CommandContext("c", "u", 0))[0]
    return RecordedEvent(stream, 0, position, new.event_id, new.type, new.data, new.metadata, T0)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.text(min_size=1, max_size=12),
    st.lists(SNAPS, max_size=20),
    st.sampled_from(["publish", "restate", "cutoff", "override", "ingest"]),
)
def test_peek_reads_the_series_and_snaps_every_columnar_event_was_encoded_with(
    series_id: str, snaps: list[int], kind: str
) -> None:
    n = len(snaps)
    event: DomainEvent
    if kind in ("publish", "restate"):
        event = official(kind, series_id, snaps)
    elif kind == "cutoff":
        event = PublicationScheduled(series_id=series_id, snaps=snaps, due_us=snaps)
    elif kind == "override":
        event = ManualOverrideSet(
            series_id=series_id, snaps=snaps, expires_us=[0] * n, reason_codes=["x"] * n
        )
    else:
        event = DataIngested(
            series_id=series_id,
            source_id="a",
            data_type=DataType.PRICE,
            unit="USD",
            snaps=snaps,
            offsets=[0] * n,
            values=["1"] * n,
        )
    head = peek_columns(CODEC.registry.encode(event))
    if any(c in '"\\' or ord(c) < 0x20 for c in series_id):
        assert head is None  # escaped in JSON: left to the full decode
        return
    assert head is not None
    assert head.series_id == series_id
    assert head.snaps.tolist() == snaps


def test_peek_declines_what_the_codec_does_not_write() -> None:
    for data in (
        b'{"series_id":"X","snaps":[1]}',  # another field order
        b'{"snaps":[1,2.5],"series_id":"X"}',  # not integers
        b'{"snaps":[1,,2],"series_id":"X"}',
        b'{"snaps":[1] ,"series_id":"X"}',
        b'{"snaps":[1],"series_id":"X',  # cut short
    ):
        assert peek_columns(data) is None, data


async def test_a_catch_up_lets_other_requests_in_between_records() -> None:
    """The scheduler shares qis-command's event loop: a page of records read at once must not
    hold it until the whole page is observed (a subscription hands a page out without a
    pause, as the in-memory store here does)."""
    store = InMemoryEventStore(clock=lambda: T0)
    defined = SeriesDefined(series_id="MIN", definition=definition(Frequency.MINUTE, "UTC"))
    await append(store, defined, "d")
    for i in range(20):
        await append(store, official("publish", "MIN", [T0 + i * MINUTE_US]), f"p{i}")
    scheduler = Scheduler(store, Recording(store), lambda: T0, tick_s=60, calendar=CALENDAR)
    seen: list[int] = []
    running = asyncio.create_task(scheduler.run())
    try:
        for _ in range(10_000):
            if scheduler.position == 21:
                break
            seen.append(scheduler.position)
            await asyncio.sleep(0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert scheduler.position == 21
    assert len(set(seen) - {0}) >= 10  # it ran part-way through the catch-up, many times
