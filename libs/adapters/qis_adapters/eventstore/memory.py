"""Event store in one process's memory: for service-layer tests that inject their adapters.

Same semantics as the SQLite reference adapter (positions from 1 without gaps, commit times that
never go backwards, subscriptions strictly after a position), held to the same contract suite.
Nothing is shared between processes or kept after the process ends, so no URI selects it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

from qis_adapters.eventstore.port import (
    AppendResult,
    EventFilter,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)

# The reference adapter's own append rules, so that the two cannot drift apart.
from qis_adapters.eventstore.sqlite import _validate, _version_holds


def _wall_clock_us() -> int:
    return time.time_ns() // 1_000


class InMemoryEventStore:
    """EventStore on Python lists, for one event loop.

    Only a subscription waiting for new events ever awaits, so every other call is atomic on the
    loop: an append checks every expected version and writes every event with no other task in
    between.
    """

    def __init__(self, *, clock: Callable[[], int] = _wall_clock_us) -> None:
        """`clock`: commit time in microseconds since the Unix epoch (UTC)."""
        self._clock = clock
        self._log: list[RecordedEvent] = []  # the event at position p is self._log[p - 1]
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._closed = False
        # Set, then replaced, by every append: a subscriber waits on the one it saw last.
        self._appended = asyncio.Event()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("InMemoryEventStore is closed")

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        self._check_open()
        _validate(appends)
        for a in appends:
            actual = self._version(a.stream)
            if not _version_holds(a.expected_version, actual):
                raise WrongExpectedVersion(a.stream, a.expected_version, actual)
        last_recorded_at_us = self._log[-1].recorded_at_us if self._log else 0
        # A clock that steps back is clamped, as the SQLite store does: commit time never
        # decreases along the log, which knowledge time in the read models relies on.
        recorded_at_us = max(self._clock(), last_recorded_at_us)
        versions: dict[str, int] = {}
        for a in appends:
            stream = self._streams.setdefault(a.stream, [])
            for e in a.events:
                event = RecordedEvent(
                    stream=a.stream,
                    stream_version=len(stream),
                    position=len(self._log) + 1,
                    event_id=e.event_id,
                    type=e.type,
                    data=e.data,
                    metadata=e.metadata,
                    recorded_at_us=recorded_at_us,
                )
                stream.append(event)
                self._log.append(event)
            versions[a.stream] = len(stream) - 1
        self._wake_subscribers()
        return AppendResult(position=len(self._log), stream_versions=versions)

    def _version(self, stream: str) -> int | None:
        events = self._streams.get(stream)
        return len(events) - 1 if events else None

    def _wake_subscribers(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        self._check_open()
        return self._streams.get(stream, [])[max(from_version, 0) :]

    async def read_many(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        return [await self.read_stream(stream, version) for stream, version in reads]

    async def stream_version(self, stream: str) -> int | None:
        self._check_open()
        return self._version(stream)

    async def head_position(self) -> int:
        self._check_open()
        return len(self._log)

    async def subscribe(
        self, after_position: int | None = None, event_filter: EventFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        prefixes = event_filter.stream_prefixes if event_filter else ()
        types = frozenset(event_filter.event_types if event_filter else ())
        # Positions start at 1, so the first event after position p sits at index p.
        next_index = max(after_position or 0, 0)
        while True:
            self._check_open()
            # Taken before reading the log: an append during a `yield` below sets this very
            # event, so the wait after catching up cannot miss it.
            appended = self._appended
            while next_index < len(self._log):
                event = self._log[next_index]
                next_index += 1
                if prefixes and not event.stream.startswith(prefixes):
                    continue
                if types and event.type not in types:
                    continue
                yield event
            await appended.wait()

    async def close(self) -> None:
        self._closed = True
        # Waiting subscribers wake up and fail like every later call on the closed store.
        self._wake_subscribers()
