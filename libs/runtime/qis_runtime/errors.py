"""One error policy for every qis process: every exception a call can end with becomes a gRPC
status with google.rpc error details a client in any language reads; nothing ends as UNKNOWN.

| exception                              | code                | details                      |
|----------------------------------------|---------------------|------------------------------|
| InvalidArgument, UndecodableRequest    | INVALID_ARGUMENT    | BadRequest (field violations) |
| NotFound                               | NOT_FOUND           | ResourceInfo                 |
| AlreadyExists / FailedPrecondition / PermissionDenied | ALREADY_EXISTS / FAILED_PRECONDITION / PERMISSION_DENIED | ErrorInfo where a reason is set |
| Aborted (a client's stale version)     | ABORTED             | ErrorInfo, no RetryInfo: the same request cannot succeed |
| RetryLater "contention"                | ABORTED             | RetryInfo, ErrorInfo         |
| RetryLater "unavailable"               | UNAVAILABLE         | RetryInfo, ErrorInfo         |
| RetryLater "full"                      | RESOURCE_EXHAUSTED  | RetryInfo, ErrorInfo         |
| RetryLater "behind" (min_position)     | UNAVAILABLE         | RetryInfo, ErrorInfo         |
| LimitExceeded (a caller's limits), RequestTooLarge | RESOURCE_EXHAUSTED | ErrorInfo   |
| anything else (a bug)                  | INTERNAL            | ErrorInfo with an error id that is also in the log |
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis_adapters.faults import store_fault
from qis_domain.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    RetryLater,
)

log = logging.getLogger(__name__)


def code_of(status: grpc.StatusCode) -> int:
    """The google.rpc.Code number of a status. (google.rpc.code_pb2 is never imported: the
    KurrentDB client ships its own copy of google/rpc/code.proto, and both cannot be loaded
    into one process's descriptor pool.)"""
    number: int = status.value[0]
    return number


ERROR_DOMAIN = "qis.data"
# Details of a unary answer travel in trailing metadata, which clients cap at 8 KiB by default
# (beyond it they see RESOURCE_EXHAUSTED, not the answer); base64 inflates them by a third.
MAX_VIOLATION_BYTES = 4_096
_RETRY_CODES = {
    "contention": (grpc.StatusCode.ABORTED, "CONTENTION"),
    "unavailable": (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
    "full": (grpc.StatusCode.RESOURCE_EXHAUSTED, "STORE_FULL"),
    "behind": (grpc.StatusCode.UNAVAILABLE, "READ_MODEL_BEHIND"),
}


class UndecodableRequest(Exception):
    """The request bytes are not a message of the method's request type."""


class RequestTooLarge(LimitExceeded):
    """A request message over the process's size limit, refused before it is parsed."""

    reason = "REQUEST_TOO_LARGE"


_CODES: list[tuple[type[DomainError], int]] = [
    (InvalidArgument, code_of(grpc.StatusCode.INVALID_ARGUMENT)),
    (NotFound, code_of(grpc.StatusCode.NOT_FOUND)),
    (AlreadyExists, code_of(grpc.StatusCode.ALREADY_EXISTS)),
    (FailedPrecondition, code_of(grpc.StatusCode.FAILED_PRECONDITION)),
    (PermissionDenied, code_of(grpc.StatusCode.PERMISSION_DENIED)),
    (Aborted, code_of(grpc.StatusCode.ABORTED)),
]


def status_of(error: DomainError) -> status_pb2.Status:
    code = next(
        (c for kind, c in _CODES if isinstance(error, kind)), code_of(grpc.StatusCode.INTERNAL)
    )
    status = status_pb2.Status(code=code, message=str(error))
    detail = any_pb2.Any()
    if isinstance(error, InvalidArgument):
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
        status.details.append(detail)
    elif isinstance(error, NotFound | AlreadyExists):
        resource = error.resource
        field = error.field if isinstance(error, NotFound) else ""
        detail.Pack(
            error_details_pb2.ResourceInfo(
                resource_type=resource.type, resource_name=resource.name, description=field
            )
        )
        status.details.append(detail)
    return with_reason(status, error.reason) if error.reason else status


def status_for(error: Exception, *, in_trailers: bool = True) -> status_pb2.Status:
    """The status a call ending with `error` answers (see the table above). `in_trailers`: the
    status travels in trailing metadata (a unary answer), so its violations are cut to fit."""
    if isinstance(error, InvalidArgument) and in_trailers:
        return status_of(fitting(error))
    if isinstance(error, DomainError):
        return status_of(error)
    if isinstance(error, UndecodableRequest):
        return status_of(InvalidArgument.single("", str(error)))
    if (fault := store_fault(error)) is not None:
        error = fault  # a store's fault escaped as the driver's error: still retryable
    if isinstance(error, RetryLater):
        code, reason = _RETRY_CODES.get(error.kind, _RETRY_CODES["unavailable"])
        status = plain_status(code, str(error) or reason.lower())
        _add(status, error_details_pb2.RetryInfo(retry_delay=_duration(error.retry_after_s)))
        return with_reason(status, reason)
    if isinstance(error, LimitExceeded):
        return with_reason(
            plain_status(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)), error.reason
        )
    error_id = uuid.uuid4().hex[:16]
    log.error("internal error %s: %r", error_id, error, exc_info=error)
    status = plain_status(grpc.StatusCode.INTERNAL, f"internal error (reference {error_id})")
    _add(
        status,
        error_details_pb2.ErrorInfo(
            reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"error_id": error_id}
        ),
    )
    return status


def fitting(error: InvalidArgument) -> InvalidArgument:
    """The violations that fit in one answer, then one that says how many more there are, named
    by the request field they fall under ("points"), so that no client takes the rest for
    valid."""
    kept: list[FieldViolation] = []
    size = 0
    for violation in error.violations:
        # Room is kept for the closing violation.
        size += len(violation.field.encode()) + len(violation.description.encode()) + 16
        if size > MAX_VIOLATION_BYTES - 256:
            break
        kept.append(violation)
    omitted = error.violations[len(kept) :]
    if not omitted:
        return error
    field = re.split(r"[.\[]", omitted[0].field, maxsplit=1)[0]
    description = (
        f"{len(omitted):,} more violations are not listed (an answer holds {len(kept)}):"
        " fix these and send again, or send less at a time"
    )
    return InvalidArgument([*kept, FieldViolation(field, description)])


def with_reason(status: status_pb2.Status, reason: str) -> status_pb2.Status:
    """`status` with an ErrorInfo: every refusal names its reason (AIP-193)."""
    _add(status, error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    return status


def _add(status: status_pb2.Status, detail: Any) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)
    status.details.append(packed)


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def plain_status(code: grpc.StatusCode, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code_of(code), message=message)


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status
) -> NoReturn:
    grpc_status = rpc_status.to_status(status)
    await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")
