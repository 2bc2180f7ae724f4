"""Consumer groups of topics (docs/routing.md): TopicService's application side.

Per (topic, group) served by this process, one `GroupRunner`: a task that reads the topic's
log after the group's checkpoint (and the entries an operator replayed), hands them to the
dispatcher (qis_query.application.dispatch) and the dispatcher's deliveries to the connected
consumers, parks what failed too often and records the checkpoint, both through the command
service (`GroupRecorder`): the read side appends no events. A runner starts with the group's
first consumer and stops with its last, recording its checkpoint then.

Every entry a group parks, and every parked entry replayed, counts in `qis.topic.parked` /
`qis.topic.replayed` by topic and group: operators name both, and few, so the labels stay
bounded.

Each group has its own task, read-ahead and consumers: a slow group never slows another.
A group's consumers should connect to one query instance: two instances serving one group
each deliver its entries (at least once still holds, the share by series does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import metrics
from qis_adapters.readstore.port import (
    PARKED,
    REPLAYED,
    ParkedEntry,
    ReadModelReader,
    ResumeToken,
    TopicEntry,
    TopicVersion,
)
from qis_domain.errors import NotFound
from qis_domain.events import TopicDefinition
from qis_domain.routing import MAX_ENTRIES, topic_resource

from qis_query.application.dispatch import Delivery, Entry, GroupDispatch, Key, Parking

log = logging.getLogger(__name__)

BEFORE_ALL: Key = (0, -1)


class GroupRecorder(Protocol):
    """The command service, for the groups (CommandService.CheckpointConsumerGroup,
    ParkTopicEntry, ReplayParkedEntries). Each returns the commit position of its command, or
    raises."""

    async def checkpoint(self, topic: str, group: str, at: Key, settled: Sequence[Key]) -> int: ...

    async def park(self, topic: str, group: str, parking: Parking) -> int: ...

    async def replay(self, topic: str, group: str, entries: Sequence[Key]) -> int: ...


@dataclass(frozen=True, slots=True)
class GroupSettings:
    poll_s: float = 0.2  # how often a runner looks for new entries when nothing wakes it
    checkpoint_every_s: float = 1.0
    checkpoint_every: int = 100  # settled entries
    read_ahead: int = 1_000  # entries a group holds at most
    read_batch: int = 100  # entries one read asks for at most
    replay_scan_s: float = 1.0  # how often a runner looks for replayed entries
    replay_chunk: int = 100  # parked entries a ReplayParked command moves at most


DEFAULT_GROUP_SETTINGS = GroupSettings()


@dataclass(slots=True)
class Consumer:
    """One connected Consume stream."""

    key: str  # unique within the runner
    name: str
    deliveries: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)


def _entry(e: TopicEntry) -> Entry:
    return Entry((e.position, e.index), e.series_id, e.payload)


class GroupRunner:
    def __init__(
        self,
        reader: ReadModelReader,
        recorder: GroupRecorder,
        topic: str,
        group: str,
        definition: TopicDefinition,
        settings: GroupSettings,
        parked: metrics.Counter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.group = group
        self._labels = {"topic": topic, "group": group}
        self._parked = parked
        # The group's series exists at 0 before its first park: Prometheus's increase() sees
        # no increase in a series whose first sample is already 1.
        parked.add(0, self._labels)
        self._reader = reader
        self._recorder = recorder
        self._definition = definition
        self._settings = settings
        self._clock = clock
        self._dispatch: GroupDispatch | None = None
        self._consumers: dict[str, Consumer] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keys = itertools.count(1)
        self._recorded: Key = BEFORE_ALL
        self._recorded_at = 0.0
        self._settled_since = 0
        self._replay_scan_at = 0.0
        self._replays_done: set[Key] = set()  # settled, maybe not yet projected as such
        self._settled_replays: list[Key] = []  # settled, not recorded yet
        self._stopping = False

    async def start(self) -> None:
        stored = await self._reader.consumer_group(self.topic, self.group)
        if stored is None:
            # A new group starts at the end of the topic's log: with what comes after it.
            last = await _last_entry(self._reader, self.topic)
            start = BEFORE_ALL if last is None else last
        else:
            start = (stored.checkpoint_position, stored.checkpoint_index)
        self._dispatch = GroupDispatch(
            start,
            max_attempts=self._definition.max_attempts,
            ack_timeout_s=self._definition.ack_timeout_s,
            read_ahead=self._settings.read_ahead,
        )
        self._recorded = start
        if stored is None and start != BEFORE_ALL:
            # Where a new group starts is recorded at once: a consumer coming back later
            # receives what came in between.
            await self._recorder.checkpoint(self.topic, self.group, start, ())
        self._recorded_at = self._clock()
        self._task = asyncio.create_task(self._run(), name=f"group {self.topic}/{self.group}")

    @property
    def dispatch(self) -> GroupDispatch:
        if self._dispatch is None:
            raise RuntimeError("the runner is not started")
        return self._dispatch

    @property
    def idle(self) -> bool:
        return not self._consumers

    def join(self, name: str, window: int) -> Consumer:
        consumer = Consumer(f"{name}#{next(self._keys)}", name)
        self.dispatch.join(consumer.key, window)
        self._consumers[consumer.key] = consumer
        self._wake.set()
        return consumer

    def leave(self, consumer: Consumer) -> None:
        self._consumers.pop(consumer.key, None)
        self.dispatch.leave(consumer.key)
        self._wake.set()

    def settle(
        self, consumer: Consumer, acks: Sequence[str], nacks: Sequence[tuple[str, str]]
    ) -> None:
        for delivery_id in acks:
            self._settled_since += self.dispatch.ack(consumer.key, delivery_id)
        for delivery_id, reason in nacks:
            self.dispatch.nack(consumer.key, delivery_id, reason)
        self._wake.set()

    async def stop(self) -> None:
        """Stops the task after its step, then records the checkpoint reached. (Not by
        cancelling it: wait_for can swallow a cancellation on Python 3.11.)"""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        if self._dispatch is not None:
            await self._record(force=True)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except Exception:
                # A store or the command service unreachable: tried again at the next step;
                # what is not recorded is delivered again, never lost.
                log.exception("consumer group %s/%s", self.topic, self.group)
            await self._sleep()

    async def _step(self) -> None:
        d = self.dispatch
        now = self._clock()
        d.expire(now)
        room = min(d.room, self._settings.read_batch)
        if room:
            after = ResumeToken(*d.last_read)
            d.add(map(_entry, await self._reader.topic_entries(self.topic, after, room)))
        if now >= self._replay_scan_at:
            self._replay_scan_at = now + self._settings.replay_scan_s
            await self._take_replays()
        for delivery in d.deliver(now):
            self._consumers[delivery.consumer].deliveries.put_nowait(delivery)
        for parking in d.take_parkings():
            try:
                await self._recorder.park(self.topic, self.group, parking)
            except Exception:
                d.parking_failed(parking)
                raise
            d.parked(parking.entry.key)
            self._parked.add(1, self._labels)
        await self._record(force=False)

    async def _take_replays(self) -> None:
        """The replayed entries not held yet, oldest first, within the read-ahead."""
        d = self.dispatch
        seen: set[Key] = set()
        after = ResumeToken(*BEFORE_ALL)
        while d.room > 0:
            limit = min(d.room, self._settings.read_batch)
            page = await self._reader.parked_entries(self.topic, self.group, after, limit, REPLAYED)
            for parked in page:
                key = (parked.entry_position, parked.entry_index)
                seen.add(key)
                if key in self._replays_done or d.holds_replay(key):
                    continue
                entry = await self._topic_entry(key)
                if entry is not None:
                    d.add_replayed(entry)
            if len(page) < limit:
                # The whole list seen: a settled replay shown no more is forgotten.
                self._replays_done &= seen
                return
            after = ResumeToken(page[-1].entry_position, page[-1].entry_index)

    async def _topic_entry(self, key: Key) -> Entry | None:
        found = await self._reader.topic_entries(self.topic, ResumeToken(key[0], key[1] - 1), 1)
        if not found or (found[0].position, found[0].index) != key:
            return None
        return _entry(found[0])

    async def _record(self, *, force: bool) -> None:
        """The checkpoint, and the replays settled, when due: every `checkpoint_every_s` or
        `checkpoint_every` settled entries (or `force`)."""
        d = self.dispatch
        self._settled_replays.extend(d.take_replays_settled())
        now = self._clock()
        due = (
            force
            or self._settled_since >= self._settings.checkpoint_every
            or now - self._recorded_at >= self._settings.checkpoint_every_s
        )
        at, settled = d.checkpoint, self._settled_replays
        # BEFORE_ALL: nothing of the log read yet, and nothing replayed either (a replayed
        # entry was parked, which settles an entry).
        if not due or at == BEFORE_ALL or (at == self._recorded and not settled):
            return
        for start in range(0, max(1, len(settled)), MAX_ENTRIES):
            chunk = settled[start : start + MAX_ENTRIES]
            await self._recorder.checkpoint(self.topic, self.group, at, chunk)
        self._replays_done.update(settled)
        self._settled_replays = []
        self._recorded, self._recorded_at, self._settled_since = at, now, 0

    async def _sleep(self) -> None:
        timeout = self._settings.poll_s
        deadline = self.dispatch.next_deadline()
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - self._clock()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()


async def _last_entry(reader: ReadModelReader, topic: str) -> Key | None:
    """The last entry of a topic's log, reading it forward in pages (a topic is read once per
    new group)."""
    after, last = ResumeToken(*BEFORE_ALL), None
    while page := await reader.topic_entries(topic, after, 1_000):
        last = (page[-1].position, page[-1].index)
        after = ResumeToken(*last)
    return last


class TopicGroups:
    """The runners of this process, by (topic, group)."""

    def __init__(
        self,
        reader: ReadModelReader,
        recorder: GroupRecorder,
        settings: GroupSettings,
        meter: metrics.Meter | None = None,
    ) -> None:
        """`meter`: None is the OpenTelemetry global one (the process's, once configured)."""
        self._reader = reader
        self._recorder = recorder
        self.settings = settings
        meter = meter or metrics.get_meter("qis.query")
        self._parked = meter.create_counter(
            "qis.topic.parked",
            unit="{entry}",
            description="Entries a consumer group parked after its last delivery attempt.",
        )
        self._replayed = meter.create_counter(
            "qis.topic.replayed",
            unit="{entry}",
            description="Parked entries an operator moved back to delivery.",
        )
        self._runners: dict[tuple[str, str], GroupRunner] = {}
        self._lock = asyncio.Lock()

    async def topics(self) -> list[TopicVersion]:
        """Every topic's last version, deleted ones included, by name."""
        return await self._reader.topics()

    async def definition(self, topic: str) -> TopicDefinition:
        """The topic in force; NotFound (TOPIC_NOT_FOUND) else."""
        for version in await self._reader.topics():
            if version.topic == topic and version.definition is not None:
                return TopicDefinition.model_validate(version.definition)
        raise NotFound(topic_resource(topic), "topic")

    async def join(
        self, topic: str, group: str, name: str, window: int
    ) -> tuple[GroupRunner, Consumer]:
        async with self._lock:
            runner = self._runners.get((topic, group))
            if runner is None:
                definition = await self.definition(topic)
                runner = GroupRunner(
                    self._reader,
                    self._recorder,
                    topic,
                    group,
                    definition,
                    self.settings,
                    self._parked,
                )
                await runner.start()
                self._runners[(topic, group)] = runner
            return runner, runner.join(name, window)

    async def leave(self, runner: GroupRunner, consumer: Consumer) -> None:
        async with self._lock:
            runner.leave(consumer)
            if runner.idle:
                del self._runners[(runner.topic, runner.group)]
                await runner.stop()

    async def close(self) -> None:
        async with self._lock:
            for runner in self._runners.values():
                await runner.stop()
            self._runners.clear()

    async def parked(self, topic: str, group: str, after: Key, limit: int) -> list[ParkedEntry]:
        return await self._reader.parked_entries(topic, group, ResumeToken(*after), limit)

    async def replay(self, topic: str, group: str, max_count: int) -> tuple[int, int]:
        """Moves at most `max_count` parked entries back to delivery, a chunk at a time:
        (how many, the commit position of the last command)."""
        after, moved, position = ResumeToken(*BEFORE_ALL), 0, 0
        while moved < max_count:
            limit = min(self.settings.replay_chunk, max_count - moved)
            page = await self._reader.parked_entries(topic, group, after, limit, PARKED)
            if not page:
                break
            keys = [(p.entry_position, p.entry_index) for p in page]
            position = await self._recorder.replay(topic, group, keys)
            self._replayed.add(len(keys), {"topic": topic, "group": group})
            moved += len(keys)
            after = ResumeToken(*keys[-1])
            if len(page) < limit:
                break
        return moved, position
