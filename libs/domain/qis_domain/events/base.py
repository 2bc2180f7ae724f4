"""Domain events, their metadata, and the registry that reads any stored schema version.

Event payloads are JSON. Each event class declares its current schema version; an older payload
is brought up to date by the registered upcasters, one version step at a time, so the code only
ever handles the newest shape while the log keeps every shape it ever had. A payload of a version
newer than the code's is refused, not read as if it were the code's own: in a deployment where
some processes run older code, they stop at the first event they cannot know rather than
misread it.

An event's payload is its `json_payload`; columnar events (qis_domain.events.points) write a
column whose entries are all equal once, and upcasters see such a payload with its columns
written out (`written_out`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

JsonDict = dict[str, Any]
Upcaster = Callable[[JsonDict], JsonDict]


class DomainEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1

    def json_payload(self) -> bytes:
        """The stored form: JSON, the fields in their declaration order, no spaces."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def written_out(cls, payload: JsonDict) -> JsonDict:
        """`payload`, stored by any version of this event, in the form upcasters read."""
        return payload


class EventMetadata(BaseModel):
    """Carried by every event: who and what caused it, and the trace it belongs to.

    A flat object of strings only: KurrentDB's multi-stream append accepts no other metadata.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    command_id: str
    user_id: str
    correlation_id: str
    causation_id: str
    schema_version: str = "1"
    traceparent: str = ""  # W3C trace context of the command that caused the event
    tracestate: str = ""


class UnknownEventType(Exception):
    pass


class EventRegistry:
    def __init__(self, classes: Iterable[type[DomainEvent]] = ()) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[DomainEvent]) -> None:
        if cls.event_type in self._classes:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._classes[cls.event_type] = cls

    def register_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """`upcaster` turns a payload of `from_version` into one of `from_version + 1`."""
        self._upcasters[(event_type, from_version)] = upcaster

    def knows(self, event_type: str) -> bool:
        return event_type in self._classes

    def encode(self, event: DomainEvent) -> bytes:
        return event.json_payload()

    def decode(self, event_type: str, data: bytes, schema_version: int) -> DomainEvent:
        cls = self._classes.get(event_type)
        if cls is None:
            raise UnknownEventType(event_type)
        if schema_version == cls.event_version:
            return cls.model_validate_json(data)
        if schema_version > cls.event_version:
            raise ValueError(
                f"{event_type} v{schema_version} is newer than this code reads"
                f" (v{cls.event_version})"
            )
        payload = cls.written_out(json.loads(data))
        for version in range(schema_version, cls.event_version):
            upcaster = self._upcasters.get((event_type, version))
            if upcaster is None:
                raise ValueError(f"no upcaster for {event_type} v{version}")
            payload = upcaster(payload)
        return cls.model_validate(payload)
