"""Event routing as data (the architecture's EventRoutingConfig; docs/routing.md): named topics
that other domains consume, each fed by event types and filtered by series and severity.

The topics of a deployment are one aggregate, one stream (`routing/topics`), changed by admin
commands (SetTopic, DeleteTopic: `admin` on `topics/{name}`). Because their changes are events
of the same log as the events they route, which events a topic holds is decided by the
definitions in force at each event's position: the projector replays the same decisions on a
rebuild, whenever a topic was defined.

| field             | rule                                                                    |
|-------------------|-------------------------------------------------------------------------|
| name              | lower-case dotted words, e.g. `risk-domain.recalculate`, 1-128 chars     |
| event types       | 1 or more of ROUTED_EVENT_TYPES                                          |
| series patterns   | at most 100 fnmatch globs of series ids (`*`, `?`, `[...]`); none: all   |
| min severity      | "", info, warning or error (only QualityIssueDetected has severities)    |
| max attempts      | 1 to 100 deliveries of an entry before it is parked (default 5)          |
| ack timeout       | 1 s to 1 h: an entry not settled within it is delivered again (30 s)     |

Each consumer group of a topic is an aggregate of its own (`ConsumerGroup`, stream
`routing/groups/{topic}/{group}`), changed by the query service that serves the group: its
checkpoint (never backwards) and the entries it parked.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from qis_domain.bounds import MAX_TEXT_LENGTH, check_length, quoted
from qis_domain.commands import CommandOutcome, RemembersCommands
from qis_domain.errors import FieldViolation, InvalidArgument, NotFound, Resource
from qis_domain.events import DomainEvent, Issue
from qis_domain.events.routing import (
    ConsumerGroupCheckpointed,
    EntryRef,
    ParkedEntriesReplayed,
    TopicDefinition,
    TopicDeleted,
    TopicEntryParked,
    TopicSet,
)
from qis_domain.rules import Severity
from qis_domain.series_bucket import Recorded

ROUTING_STREAM = "routing/topics"
GROUPS_PREFIX = "routing/groups/"
TOPICS_COLLECTION = "topics"
ROUTED_EVENT_TYPES = ("DataPublished", "DataRestated", "QualityIssueDetected")
"""The events a topic can hold: what other domains act on (new, corrected, doubtful data)."""
MAX_TOPIC_NAME_LENGTH = 128
MAX_SERIES_PATTERNS = 100
MAX_PATTERN_LENGTH = 128
DEFAULT_MAX_ATTEMPTS = 5
MAX_ATTEMPTS = 100
DEFAULT_ACK_TIMEOUT_S = 30
MAX_ACK_TIMEOUT_S = 3600
MAX_GROUP_NAME_LENGTH = 64
MAX_ERROR_LENGTH = 1024
MAX_ENTRIES = 1000
"""Entries one command names at most (settled by a checkpoint, replayed)."""
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*")
_PATTERN = re.compile(r"[A-Za-z0-9._:\-*?\[\]!]+")
_RANK: dict[str, int] = {Severity.INFO: 1, Severity.WARNING: 2, Severity.ERROR: 3}

__all__ = [
    "DEFAULT_ACK_TIMEOUT_S",
    "DEFAULT_MAX_ATTEMPTS",
    "GROUPS_PREFIX",
    "ROUTED_EVENT_TYPES",
    "ROUTING_STREAM",
    "ConsumerGroup",
    "EventRouting",
    "Route",
    "Routes",
    "TopicDefinition",
    "definition_violations",
    "group_problem",
    "group_stream",
    "topic_name",
    "topic_resource",
    "validate_topic_name",
]


def topic_name(name: str) -> str:
    """The resource name of a topic, what access policies cover: "topics/{name}"."""
    return f"{TOPICS_COLLECTION}/{name}"


def topic_resource(name: str) -> Resource:
    return Resource("qis.data.v1.Topic", topic_name(name), "TOPIC")


def name_problem(name: str) -> str | None:
    if len(name) <= MAX_TOPIC_NAME_LENGTH and _NAME.fullmatch(name):
        return None
    return (
        f"{quoted(name)} is not a topic name: 1 to {MAX_TOPIC_NAME_LENGTH} characters, words of"
        " lower-case letters, digits and '-' joined by '.', e.g. 'risk-domain.recalculate'"
    )


def group_problem(group: str) -> str | None:
    if len(group) <= MAX_GROUP_NAME_LENGTH and _GROUP.fullmatch(group):
        return None
    return (
        f"{quoted(group)} is not a consumer group name: 1 to {MAX_GROUP_NAME_LENGTH} letters,"
        " digits and '._-', starting with a letter or digit"
    )


def group_stream(topic: str, group: str) -> str:
    return f"{GROUPS_PREFIX}{topic}/{group}"


def validate_topic_name(name: str, field: str) -> str:
    if (why := name_problem(name)) is not None:
        raise InvalidArgument.single(field, why)
    return name


def definition_violations(d: TopicDefinition, path: str = "topic") -> list[FieldViolation]:
    """Every reason `d` cannot be stored, at its field path in the request."""
    v: list[FieldViolation] = []
    if not d.event_types:
        v.append(FieldViolation(f"{path}.event_types", "at least one event type is required"))
    for i, kind in enumerate(d.event_types):
        if kind not in ROUTED_EVENT_TYPES:
            v.append(
                FieldViolation(
                    f"{path}.event_types[{i}]",
                    f"{quoted(kind)} is none of {', '.join(ROUTED_EVENT_TYPES)}",
                )
            )
    if len(set(d.event_types)) != len(d.event_types):
        v.append(FieldViolation(f"{path}.event_types", "each event type at most once"))
    if len(d.series_patterns) > MAX_SERIES_PATTERNS:
        v.append(
            FieldViolation(f"{path}.series_patterns", f"at most {MAX_SERIES_PATTERNS} patterns")
        )
    for i, pattern in enumerate(d.series_patterns[:MAX_SERIES_PATTERNS]):
        if not (len(pattern) <= MAX_PATTERN_LENGTH and _PATTERN.fullmatch(pattern)):
            v.append(
                FieldViolation(
                    f"{path}.series_patterns[{i}]",
                    f"{quoted(pattern)}: 1 to {MAX_PATTERN_LENGTH} of letters, digits, '._:-'"
                    " and the wildcards '*', '?' and '[...]'",
                )
            )
    if d.min_severity and d.min_severity not in _RANK:
        v.append(FieldViolation(f"{path}.min_severity", "info, warning, error, or none"))
    if not 1 <= d.max_attempts <= MAX_ATTEMPTS:
        v.append(FieldViolation(f"{path}.max_attempts", f"1 to {MAX_ATTEMPTS}"))
    if not 1 <= d.ack_timeout_s <= MAX_ACK_TIMEOUT_S:
        v.append(FieldViolation(f"{path}.ack_timeout", f"1 s to {MAX_ACK_TIMEOUT_S} s"))
    check_length(d.description, MAX_TEXT_LENGTH, f"{path}.description", v)
    return v


# --- matching ---------------------------------------------------------------------------------


class Route:
    """A topic compiled for matching: its series patterns as one regular expression."""

    __slots__ = ("_min_rank", "_series", "definition", "name")

    def __init__(self, name: str, definition: TopicDefinition) -> None:
        self.name = name
        self.definition = definition
        patterns = definition.series_patterns
        # fnmatch's own translation, case-sensitive as series ids are.
        self._series = (
            re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
        )
        self._min_rank = _RANK.get(definition.min_severity, 0)

    def takes_series(self, series_id: str) -> bool:
        return self._series is None or self._series.match(series_id) is not None

    def issues(self, issues: Sequence[Issue]) -> list[Issue]:
        """The issues of an event at or above the topic's minimum severity."""
        return [i for i in issues if _RANK.get(i.severity, 0) >= self._min_rank]


class Routes:
    """The topics in force at one position of the log, by the event types they hold. Immutable:
    a change makes another table."""

    def __init__(self, topics: Mapping[str, TopicDefinition] | None = None) -> None:
        self.topics: Mapping[str, TopicDefinition] = dict(topics or {})
        by_type: dict[str, list[Route]] = {}
        for name in sorted(self.topics):  # by name: entries of one event in a fixed order
            route = Route(name, self.topics[name])
            for kind in route.definition.event_types:
                by_type.setdefault(kind, []).append(route)
        self._by_type = by_type

    def changed(self, name: str, definition: TopicDefinition | None) -> Routes:
        """The table after topic `name` was set to `definition` (None: deleted)."""
        topics = {k: d for k, d in self.topics.items() if k != name}
        if definition is not None:
            topics[name] = definition
        return Routes(topics)

    def matching(self, event_type: str, series_id: str) -> list[Route]:
        """The topics an event of this type about this series goes to, by name."""
        return [r for r in self._by_type.get(event_type, ()) if r.takes_series(series_id)]


# --- the aggregate ----------------------------------------------------------------------------


class EventRouting(RemembersCommands):
    """Every topic of the deployment, by name."""

    def __init__(self) -> None:
        self.version: int | None = None
        # Replaced by apply, never changed in place: a clone may share it.
        self.topics: Mapping[str, TopicDefinition] = {}
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return ROUTING_STREAM

    @property
    def size(self) -> int:
        return super().size + len(self.topics)

    def set_topic(self, name: str, definition: TopicDefinition) -> list[DomainEvent]:
        """Defines topic `name`, or replaces its definition (from the next event of the log
        on: entries it holds already stay). The same definition again changes nothing."""
        violations: list[FieldViolation] = []
        if (why := name_problem(name)) is not None:
            violations.append(FieldViolation("topic.name", why))
        violations.extend(definition_violations(definition))
        if violations:
            raise InvalidArgument(violations)
        if self.topics.get(name) == definition:
            return []
        return [TopicSet(name=name, definition=definition)]

    def delete_topic(self, name: str) -> list[DomainEvent]:
        """Ends topic `name`: it takes no more events (its entries stay readable)."""
        if name not in self.topics:
            raise NotFound(topic_resource(name), "name")
        return [TopicDeleted(name=name)]

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, TopicSet):
            self.topics = {**self.topics, event.name: event.definition}
        elif isinstance(event, TopicDeleted):
            self.topics = {k: d for k, d in self.topics.items() if k != event.name}
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)


class ConsumerGroup(RemembersCommands):
    """What a consumer group of a topic has settled: its checkpoint, the (position, index) of
    the last entry before which every entry is settled; and the entries it parked (events
    only: the read model lists them, the aggregate needs none of them to decide)."""

    REMEMBERED = 64
    """Command outcomes kept: a group is checkpointed about once a second, for ever, so its
    memory is bounded; an older repeat is answered from its command record, whose position is
    the command's own (one append)."""

    def __init__(self, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self.version: int | None = None
        self.checkpoint: tuple[int, int] | None = None
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return group_stream(self.topic, self.group)

    def checkpoint_at(
        self, position: int, index: int, settled: Sequence[EntryRef] = ()
    ) -> list[DomainEvent]:
        """Never backwards: a checkpoint at or before the group's keeps the group's (two query
        instances, or a retry arriving late, cannot make the group deliver settled entries);
        with no replayed entry settled either, it changes nothing."""
        violations = _entry_violations(position, index)
        violations.extend(_refs_violations(settled, "settled", allow_empty=True))
        if violations:
            raise InvalidArgument(violations)
        at = (position, index)
        if self.checkpoint is not None and at <= self.checkpoint:
            if not settled:
                return []
            at = self.checkpoint
        return [
            ConsumerGroupCheckpointed(
                topic=self.topic,
                group=self.group,
                position=at[0],
                index=at[1],
                settled=tuple(settled),
            )
        ]

    def replay(self, entries: Sequence[EntryRef]) -> list[DomainEvent]:
        """Back to delivery: the read model moves those of `entries` that are parked."""
        if violations := _refs_violations(entries, "entries", allow_empty=False):
            raise InvalidArgument(violations)
        return [ParkedEntriesReplayed(topic=self.topic, group=self.group, entries=tuple(entries))]

    def park(self, position: int, index: int, attempts: int, last_error: str) -> list[DomainEvent]:
        violations = _entry_violations(position, index)
        if not 1 <= attempts <= MAX_ATTEMPTS:
            violations.append(FieldViolation("attempts", f"1 to {MAX_ATTEMPTS}"))
        check_length(last_error, MAX_ERROR_LENGTH, "last_error", violations)
        if violations:
            raise InvalidArgument(violations)
        return [
            TopicEntryParked(
                topic=self.topic,
                group=self.group,
                position=position,
                index=index,
                attempts=attempts,
                last_error=last_error,
            )
        ]

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, ConsumerGroupCheckpointed):
            self.checkpoint = (event.position, event.index)
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)
        if len(self._outcomes) > self.REMEMBERED:
            del self._outcomes[next(iter(self._outcomes))]


def _entry_violations(position: int, index: int, path: str = "") -> list[FieldViolation]:
    v = []
    if position < 1:
        v.append(FieldViolation(f"{path}position", "the commit position of an entry, 1 or more"))
    if index < 0:
        v.append(FieldViolation(f"{path}index", "0 or more"))
    return v


def _refs_violations(
    refs: Sequence[EntryRef], path: str, *, allow_empty: bool
) -> list[FieldViolation]:
    if not refs and not allow_empty:
        return [FieldViolation(path, "at least one entry is required")]
    if len(refs) > MAX_ENTRIES:
        return [FieldViolation(path, f"at most {MAX_ENTRIES} entries")]
    v: list[FieldViolation] = []
    for i, (position, index) in enumerate(refs):
        v.extend(_entry_violations(position, index, f"{path}[{i}]."))
    return v
