"""Read-model records to v1 messages. Range queries stream millions of points, so values are
merged from their stored serialised form and timestamps are set from stored integers."""

from __future__ import annotations

import math

from google.protobuf import json_format, struct_pb2
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import series_pb2
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore.port import (
    OPEN_END,
    AuditEntry,
    ChangeFeedEntry,
    Observation,
    OfficialVersion,
    QualityIssue,
    QualityMetrics,
    SeriesEntry,
)
from qis_domain.names import series_name, source_name


def official_value(name: str, v: OfficialVersion) -> pb.OfficialValue:
    msg = pb.OfficialValue(
        series=name,
        snap=timestamp(v.snap_us),
        version=v.version,
        quality_score=v.quality_score,
        recorded_from=timestamp(v.recorded_from_us),
        position_from=v.position_from,
        sources=v.sources,
        method=v.method,
        flags=v.flags,
        reason=v.reason,
        user=v.user_id,
    )
    msg.value.MergeFromString(v.value)
    if v.recorded_to_us != OPEN_END:
        msg.recorded_to.CopyFrom(timestamp(v.recorded_to_us))
        msg.position_to = v.position_to
    return msg


def changed_value(c: ChangeFeedEntry) -> pb.OfficialValue:
    msg = pb.OfficialValue(
        series=series_name(c.series_id),
        snap=timestamp(c.snap_us),
        version=c.version,
        quality_score=c.quality_score,
        recorded_from=timestamp(c.recorded_at_us),
        position_from=c.position,
        reason=c.reason,
        user=c.user_id,
        sources=c.sources,
        method=c.method,
        flags=c.flags,
    )
    msg.value.MergeFromString(c.value)
    return msg


def observation(o: Observation) -> pb.SourceObservation:
    msg = pb.SourceObservation(
        source=source_name(o.source_id),
        snap_offset_seconds=o.snap_offset_s,
        recorded_at=timestamp(o.recorded_at_us),
        position=o.position,
        user=o.user_id,
        command_id=o.command_id,
    )
    msg.value.MergeFromString(o.value)
    return msg


def audit_entry(a: AuditEntry) -> pb.AuditEntry:
    details = struct_pb2.Struct()
    details.update(a.details)
    msg = pb.AuditEntry(
        time=timestamp(a.recorded_at_us),
        action=a.action,
        user=a.user_id,
        command_id=a.command_id,
        series=series_name(a.series_id) if a.series_id else "",
        details=details,
        position=a.position,
    )
    if a.snap_us is not None:
        msg.snap.CopyFrom(timestamp(a.snap_us))
    return msg


def quality_issue(i: QualityIssue) -> pb.QualityIssue:
    evidence = struct_pb2.Struct()
    evidence.update(i.evidence)
    msg = pb.QualityIssue(
        issue_id=i.issue_id,
        series=series_name(i.series_id),
        snap=timestamp(i.snap_us),
        source=source_name(i.source_id) if i.source_id else "",
        rule=i.rule,
        severity=i.severity,
        evidence=evidence,
        status=i.status,
        raise_time=timestamp(i.raised_at_us),
        resolved_by=i.resolved_by,
        resolution_reason=i.resolution_reason,
    )
    if i.resolved_at_us:
        msg.resolve_time.CopyFrom(timestamp(i.resolved_at_us))
    return msg


def quality_metrics(m: QualityMetrics) -> pb.QualityMetrics:
    return pb.QualityMetrics(
        series=series_name(m.series_id),
        window_start=timestamp(m.window_start_us),
        window_end=timestamp(m.window_end_us),
        accuracy=m.accuracy,
        completeness=math.nan if m.completeness is None else m.completeness,
        timeliness=m.timeliness,
        consistency=m.consistency,
        calculate_time=timestamp(m.calculated_at_us),
        expected_snaps=m.expected_snaps,
        received_snaps=m.received_snaps,
        missing_sessions=m.missing_sessions,
        uncovered_days=m.uncovered_days,
    )


def series(entry: SeriesEntry) -> series_pb2.Series:
    return json_format.ParseDict(entry.definition, series_pb2.Series())
