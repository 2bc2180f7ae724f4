"""What `qis` tells a person whose request is over a size limit (`qis ingest`, and the drop
folder feed, which runs its code): refused alike every time, so a failure (exit 1) with what to
change, not "temporary", which a full store (RESOURCE_EXHAUSTED too) still is."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2
from qis_adapters.eventstore.port import EventStoreFull
from qis_cli.errors import EXIT_FAILED, EXIT_UNAVAILABLE, exit_code_of, hint_for
from qis_runtime.errors import RequestTooLarge, status_for
from qis_runtime.identity import RequestLimit

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def refused_by_the_service() -> status_pb2.Status:
    with pytest.raises(RequestTooLarge) as refused:
        RequestLimit(64_000, "QIS_COMMAND_MAX_REQUEST_BYTES").check(b"x" * 64_001)
    return status_for(refused.value)


def refused_by_grpc() -> status_pb2.Status:
    """What the CLI reads of gRPC's own refusal: a code and a text, no details."""
    return status_pb2.Status(
        code=RESOURCE_EXHAUSTED, message="Received message larger than max (200000 vs. 128000)"
    )


@pytest.mark.parametrize("status", [refused_by_the_service(), refused_by_grpc()])
def test_a_request_too_large_is_a_failure_with_what_to_change(status: status_pb2.Status) -> None:
    assert status.code == RESOURCE_EXHAUSTED
    assert exit_code_of(status) == EXIT_FAILED
    hint = hint_for(status)
    assert "--chunk-size" in hint
    assert "again later" not in hint


def test_a_full_store_is_still_temporary() -> None:
    status = status_for(EventStoreFull("the event store is full"))
    assert status.code == RESOURCE_EXHAUSTED
    assert exit_code_of(status) == EXIT_UNAVAILABLE
    assert "again later" in hint_for(status)
