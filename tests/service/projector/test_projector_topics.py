"""Topic logs (docs/routing.md): the projector appends an entry per (topic, routed event) by
the definitions in force at the event's position, so that a projection restarted at any
checkpoint equals a rebuild from position 0."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import quality_pb2, routing_pb2
from qis.data.v1 import query_service_pb2 as query_pb
from qis_adapters.eventstore.codec import DecodedEvent
from qis_adapters.eventstore.port import RecordedEvent
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import ResumeToken
from qis_domain.events import (
    DataPublished,
    DataRestated,
    DomainEvent,
    EventMetadata,
    Issue,
    QualityIssueDetected,
    TopicDefinition,
    TopicDeleted,
    TopicSet,
)
from qis_domain.routing import ROUTING_STREAM
from qis_domain.values import DataType
from qis_projector.application.projection import Projection
from qis_projector.application.topics import MAX_PART_ITEMS, routes_at

US = 1_000_000
T0 = 1_704_067_200 * US
BEFORE_ALL = ResumeToken(-1, -1)


def official(series_id: str, count: int, *, restated: bool = False) -> DataPublished | DataRestated:
    columns: dict[str, Any] = {
        "series_id": series_id,
        "data_type": DataType.PRICE,
        "unit": "USD",
        "snaps": [T0 + i * US for i in range(count)],
        "versions": [2 if restated else 1] * count,
        "values": [f"{100 + i}.5" for i in range(count)],
        "quality_scores": ["1"] * count,
        "sources": [["bbg"]] * count,
        "methods": ["priority"] * count,
        "flags": [["jump"] if i == 0 else [] for i in range(count)],
        "reasons": ["late" if restated else ""] * count,
        "causes": ["late_source" if restated else ""] * count,
    }
    if restated:
        return DataRestated(**columns)
    return DataPublished(**columns, mode="automatic")


def issues(series_id: str, *severities: str) -> QualityIssueDetected:
    return QualityIssueDetected(
        series_id=series_id,
        issues=[
            Issue(
                issue_id=f"i{n}",
                snap_us=T0,
                source_id="bbg",
                rule="jump",
                severity=severity,
                blocking=severity == "error",
                evidence={"move": "0.5"},
            )
            for n, severity in enumerate(severities)
        ],
    )


def topic(*kinds: str, patterns: tuple[str, ...] = (), severity: str = "") -> TopicDefinition:
    return TopicDefinition(event_types=kinds, series_patterns=patterns, min_severity=severity)


def stream_of(event: DomainEvent) -> str:
    if isinstance(event, TopicSet | TopicDeleted):
        return ROUTING_STREAM
    return f"series/{event.series_id}/points/0"  # type: ignore[attr-defined]


def log(events: Sequence[DomainEvent]) -> list[DecodedEvent]:
    """The events as the projector reads them, at positions 1, 2, ..., one second apart."""
    return [
        DecodedEvent(
            event,
            EventMetadata(command_id=f"c{p}", user_id="u", correlation_id="", causation_id=""),
            RecordedEvent(
                stream_of(event), 0, p, uuid.uuid4(), event.event_type, b"", b"", T0 + p * US
            ),
        )
        for p, event in enumerate(events, 1)
    ]


async def project(decoded: Sequence[DecodedEvent], cuts: Sequence[int] = ()) -> InMemoryReadStore:
    """Projects `decoded` into a fresh store in runs ending before each of `cuts`, each run
    starting afresh from what the store holds (as the projector after a restart)."""
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await store.set_active_generation("g1")
    edges = [0, *sorted(set(cuts)), len(decoded)]
    floor = 0
    for start, end in itertools.pairwise(edges):
        if start == end:
            continue
        projection = Projection(floor, await routes_at(store, await store.checkpoint()))
        for event in decoded[start:end]:
            projection.handle(event)
        floor = projection.floor_us
        batch, _ = projection.take()
        await store.apply(batch, decoded[end - 1].record.position)
    return store


async def entries(store: InMemoryReadStore, name: str) -> list[routing_pb2.TopicMessage]:
    found = await store.topic_entries(name, BEFORE_ALL, 1000)
    return [routing_pb2.TopicMessage.FromString(e.payload) for e in found]


async def test_definitions_in_force_at_each_position_decide() -> None:
    decoded = log(
        [
            official("EQ.A", 1),  # 1: before any topic
            TopicSet(
                name="strategy.updates", definition=topic("DataPublished", patterns=("EQ.*",))
            ),
            official("EQ.A", 2),  # 3: taken
            official("FX.EUR", 1),  # 4: another series
            TopicSet(name="strategy.updates", definition=topic("DataPublished")),
            official("FX.EUR", 1),  # 6: taken now
            official("EQ.A", 1, restated=True),  # 7: another type
            TopicDeleted(name="strategy.updates"),
            official("EQ.A", 1),  # 9: deleted
        ]
    )
    store = await project(decoded)
    messages = await entries(store, "strategy.updates")
    assert [(m.commit_position, m.series) for m in messages] == [
        (3, "series/EQ.A"),
        (6, "series/FX.EUR"),
    ]
    versions = await store.topics()
    assert [(v.topic, v.position, v.definition is None) for v in versions] == [
        ("strategy.updates", 8, True)
    ]
    assert [v.position for v in await store.topics(7)] == [5]


async def test_a_message_holds_what_a_consumer_needs() -> None:
    decoded = log(
        [
            TopicSet(name="risk.recalculate", definition=topic("DataRestated")),
            official("EQ.A", 2, restated=True),
        ]
    )
    (message,) = await entries(await project(decoded), "risk.recalculate")
    assert message.topic == "topics/risk.recalculate"
    assert message.event_type == routing_pb2.ROUTED_EVENT_TYPE_DATA_RESTATED
    assert message.commit_position == 2
    assert message.command_id == "c2"
    assert message.commit_time.ToMicroseconds() == T0 + 2 * US
    first = message.values[0]
    assert first.series == "series/EQ.A"
    assert first.snap_time.ToMicroseconds() == T0
    assert (first.version, first.value.price.value, first.reason) == (2, "100.5", "late")
    assert first.method == query_pb.VALUE_METHOD_PRIORITY
    assert list(first.flags) == [quality_pb2.QUALITY_RULE_JUMP]
    assert list(first.sources) == ["sources/bbg"]
    assert first.record_position == 2
    assert [v.value.price.value for v in message.values] == ["100.5", "101.5"]


async def test_issues_below_a_topics_minimum_severity_are_left_out() -> None:
    decoded = log(
        [
            TopicSet(name="ops.alerts", definition=topic("QualityIssueDetected", severity="error")),
            TopicSet(name="ops.all", definition=topic("QualityIssueDetected")),
            issues("EQ.A", "warning", "error"),
            issues("EQ.A", "info"),
        ]
    )
    store = await project(decoded)
    alerts = await entries(store, "ops.alerts")
    assert [[i.severity for i in m.issues] for m in alerts] == [[quality_pb2.SEVERITY_ERROR]]
    assert alerts[0].issues[0].evidence["move"] == "0.5"
    assert [len(m.issues) for m in await entries(store, "ops.all")] == [2, 1]


async def test_a_large_publication_comes_in_parts() -> None:
    decoded = log(
        [
            TopicSet(name="t", definition=topic("DataPublished")),
            official("EQ.A", 2 * MAX_PART_ITEMS + 1),
        ]
    )
    messages = await entries(await project(decoded), "t")
    assert [(m.index, len(m.values)) for m in messages] == [
        (0, MAX_PART_ITEMS),
        (1, MAX_PART_ITEMS),
        (2, 1),
    ]
    snaps = [v.snap_time.ToMicroseconds() for m in messages for v in m.values]
    assert snaps == sorted(snaps)
    assert len(set(snaps)) == len(snaps)


_names = st.sampled_from(["a", "b.c"])
_events = st.one_of(
    st.builds(
        lambda n, kinds, pattern, severity: TopicSet(
            name=n, definition=topic(*kinds, patterns=pattern, severity=severity)
        ),
        _names,
        st.lists(
            st.sampled_from(["DataPublished", "DataRestated", "QualityIssueDetected"]),
            min_size=1,
            max_size=3,
            unique=True,
        ).map(sorted),
        st.sampled_from([(), ("S1",), ("S?",), ("X*",)]),
        st.sampled_from(["", "warning", "error"]),
    ),
    st.builds(lambda n: TopicDeleted(name=n), _names),
    st.builds(official, st.sampled_from(["S1", "S2"]), st.integers(1, 3)),
    st.builds(lambda s: official(s, 1, restated=True), st.sampled_from(["S1", "S2"])),
    st.builds(
        lambda s, sev: issues(s, *sev),
        st.sampled_from(["S1", "S2"]),
        st.lists(st.sampled_from(["info", "warning", "error"]), min_size=1, max_size=3),
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_events, max_size=25), st.lists(st.integers(0, 25), max_size=4))
async def test_projection_restarted_anywhere_equals_a_rebuild(
    events: list[DomainEvent], cuts: list[int]
) -> None:
    """The topics' records only: the generated values are not a consistent history of
    versions (other tests hold the rest of the read model to projection == rebuild)."""
    decoded = log(events)
    rebuilt = await (await project(decoded)).dump_all()
    restarted = await (await project(decoded, [c for c in cuts if c <= len(decoded)])).dump_all()
    for records in ("topics", "topic_entries", "checkpoint"):
        assert restarted[records] == rebuilt[records]
