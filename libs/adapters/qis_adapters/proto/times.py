"""google.protobuf.Timestamp <-> int64 microseconds since the epoch (UTC), the stores' form."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from qis_domain.bounds import INSTANTS, MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS
from qis_domain.errors import FieldViolation

_US = 1_000_000
_MAX_NANOS = 999_999_999


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(us, _US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def micros(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * _US + ts.nanos // 1000


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
