"""google.protobuf.Timestamp <-> int64 microseconds since the epoch (UTC), the stores' form."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

_US = 1_000_000


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(us, _US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def micros(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * _US + ts.nanos // 1000
