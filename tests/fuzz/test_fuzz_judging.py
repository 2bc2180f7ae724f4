"""The fuzz suite's judge cannot pass trivially: each kind of bad answer is caught."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import command_service_pb2 as cmd

from tests.fuzz.fuzz_calls import C, Ledger, Outcome, Rpc, problems, rpcs, violated_fields

pytestmark = pytest.mark.fuzz

RPCS = {r.name: r for r in rpcs()}
UNARY = RPCS["QueryService.GetSeries"]
BULK = RPCS["CommandService.BulkIngest"]


def retry_info() -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo())
    return status_pb2.Status(code=C.UNAVAILABLE.value[0], details=[detail])


def answered(
    code: grpc.StatusCode,
    seconds: float = 0.01,
    details: str = "",
    status: status_pb2.Status | None = None,
    responses: tuple[cmd.BulkIngestResponse, ...] = (),
) -> Outcome:
    return Outcome(code.name, code, seconds, details, status, responses)


def chunk(code: grpc.StatusCode) -> cmd.BulkIngestResponse:
    if code == C.OK:
        return cmd.BulkIngestResponse(command_id="c", result=cmd.IngestPointsResponse())
    return cmd.BulkIngestResponse(command_id="c", error=status_pb2.Status(code=code.value[0]))


@pytest.mark.parametrize(
    ("rpc", "outcome", "chunks"),
    [
        (UNARY, answered(C.UNKNOWN), 1),
        (UNARY, answered(C.INTERNAL), 1),
        (UNARY, answered(C.OK, seconds=5.0), 1),
        (UNARY, answered(C.UNAVAILABLE), 1),
        (UNARY, answered(C.RESOURCE_EXHAUSTED, details="received metadata size exceeds"), 1),
        (BULK, answered(C.OK, responses=(chunk(C.INTERNAL),)), 1),
        (BULK, answered(C.OK, responses=(chunk(C.OK),)), 2),
    ],
    ids=["unknown", "internal", "slow", "unavailable-bare", "trailers", "chunk", "unanswered"],
)
def test_a_bad_answer_is_caught(rpc: Rpc, outcome: Outcome, chunks: int) -> None:
    assert problems(rpc, outcome, chunks)


@pytest.mark.parametrize(
    ("rpc", "outcome"),
    [
        (UNARY, answered(C.OK)),
        (UNARY, answered(C.INVALID_ARGUMENT)),
        (UNARY, answered(C.UNAVAILABLE, status=retry_info())),
        (BULK, answered(C.OK, responses=(chunk(C.OK), chunk(C.NOT_FOUND)))),
    ],
    ids=["ok", "invalid", "unavailable-retry", "chunks"],
)
def test_a_clear_answer_passes(rpc: Rpc, outcome: Outcome) -> None:
    chunks = len(outcome.responses) or 1
    assert not problems(rpc, outcome, chunks)


def test_the_summary_names_the_fields_refused_with_indices_folded() -> None:
    violation = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="points[3].snap_time"),
            error_details_pb2.BadRequest.FieldViolation(field="update_mask.paths[12]"),
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(violation)
    status = status_pb2.Status(code=C.INVALID_ARGUMENT.value[0], details=[detail])
    assert violated_fields(status) == ["points[i].snap_time", "update_mask.paths[i]"]
    ledger = Ledger()
    ledger.record(UNARY, "", [], (), answered(C.INVALID_ARGUMENT, status=status))
    assert "fields refused by QueryService.GetSeries: points[i].snap_time, update_mask" in (
        ledger.table()
    )
