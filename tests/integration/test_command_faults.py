"""Storage faults of the command side, seen by a client over real gRPC (in-process server, the
real SQLite event store): a full database, a read-only one and a locked one answer a retryable
status with RetryInfo, per chunk in BulkIngest; nothing is half-written; a resend after the
fault clears completes exactly once. And the error policy's other edges: undecodable bytes, a
doubled identity header, a bug in a servicer."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.sqlite import SqliteEventStore

from tests.integration.command_service_support import command_service
from tests.service.projector.projector_support import SqliteFaults
from tests.unit.adapters.test_edge_command_service import USER, _point, _series


@dataclass
class Command:
    stub: pb_grpc.CommandServiceAsyncStub
    channel: grpc.aio.Channel
    store: SqliteEventStore
    path: Path

    async def ingest(self, command_id: str, snaps: list[str]) -> pb.IngestPointsResponse:
        request = pb.IngestPointsRequest(
            command_id=command_id,
            series="series/PX",
            source="sources/bbg",
            points=[_point(s) for s in snaps],
        )
        response: pb.IngestPointsResponse = await self.stub.IngestPoints(request, metadata=USER)
        return response


def days(year: int, count: int = 300) -> list[str]:
    """Enough daily closes that their events need new pages of the database: a fault of a
    full disk shows only when the file has to grow."""
    first = date(year, 1, 1)
    return [f"{first + timedelta(days=i)}T21:00:00Z" for i in range(count)]


def cast_response(answer: object) -> pb.BulkIngestResponse:
    assert isinstance(answer, pb.BulkIngestResponse), answer  # not EOF
    return answer


def details(status: status_pb2.Status) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for detail in status.details:
        for kind in (error_details_pb2.RetryInfo, error_details_pb2.ErrorInfo):
            message = kind()
            if detail.Unpack(message):
                out[kind.__name__] = message
    return out


@pytest.fixture
def faults() -> SqliteFaults:
    return SqliteFaults()


@pytest.fixture
async def command(
    tmp_path: Path, faults: SqliteFaults, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Command]:
    connect = sqlite3.connect

    def faulty_connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(database, *args, factory=faults.connection_class(), **kwargs)

    path = tmp_path / "events.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", faulty_connect)
        store = await SqliteEventStore.open(path, busy_timeout_ms=200)
    async with command_service(store) as running:
        yield Command(running.stub, running.channel, store, path)


async def _refused(call: Any) -> tuple[grpc.StatusCode, status_pb2.Status]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    status = await rpc_status.aio.from_call(call)
    assert isinstance(status, status_pb2.Status)
    return error.value.code(), status


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        ("disk_full", grpc.StatusCode.RESOURCE_EXHAUSTED, "STORE_FULL"),
        ("read_only", grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
    ],
)
async def test_a_store_fault_is_retryable_and_a_resend_completes_once(
    command: Command, faults: SqliteFaults, fault: str, code: grpc.StatusCode, reason: str
) -> None:
    head = await command.store.head_position()
    setattr(faults, fault, True)
    call = command.stub.IngestPoints(
        pb.IngestPointsRequest(
            command_id="load-1",
            series="series/PX",
            source="sources/bbg",
            points=[_point(s) for s in days(2020)],
        ),
        metadata=USER,
    )
    got, status = await _refused(call)
    assert got == code
    found = details(status)
    assert found["ErrorInfo"].reason == reason
    assert found["RetryInfo"].retry_delay.seconds + found["RetryInfo"].retry_delay.nanos > 0
    setattr(faults, fault, False)
    assert await command.store.head_position() == head  # nothing half-written
    first = await command.ingest("load-1", days(2020))
    again = await command.ingest("load-1", days(2020))
    assert (first.accepted, first.duplicate, again.duplicate) == (300, False, True)
    assert again.commit_position == first.commit_position


def _disk_full(faults: SqliteFaults, on: bool, _: pytest.MonkeyPatch) -> None:
    faults.disk_full = on


def _store_gone(_: SqliteFaults, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database file's disk goes away under the store (an I/O error on every write),
    then comes back."""
    if not on:
        monkeypatch.undo()
        return

    def gone(*_: object) -> None:
        error = sqlite3.OperationalError("disk I/O error")
        error.sqlite_errorcode = sqlite3.SQLITE_IOERR
        raise error

    monkeypatch.setattr(SqliteEventStore, "_append_sync", gone)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        pytest.param(_disk_full, grpc.StatusCode.RESOURCE_EXHAUSTED, id="disk-full"),
        pytest.param(_store_gone, grpc.StatusCode.UNAVAILABLE, id="store-gone-and-back"),
    ],
)
async def test_a_store_fault_fails_only_the_chunks_it_met_in_bulk_ingest(
    command: Command,
    faults: SqliteFaults,
    fault: Callable[[SqliteFaults, bool, pytest.MonkeyPatch], None],
    code: grpc.StatusCode,
) -> None:
    def chunk(i: int) -> pb.IngestPointsRequest:
        return pb.IngestPointsRequest(
            command_id=f"chunk-{i}",
            series="series/PX",
            source="sources/bbg",
            points=[_point(s) for s in days(2010 + i)],
        )

    outbox: asyncio.Queue[pb.IngestPointsRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.IngestPointsRequest]:
        while (item := await outbox.get()) is not None:
            yield item

    stream = command.stub.BulkIngest(requests(), metadata=USER)
    answers: list[pb.BulkIngestResponse] = []
    with pytest.MonkeyPatch.context() as patch:
        for i in range(3):
            fault(faults, i == 1, patch)  # only the second chunk meets the fault
            await outbox.put(chunk(i))
            answers.append(cast_response(await stream.read()))
    await outbox.put(chunk(1))  # the client resends what failed, on the same stream
    answers.append(cast_response(await stream.read()))
    await outbox.put(None)
    codes = [a.error.code if a.HasField("error") else 0 for a in answers]
    assert codes == [0, code.value[0], 0, 0]
    assert "RetryInfo" in details(answers[1].error)
    assert [a.result.accepted for a in answers if a.HasField("result")] == [300, 300, 300]
    again = await command.ingest("chunk-1", days(2011))  # and it was applied exactly once
    assert again.duplicate


async def test_a_locked_store_is_unavailable_then_the_resend_completes(command: Command) -> None:
    blocker = sqlite3.connect(command.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past busy_timeout
        code, status = await _refused(
            command.stub.IngestPoints(
                pb.IngestPointsRequest(
                    command_id="load-2",
                    series="series/PX",
                    source="sources/bbg",
                    points=[_point("2024-03-01T21:00:00Z")],
                ),
                metadata=USER,
            )
        )
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "RetryInfo" in details(status)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert (await command.ingest("load-2", ["2024-03-01T21:00:00Z"])).accepted == 1


# --- the error policy's other edges ---


async def test_undecodable_bytes_are_invalid_argument_and_logged_once(
    command: Command, caplog: pytest.LogCaptureFixture
) -> None:
    raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = command.channel.unary_unary(
        "/qis.data.v1.CommandService/IngestPoints",
        request_serializer=None,
        response_deserializer=None,
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            code, _ = await _refused(raw(b"\xff\xff\xff\xff not a protobuf", metadata=USER))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 1  # once per peer and minute, whatever a client sends
    assert lines[0].exc_info is None  # and without a traceback


async def test_two_identity_headers_are_invalid_argument(command: Command) -> None:
    code, _ = await _refused(
        command.stub.DefineSeries(
            pb.DefineSeriesRequest(command_id="x", series_id="PY", series=_series()),
            metadata=(("x-qis-user", "alice"), ("x-qis-user", "bob")),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_bug_is_internal_with_an_error_id_in_the_answer_and_the_log(
    command: Command, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> Iterator[object]:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("qis_command.application.handlers._conform", broken)
    with caplog.at_level(logging.ERROR):
        code, status = await _refused(
            command.stub.IngestPoints(
                pb.IngestPointsRequest(
                    command_id="bug",
                    series="series/PX",
                    source="sources/bbg",
                    points=[_point("2024-03-01T21:00:00Z")],
                ),
                metadata=USER,
            )
        )
    assert code == grpc.StatusCode.INTERNAL
    error_id = details(status)["ErrorInfo"].metadata["error_id"]
    assert error_id in status.message
    assert any(error_id in r.getMessage() for r in caplog.records)
