"""From decoded events to read-model records (docs/architecture.md §3). Deterministic: the same events give
the same records, so a rebuild from position 0 reproduces the live read model exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import count, repeat
from typing import Any, cast

import pyarrow as pa
from google.protobuf import json_format
from qis_adapters.eventstore.codec import DecodedEvent
from qis_adapters.eventstore.port import RecordedEvent
from qis_adapters.proto.definitions import series_to_proto
from qis_adapters.proto.values import raw_to_proto_bytes
from qis_adapters.readstore.port import (
    OPEN_END,
    AccessPolicyEntry,
    AuditEntry,
    ChangeFeedEntry,
    IssueResolution,
    Observation,
    OfficialVersion,
    ProjectionBatch,
    QualityIssue,
    QualityMetrics,
    SeriesEntry,
    SourceEntry,
    SourceHealthEntry,
    VersionClosure,
    records,
)
from qis_adapters.readstore.segments import NewRows, event_value_columns
from qis_domain.access import policy_name
from qis_domain.events import (
    AccessDenied,
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    ConsumerGroupCheckpointed,
    DataIngested,
    DataPublished,
    DataRestated,
    DataSourceConfigured,
    DataSourceHealthReported,
    DataSourceRegistered,
    DataSourceStatusChanged,
    DomainEvent,
    ManualOverrideExpired,
    ManualOverrideSet,
    ParkedEntriesReplayed,
    PublicationScheduled,
    QualityApproved,
    QualityIssueDetected,
    QualityMetricsCalculated,
    QualityOverridden,
    QualityRejected,
    QualityRetracted,
    RawValue,
    SchemaEvolved,
    SeriesDefined,
    SourceAdded,
    TopicDeleted,
    TopicEntryParked,
    TopicSet,
)
from qis_domain.names import SERIES_COLLECTION, SOURCES_COLLECTION
from qis_domain.routing import Routes, topic_name
from qis_domain.values import DataType

from qis_projector.application.segments import BucketKey
from qis_projector.application.topics import TopicRouter, project_group

_RESOLUTION_STATUS = {
    QualityApproved: "approved",
    QualityRejected: "rejected",
    QualityOverridden: "overridden",
    QualityRetracted: "retracted",
}


class Projection:
    """Accumulates the records of a run of events into one ProjectionBatch."""

    def __init__(self, floor_us: int = 0, routes: Routes | None = None) -> None:
        """`floor_us`: the knowledge time of the last event projected before this one's first;
        `routes`: the topics in force there (ReadModelWriter.topics at the checkpoint)."""
        self.batch = ProjectionBatch()
        self.topics = TopicRouter(routes or Routes())
        self.published: dict[BucketKey, NewRows] = {}
        """The batch's versions by the bucket whose stream published them, in log order: what
        the bucket's next segment version adds (segments.SegmentBuilder)."""
        self.floor_us = floor_us
        # Value bytes by raw value, per (type, unit), within a batch: an ingested value and
        # the official version made of it are usually the same value, serialised once.
        self._encoded: dict[tuple[DataType, str], dict[str, bytes]] = {}

    def take(self) -> tuple[ProjectionBatch, dict[BucketKey, pa.Table]]:
        """The batch's records, and the new segment rows of each bucket it published in."""
        batch, self.batch = self.batch, ProjectionBatch()
        published, self.published = self.published, {}
        self._encoded.clear()
        return batch, {key: new.rows() for key, new in published.items()}

    def _encoded_values(self, data_type: DataType, unit: str, raws: list[RawValue]) -> list[bytes]:
        """The value bytes of an event's raw values, each distinct decimal string serialised
        once a batch; value documents (dicts: an event holds either kind, never both) each."""
        encode = raw_to_proto_bytes(data_type, unit)
        memo = self._encoded.setdefault((data_type, unit), {})
        texts = cast(list[str], raws)
        try:
            missing = set(texts).difference(memo)
        except TypeError:  # value documents are not hashable
            return list(map(encode, raws))
        memo.update({text: encode(text) for text in missing})
        return list(map(memo.__getitem__, texts))

    def handle(self, decoded: DecodedEvent) -> None:
        recorded_at = self.advance(decoded.record)
        project = _HANDLERS.get(type(decoded.event))
        if project is not None:  # DataReconciled: candidates live in the write model
            project(self, decoded, recorded_at)

    def advance(self, record: RecordedEvent) -> int:
        """The knowledge time of `record`, which every event moves on, projected or not: it
        never steps back along the log, even if a store's clock did."""
        self.floor_us = max(record.recorded_at_us, self.floor_us)
        return self.floor_us

    def _ingested(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event, meta = cast(DataIngested, decoded.event), decoded.metadata
        series_id, source_id, position = event.series_id, event.source_id, decoded.record.position
        command_id, user_id = meta.command_id, meta.user_id
        # Column by column (an event's columns have one length: _Columns checks it).
        self.batch.observations.extend(
            records(
                Observation,
                series_id=repeat(series_id),
                snap_us=event.snaps,
                source_id=repeat(source_id),
                value=self._encoded_values(event.data_type, event.unit, event.values),
                snap_offset_s=event.offsets,
                recorded_at_us=repeat(recorded_at),
                position=repeat(position),
                index=count(),
                command_id=repeat(command_id),
                user_id=repeat(user_id),
                flags=repeat(()),
            )
        )
        self._audit_series(decoded, series_id, recorded_at, _span(event.snaps, source=source_id))

    def _issues(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(QualityIssueDetected, decoded.event)
        self.batch.issues.extend(
            QualityIssue(
                issue_id=issue.issue_id,
                series_id=event.series_id,
                snap_us=issue.snap_us,
                rule=issue.rule,
                severity=issue.severity,
                evidence=issue.evidence,
                status="open",
                raised_at_us=recorded_at,
                position=decoded.record.position,
                source_id=issue.source_id,
            )
            for issue in event.issues
        )
        self.batch.topic_entries.extend(self.topics.issues(decoded, event, recorded_at))
        rules = sorted({i.rule for i in event.issues})
        self._audit_series(
            decoded, event.series_id, recorded_at, {"issues": len(event.issues), "rules": rules}
        )

    def _definition(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(SeriesDefined | SchemaEvolved, decoded.event)
        version = 1 if isinstance(event, SeriesDefined) else event.schema_version
        series = series_to_proto(event.series_id, event.definition, version)
        self.batch.series.append(
            SeriesEntry(
                series_id=event.series_id,
                schema_version=version,
                definition=json_format.MessageToDict(series, preserving_proto_field_name=True),
                updated_at_us=recorded_at,
                position=decoded.record.position,
            )
        )
        details: dict[str, Any] = {"schema_version": version}
        if isinstance(event, SchemaEvolved):
            details["reason"] = event.reason
        self._audit_series(decoded, event.series_id, recorded_at, details)

    def _source_added(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(SourceAdded, decoded.event)
        details = {"source": event.source_id, "priority": event.priority}
        self._audit_series(decoded, event.series_id, recorded_at, details)

    def _data_source(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(DataSourceRegistered | DataSourceConfigured, decoded.event)
        config = event.config.model_dump(mode="json")
        self.batch.sources.append(
            SourceEntry(
                source_id=event.source_id,
                config=config,
                updated_at_us=recorded_at,
                position=decoded.record.position,
            )
        )
        details = {"source": event.source_id, **config}
        self._audit(decoded, recorded_at, details, source_id=event.source_id)

    def _source_health(self, decoded: DecodedEvent, recorded_at: int) -> None:
        """The day's entry of the source: every report replaces it (no audit entry: a feed
        reports every few seconds; the status changes are the source's audit entries)."""
        event = cast(DataSourceHealthReported, decoded.event)
        self.batch.source_health.append(
            SourceHealthEntry(
                source_id=event.source_id,
                day_us=event.day_us,
                health=event.model_dump(mode="json", exclude={"source_id", "day_us"}),
                reported_at_us=recorded_at,
                position=decoded.record.position,
            )
        )

    def _status_change(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(DataSourceStatusChanged, decoded.event)
        details = event.model_dump(mode="json", exclude={"source_id"})
        self._audit(decoded, recorded_at, details, source_id=event.source_id)

    def _resolution(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(
            QualityApproved | QualityRejected | QualityOverridden | QualityRetracted, decoded.event
        )
        status = _RESOLUTION_STATUS[type(event)]
        user, position = decoded.metadata.user_id, decoded.record.position
        # An issue id is unique within its series only: the event's series is half the key.
        self.batch.resolutions.extend(
            IssueResolution(
                event.series_id, issue_id, status, user, event.reason, recorded_at, position
            )
            for issue_id in event.issue_ids
        )
        for i, (issue_id, snap_us) in enumerate(zip(event.issue_ids, event.snaps, strict=True)):
            details = {"issue_id": issue_id, "reason": event.reason}
            self._audit_point(decoded, event.series_id, snap_us, i, recorded_at, details)

    def _override_set(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(ManualOverrideSet, decoded.event)
        for i, (snap_us, expiry, code) in enumerate(
            zip(event.snaps, event.expires_us, event.reason_codes, strict=True)
        ):
            details = {"expires_us": expiry, "reason_code": code}
            self._audit_point(decoded, event.series_id, snap_us, i, recorded_at, details)

    def _point_schedule(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(ManualOverrideExpired | PublicationScheduled, decoded.event)
        due = event.due_us if isinstance(event, PublicationScheduled) else [0] * len(event.snaps)
        for i, (snap_us, due_us) in enumerate(zip(event.snaps, due, strict=True)):
            details = {"due_us": due_us} if due_us else {}
            self._audit_point(decoded, event.series_id, snap_us, i, recorded_at, details)

    def _metrics(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(QualityMetricsCalculated, decoded.event)
        self.batch.metrics.append(
            QualityMetrics(
                series_id=event.series_id,
                window_start_us=event.window_start_us,
                window_end_us=event.window_end_us,
                accuracy=float(event.accuracy),
                # "" is unknown (days outside the calendar's coverage), never a number.
                completeness=float(event.completeness) if event.completeness else None,
                timeliness=float(event.timeliness),
                consistency=float(event.consistency),
                calculated_at_us=recorded_at,
                position=decoded.record.position,
                expected_snaps=event.expected_snaps,
                received_snaps=event.received_snaps,
                missing_sessions=tuple(event.missing_sessions),
                uncovered_days=event.uncovered_days,
            )
        )
        self._audit_series(
            decoded, event.series_id, recorded_at, event.model_dump(exclude={"series_id"})
        )

    def _official(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(DataPublished | DataRestated, decoded.event)
        meta, position, b = decoded.metadata, decoded.record.position, self.batch
        series_id, user_id, command_id = event.series_id, meta.user_id, meta.command_id
        bucket = (series_id, _bucket_of_stream(decoded.record.stream))
        values = self._encoded_values(event.data_type, event.unit, event.values)
        qualities = list(map(float, event.quality_scores))
        # A point's version and change entry share its tuples of sources and flags.
        sources, flags = list(map(tuple, event.sources)), list(map(tuple, event.flags))
        # Column by column (an event's columns have one length: _Columns checks it): the
        # per-point cost is the records built per point. The columns a version, its segment row
        # and its change entry share, named as their fields.
        per_point: dict[str, Sequence[Any]] = {
            "snap_us": event.snaps,
            "version": event.versions,
            "value": values,
            "quality_score": qualities,
            "reason": event.reasons,
            "sources": sources,
            "method": event.methods,
            "flags": flags,
        }
        versions = records(
            OfficialVersion,
            **per_point,
            series_id=repeat(series_id),
            recorded_from_us=repeat(recorded_at),
            position_from=repeat(position),
            user_id=repeat(user_id),
            command_id=repeat(command_id),
            recorded_to_us=repeat(OPEN_END),
            position_to=repeat(OPEN_END),
        )
        b.versions.extend(versions)
        new = self.published.get(bucket)
        if new is None:
            new = self.published[bucket] = NewRows()
        each, same = event_value_columns(event.data_type, event.unit, event.values, values)
        new.add(
            len(versions),
            {**per_point, **each},
            {
                **same,
                "recorded_from_us": recorded_at,
                "position_from": position,
                "user_id": user_id,
                "command_id": command_id,
                "recorded_to_us": OPEN_END,
                "position_to": OPEN_END,
            },
        )
        b.closures.extend(
            VersionClosure(series_id, v.snap_us, v.version - 1, recorded_at, position)
            for v in versions
            if v.version > 1
        )
        b.changes.extend(
            records(
                ChangeFeedEntry,
                **per_point,
                position=repeat(position),
                index=count(),
                series_id=repeat(series_id),
                recorded_at_us=repeat(recorded_at),
                user_id=repeat(user_id),
            )
        )
        if isinstance(event, DataRestated) or event.mode == "manual":
            for i, v in enumerate(versions):
                details = {"version": v.version, "reason": v.reason, "cause": event.causes[i]}
                self._audit_point(decoded, series_id, v.snap_us, i, recorded_at, details)
        else:
            self._audit_series(decoded, series_id, recorded_at, _span(event.snaps))
        b.topic_entries.extend(self.topics.official(decoded, event, values, recorded_at))

    def _topic(self, decoded: DecodedEvent, recorded_at: int) -> None:
        """A topic's definition changes from this event on: later events are routed by it."""
        version = self.topics.changed(decoded, recorded_at)
        self.batch.topics.append(version)
        details: dict[str, Any] = {"topic": version.topic}
        if version.definition is not None:
            details["definition"] = version.definition
        self._audit(decoded, recorded_at, details, resource=topic_name(version.topic))

    def _group(self, decoded: DecodedEvent, recorded_at: int) -> None:
        """A consumer group's checkpoint or parked entries; parking and replays are audited
        (checkpoints, about one a second per group, are not: their stream is their record)."""
        project_group(decoded, recorded_at, self.batch)
        event = decoded.event
        if isinstance(event, TopicEntryParked):
            details: dict[str, Any] = {
                "group": event.group,
                "position": event.position,
                "index": event.index,
                "attempts": event.attempts,
                "last_error": event.last_error,
            }
            self._audit(decoded, recorded_at, details, resource=topic_name(event.topic))
        elif isinstance(event, ParkedEntriesReplayed):
            details = {"group": event.group, "entries": len(event.entries)}
            self._audit(decoded, recorded_at, details, resource=topic_name(event.topic))

    def _policy(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(AccessPolicyAdded | AccessPolicyChanged | AccessPolicyRemoved, decoded.event)
        document = (
            None if isinstance(event, AccessPolicyRemoved) else event.policy.model_dump(mode="json")
        )
        self.batch.policies.append(
            AccessPolicyEntry(
                policy_id=event.policy_id,
                revision=event.revision,
                stream_version=decoded.record.stream_version,
                updated_at_us=recorded_at,
                position=decoded.record.position,
                policy=document,
            )
        )
        details: dict[str, Any] = {
            "policy_id": event.policy_id,
            "revision": event.revision,
            "reason": event.reason,
        }
        if document is not None:
            details["policy"] = document
        self._audit(decoded, recorded_at, details, resource=policy_name(event.policy_id))

    def _denial(self, decoded: DecodedEvent, recorded_at: int) -> None:
        event = cast(AccessDenied, decoded.event)
        details = event.model_dump(mode="json", exclude={"user_id"})
        # The denied caller, whoever recorded the denial (the query service records its own
        # refusals through the command service, under its own identity: kept beside it).
        if event.user_id != decoded.metadata.user_id:
            details["recorded_by"] = decoded.metadata.user_id
        series_id, source_id, resource = _about(event.resource)
        self._audit(
            decoded,
            recorded_at,
            details,
            series_id=series_id,
            source_id=source_id,
            resource=resource,
            user_id=event.user_id,
        )

    def _audit_point(
        self,
        decoded: DecodedEvent,
        series_id: str,
        snap_us: int,
        index: int,
        recorded_at: int,
        details: dict[str, Any],
    ) -> None:
        self._audit(
            decoded, recorded_at, details, series_id=series_id, snap_us=snap_us, index=index
        )

    def _audit_series(
        self, decoded: DecodedEvent, series_id: str, recorded_at: int, details: dict[str, Any]
    ) -> None:
        self._audit(decoded, recorded_at, details, series_id=series_id)

    def _audit(
        self,
        decoded: DecodedEvent,
        recorded_at: int,
        details: dict[str, Any],
        *,
        series_id: str = "",
        source_id: str = "",
        resource: str = "",
        snap_us: int | None = None,
        index: int = 0,
        user_id: str = "",
    ) -> None:
        """An audit entry of the event about a series (one of its points when `snap_us` is
        given), a data source, or another `resource`; by the user of its metadata unless
        `user_id` says otherwise."""
        meta = decoded.metadata
        self.batch.audit.append(
            AuditEntry(
                position=decoded.record.position,
                index=index,
                recorded_at_us=recorded_at,
                series_id=series_id,
                snap_us=snap_us,
                action=decoded.event.event_type,
                user_id=user_id or meta.user_id,
                command_id=meta.command_id,
                details=details,
                source_id=source_id,
                resource=resource,
            )
        )


_Handler = Callable[[Projection, DecodedEvent, int], None]
_HANDLERS: dict[type[DomainEvent], _Handler] = {
    DataIngested: Projection._ingested,
    QualityIssueDetected: Projection._issues,
    DataPublished: Projection._official,
    DataRestated: Projection._official,
    SeriesDefined: Projection._definition,
    SchemaEvolved: Projection._definition,
    SourceAdded: Projection._source_added,
    DataSourceRegistered: Projection._data_source,
    DataSourceConfigured: Projection._data_source,
    DataSourceHealthReported: Projection._source_health,
    DataSourceStatusChanged: Projection._status_change,
    QualityApproved: Projection._resolution,
    QualityRejected: Projection._resolution,
    QualityOverridden: Projection._resolution,
    QualityRetracted: Projection._resolution,
    ManualOverrideSet: Projection._override_set,
    ManualOverrideExpired: Projection._point_schedule,
    PublicationScheduled: Projection._point_schedule,
    QualityMetricsCalculated: Projection._metrics,
    AccessPolicyAdded: Projection._policy,
    AccessPolicyChanged: Projection._policy,
    AccessPolicyRemoved: Projection._policy,
    AccessDenied: Projection._denial,
    TopicSet: Projection._topic,
    TopicDeleted: Projection._topic,
    ConsumerGroupCheckpointed: Projection._group,
    TopicEntryParked: Projection._group,
    ParkedEntriesReplayed: Projection._group,
}
"""What each event type adds to the read models (by exact type: events are final). A type
without an entry adds nothing: DataReconciled's candidates live in the write model."""
PROJECTED_TYPES = frozenset(kind.event_type for kind in _HANDLERS)
"""The names of the event types the read models take anything from."""


def _bucket_of_stream(stream: str) -> int:
    """The bucket of a points stream (qis_domain.series_bucket.bucket_stream), where every
    publication of a point's values is recorded."""
    prefix, _, bucket = stream.rpartition("/")
    if not prefix.endswith("/points") or not bucket.lstrip("-").isdigit():
        raise ValueError(f"values published outside a points stream: {stream!r}")
    return int(bucket)


def _about(resource: str) -> tuple[str, str, str]:
    """Whom the audit entry of a denial on `resource` belongs to, as (series id, source id,
    other resource): the series of "series/X" and "series/X/issues", the source of "sources/Y"
    (so that the audit trail of a series or a source shows its denials), else the resource
    itself ("accessPolicies", "*")."""
    collection, _, rest = resource.partition("/")
    name = rest.removesuffix("/issues") if collection == SERIES_COLLECTION else rest
    if name and "/" not in name:
        if collection == SERIES_COLLECTION:
            return name, "", ""
        if collection == SOURCES_COLLECTION:
            return "", name, ""
    return "", "", resource


def _span(snaps: list[int], **extra: Any) -> dict[str, Any]:
    """Series-level audit of a batch: how many points and which snaps, not one entry each."""
    return {"points": len(snaps), "first_snap_us": min(snaps), "last_snap_us": max(snaps), **extra}
