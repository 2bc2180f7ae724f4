"""Query request fields to the application's plain values, checked against the shared bounds
(qis_domain.bounds), so that no integer a store cannot hold, nor an instant outside the
calendar, reaches a query: it would fail deep in a store as an UNKNOWN error, or answer nothing
as if the request were right. Every violation of a request is collected, so one
INVALID_ARGUMENT lists them all."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from qis.data.v1 import query_service_pb2 as pb
from qis_adapters.proto.times import micros_from_proto, snap_micros_from_proto
from qis_adapters.readstore.port import LATEST, AsOf, AtPosition, AuditScope, KnownAt
from qis_domain.bounds import MAX_POSITION, position_in_range, quoted
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.names import SERIES_COLLECTION, SOURCES_COLLECTION, parse_name

PARENT = "parent"
EVERY_SERIES = f"{SERIES_COLLECTION}/-"  # AIP-159: the issues of every series
EVERYTHING = "-"  # the audit entries of every resource
_VIEWS = {v.number: v.name for v in pb.ValueView.DESCRIPTOR.values}


class RequestFields:
    """Reads the fields of one request. A field in violation reads as a placeholder, so the
    others are still checked; `check` then refuses the request if any was."""

    def __init__(self) -> None:
        self._violations: list[FieldViolation] = []

    def series_id(self, name: str, field: str) -> str:
        return self._id(name, SERIES_COLLECTION, field)

    def _id(self, name: str, collection: str, field: str) -> str:
        try:
            return parse_name(name, collection, field)
        except InvalidArgument as error:
            self._violations.extend(error.violations)
            return ""

    def issues_parent(self, name: str) -> str:
        """The series of ListQualityIssues' parent: "" for every series ("series/-")."""
        if name == EVERY_SERIES:
            return ""
        if not name.startswith(f"{SERIES_COLLECTION}/"):
            self.refuse(PARENT, f"{quoted(name)} is neither 'series/{{id}}' nor '{EVERY_SERIES}'")
            return ""
        return self.series_id(name, PARENT)

    def audit_parent(self, name: str) -> AuditScope:
        """Whose entries ListAuditEntries' parent names: a series, a source, or everything."""
        if name == EVERYTHING:
            return AuditScope()
        if name.startswith(f"{SOURCES_COLLECTION}/"):
            return AuditScope(source_id=self._id(name, SOURCES_COLLECTION, PARENT))
        if name.startswith(f"{SERIES_COLLECTION}/"):
            return AuditScope(series_id=self.series_id(name, PARENT))
        self.refuse(
            PARENT,
            f"{quoted(name)} is none of 'series/{{id}}', 'sources/{{id}}' and '{EVERYTHING}'",
        )
        return AuditScope()

    def instant(self, ts: timestamp_pb2.Timestamp, field: str) -> int:
        """Microseconds since the epoch, UTC; field paths name the part at fault
        (`as_of_time.seconds`), as on the command side."""
        us = micros_from_proto(ts, field, self._violations)
        return 0 if us is None else us

    def snap(self, ts: timestamp_pb2.Timestamp, field: str) -> int:
        """A point's snap: whole microseconds, as the command side takes them (a finer one
        names no point, and truncating it would answer for another)."""
        us = snap_micros_from_proto(ts, field, self._violations)
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
            case "as_of_time":
                return KnownAt(self.instant(request.as_of_time, "as_of_time"))
            case "as_of_position":
                return AtPosition(self.position(request.as_of_position, "as_of_position"))
            case _:
                return LATEST

    def columns_view(self, request: pb.QueryRangeRequest | pb.GetValuesRequest) -> bool:
        """Whether the answer carries its values in columns (VALUE_VIEW_COLUMNS) rather than
        one message per point (unset or VALUE_VIEW_POINTS)."""
        view = request.view
        if view not in _VIEWS:
            self.refuse("view", f"{view} is not a ValueView: {', '.join(_VIEWS.values())}")
        return view == pb.VALUE_VIEW_COLUMNS

    def check(self) -> None:
        if self._violations:
            raise InvalidArgument(self._violations)

    def refuse(self, field: str, description: str) -> None:
        self._violations.append(FieldViolation(field, description))
