"""The scheduler's checkpoint (qis_command.application.scheduler, "Checkpoint"): a start reads
only the log after the last snapshot, and a scheduler restarted at any point fires exactly the
commands one that never stopped fires (metamorphic, over random histories), holding the same
state after each tick."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import (
    AppendResult,
    EventFilter,
    EventStore,
    RecordedEvent,
    StreamAppend,
    StreamState,
)
from qis_command.application.commands import (
    CalculateQualityMetrics,
    CheckpointScheduler,
    CommandResult,
    ExpireOverrides,
    PublishDue,
    RaiseLateness,
)
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_command.application.scheduler import WATCHED, Scheduler
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.definitions import SeriesDefinition, SeriesSource, ValidationRules
from qis_domain.events import (
    DataPublished,
    DomainEvent,
    ManualOverrideSet,
    PublicationScheduled,
    SchemaEvolved,
    SeriesDefined,
)
from qis_domain.events.scheduler import SchedulerSnapshot
from qis_domain.scheduler_state import SCHEDULER_STREAM, SchedulerState
from qis_domain.series_bucket import Recorded
from qis_domain.service_levels import Deadline, ServiceLevel
from qis_domain.snaps import Frequency
from qis_domain.values import DataType

from tests.service.command.command_support import close

CALENDAR = ExchangeCalendars()
CODEC = EventCodec()
US = 1_000_000
MINUTE_US = 60 * US
HOUR_US = 3600 * US
T0 = close(date(2024, 3, 1)).utc_us
LEVEL = ServiceLevel(
    first_snap_s=16 * 3600,
    arrival=Deadline(local_time_s=18 * 3600),
    publication=Deadline(after_s=4 * 3600),
)
DAILY, INTRADAY = "D", "M"


def definition(series_id: str, level: ServiceLevel | None = None) -> SeriesDefinition:
    daily = series_id == DAILY
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.DAILY if daily else Frequency.MINUTE,
        unit="USD",
        time_zone="America/New_York" if daily else "UTC",
        calendar="XNYS" if daily else "",
        sources=(SeriesSource(source_id="a", priority=1),),
        validation=ValidationRules(),
        service_level=level,
    )


def published(series_id: str, snap_us: int) -> DataPublished:
    return DataPublished(
        series_id=series_id,
        data_type=DataType.PRICE,
        unit="USD",
        mode="automatic",
        snaps=[snap_us],
        versions=[1],
        values=["1"],
        quality_scores=["1"],
        sources=[["a"]],
        methods=["priority"],
        flags=[[]],
        reasons=[""],
        causes=[""],
    )


class Recording(CommandHandlers):
    """The real handlers for the checkpoint; the time-driven commands only recorded (their
    ids are what a scheduler fires), so that they leave the log to the history under test."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(Repository(store, EventCodec()), CALENDAR)
        self.sent: list[str] = []

    def _record(self, ctx: CommandContext) -> CommandResult:
        self.sent.append(ctx.command_id)
        return CommandResult(CommandOutcome(0), duplicate=False)

    async def publish_due(self, cmd: PublishDue, ctx: CommandContext) -> CommandResult:
        return self._record(ctx)

    async def expire_overrides(self, cmd: ExpireOverrides, ctx: CommandContext) -> CommandResult:
        return self._record(ctx)

    async def calculate_metrics(
        self, cmd: CalculateQualityMetrics, ctx: CommandContext
    ) -> CommandResult:
        return self._record(ctx)

    async def raise_lateness(self, cmd: RaiseLateness, ctx: CommandContext) -> CommandResult:
        return self._record(ctx)


class Counting:
    """An EventStore that counts the records it hands out, and where subscriptions start."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.records_read = 0
        self.subscribed_after: list[int | None] = []

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        return await self._store.append(appends)

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        records = await self._store.read_stream(stream, from_version)
        self.records_read += len(records)
        return records

    async def read_many(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        answers = await self._store.read_many(reads)
        self.records_read += sum(map(len, answers))
        return answers

    async def stream_version(self, stream: str) -> int | None:
        return await self._store.stream_version(stream)

    async def subscribe(
        self, after_position: int | None = None, event_filter: EventFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        self.subscribed_after.append(after_position)
        async for record in self._store.subscribe(after_position, event_filter):
            self.records_read += 1
            yield record

    async def head_position(self) -> int:
        return await self._store.head_position()

    async def close(self) -> None:
        await self._store.close()


async def append(store: EventStore, event: DomainEvent, key: str) -> None:
    stream = f"series/{getattr(event, 'series_id', '')}/test"
    ctx = CommandContext(key, "test", 0)
    await store.append([StreamAppend(stream, StreamState.ANY, CODEC.encode(stream, [event], ctx))])


async def catch_up(scheduler: Scheduler, store: EventStore) -> None:
    """What the scheduler's own subscription (filtered by WATCHED) delivers up to the head."""
    head = await store.head_position()
    if head <= scheduler.position:
        return
    async for record in store.subscribe(scheduler.position or None, None):
        if record.stream.startswith(WATCHED.stream_prefixes) and record.type in WATCHED.event_types:
            event = CODEC.decode(record).event
            scheduler.observe(event, record.recorded_at_us, record.position)
        if record.position >= head:
            break


# --- a restart reads only the log after the snapshot ------------------------------------------


async def run_until(scheduler: Scheduler, done: Callable[[], bool]) -> None:
    """Runs the scheduler as qis-command does (load, subscribe, tick, checkpoint) until `done`."""
    task = asyncio.create_task(scheduler.run())
    try:
        for _ in range(2000):
            await asyncio.sleep(0.005)
            if done():
                return
        raise AssertionError("not done within 10 s")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_restart_reads_only_the_events_after_the_snapshot() -> None:
    now = [T0]
    store = InMemoryEventStore(clock=lambda: now[0])
    handlers = Recording(store)
    await append(store, SeriesDefined(series_id=INTRADAY, definition=definition(INTRADAY)), "d")
    for i in range(200):
        await append(store, published(INTRADAY, T0 + i * MINUTE_US), f"p{i}")
    first = Scheduler(store, handlers, lambda: now[0], tick_s=0.005, calendar=CALENDAR)
    await run_until(first, lambda: first.position >= 201 and first.checkpoint is not None)
    # The clock stands still: a first checkpoint taken before the catch-up ended (a slow
    # machine) is not followed by another on time; saved here as the next one would be.
    await first.save_checkpoint()
    assert first.checkpoint is not None
    assert first.checkpoint[0] == 201  # the definition and 200 publications
    assert first.windows  # a day open: its metrics wait for the window to close
    after = 50
    for i in range(after):
        await append(store, published(INTRADAY, T0 + (200 + i) * MINUTE_US), f"q{i}")
    head = await store.head_position()

    counting = Counting(store)
    restarted = Scheduler(counting, handlers, lambda: now[0], tick_s=0.005, calendar=CALENDAR)
    await run_until(restarted, lambda: restarted.position >= head)
    assert counting.subscribed_after == [201]
    # the snapshot (one event), then the 50 publications after it: not the 201 before
    assert counting.records_read == 1 + after
    reference = Scheduler(store, handlers, lambda: now[0], calendar=CALENDAR)
    await catch_up(reference, store)
    assert restarted.snapshot() == reference.snapshot()


async def test_the_checkpoint_aggregate_loads_from_the_version_known_and_never_goes_back() -> None:
    store = InMemoryEventStore(clock=lambda: T0)
    for i in range(30):
        handlers = CommandHandlers(Repository(store, EventCodec()), CALENDAR)
        known = await store.stream_version(SCHEDULER_STREAM)
        cmd = CheckpointScheduler(SchedulerSnapshot(position=10 + i), known)
        await handlers.checkpoint_scheduler(cmd, CommandContext(f"c{i}", "s", T0))
    assert await store.stream_version(SCHEDULER_STREAM) == 29
    counting = Counting(store)
    handlers = CommandHandlers(Repository(counting, EventCodec()), CALENDAR)
    behind = CheckpointScheduler(SchedulerSnapshot(position=5), 29)
    result = await handlers.checkpoint_scheduler(behind, CommandContext("late", "s", T0))
    assert not result.duplicate
    # its command record (none yet) and the stream's last snapshot: not the 30 of them
    assert counting.records_read == 1
    assert await store.stream_version(SCHEDULER_STREAM) == 29  # a snapshot behind: refused
    # A version known wrongly (ahead of the stream) cannot record over the last snapshot.
    state = SchedulerState(known_version=None)
    for version, record in enumerate(await store.read_stream(SCHEDULER_STREAM)):
        decoded = CODEC.decode(record)
        state.apply(decoded.event, Recorded("c", "s", record.position, version))
    assert state.snapshot == SchedulerSnapshot(position=39)
    assert state.checkpoint(SchedulerSnapshot(position=38)) == []


async def test_a_store_without_a_snapshot_starts_from_the_beginning() -> None:
    store = InMemoryEventStore(clock=lambda: T0)
    await append(store, SeriesDefined(series_id=INTRADAY, definition=definition(INTRADAY)), "d")
    counting = Counting(store)
    scheduler = Scheduler(counting, Recording(store), lambda: T0, calendar=CALENDAR)
    await scheduler.load_checkpoint()
    assert scheduler.position == 0
    assert scheduler.checkpoint is None
    await catch_up(scheduler, store)
    assert scheduler.position == 1


# --- metamorphic: restarts change nothing that is fired ---------------------------------------


@dataclass(frozen=True)
class Step:
    advance_s: int
    kind: str  # "", "publish", "cutoff", "override", "level"
    series_id: str
    offset_s: int  # snap before now (publish, cutoff, override); or the due time after now
    checkpoint: bool
    restart: bool


STEPS = st.builds(
    Step,
    st.sampled_from([0, 30, 90, 3600, 5 * 3600, 26 * 3600]),
    st.sampled_from(["", "publish", "publish", "cutoff", "override", "level"]),
    st.sampled_from([DAILY, INTRADAY]),
    st.integers(0, 3 * 86_400),
    st.booleans(),
    st.booleans(),
)


def event_of(step: Step, now_us: int, levels_on: bool) -> DomainEvent | None:
    snap_us = now_us - step.offset_s * US
    snap_us -= snap_us % MINUTE_US
    if step.kind == "publish":
        return published(step.series_id, snap_us)
    if step.kind == "cutoff":
        return PublicationScheduled(
            series_id=step.series_id, snaps=[snap_us], due_us=[now_us + step.offset_s * US // 2]
        )
    if step.kind == "override":
        expiry = now_us + step.offset_s * US // 3 if step.offset_s % 2 else 0
        return ManualOverrideSet(
            series_id=step.series_id, snaps=[snap_us], expires_us=[expiry], reason_codes=["x"]
        )
    if step.kind == "level":
        level = None if levels_on else LEVEL
        return SchemaEvolved(
            series_id=DAILY, definition=definition(DAILY, level), schema_version=2, reason="sla"
        )
    return None


EXPLICIT = [
    Step(60, "publish", INTRADAY, 600, True, False),
    Step(3600, "cutoff", DAILY, 120, False, False),  # due 60 s later
    Step(90, "publish", INTRADAY, 900, False, False),  # the cut-off fires; no checkpoint
    Step(3600, "override", DAILY, 3601, False, True),  # restart from the first snapshot
    Step(26 * 3600, "level", DAILY, 0, True, False),
    Step(26 * 3600, "", DAILY, 0, False, True),
]


async def history_run(
    steps: Sequence[Step], restarts: bool
) -> tuple[list[str], list[SchedulerSnapshot]]:
    """Every command id fired, and the state after each step's tick."""
    now = [T0]
    store = InMemoryEventStore(clock=lambda: now[0])
    handlers = Recording(store)

    def scheduler() -> Scheduler:
        return Scheduler(store, handlers, lambda: now[0], 0.01, 3600.0, 60.0, CALENDAR)

    current = scheduler()
    await append(store, SeriesDefined(series_id=DAILY, definition=definition(DAILY, LEVEL)), "d")
    await append(store, SeriesDefined(series_id=INTRADAY, definition=definition(INTRADAY)), "m")
    levels_on, states = True, []
    for i, step in enumerate([*steps, Step(90 * 86_400, "", DAILY, 0, False, False)]):
        now[0] += step.advance_s * US
        if (event := event_of(step, now[0], levels_on)) is not None:
            levels_on ^= step.kind == "level"
            await append(store, event, f"e{i}")
        if restarts and step.restart:
            current = scheduler()
            await current.load_checkpoint()
        await catch_up(current, store)
        await current.fire_due()
        if step.checkpoint:
            await current.save_checkpoint()
        states.append(current.snapshot())
    return handlers.sent, states


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(STEPS, min_size=1, max_size=14))
@example(EXPLICIT)
def test_a_restarted_scheduler_fires_what_one_that_never_stopped_fires(
    steps: list[Step],
) -> None:
    async def both() -> None:
        reference, reference_states = await history_run(steps, restarts=False)
        restarted, restarted_states = await history_run(steps, restarts=True)
        assert set(restarted) == set(reference)
        assert len(set(reference)) == len(reference)  # never twice without a restart
        assert restarted_states == reference_states
        if not any(s.restart for s in steps):
            assert restarted == reference

    asyncio.run(both())


def test_the_explicit_history_fires_every_kind_of_command() -> None:
    """The example above is not vacuous: it sends cut-offs, lateness and metrics, and its
    restarted run sends some of them again (duplicates, answered by their first outcome)."""
    reference, _ = asyncio.run(history_run(EXPLICIT, restarts=False))
    restarted, _ = asyncio.run(history_run(EXPLICIT, restarts=True))
    assert len(reference) >= 5
    assert len(restarted) > len(set(restarted))
