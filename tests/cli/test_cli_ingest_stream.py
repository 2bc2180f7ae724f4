"""The BulkIngest client at stub level (grpc_testing plays the server): pipelining, snaps sent
as instants with the offset the file stated, rows whose snap cannot be read refused before
sending, a rejected chunk's valid rows re-sent under a derived id, and the summary."""

from __future__ import annotations

import io
import threading

import grpc
import grpc_testing
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import command_service_pb2, command_service_pb2_grpc
from qis_cli.chunks import ImportKey, retry_id
from qis_cli.ingest import IngestSummary, IngestTarget, render_summary, run_ingest
from qis_cli.kinds import ValueKind
from qis_cli.progress import Progress
from qis_cli.readers import Row

_SERVICE = command_service_pb2.DESCRIPTOR.services_by_name["CommandService"]
_BULK_INGEST = _SERVICE.methods_by_name["BulkIngest"]


def _bad_request(field: str, description: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            ]
        )
    )
    return status_pb2.Status(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        message=f"{field}: {description}",
        details=[detail],
    )


def _result(
    command_id: str, position: int, accepted: int, flagged: int = 0
) -> command_service_pb2.BulkIngestResponse:
    return command_service_pb2.BulkIngestResponse(
        command_id=command_id,
        result=command_service_pb2.IngestPointsResponse(
            commit_position=position, accepted=accepted, flagged=flagged
        ),
    )


def test_a_rejected_chunk_is_reported_and_its_valid_rows_resent() -> None:
    channel = grpc_testing.channel([_SERVICE], grpc_testing.strict_real_time())
    stub = command_service_pb2_grpc.CommandServiceStub(channel)
    target = IngestTarget("spx", "csv", ValueKind.PRICE)
    rows = [Row(n, f"2024-01-0{n}T21:00:00Z", (f"{n}.5", "")) for n in range(2, 6)]
    summary = IngestSummary("line")
    worker = threading.Thread(
        target=run_ingest,
        args=(
            stub,
            target,
            rows,
            ImportKey("ab" * 32, "spx", "csv", 3),
            (("x-qis-user", "tester"),),
            summary,
            Progress(io.StringIO()),
            2,
        ),
    )
    worker.start()

    metadata, rpc = channel.take_stream_stream(_BULK_INGEST)
    assert ("x-qis-user", "tester") in metadata
    # Both chunks are on the wire before either is answered: the client pipelines.
    first, second = rpc.take_request(), rpc.take_request()
    assert (first.series, first.source) == ("series/spx", "sources/csv")
    assert [p.value.price.value for p in first.points] == ["2.5", "3.5", "4.5"]
    assert first.points[0].snap_time == timestamp_pb2.Timestamp(seconds=1_704_229_200)
    assert len(second.points) == 1

    nan = "'NaN' is not a finite decimal number"
    rpc.send_response(
        command_service_pb2.BulkIngestResponse(
            command_id=first.command_id, error=_bad_request("points[1].value.price.value", nan)
        )
    )
    rpc.send_response(_result(second.command_id, position=7, accepted=1))
    resent = rpc.take_request()
    assert resent.command_id == retry_id(first.command_id)
    assert [p.snap_time for p in resent.points] == [
        first.points[0].snap_time,
        first.points[2].snap_time,
    ]
    rpc.send_response(_result(resent.command_id, position=9, accepted=2, flagged=1))
    rpc.requests_closed()
    rpc.terminate((), grpc.StatusCode.OK, "")
    worker.join(10)
    assert not worker.is_alive()

    assert (summary.rows_read, summary.accepted, summary.flagged) == (4, 3, 1)
    assert (summary.rejected_rows, summary.rejected_chunks, summary.resent_chunks) == (1, 1, 1)
    assert summary.last_position == 9
    assert summary.exit_code == 1
    assert f"line 3: value: {nan}" in render_summary(summary, "p.csv", target)


def test_a_broken_stream_ends_in_a_summary_not_a_traceback() -> None:
    channel = grpc_testing.channel([_SERVICE], grpc_testing.strict_real_time())
    stub = command_service_pb2_grpc.CommandServiceStub(channel)
    target = IngestTarget("spx", "csv", ValueKind.VOLUME)
    rows = [Row(n, "2024-01-01T21:00:00Z", ("100", "")) for n in range(2, 5)]
    summary = IngestSummary("line")
    worker = threading.Thread(
        target=run_ingest,
        args=(
            stub,
            target,
            rows,
            ImportKey("cd" * 32, "spx", "csv", 1),
            (("x-qis-user", "tester"),),
            summary,
            Progress(io.StringIO()),
            1,
        ),
    )
    worker.start()

    _, rpc = channel.take_stream_stream(_BULK_INGEST)
    first = rpc.take_request()
    assert first.points[0].value.volume.quantity == "100"
    rpc.send_response(_result(first.command_id, position=3, accepted=1))
    # With one chunk in flight at most, the next request proves the answer was taken in.
    rpc.take_request()
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "connection reset")
    worker.join(10)
    assert not worker.is_alive()

    assert summary.accepted == 1
    assert summary.exit_code == 4, "unavailable: run it again later"
    assert summary.stopped is not None
    assert summary.stopped.startswith("UNAVAILABLE: connection reset")
    assert (
        "Running the same command again (same file, same --chunk-size) resumes" in summary.stopped
    )


def test_unreadable_snaps_are_refused_and_the_other_rows_sent() -> None:
    channel = grpc_testing.channel([_SERVICE], grpc_testing.strict_real_time())
    stub = command_service_pb2_grpc.CommandServiceStub(channel)
    target = IngestTarget("spx", "csv", ValueKind.PRICE)
    rows = [
        Row(2, "2024-03-01T16:00:00-05:00", ("1.5", "")),
        Row(3, "2024-03-01T16:00:00", ("2.5", "")),
        Row(4, "2024-03-04T21:00:00.000250Z", ("3.5", "")),
        Row(5, "2024-03-05T21:00:00.000000001Z", ("4.5", "")),
    ]
    summary = IngestSummary("line", {"snap": "Date"})
    worker = threading.Thread(
        target=run_ingest,
        args=(
            stub,
            target,
            rows,
            ImportKey("ef" * 32, "spx", "csv", 10),
            (("x-qis-user", "tester"),),
            summary,
            Progress(io.StringIO()),
        ),
    )
    worker.start()

    _, rpc = channel.take_stream_stream(_BULK_INGEST)
    request = rpc.take_request()
    # 16:00 at -05:00 is 21:00Z, with the offset kept; a UTC snap leaves the offset unset.
    assert [(p.snap_time.ToJsonString(), p.utc_offset) for p in request.points] == [
        ("2024-03-01T21:00:00Z", duration_pb2.Duration(seconds=-18_000)),
        ("2024-03-04T21:00:00.000250Z", duration_pb2.Duration()),
    ]
    assert [p.value.price.value for p in request.points] == ["1.5", "3.5"]
    rpc.send_response(_result(request.command_id, position=5, accepted=2))
    rpc.requests_closed()
    rpc.terminate((), grpc.StatusCode.OK, "")
    worker.join(10)
    assert not worker.is_alive()

    assert (summary.rows_read, summary.accepted, summary.rejected_rows) == (4, 2, 2)
    assert summary.rejected_chunks == 0
    assert summary.exit_code == 1
    text = render_summary(summary, "p.csv", target)
    assert "line 3: Date: '2024-03-01T16:00:00' has no UTC offset: add 'Z' or '+hh:mm'" in text
    assert "line 5: Date: '2024-03-05T21:00:00.000000001Z' is finer than microsecond" in text


def test_a_file_of_unreadable_snaps_sends_nothing() -> None:
    channel = grpc_testing.channel([_SERVICE], grpc_testing.strict_real_time())
    stub = command_service_pb2_grpc.CommandServiceStub(channel)
    target = IngestTarget("spx", "csv", ValueKind.PRICE)
    rows = [Row(n, f"2024-03-0{n}T16:00:00", ("1", "")) for n in range(2, 5)]
    summary = IngestSummary("line")
    worker = threading.Thread(
        target=run_ingest,
        args=(
            stub,
            target,
            rows,
            ImportKey("01" * 32, "spx", "csv", 10),
            (("x-qis-user", "tester"),),
            summary,
            Progress(io.StringIO()),
        ),
    )
    worker.start()

    _, rpc = channel.take_stream_stream(_BULK_INGEST)
    # Half-closed at once: had a chunk been sent, the client would wait for its answer.
    rpc.requests_closed()
    rpc.terminate((), grpc.StatusCode.OK, "")
    worker.join(10)
    assert not worker.is_alive()

    assert (summary.rows_read, summary.rejected_rows, summary.chunks) == (3, 3, 0)
    assert not summary.nothing_done, "the refusals are the summary"
    assert summary.exit_code == 1
    assert render_summary(summary, "p.csv", target).count("has no UTC offset") == 3
