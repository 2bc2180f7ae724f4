"""The KurrentDB adapter's mappings to and from `kurrentdbclient`, without a server."""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, cast

import pytest
from kurrentdbclient import (
    DEFAULT_EXCLUDE_FILTER,
    AsyncKurrentDBClient,
    NewEvents,
)
from kurrentdbclient import NewEvent as KdbNewEvent
from kurrentdbclient import RecordedEvent as KdbRecordedEvent
from kurrentdbclient import StreamState as KdbStreamState
from kurrentdbclient.common import construct_filter_include_regex
from kurrentdbclient.exceptions import (
    DeadlineExceededError,
    DiscoveryFailedError,
    GrpcDeadlineExceededError,
    LeaderNotFoundError,
    NodeIsNotLeaderError,
    NotFoundError,
    ServiceUnavailableError,
    WrongCurrentVersionError,
)
from qis_adapters.eventstore.kurrentdb import (
    KurrentDbEventStore,
    new_stream_version,
    passes_filter,
    to_current_version,
    to_recorded_event,
    to_server_filter,
    to_wrong_expected_version,
)
from qis_adapters.eventstore.port import (
    EventFilter,
    EventStoreUnavailable,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)


def new_event(type_: str = "DataIngested") -> NewEvent:
    return NewEvent(uuid.uuid4(), type_, b'{"points": []}', b'{"command_id": "c-1"}')


def kdb_event(
    stream: str = "series-1-2024", type_: str = "DataIngested", commit_position: int = 1_000
) -> KdbRecordedEvent:
    return KdbRecordedEvent(
        type=type_,
        data=b'{"points": []}',
        metadata=b'{"command_id": "c-1"}',
        content_type="application/json",
        id=uuid.uuid4(),
        stream_name=stream,
        stream_position=3,
        commit_position=commit_position,
        prepare_position=commit_position,
        recorded_at=datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC),
    )


def server_regex(event_filter: EventFilter) -> re.Pattern[str]:
    """The regex the client sends to the server for this filter, built by the client itself.

    Tests use `search`, like the server's Regex.IsMatch: only the pattern's anchors anchor it.
    """
    return re.compile(construct_filter_include_regex(to_server_filter(event_filter).filter_include))


# --- expected version -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "current"),
    [
        (StreamState.NO_STREAM, KdbStreamState.NO_STREAM),
        (StreamState.ANY, KdbStreamState.ANY),
        (0, 0),
        (41, 41),
    ],
)
def test_expected_version_maps_to_current_version(
    expected: int | StreamState, current: int | KdbStreamState
) -> None:
    assert to_current_version(expected) == current


def test_negative_expected_version_is_refused() -> None:
    with pytest.raises(ValueError, match="expected version"):
        to_current_version(-1)


@pytest.mark.parametrize(
    ("expected", "count", "version"),
    [(StreamState.NO_STREAM, 3, 2), (4, 2, 6), (0, 1, 1), (StreamState.ANY, 2, None)],
)
def test_new_stream_version_follows_from_expected_version(
    expected: int | StreamState, count: int, version: int | None
) -> None:
    assert new_stream_version(expected, count) == version


# --- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("series-SPX.CLOSE-2024", True),
        ("series-SPX.CLOSE-2024-07", True),
        ("series-SPXxCLOSE-2024-07", False),
        ("xseries-SPX.CLOSE-2024", False),
        ("series-SPX.CLOSE-202", False),
        ("ref-(a|b)+[c]", True),
        ("ref-a", False),
        ("ref-aab[c]", False),
    ],
)
def test_stream_prefixes_become_an_escaped_anchored_regex(name: str, matches: bool) -> None:
    pattern = server_regex(EventFilter(stream_prefixes=("series-SPX.CLOSE-2024", "ref-(a|b)+[c]")))

    assert bool(pattern.search(name)) is matches


def test_several_prefixes_stay_anchored_despite_the_clients_unbracketed_join() -> None:
    pattern = server_regex(EventFilter(stream_prefixes=("a-", "b-")))

    assert pattern.search("b-1")
    assert not pattern.search("xb-1")


@pytest.mark.parametrize(
    ("event_type", "matches"),
    [
        ("Data.Ingested", True),
        ("DataPublished", True),
        ("DataXIngested", False),
        ("Data.IngestedV2", False),
        ("XDataPublished", False),
    ],
)
def test_event_types_become_exact_match_regexes(event_type: str, matches: bool) -> None:
    pattern = server_regex(EventFilter(event_types=("Data.Ingested", "DataPublished")))

    assert bool(pattern.search(event_type)) is matches


def test_server_filters_the_stream_name_when_prefixes_are_given() -> None:
    server = to_server_filter(EventFilter(stream_prefixes=("series-",), event_types=("A",)))

    assert server.filter_by_stream_name
    assert server.filter_exclude == ()


def test_server_filters_the_event_type_when_only_types_are_given() -> None:
    server = to_server_filter(EventFilter(event_types=("A",)))

    assert not server.filter_by_stream_name
    assert server.filter_include == ("(?:A)",)


def test_no_filter_still_excludes_system_events_on_the_server() -> None:
    server = to_server_filter(EventFilter())

    assert server.filter_include == ()
    assert server.filter_exclude == tuple(DEFAULT_EXCLUDE_FILTER)
    assert not server.filter_by_stream_name


@pytest.mark.parametrize(
    ("stream", "event_type", "passes"),
    [
        ("series-1", "A", True),
        ("series-1", "B", False),
        ("ref-1", "A", False),
        ("series-1", "$metadata", False),
        ("$$series-1", "A", False),
    ],
)
def test_the_full_filter_is_applied_to_what_the_server_sends(
    stream: str, event_type: str, passes: bool
) -> None:
    event_filter = EventFilter(stream_prefixes=("series-",), event_types=("A",))

    assert passes_filter(event_filter, stream, event_type) is passes


def test_system_events_never_pass_an_empty_filter() -> None:
    assert passes_filter(EventFilter(), "orders-1", "OrderPlaced")
    assert not passes_filter(EventFilter(), "$stats-127.0.0.1:2113", "$statsCollected")
    assert not passes_filter(EventFilter(), "orders-1", "$>")


# --- recorded events ----------------------------------------------------------------------------


def test_recorded_event_maps_every_field() -> None:
    event = kdb_event(commit_position=123_456)

    assert to_recorded_event(event) == RecordedEvent(
        stream="series-1-2024",
        stream_version=3,
        position=123_456,
        event_id=event.id,
        type="DataIngested",
        data=b'{"points": []}',
        metadata=b'{"command_id": "c-1"}',
        recorded_at_us=1_714_979_289_123_456,
    )


def test_recorded_event_without_recorded_time_is_refused() -> None:
    event = KdbRecordedEvent(
        type="A",
        data=b"{}",
        metadata=b"",
        content_type="application/json",
        id=uuid.uuid4(),
        stream_name="s",
        stream_position=0,
        commit_position=1,
        prepare_position=1,
    )

    with pytest.raises(ValueError, match="recorded time"):
        to_recorded_event(event)


# --- version conflicts --------------------------------------------------------------------------


def test_conflict_maps_to_wrong_expected_version_with_the_ports_expected_version() -> None:
    appends = [
        StreamAppend("a", StreamState.NO_STREAM, [new_event()]),
        StreamAppend("b", 1, [new_event()]),
    ]
    error = WrongCurrentVersionError(
        "conflict", stream_name="b", actual_version=3, expected_version=1
    )

    mapped = to_wrong_expected_version(error, appends)

    assert (mapped.stream, mapped.expected, mapped.actual) == ("b", 1, 3)


def test_conflict_on_a_missing_stream_has_no_actual_version() -> None:
    appends = [StreamAppend("a", 0, [new_event()])]
    error = WrongCurrentVersionError(
        "conflict", stream_name="a", actual_version=-1, expected_version=0
    )

    mapped = to_wrong_expected_version(error, appends)

    assert (mapped.stream, mapped.expected, mapped.actual) == ("a", 0, None)


def test_conflict_without_a_stream_name_names_the_only_stream() -> None:
    appends = [StreamAppend("a", StreamState.NO_STREAM, [new_event()])]
    error = WrongCurrentVersionError("conflict", actual_version=0)

    mapped = to_wrong_expected_version(error, appends)

    assert (mapped.stream, mapped.expected, mapped.actual) == ("a", StreamState.NO_STREAM, 0)


# --- calls into the client ----------------------------------------------------------------------


class FakeSubscription:
    def __init__(self, events: Sequence[KdbRecordedEvent]) -> None:
        self._events = iter(events)
        self.stopped = False

    async def __aenter__(self) -> FakeSubscription:
        return self

    async def __aexit__(self, *args: object) -> None:
        self.stopped = True

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> KdbRecordedEvent:
        try:
            return next(self._events)
        except StopIteration:
            raise StopAsyncIteration from None


class RecordingClient:
    """Stands in for AsyncKurrentDBClient and records how the adapter calls it."""

    def __init__(
        self,
        events: Sequence[KdbRecordedEvent] = (),
        error: Exception | None = None,
        current_version: int | KdbStreamState = 7,
    ) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.subscription = FakeSubscription(events)
        self._error = error
        self._current_version = current_version

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if self._error is not None:
            raise self._error

    async def append_to_stream(
        self, stream_name: str, *, events: Iterable[KdbNewEvent], current_version: Any
    ) -> int:
        self._record(
            "append_to_stream",
            stream_name=stream_name,
            events=list(events),
            current_version=current_version,
        )
        return 500

    async def multi_append_to_stream(self, events: Iterable[NewEvents]) -> int:
        self._record("multi_append_to_stream", events=list(events))
        return 900

    async def get_current_version(self, stream_name: str) -> int | KdbStreamState:
        self._record("get_current_version", stream_name=stream_name)
        return self._current_version

    async def get_stream(self, stream_name: str, *, stream_position: int) -> tuple[Any, ...]:
        self._record("get_stream", stream_name=stream_name, stream_position=stream_position)
        return ()

    async def subscribe_to_all(self, **kwargs: Any) -> FakeSubscription:
        self._record("subscribe_to_all", **kwargs)
        return self.subscription


def adapter_on(client: RecordingClient) -> KurrentDbEventStore:
    return KurrentDbEventStore(cast(AsyncKurrentDBClient, client))


async def collect(events: AsyncIterator[RecordedEvent]) -> list[RecordedEvent]:
    return [e async for e in events]


@pytest.mark.parametrize("after", [None, 0, 4_242])
async def test_subscribe_passes_after_position_as_commit_position_unchanged(
    after: int | None,
) -> None:
    client = RecordingClient()

    await collect(adapter_on(client).subscribe(after_position=after))

    assert client.calls == [
        (
            "subscribe_to_all",
            {
                "commit_position": after,
                "filter_include": (),
                "filter_exclude": tuple(DEFAULT_EXCLUDE_FILTER),
                "filter_by_stream_name": False,
            },
        )
    ]
    assert client.subscription.stopped


async def test_subscribe_sends_the_prefix_filter_and_drops_what_the_server_cannot() -> None:
    wanted = kdb_event("series-1", "DataIngested", 10)
    client = RecordingClient(
        [
            wanted,
            kdb_event("series-1", "DataValidated", 20),
            kdb_event("series-1", "$metadata", 30),
        ]
    )
    event_filter = EventFilter(stream_prefixes=("series-",), event_types=("DataIngested",))

    got = await collect(adapter_on(client).subscribe(99, event_filter))

    assert [e.event_id for e in got] == [wanted.id]
    (_, kwargs) = client.calls[0]
    assert kwargs["filter_include"] == to_server_filter(event_filter).filter_include
    assert kwargs["filter_by_stream_name"] is True


async def test_single_stream_append_uses_append_to_stream() -> None:
    client = RecordingClient()
    events = [new_event("A"), new_event("B")]

    result = await adapter_on(client).append([StreamAppend("s", 4, events)])

    assert result.position == 500
    assert result.stream_versions == {"s": 6}
    ((name, kwargs),) = client.calls
    assert (name, kwargs["stream_name"], kwargs["current_version"]) == ("append_to_stream", "s", 4)
    # Compared field by field: the client's NewEvent equality looks at the id only.
    assert [(k.id, k.type, k.data, k.metadata, k.content_type) for k in kwargs["events"]] == [
        (e.event_id, e.type, e.data, e.metadata, "application/json") for e in events
    ]


async def test_multi_stream_append_uses_one_multi_append_call() -> None:
    client = RecordingClient()

    result = await adapter_on(client).append(
        [
            StreamAppend("a", StreamState.NO_STREAM, [new_event()]),
            StreamAppend("b", 2, [new_event(), new_event()]),
        ]
    )

    assert result.position == 900
    assert result.stream_versions == {"a": 0, "b": 4}
    ((name, kwargs),) = client.calls
    assert name == "multi_append_to_stream"
    assert [(n.stream_name, n.current_version) for n in kwargs["events"]] == [
        ("a", KdbStreamState.NO_STREAM),
        ("b", 2),
    ]


async def test_append_with_any_reads_the_new_version_back() -> None:
    client = RecordingClient()

    result = await adapter_on(client).append([StreamAppend("s", StreamState.ANY, [new_event()])])

    assert result.stream_versions == {"s": 7}
    assert [name for name, _ in client.calls] == ["append_to_stream", "get_current_version"]


async def test_append_conflict_raises_wrong_expected_version() -> None:
    error = WrongCurrentVersionError(
        "conflict", stream_name="s", actual_version=5, expected_version=4
    )
    client = RecordingClient(error=error)

    with pytest.raises(WrongExpectedVersion) as info:
        await adapter_on(client).append([StreamAppend("s", 4, [new_event()])])

    assert (info.value.stream, info.value.expected, info.value.actual) == ("s", 4, 5)
    assert info.value.__cause__ is error


async def test_missing_stream_reads_as_empty() -> None:
    client = RecordingClient(error=NotFoundError("no stream"))

    assert await adapter_on(client).read_stream("s", 3) == []
    assert client.calls == [("get_stream", {"stream_name": "s", "stream_position": 3})]


async def test_missing_stream_has_no_version() -> None:
    client = RecordingClient(current_version=KdbStreamState.NO_STREAM)

    assert await adapter_on(client).stream_version("s") is None


@pytest.mark.parametrize(
    "error",
    [
        ServiceUnavailableError("down"),
        DiscoveryFailedError("no members"),
        DeadlineExceededError("deadline"),
        GrpcDeadlineExceededError("deadline"),
        NodeIsNotLeaderError("follower"),
        LeaderNotFoundError("election"),
    ],
)
async def test_a_cluster_that_cannot_take_the_call_is_unavailable(error: Exception) -> None:
    client = RecordingClient(error=error)
    store = adapter_on(client)
    with pytest.raises(EventStoreUnavailable) as appending:
        await store.append([StreamAppend("s", 4, [new_event()])])
    assert appending.value.__cause__ is error
    with pytest.raises(EventStoreUnavailable):
        await store.read_stream("s")
