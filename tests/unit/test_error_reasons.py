"""Every refusal carries a google.rpc.ErrorInfo (domain qis.data) with a reason that
docs/errors.md documents (AIP-193): a client branches on reasons, never on messages."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from qis_command.application.commands import PublishDue
from qis_command.application.handlers import ConcurrencyExhausted
from qis_domain.access import ACCESS_DENIED, AccessPolicies, policy_resource
from qis_domain.command_log import CommandRecord, fingerprint
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    AccessPolicy,
    Permission,
    SeriesDefinition,
    SeriesSource,
    Update,
)
from qis_domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from qis_domain.names import issue_resource, point_resource, series_resource, source_resource
from qis_domain.reference_data import ReferenceData
from qis_domain.series_bucket import Recorded
from qis_domain.snaps import Frequency
from qis_domain.values import DataType
from qis_query.application.consistency import ReadModelBehind
from qis_query.application.limits import TooManySubscriptions
from qis_query.application.subscription import SubscriberStalled
from qis_runtime.errors import ERROR_DOMAIN, RequestTooLarge, UndecodableRequest, status_for

DOCUMENTED = set(
    re.findall(r"`([A-Z][A-Z_]+)`", (Path(__file__).parents[2] / "docs/errors.md").read_text())
)


def _reused() -> Exception:
    record = CommandRecord("series/SPX", "c-1")
    record.accepted = record.accept(fingerprint(PublishDue("SPX", 0)), ["s"])[0]  # type: ignore[assignment]
    other = PublishDue("SPX", 1)
    with pytest.raises(AlreadyExists) as refused:
        record.earlier_streams(fingerprint(other), other)
    return refused.value


def _stale_schema_version() -> Exception:
    series = ReferenceData("SPX")
    definition = SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.DAILY,
        unit="USD",
        sources=(SeriesSource(source_id="a", priority=1),),
    )
    [defined] = series.define(definition, {"a"}, CommandContext("c-1", "u", 0))
    series.apply(defined, Recorded("c-1", "u", 1, 0))
    with pytest.raises(Aborted) as refused:
        series.updated(Update(values={"precision": 2}), expected_schema_version=2)
    return refused.value


def _stale_policy_revision() -> Exception:
    policies = AccessPolicies()
    policy = AccessPolicy(principals=("*",), resources=("*",), permissions=(Permission.READ,))
    [added] = policies.set_policy("everyone", policy, "setup")
    policies.apply(added, Recorded("c-1", "u", 1, 0))
    with pytest.raises(Aborted) as refused:
        policies.remove_policy("everyone", "unused", expected_revision=2)
    return refused.value


def _disk_full() -> Exception:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    return error


CASES: list[tuple[Exception, grpc.StatusCode, str]] = [
    (
        InvalidArgument([FieldViolation("x", "bad")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "BAD_REQUEST",
    ),
    (UndecodableRequest("garbage"), grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST"),
    (NotFound(series_resource("X")), grpc.StatusCode.NOT_FOUND, "SERIES_NOT_FOUND"),
    (NotFound(source_resource("X")), grpc.StatusCode.NOT_FOUND, "SOURCE_NOT_FOUND"),
    (NotFound(point_resource("X", 0)), grpc.StatusCode.NOT_FOUND, "POINT_NOT_FOUND"),
    (NotFound(issue_resource("X", "i")), grpc.StatusCode.NOT_FOUND, "ISSUE_NOT_FOUND"),
    (NotFound(policy_resource("X")), grpc.StatusCode.NOT_FOUND, "ACCESS_POLICY_NOT_FOUND"),
    (_reused(), grpc.StatusCode.ALREADY_EXISTS, "COMMAND_ID_REUSED"),
    (
        FailedPrecondition("no", "IMMUTABLE_FIELD"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "IMMUTABLE_FIELD",
    ),
    (PermissionDenied("no", "FOUR_EYES"), grpc.StatusCode.PERMISSION_DENIED, "FOUR_EYES"),
    (
        PermissionDenied("no", ACCESS_DENIED),
        grpc.StatusCode.PERMISSION_DENIED,
        "ACCESS_DENIED",
    ),
    (_stale_schema_version(), grpc.StatusCode.ABORTED, "SCHEMA_VERSION_MISMATCH"),
    (_stale_policy_revision(), grpc.StatusCode.ABORTED, "POLICY_REVISION_MISMATCH"),
    (ConcurrencyExhausted("busy"), grpc.StatusCode.ABORTED, "CONTENTION"),
    (_disk_full(), grpc.StatusCode.RESOURCE_EXHAUSTED, "STORE_FULL"),
    (ReadModelBehind(5, 3, 1.0), grpc.StatusCode.UNAVAILABLE, "READ_MODEL_BEHIND"),
    (
        TooManySubscriptions("100 open"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_SUBSCRIPTIONS",
    ),
    (SubscriberStalled(10), grpc.StatusCode.RESOURCE_EXHAUSTED, "SUBSCRIBER_STALLED"),
    (RequestTooLarge("5 MB"), grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE"),
    (ZeroDivisionError("a bug"), grpc.StatusCode.INTERNAL, "INTERNAL"),
]


@pytest.mark.parametrize(("error", "code", "reason"), CASES, ids=[c[2] for c in CASES])
def test_every_refusal_names_a_documented_reason(
    error: Exception, code: grpc.StatusCode, reason: str
) -> None:
    status = status_for(error)
    assert status.code == code.value[0]
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert [(i.reason, i.domain) for i in infos] == [(reason, ERROR_DOMAIN)]
    assert reason in DOCUMENTED


def test_a_not_found_names_the_resource_type_and_name() -> None:
    status = status_for(NotFound(point_resource("SPX", 0), "snaps[3]"))
    info = error_details_pb2.ResourceInfo()
    assert any(d.Unpack(info) for d in status.details)
    assert (info.resource_type, info.resource_name, info.description) == (
        "qis.data.v1.OfficialValue",
        "series/SPX/points/1970-01-01T00:00:00Z",
        "snaps[3]",
    )


def test_only_a_refusal_a_retry_can_overcome_carries_a_retry_delay() -> None:
    # Both ABORTED: contention clears by itself, a stale schema version never does.
    def delays(error: Exception) -> int:
        info = error_details_pb2.RetryInfo()
        return sum(d.Unpack(info) for d in status_for(error).details)

    assert delays(ConcurrencyExhausted("busy")) == 1
    assert delays(_stale_schema_version()) == 0
