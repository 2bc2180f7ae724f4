"""Event routing as data (qis_domain.routing): what a topic takes, and the EventRouting
aggregate's decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis_domain.errors import InvalidArgument, NotFound
from qis_domain.events import (
    ConsumerGroupCheckpointed,
    DomainEvent,
    Issue,
    ParkedEntriesReplayed,
    TopicDeleted,
    TopicEntryParked,
    TopicSet,
)
from qis_domain.routing import ConsumerGroup, EventRouting, Routes, TopicDefinition
from qis_domain.series_bucket import Recorded

PUBLISHED = "DataPublished"
ISSUES = "QualityIssueDetected"


def topic(*kinds: str, patterns: tuple[str, ...] = (), severity: str = "") -> TopicDefinition:
    return TopicDefinition(
        event_types=kinds or (PUBLISHED,), series_patterns=patterns, min_severity=severity
    )


def issue(severity: str) -> Issue:
    return Issue(
        issue_id=f"i-{severity}",
        snap_us=1,
        source_id="",
        rule="jump",
        severity=severity,
        blocking=severity == "error",
        evidence={},
    )


def applied(routing: EventRouting, events: list[DomainEvent], position: int = 1) -> EventRouting:
    for i, event in enumerate(events):
        routing.apply(event, Recorded(f"c{position}", "u", position + i, i))
    return routing


def test_topics_match_event_types_and_series_globs() -> None:
    routes = Routes(
        {
            "b.all": topic(PUBLISHED, "DataRestated"),
            "a.equities": topic(PUBLISHED, patterns=("EQ.*", "IDX.SP?")),
            "c.rates": topic(PUBLISHED, patterns=("RATE.[UE]SD",)),
        }
    )
    # By name, whatever order they were defined in.
    assert [r.name for r in routes.matching(PUBLISHED, "EQ.AAPL")] == ["a.equities", "b.all"]
    assert [r.name for r in routes.matching(PUBLISHED, "IDX.SPX")] == ["a.equities", "b.all"]
    assert [r.name for r in routes.matching(PUBLISHED, "IDX.SPXW")] == ["b.all"]
    assert [r.name for r in routes.matching(PUBLISHED, "eq.aapl")] == ["b.all"]  # case counts
    assert [r.name for r in routes.matching(PUBLISHED, "RATE.USD")] == ["b.all", "c.rates"]
    assert [r.name for r in routes.matching(PUBLISHED, "RATE.GBP")] == ["b.all"]
    assert [r.name for r in routes.matching("DataRestated", "EQ.AAPL")] == ["b.all"]
    assert routes.matching(ISSUES, "EQ.AAPL") == []


def test_a_minimum_severity_keeps_the_issues_at_or_above_it() -> None:
    issues = [issue("info"), issue("warning"), issue("error")]
    routes = Routes({"w": topic(ISSUES, severity="warning"), "any": topic(ISSUES)})
    by_name = {r.name: r for r in routes.matching(ISSUES, "S")}
    assert [i.severity for i in by_name["w"].issues(issues)] == ["warning", "error"]
    assert by_name["any"].issues(issues) == issues
    assert by_name["w"].issues([issue("info")]) == []


def test_a_change_makes_a_new_table() -> None:
    before = Routes({"t": topic()})
    after = before.changed("t", None).changed("u", topic(ISSUES))
    assert [r.name for r in before.matching(PUBLISHED, "S")] == ["t"]
    assert after.matching(PUBLISHED, "S") == []
    assert [r.name for r in after.matching(ISSUES, "S")] == ["u"]


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabc0123456789.:-_", min_size=1, max_size=20))
def test_a_topic_without_patterns_takes_every_series(series_id: str) -> None:
    assert [r.name for r in Routes({"t": topic()}).matching(PUBLISHED, series_id)] == ["t"]


def test_setting_a_topic_records_it_once() -> None:
    routing = EventRouting()
    events = routing.set_topic("risk-domain.recalculate", topic("DataRestated"))
    assert events == [TopicSet(name="risk-domain.recalculate", definition=topic("DataRestated"))]
    applied(routing, events)
    assert routing.set_topic("risk-domain.recalculate", topic("DataRestated")) == []
    changed = routing.set_topic("risk-domain.recalculate", topic(PUBLISHED))
    assert changed == [TopicSet(name="risk-domain.recalculate", definition=topic(PUBLISHED))]


def test_deleting_a_topic() -> None:
    routing = EventRouting()
    with pytest.raises(NotFound) as missing:
        routing.delete_topic("ops.alerts")
    assert missing.value.reason == "TOPIC_NOT_FOUND"
    applied(routing, routing.set_topic("ops.alerts", topic(ISSUES)))
    deleted = routing.delete_topic("ops.alerts")
    assert deleted == [TopicDeleted(name="ops.alerts")]
    applied(routing, deleted, 2)
    assert routing.topics == {}
    assert routing.outcome_of("c2") is not None


def test_invalid_definitions_list_every_violation() -> None:
    bad = TopicDefinition(
        event_types=("DataIngested", PUBLISHED, PUBLISHED),
        series_patterns=("EQ.*", "no spaces", "x" * 129),
        min_severity="fatal",
        max_attempts=0,
        ack_timeout_s=3601,
        description="d" * 1025,
    )
    with pytest.raises(InvalidArgument) as error:
        EventRouting().set_topic("Risk Domain", bad)
    fields = [v.field for v in error.value.violations]
    assert fields == [
        "topic.name",
        "topic.event_types[0]",
        "topic.event_types",
        "topic.series_patterns[1]",
        "topic.series_patterns[2]",
        "topic.min_severity",
        "topic.max_attempts",
        "topic.ack_timeout",
        "topic.description",
    ]
    with pytest.raises(InvalidArgument) as empty:
        EventRouting().set_topic("t", TopicDefinition(event_types=()))
    assert [v.field for v in empty.value.violations] == ["topic.event_types"]
    many = TopicDefinition(event_types=(PUBLISHED,), series_patterns=("S",) * 101)
    with pytest.raises(InvalidArgument):
        EventRouting().set_topic("t", many)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("strategy-domain.data-updated", True),
        ("audit-service.restatement-log", True),
        ("ops", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("Ops.alerts", False),
        ("ops..alerts", False),
        (".ops", False),
        ("ops.", False),
        ("ops/alerts", False),
        ("", False),
    ],
)
def test_topic_names(name: str, valid: bool) -> None:
    routing = EventRouting()
    if valid:
        assert routing.set_topic(name, topic()) != []
    else:
        with pytest.raises(InvalidArgument):
            routing.set_topic(name, topic())


# --- consumer groups --------------------------------------------------------------------------


def group_at(*checkpoints: tuple[int, int]) -> ConsumerGroup:
    group = ConsumerGroup("t.a", "g")
    for n, (position, index) in enumerate(checkpoints):
        for event in group.checkpoint_at(position, index):
            group.apply(event, Recorded(f"c{n}", "svc", 100 + n, n))
    return group


def test_a_group_checkpoint_never_goes_backwards() -> None:
    group = group_at((10, 1))
    assert group.stream == "routing/groups/t.a/g"
    assert group.checkpoint_at(10, 1) == []
    assert group.checkpoint_at(9, 5) == []
    assert group.checkpoint_at(10, 2) == [
        ConsumerGroupCheckpointed(topic="t.a", group="g", position=10, index=2)
    ]
    # Replayed entries settled with an older checkpoint: recorded at the group's own.
    assert group.checkpoint_at(3, 0, [(2, 0)]) == [
        ConsumerGroupCheckpointed(topic="t.a", group="g", position=10, index=1, settled=((2, 0),))
    ]


def test_a_group_refuses_entries_that_cannot_be() -> None:
    group = group_at()
    with pytest.raises(InvalidArgument) as bad:
        group.checkpoint_at(0, -1, [(1, 0), (0, 0)])
    assert [v.field for v in bad.value.violations] == ["position", "index", "settled[1].position"]
    with pytest.raises(InvalidArgument) as parked:
        group.park(5, 0, 0, "x" * 1025)
    assert [v.field for v in parked.value.violations] == ["attempts", "last_error"]
    with pytest.raises(InvalidArgument):
        group.replay([])
    assert group.park(5, 1, 3, "bad") == [
        TopicEntryParked(topic="t.a", group="g", position=5, index=1, attempts=3, last_error="bad")
    ]
    assert group.replay([(5, 1)]) == [
        ParkedEntriesReplayed(topic="t.a", group="g", entries=((5, 1),))
    ]


def test_a_group_remembers_a_bounded_number_of_commands() -> None:
    group = group_at(*[(n, 0) for n in range(1, 200)])
    assert group.size == 1 + ConsumerGroup.REMEMBERED
    assert group.outcome_of("c198") is not None
    assert group.outcome_of("c0") is None
