"""Query request fields to the application's plain values, checked against the shared bounds
(qis_domain.bounds), so that no integer a store cannot hold, nor an instant outside the
calendar, reaches a query: it would fail deep in a store as an UNKNOWN error, or answer nothing
as if the request were right. Every violation of a request is collected, so one
INVALID_ARGUMENT lists them all."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from qis.data.v1 import query_service_pb2 as pb
from qis_adapters.proto.times import micros_from_proto
from qis_domain.bounds import MAX_POSITION, position_in_range
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.names import SERIES_COLLECTION, parse_name

from qis_query.application.ranges import LATEST, AsOf, AtPosition, KnownAt


class RequestFields:
    """Reads the fields of one request. A field in violation reads as a placeholder, so the
    others are still checked; `check` then refuses the request if any was."""

    def __init__(self) -> None:
        self._violations: list[FieldViolation] = []

    def series_id(self, name: str, field: str) -> str:
        try:
            return parse_name(name, SERIES_COLLECTION, field)
        except InvalidArgument as error:
            self._violations.extend(error.violations)
            return ""

    def instant(self, ts: timestamp_pb2.Timestamp, field: str) -> int:
        """Microseconds since the epoch, UTC; field paths name the part at fault
        (`known_at.seconds`), as on the command side."""
        us = micros_from_proto(ts, field, self._violations)
        return 0 if us is None else us

    def optional_instant(self, request: Message, field: str, unset: int) -> int:
        """The instant in the Timestamp field `field` of `request`, `unset` when not set."""
        return self.instant(getattr(request, field), field) if request.HasField(field) else unset

    def position(self, value: int, field: str) -> int:
        """A commit position (uint64 on the wire; int64 in every store)."""
        if not position_in_range(value):
            self.refuse(field, f"{value} is beyond the largest commit position {MAX_POSITION}")
            return 0
        return value

    def as_of(self, request: pb.QueryRangeRequest | pb.GetValuesRequest) -> AsOf:
        match request.WhichOneof("as_of"):
            case "known_at":
                return KnownAt(self.instant(request.known_at, "known_at"))
            case "at_position":
                return AtPosition(self.position(request.at_position, "at_position"))
            case _:
                return LATEST

    def check(self) -> None:
        if self._violations:
            raise InvalidArgument(self._violations)

    def refuse(self, field: str, description: str) -> None:
        self._violations.append(FieldViolation(field, description))
