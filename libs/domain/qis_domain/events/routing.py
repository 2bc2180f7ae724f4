"""Events of event routing: changes of the EventRouting aggregate (one stream, `routing/topics`,
qis_domain.routing), and the definition of a topic they carry."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from qis_domain.events.base import DomainEvent


class TopicDefinition(BaseModel):
    """What a topic holds and how its consumer groups are served (qis_domain.routing checks
    it). A value object: an event carries it whole."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_types: tuple[str, ...]  # of qis_domain.routing.ROUTED_EVENT_TYPES, sorted, unique
    series_patterns: tuple[str, ...] = ()  # fnmatch globs of series ids; empty: every series
    min_severity: str = ""  # quality issues below it are left out; "": every severity
    max_attempts: int = 5  # deliveries of an entry before it is parked
    ack_timeout_s: int = 30  # an entry not settled within it is delivered again
    description: str = ""


class TopicSet(DomainEvent):
    event_type: ClassVar[str] = "TopicSet"
    name: str  # the topic's name, e.g. "strategy-domain.data-updated"
    definition: TopicDefinition


class TopicDeleted(DomainEvent):
    event_type: ClassVar[str] = "TopicDeleted"
    name: str


EntryRef = tuple[int, int]
"""An entry of a topic's log: (commit position, index)."""


class ConsumerGroupCheckpointed(DomainEvent):
    """A consumer group of a topic settled every entry up to (position, index) included: it
    starts there again after a restart. `settled`: replayed entries it settled since (they are
    parked no more)."""

    event_type: ClassVar[str] = "ConsumerGroupCheckpointed"
    topic: str
    group: str
    position: int
    index: int
    settled: tuple[EntryRef, ...] = ()


class TopicEntryParked(DomainEvent):
    """An entry a consumer group failed `attempts` times: it is no longer delivered to the
    group (the group moves on) until an operator replays it."""

    event_type: ClassVar[str] = "TopicEntryParked"
    topic: str
    group: str
    position: int
    index: int
    attempts: int
    last_error: str = ""


class ParkedEntriesReplayed(DomainEvent):
    """An operator moved parked entries of a group back to delivery (those still parked)."""

    event_type: ClassVar[str] = "ParkedEntriesReplayed"
    topic: str
    group: str
    entries: tuple[EntryRef, ...]
