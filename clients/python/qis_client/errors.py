"""A failed call as a typed exception, with the google.rpc error details the service sends.

Every call of the service ends with a status that says what happened (never UNKNOWN), and most
carry details: BadRequest field violations for malformed input, ResourceInfo for what was not
found, ErrorInfo with a stable reason (domain "qis.data", e.g. COMMAND_ID_REUSED), RetryInfo for
what is worth resending. Callers catch the subclass of the code (`except NotFound`) and read the
details as attributes, without touching protobuf Any messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

M = TypeVar("M", bound=Message)
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
# What a client may resend as is (with the same command id, so nothing is applied twice), even
# when the service sent no RetryInfo: a connection that broke, a lost race.
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
# ...except what no resend can turn into a success, whatever its code: an update made from a
# schema version that is no longer the series' must be made again from the current definition.
_NOT_RETRYABLE_REASONS = frozenset({"SCHEMA_VERSION_MISMATCH"})


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One malformed field: `field` is its path in the request ("points[17].value.price.value")."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class Resource:
    """What a NOT_FOUND was about (google.rpc.ResourceInfo)."""

    resource_type: str
    resource_name: str
    owner: str
    description: str


class QisError(Exception):
    """A call that ended with a status other than OK. Subclasses name the code."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        field_violations: tuple[FieldViolation, ...] = (),
        reason: str = "",
        domain: str = "",
        error_metadata: Mapping[str, str] | None = None,
        retry_delay: timedelta | None = None,
        resource: Resource | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_violations = field_violations
        self.reason = reason
        self.domain = domain
        self.error_metadata: Mapping[str, str] = MappingProxyType(dict(error_metadata or {}))
        self.retry_delay = retry_delay
        self.resource = resource

    @property
    def retryable(self) -> bool:
        """The service said when to retry (RetryInfo), or the code is a transient one (and the
        reason not one that a resend would meet again)."""
        if self.reason in _NOT_RETRYABLE_REASONS:
            return False
        return self.retry_delay is not None or self.code in _TRANSIENT

    @property
    def error_id(self) -> str | None:
        """For INTERNAL: the reference the service also wrote to its log."""
        return self.error_metadata.get("error_id")

    def __str__(self) -> str:
        lines = [f"{self.code.name}: {self.message}"]
        lines.extend(f"  {v.field}: {v.description}" for v in self.field_violations)
        return "\n".join(lines)


class InvalidArgument(QisError):
    """Malformed input; nothing of the request was stored. See field_violations."""


class NotFound(QisError):
    """No such series, source or point. See resource."""


class AlreadyExists(QisError):
    """A second definition, or a command id reused with other arguments (reason)."""


class FailedPrecondition(QisError):
    """The state does not allow the command."""


class PermissionDenied(QisError):
    """Not allowed to you, e.g. the four-eyes rule."""


class Unauthenticated(QisError):
    """No identity, or one the service does not accept."""


class ResourceExhausted(QisError):
    """A store full, a request too large, too many subscriptions, or a stalled subscriber."""


class Aborted(QisError):
    """Concurrent writers kept conflicting: resend with the same command id. Or (reason
    SCHEMA_VERSION_MISMATCH, not retryable) an update's expected_schema_version is no longer the
    series': read the series again and make the change from what it is now."""


class Unavailable(QisError):
    """The service or its store is unreachable, or its read model is behind; retry later."""


class DeadlineExceeded(QisError):
    """The call's deadline passed (its outcome on the server is unknown: resend with the same
    command id)."""


class Cancelled(QisError):
    """The call was cancelled."""


class Internal(QisError):
    """A bug in the service; error_id is in its log."""


_CLASSES: dict[grpc.StatusCode, type[QisError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
}


def _unpacked(packed: any_pb2.Any, kind: type[M]) -> M | None:
    """The detail as a `kind` message; None when it is of another type."""
    message = kind()
    return message if packed.Unpack(message) else None


def error_from_status(status: status_pb2.Status) -> QisError:
    """A google.rpc.Status as its exception: the status of a failed call, or of a rejected
    BulkIngest chunk (BulkIngestResponse.error)."""
    code = _STATUS_CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    details: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for packed in status.details:
        if bad := _unpacked(packed, error_details_pb2.BadRequest):
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif info := _unpacked(packed, error_details_pb2.ErrorInfo):
            details.update(reason=info.reason, domain=info.domain, error_metadata=info.metadata)
        elif retry := _unpacked(packed, error_details_pb2.RetryInfo):
            details["retry_delay"] = retry.retry_delay.ToTimedelta()
        elif resource := _unpacked(packed, error_details_pb2.ResourceInfo):
            details["resource"] = Resource(
                resource.resource_type, resource.resource_name, resource.owner, resource.description
            )
        # Other detail types are left in the status: a newer service may add some.
    kind = _CLASSES.get(code, QisError)
    return kind(code, status.message, field_violations=tuple(violations), **details)


def error_from_rpc(error: grpc.RpcError) -> QisError:
    """The exception of a failed gRPC call, from its rich status (grpc-status-details-bin) when
    the service sent one, else from the call's code and message alone."""
    if not isinstance(error, grpc.Call):
        # Raised before any call existed (e.g. a closed channel): no status to read.
        return QisError(grpc.StatusCode.UNKNOWN, str(error))
    try:
        rich: status_pb2.Status | None = rpc_status.from_call(error)
    except ValueError:
        # Details that contradict the call's own code or message (a proxy rewrote the status):
        # the call's code is what actually happened.
        rich = None
    if rich is None:
        rich = status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    return error_from_status(rich)
