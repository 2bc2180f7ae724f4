"""google.protobuf.Timestamp <-> int64 microseconds since the epoch (UTC), the stores' form, and
google.protobuf.Duration <-> whole seconds (UTC offsets, cut-offs and SLAs)."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from qis_domain.bounds import (
    INSTANTS,
    MAX_DURATION_SECONDS,
    MAX_TIMESTAMP_SECONDS,
    MAX_UTC_OFFSET_SECONDS,
    MIN_TIMESTAMP_SECONDS,
)
from qis_domain.errors import FieldViolation

_US = 1_000_000
_NS_PER_US = 1_000
_MAX_NANOS = 999_999_999


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(us, _US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * _NS_PER_US)


def micros(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * _US + ts.nanos // _NS_PER_US


def micros_from_proto(
    ts: timestamp_pb2.Timestamp, field: str, violations: list[FieldViolation]
) -> int | None:
    """An instant of a request within qis_domain.bounds; records violations and returns None if
    not. Nanoseconds below the microsecond are dropped: a Timestamp names an expiry or a window
    edge, not a point (a snap finer than a microsecond is refused instead)."""
    valid = True
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        violations.append(
            FieldViolation(
                f"{field}.seconds",
                f"{ts.seconds} is outside {MIN_TIMESTAMP_SECONDS}..{MAX_TIMESTAMP_SECONDS}"
                f" ({INSTANTS})",
            )
        )
        valid = False
    if not 0 <= ts.nanos <= _MAX_NANOS:
        violations.append(
            FieldViolation(f"{field}.nanos", f"{ts.nanos} is outside 0..{_MAX_NANOS}")
        )
        valid = False
    return micros(ts) if valid else None


def snap_micros_from_proto(
    ts: timestamp_pb2.Timestamp, field: str, violations: list[FieldViolation]
) -> int | None:
    """A snap of a request: an instant as `micros_from_proto` takes it, in whole microseconds.
    Finer is refused, not truncated: two snaps of one request would merge into one point."""
    us = micros_from_proto(ts, field, violations)
    if us is not None and ts.nanos % _NS_PER_US:
        violations.append(
            FieldViolation(
                field, f"{ts.nanos:,} nanoseconds: snaps are whole microseconds (nanos % 1,000 = 0)"
            )
        )
        return None
    return us


def required_snap_micros(
    owner: Message, field: str, violations: list[FieldViolation]
) -> int | None:
    """The snap in the Timestamp field `field` of `owner` (see snap_micros_from_proto), with
    violations at paths relative to `owner`. Unset is refused: the epoch is no default."""
    if not owner.HasField(field):
        violations.append(FieldViolation(field, "a snap is required"))
        return None
    ts: timestamp_pb2.Timestamp = getattr(owner, field)
    return snap_micros_from_proto(ts, field, violations)


def utc_offset_from_proto(
    offset: duration_pb2.Duration, field: str, violations: list[FieldViolation]
) -> int | None:
    """The UTC offset a source stated, in seconds: whole minutes within ±23:59, as RFC 3339
    offsets are."""
    if offset.nanos or offset.seconds % 60 or abs(offset.seconds) > MAX_UTC_OFFSET_SECONDS:
        violations.append(
            FieldViolation(
                field,
                f"{offset.seconds} s {offset.nanos} ns is not an offset: whole minutes from"
                f" -{MAX_UTC_OFFSET_SECONDS:,} s to +{MAX_UTC_OFFSET_SECONDS:,} s (±23:59)",
            )
        )
        return None
    return offset.seconds


def seconds_from_proto(
    d: duration_pb2.Duration, field: str, violations: list[FieldViolation]
) -> int | None:
    """A span of a definition (a cut-off, an SLA) in whole seconds within qis_domain.bounds."""
    if d.nanos or not 0 <= d.seconds <= MAX_DURATION_SECONDS:
        violations.append(
            FieldViolation(
                field,
                f"{d.seconds} s {d.nanos} ns is not a span: whole seconds from 0 to"
                f" {MAX_DURATION_SECONDS:,}",
            )
        )
        return None
    return d.seconds


def duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)
