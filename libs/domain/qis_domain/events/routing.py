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
