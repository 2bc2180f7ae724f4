"""BulkIngest reads each chunk ahead, making it into its command while the chunk before it is
decided (grpc_service._ReadAhead), over real gRPC (in-process server, the real SQLite event
store): the next chunk is made while the one before is written, yet the answers keep their
order and meaning, a chunk made badly is still refused in its turn, and the idle timeout still
counts from the last answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import qis_adapters.eventstore.sqlite as sqlite_module
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.entrypoints import grpc_service

from tests.integration.command_service_support import command_service
from tests.unit.adapters.test_edge_command_service import USER, _point

IDLE_S = 0.5
SLOW_APPEND_S = 0.4


def chunk(i: int, value: str = "100.5") -> pb.IngestPointsRequest:
    return pb.IngestPointsRequest(
        command_id=f"chunk-{i}",
        series="series/PX",
        source="sources/bbg",
        points=[_point(f"{2010 + i}-01-0{d}T21:00:00Z", value) for d in range(1, 4)],
    )


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_append: Callable[[], None]
) -> AsyncIterator[pb_grpc.CommandServiceAsyncStub]:
    """A command service whose store calls `on_append` (on its thread) before each append."""
    append = SqliteEventStore._append_sync

    def observed(self: SqliteEventStore, *args: Any) -> Any:
        on_append()
        return append(self, *args)

    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store, bulk_idle_timeout_s=IDLE_S) as running:
        monkeypatch.setattr(SqliteEventStore, "_append_sync", observed)
        yield running.stub


async def test_the_next_chunk_is_made_while_the_one_before_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the store's worker, as a large append is written (a small one runs on the loop
    itself when the store has not written for a while: eventstore/sqlite.py)."""
    monkeypatch.setattr(sqlite_module, "_INLINE_APPEND_BYTES", -1)
    made: list[str] = []
    mapped_while_writing: list[list[str]] = []
    ingest_command = grpc_service.ingest_command

    def counted(request: pb.IngestPointsRequest, v: list[Any]) -> Any:
        made.append(request.command_id)
        return ingest_command(request, v)

    def slow_append() -> None:
        time.sleep(SLOW_APPEND_S)  # the loop is free meanwhile: the next chunk is read
        mapped_while_writing.append(list(made))

    monkeypatch.setattr(grpc_service, "ingest_command", counted)
    async with serve(tmp_path, monkeypatch, slow_append) as stub:
        requests = [chunk(i) for i in range(4)]
        answers = [a async for a in stub.BulkIngest(iter(requests), metadata=USER)]
        assert [a.command_id for a in answers] == [r.command_id for r in requests]
        assert all(a.result.accepted == 3 for a in answers)
        # While chunk i was written, chunk i + 1 had been made already (the client sent them
        # all at once); the last one had none after it.
        for i, seen in enumerate(mapped_while_writing[:-1]):
            assert f"chunk-{i + 1}" in seen, (i, seen)
        assert made == [r.command_id for r in requests]  # each made once, in order


async def test_a_chunk_read_ahead_is_refused_in_its_turn_and_the_others_stand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = chunk(1)
    broken.points[2].value.price.value = "1e"
    unnamed = chunk(3)
    unnamed.command_id = ""
    requests = [chunk(0), broken, chunk(2), unnamed, chunk(4)]
    async with serve(tmp_path, monkeypatch, lambda: None) as stub:
        answers = [a async for a in stub.BulkIngest(iter(requests), metadata=USER)]
    assert [a.WhichOneof("outcome") for a in answers] == [
        "result",
        "error",
        "result",
        "error",
        "result",
    ]
    assert answers[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "points[2].value.price.value" in answers[1].error.message
    assert "command_id" in answers[3].error.message
    assert [a.result.accepted for a in answers if a.HasField("result")] == [3, 3, 3]


async def test_a_bug_in_making_a_chunk_fails_that_chunk_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_command = grpc_service.ingest_command

    def buggy(request: pb.IngestPointsRequest, v: list[Any]) -> Any:
        if request.command_id == "chunk-1":
            raise ZeroDivisionError("a bug")
        return ingest_command(request, v)

    monkeypatch.setattr(grpc_service, "ingest_command", buggy)
    async with serve(tmp_path, monkeypatch, lambda: None) as stub:
        answers = [
            a async for a in stub.BulkIngest(iter([chunk(0), chunk(1), chunk(2)]), metadata=USER)
        ]
    assert [a.WhichOneof("outcome") for a in answers] == ["result", "error", "result"]
    assert answers[1].error.code == grpc.StatusCode.INTERNAL.value[0]
    assert "a bug" not in answers[1].error.message  # a reference, not the bug's text


async def test_the_idle_timeout_counts_from_the_last_answer_not_from_the_read_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks slower to write than the idle timeout, each sent once the one before is answered:
    the read of the next one began with the write, longer ago than the timeout, and the stream
    stays open. Then a client that sends nothing for longer is cut off, its chunks kept."""
    outbox: asyncio.Queue[pb.IngestPointsRequest] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.IngestPointsRequest]:
        while True:
            yield await outbox.get()

    async with serve(tmp_path, monkeypatch, lambda: time.sleep(IDLE_S * 1.5)) as stub:
        stream = stub.BulkIngest(requests(), metadata=USER)
        for i in range(3):
            await outbox.put(chunk(i))
            answer = await stream.read()
            assert isinstance(answer, pb.BulkIngestResponse), answer
            assert answer.result.accepted == 3, answer
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stream.read()
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        again = await stub.IngestPoints(chunk(2), metadata=USER)
        assert again.duplicate
