"""No half-write on the command side, over real gRPC (in-process server, the real SQLite
event store with its faults injected): a command whose events were committed but whose answer
was lost to a store error, a warm bucket's cache after a failed append, and BulkIngest faults
at the phases test_command_faults.py does not reach (the first chunk, a chunk read ahead while
the one before it fails)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.sqlite import SqliteEventStore

from tests.integration.command_service_support import command_service
from tests.integration.test_command_faults import cast_response, days, details
from tests.service.projector.projector_support import SqliteFaults
from tests.unit.adapters.test_edge_command_service import USER, _point


@dataclass
class Command:
    stub: pb_grpc.CommandServiceAsyncStub
    store: SqliteEventStore
    faults: SqliteFaults

    async def ingest(self, command_id: str, snaps: list[str], value: str = "100.5") -> Any:
        return await self.stub.IngestPoints(request(command_id, snaps, value), metadata=USER)


def request(command_id: str, snaps: list[str], value: str = "100.5") -> pb.IngestPointsRequest:
    return pb.IngestPointsRequest(
        command_id=command_id,
        series="series/PX",
        source="sources/bbg",
        points=[_point(s, value) for s in snaps],
    )


def io_error() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = sqlite3.SQLITE_IOERR
    return error


@pytest.fixture
async def command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Command]:
    faults = SqliteFaults()
    connect = sqlite3.connect

    def faulty_connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(database, *args, factory=faults.connection_class(), **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", faulty_connect)
        store = await SqliteEventStore.open(tmp_path / "events.db", busy_timeout_ms=200)
    async with command_service(store) as running:
        yield Command(running.stub, store, faults)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


@pytest.mark.parametrize("points", [1, 300], ids=["inline-append", "worker-append"])
async def test_a_command_committed_but_answered_unavailable_is_a_duplicate_on_retry(
    command: Command, monkeypatch: pytest.MonkeyPatch, points: int
) -> None:
    """The store commits, then fails before it answers (the reply lost): the client sees a
    retryable status, its retry gets the first outcome, and the warm bucket's next command sees
    the committed events (the cache was left behind the store, not ahead or beside it)."""
    snaps = days(2021, points)
    assert (await command.ingest("warm", ["2020-12-31T21:00:00Z"])).accepted == 1
    head = await command.store.head_position()
    append = SqliteEventStore._append_sync

    def committed_then_lost(self: SqliteEventStore, *args: Any) -> Any:
        append(self, *args)
        raise io_error()

    with monkeypatch.context() as patch:
        patch.setattr(SqliteEventStore, "_append_sync", committed_then_lost)
        error = await refused(command.stub.IngestPoints(request("lost", snaps), metadata=USER))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    committed = await command.store.head_position()
    assert committed > head  # it did commit
    again = await command.ingest("lost", snaps)
    assert (again.duplicate, again.commit_position) == (True, committed)
    assert await command.store.head_position() == committed  # nothing appended twice
    later = await command.ingest("later", ["2022-01-03T21:00:00Z"])
    assert (later.duplicate, later.accepted) == (False, 1)


async def test_a_failed_append_leaves_no_trace_in_the_warm_bucket(command: Command) -> None:
    """A disk-full append into a cached bucket: the bucket's next command is decided on the
    committed state only, and the failed command's resend is applied once."""
    assert (await command.ingest("warm", ["2020-01-01T21:00:00Z"])).accepted == 1
    head = await command.store.head_position()
    command.faults.disk_full = True
    error = await refused(command.stub.IngestPoints(request("full", days(2020)), metadata=USER))
    command.faults.disk_full = False
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await command.store.head_position() == head
    other = await command.ingest("other", ["2020-01-02T21:00:00Z"], "99")
    assert (other.duplicate, other.accepted) == (False, 1)
    resent = await command.ingest("full", days(2020))
    assert (resent.duplicate, resent.accepted) == (False, 300)
    assert (await command.ingest("full", days(2020))).commit_position == resent.commit_position


async def test_a_fault_on_the_first_bulk_chunk_leaves_the_stream_usable(command: Command) -> None:
    outbox: asyncio.Queue[pb.IngestPointsRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.IngestPointsRequest]:
        while (item := await outbox.get()) is not None:
            yield item

    head = await command.store.head_position()
    stream = command.stub.BulkIngest(requests(), metadata=USER)
    command.faults.disk_full = True
    await outbox.put(request("chunk-0", days(2010)))
    first = cast_response(await stream.read())
    command.faults.disk_full = False
    assert first.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "RetryInfo" in details(first.error)
    assert await command.store.head_position() == head
    for command_id, year in (("chunk-1", 2011), ("chunk-0", 2010)):
        await outbox.put(request(command_id, days(year)))
        answer = cast_response(await stream.read())
        assert (answer.command_id, answer.result.accepted) == (command_id, 300)
    await outbox.put(None)
    assert await stream.read() == grpc.aio.EOF


async def test_a_chunk_read_ahead_while_the_one_before_fails_is_decided_on_its_own(
    command: Command, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All chunks sent at once, so each is read ahead while the one before is written; the
    store fails the second's append only."""
    append = SqliteEventStore._append_sync
    calls = 0

    def second_fails(self: SqliteEventStore, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise io_error()
        return append(self, *args)

    monkeypatch.setattr(SqliteEventStore, "_append_sync", second_fails)
    chunks = [request(f"chunk-{i}", days(2010 + i)) for i in range(4)]
    answers = [a async for a in command.stub.BulkIngest(iter(chunks), metadata=USER)]
    assert [a.command_id for a in answers] == [c.command_id for c in chunks]
    codes = [a.error.code for a in answers]
    assert codes == [0, grpc.StatusCode.UNAVAILABLE.value[0], 0, 0]
    assert [a.result.accepted for a in answers] == [300, 0, 300, 300]
    resent = await command.ingest("chunk-1", days(2011))
    assert (resent.duplicate, resent.accepted) == (False, 300)
    for chunk in chunks:  # every chunk now committed once
        assert (await command.stub.IngestPoints(chunk, metadata=USER)).duplicate


@pytest.mark.parametrize("points", [1, 300], ids=["inline-append", "worker-append"])
async def test_a_retry_sent_while_the_first_call_is_in_flight_is_applied_once(
    command: Command, points: int
) -> None:
    """A client whose deadline passed resends the command id while the first call still runs:
    one of the two is applied, the other answers its outcome as a duplicate."""
    snaps = days(2023, points)
    head = await command.store.head_position()
    first, second = await asyncio.gather(
        command.ingest("twice", snaps), command.ingest("twice", snaps)
    )
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    assert first.commit_position == second.commit_position
    assert first.accepted == second.accepted == points
    assert head < first.commit_position == await command.store.head_position()  # appended once
    assert (await command.ingest("twice", snaps)).commit_position == first.commit_position
