"""Event store on KurrentDB (or EventStoreDB) through `kurrentdbclient`'s asyncio client.

Atomic appends to several streams use `multi_append_to_stream`, which needs KurrentDB >= 25.1;
an append to a single stream uses `append_to_stream` and works on EventStoreDB 23.10+ too.
With `multi_append_to_stream` the server keeps event metadata as properties: it must be empty
or a JSON object whose values are all strings (the client raises ProgrammingError otherwise).

The mappings between the port and the client are module-level functions so that they can be
tested without a server.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

from kurrentdbclient import DEFAULT_EXCLUDE_FILTER, AsyncKurrentDBClient, NewEvents
from kurrentdbclient import NewEvent as KdbNewEvent
from kurrentdbclient import RecordedEvent as KdbRecordedEvent
from kurrentdbclient import StreamState as KdbStreamState
from kurrentdbclient.exceptions import (
    DeadlineExceededError,
    DiscoveryFailedError,
    FollowerNotFoundError,
    GrpcDeadlineExceededError,
    LeaderNotFoundError,
    NodeIsNotLeaderError,
    NotFoundError,
    ReadOnlyReplicaNotFoundError,
    ServiceUnavailableError,
    WrongCurrentVersionError,
)

from qis_adapters.eventstore.port import (
    AppendResult,
    EventFilter,
    EventStoreUnavailable,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def to_current_version(expected: ExpectedVersion) -> int | KdbStreamState:
    """The client's `current_version` argument for a port expected version."""
    if expected is StreamState.NO_STREAM:
        return KdbStreamState.NO_STREAM
    if expected is StreamState.ANY:
        return KdbStreamState.ANY
    if isinstance(expected, int) and expected >= 0:
        return expected
    raise ValueError(f"unsupported expected version: {expected!r}")


def new_stream_version(expected: ExpectedVersion, event_count: int) -> int | None:
    """Stream version after a successful append; None when only the server knows (ANY)."""
    if expected is StreamState.NO_STREAM:
        return event_count - 1
    if isinstance(expected, int):
        return expected + event_count
    return None


def to_kdb_new_event(event: NewEvent) -> KdbNewEvent:
    return KdbNewEvent(
        type=event.type,
        data=event.data,
        metadata=event.metadata,
        content_type="application/json",
        id=event.event_id,
    )


@dataclass(frozen=True, slots=True)
class ServerFilter:
    """Arguments for `subscribe_to_all`: the server filters on ONE field only."""

    filter_include: tuple[str, ...]
    filter_exclude: tuple[str, ...]
    filter_by_stream_name: bool


def stream_prefix_regex(prefixes: Sequence[str]) -> str:
    # The client joins include patterns as "^" + "|".join(patterns) + "$" without
    # brackets, so several patterns would bind wrongly: pass one bracketed alternation.
    # re.escape only escapes non-alphanumerics, which .NET regexes also read as literals.
    return "(?:" + "|".join(re.escape(p) for p in prefixes) + ").*"


def event_type_regex(types: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(t) for t in types) + ")"


def to_server_filter(event_filter: EventFilter) -> ServerFilter:
    """The server-side part of a filter; `passes_filter` applies the whole filter after it.

    Stream prefixes go to the server when given (they select partitions, so they are usually
    the narrower part), otherwise event types, otherwise the client's default exclusion of
    system events.
    """
    if event_filter.stream_prefixes:
        return ServerFilter(
            filter_include=(stream_prefix_regex(event_filter.stream_prefixes),),
            filter_exclude=(),
            filter_by_stream_name=True,
        )
    if event_filter.event_types:
        return ServerFilter(
            filter_include=(event_type_regex(event_filter.event_types),),
            filter_exclude=(),
            filter_by_stream_name=False,
        )
    return ServerFilter(
        filter_include=(),
        filter_exclude=tuple(DEFAULT_EXCLUDE_FILTER),
        filter_by_stream_name=False,
    )


def passes_filter(event_filter: EventFilter, stream: str, event_type: str) -> bool:
    """The full port filter, including "never system events", which the server cannot
    combine with a filter on the other field."""
    if stream.startswith("$") or event_type.startswith("$"):
        return False
    if event_filter.stream_prefixes and not stream.startswith(event_filter.stream_prefixes):
        return False
    return not event_filter.event_types or event_type in event_filter.event_types


def to_recorded_event(event: KdbRecordedEvent) -> RecordedEvent:
    if event.recorded_at is None:
        raise ValueError(
            f"event {event.id} at commit position {event.commit_position} has no recorded time"
        )
    return RecordedEvent(
        stream=event.stream_name,
        stream_version=event.stream_position,
        position=event.commit_position,
        event_id=event.id,
        type=event.type,
        data=event.data,
        metadata=event.metadata,
        # Integer arithmetic on the timedelta: no float rounding of the microseconds.
        recorded_at_us=(event.recorded_at - _EPOCH) // _MICROSECOND,
    )


def to_wrong_expected_version(
    error: WrongCurrentVersionError, appends: Sequence[StreamAppend]
) -> WrongExpectedVersion:
    stream = error.stream_name
    if stream is None and len(appends) == 1:
        stream = appends[0].stream
    expected: ExpectedVersion | None = next(
        (a.expected_version for a in appends if a.stream == stream), None
    )
    if expected is None:
        expected = _from_kdb_state(error.expected_version)
    actual = error.actual_version if isinstance(error.actual_version, int) else None
    return WrongExpectedVersion(stream or "<unknown>", expected, actual)


def _from_kdb_state(version: int | KdbStreamState | None) -> ExpectedVersion:
    if isinstance(version, int):
        return version
    if version is KdbStreamState.NO_STREAM:
        return StreamState.NO_STREAM
    return StreamState.ANY


def _validate(appends: Sequence[StreamAppend]) -> None:
    if not appends:
        raise ValueError("append needs at least one StreamAppend")
    streams = [a.stream for a in appends]
    if len(set(streams)) != len(streams):
        raise ValueError(f"a stream may appear only once per append: {streams}")
    for a in appends:
        if not a.events:
            raise ValueError(f"stream {a.stream!r}: an append must carry at least one event")


# The cluster cannot take the call now (no leader yet, a node restarting, a deadline hit):
# nothing was appended, or the client's own retry detection makes a resend safe.
_UNAVAILABLE = (
    ServiceUnavailableError,
    DiscoveryFailedError,
    DeadlineExceededError,
    GrpcDeadlineExceededError,
    NodeIsNotLeaderError,
    LeaderNotFoundError,
    FollowerNotFoundError,
    ReadOnlyReplicaNotFoundError,
)


@contextlib.contextmanager
def _unavailable_as_port_error() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as e:
        raise EventStoreUnavailable(f"{type(e).__name__}: {e}") from e


class KurrentDbEventStore:
    """Thin adapter: each port call is one documented client call (plus a version read-back
    after appends with StreamState.ANY, whose new version the server does not return)."""

    def __init__(self, client: AsyncKurrentDBClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, uri: str) -> KurrentDbEventStore:
        client = AsyncKurrentDBClient(uri)
        with _unavailable_as_port_error():
            await client.connect()
        return cls(client)

    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        _validate(appends)
        try:
            with _unavailable_as_port_error():
                if len(appends) == 1:
                    (a,) = appends
                    position = await self._client.append_to_stream(
                        a.stream,
                        events=[to_kdb_new_event(e) for e in a.events],
                        current_version=to_current_version(a.expected_version),
                    )
                else:
                    position = await self._client.multi_append_to_stream(
                        [
                            NewEvents(
                                stream_name=a.stream,
                                events=[to_kdb_new_event(e) for e in a.events],
                                current_version=to_current_version(a.expected_version),
                            )
                            for a in appends
                        ]
                    )
        except WrongCurrentVersionError as e:
            raise to_wrong_expected_version(e, appends) from e
        versions: dict[str, int] = {}
        for a in appends:
            version = new_stream_version(a.expected_version, len(a.events))
            if version is None:
                # ANY is for single-writer streams, so the read-back sees our own append.
                version = await self.stream_version(a.stream)
                if version is None:
                    raise RuntimeError(f"stream {a.stream!r} not found right after appending")
            versions[a.stream] = version
        return AppendResult(position=position, stream_versions=versions)

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        try:
            with _unavailable_as_port_error():
                events = await self._client.get_stream(stream, stream_position=from_version)
        except NotFoundError:
            return []
        return [to_recorded_event(e) for e in events]

    async def read_many(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        # The client reads one stream per call (get_stream): one after the other.
        return [await self.read_stream(stream, version) for stream, version in reads]

    async def stream_version(self, stream: str) -> int | None:
        with _unavailable_as_port_error():
            version = await self._client.get_current_version(stream)
        return None if version is KdbStreamState.NO_STREAM else version

    async def subscribe(
        self, after_position: int | None = None, event_filter: EventFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        port_filter = event_filter or EventFilter()
        server = to_server_filter(port_filter)
        with _unavailable_as_port_error():
            # The server starts a subscription strictly AFTER commit_position, which is the
            # port's `after_position`; None starts at the beginning of $all.
            subscription = await self._client.subscribe_to_all(
                commit_position=after_position,
                filter_include=server.filter_include,
                filter_exclude=server.filter_exclude,
                filter_by_stream_name=server.filter_by_stream_name,
            )
            async with subscription:
                async for event in subscription:
                    if passes_filter(port_filter, event.stream_name, event.type):
                        yield to_recorded_event(event)

    async def head_position(self) -> int:
        with _unavailable_as_port_error():
            # read_all(backwards=True, limit=1) without system events; 0 when empty.
            return await self._client.get_commit_position()

    async def close(self) -> None:
        await self._client.close()
