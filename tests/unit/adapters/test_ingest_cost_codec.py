"""A command's events are encoded with their metadata made once per schema version: each
event's metadata is the one it would have encoded alone."""

from __future__ import annotations

from qis_adapters.eventstore.codec import EventCodec
from qis_domain.commands import CommandContext
from qis_domain.events import EventMetadata

from tests.unit.domain.test_domain_events import EXAMPLES


def test_each_event_has_the_metadata_it_has_alone() -> None:
    codec = EventCodec()
    ctx = CommandContext(
        "cmd-1", "alice", 0, "corr-1", "", {"traceparent": "00-ab-cd-01", "tracestate": "x=1"}
    )
    events = list(EXAMPLES.values())
    encoded = codec.encode("series/PX/points/0", events, ctx)
    versions = {type(e).event_version for e in events}
    assert len(versions) > 1  # versions 1 and 2 in one command
    for event, record in zip(events, encoded, strict=True):
        (alone,) = codec.encode("series/PX/points/0", [event], ctx)
        assert record.metadata == alone.metadata
        metadata = EventMetadata.model_validate_json(record.metadata)
        assert metadata.schema_version == str(type(event).event_version)
        assert (metadata.correlation_id, metadata.causation_id) == ("corr-1", "cmd-1")
        assert metadata.traceparent == "00-ab-cd-01"
