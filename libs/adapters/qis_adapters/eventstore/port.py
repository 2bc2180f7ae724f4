"""The event-store port: what the application needs from an append-only log of streams.

Both adapters (embedded SQLite, KurrentDB/EventStoreDB) implement exactly these semantics and
are held to them by one shared contract suite (tests/contract/eventstore).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from qis_domain.errors import RetryLater


class StreamState(enum.Enum):
    """Expected-version markers that are not a concrete version number."""

    NO_STREAM = "no_stream"  # the stream must not exist yet
    ANY = "any"  # no concurrency check (only for streams with a single writer by design)


ExpectedVersion = int | StreamState
"""A concrete version is the 0-based version of the stream's last event."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    event_id: uuid.UUID
    type: str
    data: bytes  # JSON
    metadata: bytes  # JSON


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    stream: str
    stream_version: int  # 0-based position of the event in its stream
    position: int  # global commit position: unique per event, strictly increasing in log order
    event_id: uuid.UUID
    type: str
    data: bytes
    metadata: bytes
    recorded_at_us: int  # commit time, microseconds since the Unix epoch (UTC), never decreasing


@dataclass(frozen=True, slots=True)
class StreamAppend:
    stream: str
    expected_version: ExpectedVersion
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Server-side filter for subscriptions: an event passes when both parts match.

    Empty tuples mean "no restriction". System events of the store are never delivered.
    """

    stream_prefixes: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AppendResult:
    position: int  # commit position of the last event written
    stream_versions: dict[str, int] = field(default_factory=dict)  # new version per stream


class WrongExpectedVersion(Exception):
    """An append's expected version did not match the stream: nothing was written."""

    def __init__(self, stream: str, expected: ExpectedVersion, actual: int | None) -> None:
        super().__init__(f"stream {stream!r}: expected version {expected!r}, actual {actual!r}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class EventStoreUnavailable(RetryLater):
    """The store cannot be reached, is locked or read-only; nothing was written, and the
    operation may be retried later."""


class EventStoreFull(EventStoreUnavailable):
    """The store is out of space; nothing was written. Retry once space is freed."""

    kind = "full"
    retry_after_s = 30.0


class EventStore(Protocol):
    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        """Append to one or more streams atomically: all or nothing.

        Raises WrongExpectedVersion when any stream's expected version does not hold.
        """
        ...

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        """Events of one stream with stream_version >= from_version; [] when it does not exist."""
        ...

    async def read_many(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        """For each (stream, from_version), in the order given, what `read_stream` answers for
        it; a stream may appear more than once. The point of it is one round trip (one thread
        hop and one read transaction on SQLite) for the several small reads of one command;
        an adapter may read the streams one by one (KurrentDB does), so the answers need not
        be one snapshot: optimistic concurrency on append covers the difference, as it does
        between separate reads."""
        ...

    async def stream_version(self, stream: str) -> int | None:
        """Version of the stream's last event, None when the stream does not exist."""
        ...

    def subscribe(
        self, after_position: int | None = None, event_filter: EventFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Catch-up subscription to all streams, then live, in position order.

        Starts strictly after `after_position` (None: from the very beginning). Never ends
        on its own; cancel the consuming task (or break out of the loop) to stop it.
        """
        ...

    async def head_position(self) -> int:
        """Commit position of the newest event in the store (0 when empty)."""
        ...

    async def close(self) -> None: ...
