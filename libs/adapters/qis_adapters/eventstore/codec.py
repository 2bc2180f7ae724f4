"""Turns domain events into event-store records and back (JSON payload + JSON metadata)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from qis_domain.commands import CommandContext
from qis_domain.events import DomainEvent, EventMetadata, EventRegistry, default_registry

from qis_adapters.eventstore.port import NewEvent, RecordedEvent

_EVENT_IDS = uuid.UUID("0b7d6f55-5c8e-4a0e-a6f1-64a2f4cf3f0d")


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    event: DomainEvent
    metadata: EventMetadata
    record: RecordedEvent


class EventCodec:
    def __init__(self, registry: EventRegistry | None = None) -> None:
        self.registry = registry or default_registry()

    def encode(
        self, stream: str, events: Sequence[DomainEvent], ctx: CommandContext
    ) -> list[NewEvent]:
        """Event ids derive from the command id, so a retried append carries the same ids and the
        store's own duplicate detection can recognise it."""
        out = []
        for index, event in enumerate(events):
            metadata = EventMetadata(
                command_id=ctx.command_id,
                user_id=ctx.user_id,
                correlation_id=ctx.correlation_id or ctx.command_id,
                causation_id=ctx.causation_id or ctx.command_id,
                schema_version=str(type(event).event_version),
                traceparent=ctx.trace_context.get("traceparent", ""),
                tracestate=ctx.trace_context.get("tracestate", ""),
            )
            out.append(
                NewEvent(
                    event_id=uuid.uuid5(_EVENT_IDS, f"{ctx.command_id}|{stream}|{index}"),
                    type=event.event_type,
                    data=self.registry.encode(event),
                    metadata=metadata.model_dump_json().encode(),
                )
            )
        return out

    def decode(self, record: RecordedEvent) -> DecodedEvent:
        metadata = EventMetadata.model_validate_json(record.metadata)
        event = self.registry.decode(record.type, record.data, int(metadata.schema_version))
        return DecodedEvent(event, metadata, record)
