"""Domain errors to gRPC statuses, with google.rpc error details a client in any language reads."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis_domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)


def code_of(status: grpc.StatusCode) -> int:
    """The google.rpc.Code number of a status. (google.rpc.code_pb2 is never imported: the
    KurrentDB client ships its own copy of google/rpc/code.proto, and both cannot be loaded
    into one process's descriptor pool.)"""
    number: int = status.value[0]
    return number


ERROR_DOMAIN = "qis.data"

_CODES: list[tuple[type[DomainError], int]] = [
    (InvalidArgument, code_of(grpc.StatusCode.INVALID_ARGUMENT)),
    (NotFound, code_of(grpc.StatusCode.NOT_FOUND)),
    (AlreadyExists, code_of(grpc.StatusCode.ALREADY_EXISTS)),
    (FailedPrecondition, code_of(grpc.StatusCode.FAILED_PRECONDITION)),
    (PermissionDenied, code_of(grpc.StatusCode.PERMISSION_DENIED)),
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
    elif isinstance(error, NotFound):
        detail.Pack(
            error_details_pb2.ResourceInfo(resource_name=error.resource, description=error.field)
        )
        status.details.append(detail)
    if error.reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
        status.details.append(info)
    return status


def plain_status(code: grpc.StatusCode, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code_of(code), message=message)


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status
) -> NoReturn:
    grpc_status = rpc_status.to_status(status)
    await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")
