"""Topic logs (docs/routing.md): which routed events each topic holds, as entries whose payload
is the qis.data.v1.TopicMessage a consumer receives.

Topic definitions are events of the same log as the events they route, so the table in force
changes at the position of each TopicSet or TopicDeleted and the decision for an event depends
only on the log before it: a rebuild from position 0 makes the same entries. The projector
starts again at its checkpoint with the table in force there (ReadModelWriter.topics).

Values and issues come in parts of at most MAX_PART_ITEMS (a part is an entry, `index` its
number): a publication of 50,000 points would be a message larger than gRPC's default 4 MiB.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import struct_pb2
from qis.data.v1 import quality_pb2, routing_pb2
from qis_adapters.eventstore.codec import DecodedEvent
from qis_adapters.proto.enums import EVENT_TYPES, METHODS, RULES, SEVERITIES
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore.port import (
    PARKED,
    REPLAYED,
    SETTLED,
    ConsumerGroupEntry,
    ParkedEntry,
    ParkedState,
    ProjectionBatch,
    ReadModelWriter,
    TopicEntry,
    TopicVersion,
)
from qis_domain.events import (
    ConsumerGroupCheckpointed,
    DataPublished,
    DataRestated,
    Issue,
    ParkedEntriesReplayed,
    QualityIssueDetected,
    TopicDefinition,
    TopicDeleted,
    TopicEntryParked,
    TopicSet,
)
from qis_domain.names import series_name, source_name
from qis_domain.routing import Route, Routes, topic_name
from qis_domain.series_bucket import MANUAL

MAX_PART_ITEMS = 1_000


async def routes_at(store: ReadModelWriter, checkpoint: int | None) -> Routes:
    """The topics in force at `checkpoint` (None: before the first event), as the store keeps
    them: what a projection starting there routes with."""
    if checkpoint is None:
        return Routes()
    return Routes(
        {
            v.topic: TopicDefinition.model_validate(v.definition)
            for v in await store.topics(checkpoint)
            if v.definition is not None
        }
    )


class TopicRouter:
    """The topics in force at the position projected, and the entries they take."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes

    def changed(self, decoded: DecodedEvent, recorded_at: int) -> TopicVersion:
        """A topic defined, redefined or deleted: in force from this position on."""
        event = decoded.event
        if isinstance(event, TopicSet):
            self.routes = self.routes.changed(event.name, event.definition)
            document = event.definition.model_dump(mode="json")
            return TopicVersion(event.name, decoded.record.position, recorded_at, document)
        if isinstance(event, TopicDeleted):
            self.routes = self.routes.changed(event.name, None)
            return TopicVersion(event.name, decoded.record.position, recorded_at)
        raise TypeError(f"not a change of topics: {event.event_type}")

    def official(
        self,
        decoded: DecodedEvent,
        event: DataPublished | DataRestated,
        values: Sequence[bytes],
        recorded_at: int,
    ) -> list[TopicEntry]:
        """The entries of a publication or restatement; `values`: each row's serialised
        DataValue."""
        routes = self.routes.matching(event.event_type, event.series_id)
        if not routes:
            return []
        position, meta = decoded.record.position, decoded.metadata
        name = series_name(event.series_id)
        rows = list(event.rows())
        entries: list[TopicEntry] = []
        for part, start in enumerate(range(0, len(rows), MAX_PART_ITEMS)):
            body = self._head(decoded, event.event_type, event.series_id, part, recorded_at)
            for row, value in zip(
                rows[start : start + MAX_PART_ITEMS],
                values[start : start + MAX_PART_ITEMS],
                strict=True,
            ):
                msg = body.values.add(
                    series=name,
                    version=row.version,
                    quality_score=float(row.quality_score),
                    record_position=position,
                    sources=() if row.method == MANUAL else [source_name(s) for s in row.sources],
                    method=METHODS[row.method],
                    flags=[RULES[f] for f in row.flags],
                    reason=row.reason,
                    user=meta.user_id,
                )
                msg.snap_time.CopyFrom(timestamp(row.snap_us))
                msg.record_time.CopyFrom(timestamp(recorded_at))
                msg.value.MergeFromString(value)
            # One body for every topic: a message's fields may come in any order, so each
            # topic's payload is its name followed by the shared bytes.
            shared = body.SerializeToString()
            entries.extend(
                _entry(r, decoded, event.event_type, event.series_id, part, shared, recorded_at)
                for r in routes
            )
        return entries

    def issues(
        self, decoded: DecodedEvent, event: QualityIssueDetected, recorded_at: int
    ) -> list[TopicEntry]:
        """The entries of detected issues: for each topic, those at or above its minimum
        severity (none left: no entry)."""
        entries: list[TopicEntry] = []
        for route in self.routes.matching(event.event_type, event.series_id):
            issues = route.issues(event.issues)
            for part, start in enumerate(range(0, len(issues), MAX_PART_ITEMS)):
                body = self._head(decoded, event.event_type, event.series_id, part, recorded_at)
                for issue in issues[start : start + MAX_PART_ITEMS]:
                    _add_issue(body, event.series_id, issue, recorded_at)
                shared = body.SerializeToString()
                entries.append(
                    _entry(
                        route, decoded, event.event_type, event.series_id, part, shared, recorded_at
                    )
                )
        return entries

    @staticmethod
    def _head(
        decoded: DecodedEvent, event_type: str, series_id: str, part: int, recorded_at: int
    ) -> routing_pb2.TopicMessage:
        return routing_pb2.TopicMessage(
            commit_position=decoded.record.position,
            index=part,
            series=series_name(series_id),
            event_type=EVENT_TYPES[event_type],
            commit_time=timestamp(recorded_at),
            command_id=decoded.metadata.command_id,
        )


def _entry(
    route: Route,
    decoded: DecodedEvent,
    event_type: str,
    series_id: str,
    part: int,
    shared: bytes,
    recorded_at: int,
) -> TopicEntry:
    topic = routing_pb2.TopicMessage(topic=topic_name(route.name)).SerializeToString()
    return TopicEntry(
        topic=route.name,
        position=decoded.record.position,
        index=part,
        series_id=series_id,
        event_type=event_type,
        payload=topic + shared,
        recorded_at_us=recorded_at,
    )


def _add_issue(
    body: routing_pb2.TopicMessage, series_id: str, issue: Issue, recorded_at: int
) -> None:
    evidence = struct_pb2.Struct()
    evidence.update(issue.evidence)
    body.issues.add(
        issue_id=issue.issue_id,
        series=series_name(series_id),
        snap_time=timestamp(issue.snap_us),
        source=source_name(issue.source_id) if issue.source_id else "",
        rule=RULES[issue.rule],
        severity=SEVERITIES[issue.severity],
        evidence=evidence,
        status=quality_pb2.QUALITY_ISSUE_STATUS_OPEN,
        raise_time=timestamp(recorded_at),
    )


def project_group(decoded: DecodedEvent, recorded_at: int, batch: ProjectionBatch) -> None:
    """A consumer group's event: its checkpoint, and the states of its parked entries."""
    event = decoded.event
    position = decoded.record.position
    if isinstance(event, ConsumerGroupCheckpointed):
        batch.consumer_groups.append(
            ConsumerGroupEntry(
                event.topic, event.group, event.position, event.index, recorded_at, position
            )
        )
        _states(event.topic, event.group, event.settled, SETTLED, position, batch)
    elif isinstance(event, TopicEntryParked):
        batch.parked.append(
            ParkedEntry(
                event.topic,
                event.group,
                event.position,
                event.index,
                event.attempts,
                event.last_error,
                recorded_at,
                PARKED,
                position,
            )
        )
    elif isinstance(event, ParkedEntriesReplayed):
        _states(event.topic, event.group, event.entries, REPLAYED, position, batch)
    else:
        raise TypeError(f"not an event of a consumer group: {event.event_type}")


def _states(
    topic: str,
    group: str,
    entries: Sequence[tuple[int, int]],
    state: str,
    position: int,
    batch: ProjectionBatch,
) -> None:
    batch.parked_states.extend(
        ParkedState(topic, group, entry_position, index, state, position)
        for entry_position, index in entries
    )
