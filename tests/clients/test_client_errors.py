"""qis_client.errors: a google.rpc.Status, from a call's trailers or from a BulkIngest answer,
becomes the exception of its code with its details as attributes."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from qis_client import (
    Aborted,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    QisError,
    Resource,
    Unavailable,
    error_from_rpc,
    error_from_status,
)

from tests.clients.client_support import bad_request, rich_status


class FailedCall(grpc.RpcError, grpc.Call):
    """What grpc raises for a failed call: an RpcError that is also the Call, with its code,
    message and trailing metadata."""

    def __init__(
        self, code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, bytes], ...] = ()
    ) -> None:
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    # The stubs type RpcError's trailing_metadata apart from Call's; a failed call is both and
    # answers as a Call.
    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        return self._trailers

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


def rich_call(rich: status_pb2.Status) -> FailedCall:
    code = next(c for c in grpc.StatusCode if c.value[0] == rich.code)
    trailers = (("grpc-status-details-bin", rich.SerializeToString()),)
    return FailedCall(code, rich.message, trailers)


BAD_REQUEST = rich_status(
    grpc.StatusCode.INVALID_ARGUMENT,
    "points[1].value.price.value: not a decimal",
    bad_request(
        ("points[1].value.price.value", "not a decimal"),
        ("points[2].snap_time", "finer than a microsecond"),
    ),
)


def test_field_violations_are_listed_in_order() -> None:
    error = error_from_status(BAD_REQUEST)
    assert isinstance(error, InvalidArgument)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.field_violations == (
        FieldViolation("points[1].value.price.value", "not a decimal"),
        FieldViolation("points[2].snap_time", "finer than a microsecond"),
    )
    assert not error.retryable
    assert str(error).splitlines() == [
        "INVALID_ARGUMENT: points[1].value.price.value: not a decimal",
        "  points[1].value.price.value: not a decimal",
        "  points[2].snap_time: finer than a microsecond",
    ]


def test_retry_info_and_error_info_of_a_store_that_is_away() -> None:
    error = error_from_status(
        rich_status(
            grpc.StatusCode.UNAVAILABLE,
            "event store unavailable",
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)
            ),
            error_details_pb2.ErrorInfo(reason="STORE_UNAVAILABLE", domain="qis.data"),
        )
    )
    assert isinstance(error, Unavailable)
    assert (error.reason, error.domain) == ("STORE_UNAVAILABLE", "qis.data")
    assert error.retry_delay == timedelta(seconds=1.5)
    assert error.retryable


def test_not_found_names_the_resource() -> None:
    error = error_from_status(
        rich_status(
            grpc.StatusCode.NOT_FOUND,
            "no series 'x'",
            error_details_pb2.ResourceInfo(resource_name="series/x", description="series"),
        )
    )
    assert isinstance(error, NotFound)
    assert error.resource == Resource("", "series/x", "", "series")


def test_internal_carries_the_error_id_of_the_log() -> None:
    error = error_from_status(
        rich_status(
            grpc.StatusCode.INTERNAL,
            "internal error (reference 0123abcd)",
            error_details_pb2.ErrorInfo(
                reason="INTERNAL", domain="qis.data", metadata={"error_id": "0123abcd"}
            ),
        )
    )
    assert isinstance(error, Internal)
    assert error.error_id == "0123abcd"


def test_contention_is_retryable_without_retry_info() -> None:
    error = error_from_status(rich_status(grpc.StatusCode.ABORTED, "conflict"))
    assert isinstance(error, Aborted)
    assert error.retryable
    assert error.retry_delay is None


def test_a_stale_schema_version_is_not_retryable() -> None:
    """ABORTED, but a resend would be refused again: the update must be made again from the
    series as it is now."""
    error = error_from_status(
        rich_status(
            grpc.StatusCode.ABORTED,
            "series/x is at schema version 4, not 3",
            error_details_pb2.ErrorInfo(reason="SCHEMA_VERSION_MISMATCH", domain="qis.data"),
        )
    )
    assert isinstance(error, Aborted)
    assert error.reason == "SCHEMA_VERSION_MISMATCH"
    assert not error.retryable


def test_unknown_details_and_codes_are_kept_plain() -> None:
    error = error_from_status(
        rich_status(grpc.StatusCode.DATA_LOSS, "lost", error_details_pb2.DebugInfo(detail="x"))
    )
    assert type(error) is QisError
    assert error.code is grpc.StatusCode.DATA_LOSS
    assert error.reason == ""
    assert error.field_violations == ()


def test_from_a_call_with_a_rich_status() -> None:
    error = error_from_rpc(rich_call(BAD_REQUEST))
    assert isinstance(error, InvalidArgument)
    assert [v.field for v in error.field_violations] == [
        "points[1].value.price.value",
        "points[2].snap_time",
    ]


def test_from_a_call_without_details() -> None:
    error = error_from_rpc(FailedCall(grpc.StatusCode.UNAUTHENTICATED, "no identity"))
    assert error.code is grpc.StatusCode.UNAUTHENTICATED
    assert error.message == "no identity"


def test_details_contradicting_the_call_give_way_to_the_call() -> None:
    trailers = (("grpc-status-details-bin", BAD_REQUEST.SerializeToString()),)
    error = error_from_rpc(FailedCall(grpc.StatusCode.UNAVAILABLE, "proxy down", trailers))
    assert isinstance(error, Unavailable)
    assert error.field_violations == ()


def test_an_rpc_error_that_is_no_call() -> None:
    error = error_from_rpc(grpc.RpcError("channel closed"))
    assert error.code is grpc.StatusCode.UNKNOWN
