"""A read store failing under qis-query in the middle of its streaming calls, and clients letting
go of a Flight stream half-read: every call still ends with a status a client can act on
(UNAVAILABLE with RetryInfo, never UNKNOWN), a failed Subscribe gives its slot back, and a
cancelled DoGet leaves no task on the query loop nor thread behind.

The store is the real SQLite read store over the Flight tests' read model; its failures are
injected where every store call goes through (SqliteReadStore._run), after a number of calls,
so that each phase of a call (catalogue check, first read, later reads) meets one."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pyarrow.flight as fl
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_query.settings import QuerySettings

from tests.e2e.harness import as_user
from tests.service.query.readmodel import SERIES, scenario_service
from tests.service.query.test_query_flight import LONG, LONG_POINTS, PX, USER, write_model
from tests.support.segmenting import Segmenting
from tests.support.servers import QueryPorts, query_ports

WAIT_S = 30.0  # generous: the machine is shared
RUN = SqliteReadStore._run


@pytest.fixture
async def ports(tmp_path: Path) -> AsyncIterator[QueryPorts]:
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    await store.set_active_generation("g1")
    await write_model(Segmenting(store))  # type: ignore[arg-type]
    settings = QuerySettings(
        auth="dev",
        query_address="127.0.0.1:0",
        flight_address="127.0.0.1:0",
        query_max_wait_s=0.2,
    )
    try:
        async with query_ports(store, settings) as ports:
            yield ports
    finally:
        await store.close()


def fail_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    """The store answers `calls` more calls, then fails each as a disk I/O error would."""
    left = [calls]

    async def run(self: SqliteReadStore, *args: Any, **kwargs: Any) -> Any:
        if left[0] <= 0:
            error = sqlite3.OperationalError("disk I/O error")
            error.sqlite_errorcode = sqlite3.SQLITE_IOERR
            raise error
        left[0] -= 1
        return await RUN(self, *args, **kwargs)

    monkeypatch.setattr(SqliteReadStore, "_run", run)


def retry_info_in(status: status_pb2.Status) -> bool:
    return any(d.Unpack(error_details_pb2.RetryInfo()) for d in status.details)


def do_get(location: str, series_id: str) -> Exception | int:
    """The rows of a whole DoGet of one series, or the error it ended with."""
    with fl.FlightClient(location) as client:
        options = fl.FlightCallOptions(headers=USER, timeout=WAIT_S)
        ticket = fl.Ticket(json.dumps({"series": [f"series/{series_id}"]}).encode())
        try:
            return int(client.do_get(ticket, options).read_all().num_rows)
        except Exception as error:  # the error is what is judged
            return error


@pytest.mark.parametrize("series_id", [PX, LONG])
@pytest.mark.parametrize("calls", [0, 1])
async def test_a_store_failing_before_the_first_batch_is_flight_unavailable_with_retry_info(
    ports: QueryPorts, monkeypatch: pytest.MonkeyPatch, series_id: str, calls: int
) -> None:
    fail_after(monkeypatch, calls)
    error = await asyncio.to_thread(do_get, ports.flight, series_id)
    assert isinstance(error, fl.FlightUnavailableError), error
    assert str(error).startswith("UNAVAILABLE: "), error
    status = status_pb2.Status.FromString(error.extra_info)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert retry_info_in(status)
    monkeypatch.setattr(SqliteReadStore, "_run", RUN)
    # The endpoint is not left broken: the same read answers once the store is back.
    assert await asyncio.to_thread(do_get, ports.flight, series_id) in (6, LONG_POINTS)


async def test_a_do_get_cancelled_after_its_first_batch_leaves_no_task_or_thread(
    ports: QueryPorts,
) -> None:
    def read_one_batch_and_cancel() -> int:
        with fl.FlightClient(ports.flight) as client:
            options = fl.FlightCallOptions(headers=USER, timeout=WAIT_S)
            ticket = fl.Ticket(json.dumps({"series": [f"series/{LONG}"]}).encode())
            reader = client.do_get(ticket, options)
            rows = int(reader.read_chunk().data.num_rows)
            reader.cancel()
            return rows

    # One whole read first: whatever the first call starts for good (pools) is in the baseline.
    assert await asyncio.to_thread(do_get, ports.flight, LONG) == LONG_POINTS
    tasks, threads = asyncio.all_tasks(), set(threading.enumerate())
    for _ in range(5):
        assert await asyncio.to_thread(read_one_batch_and_cancel) > 0
    # Whatever the cancelled calls left running must end by itself, in bounded time.
    left = asyncio.all_tasks() - tasks - {asyncio.current_task()}
    if left:
        _, pending = await asyncio.wait(left, timeout=WAIT_S)
        assert not pending, f"a cancelled DoGet left tasks behind: {pending}"
    # The loop's default executor ("asyncio_N", which this test's to_thread calls use too) keeps
    # its idle workers for good: they are a pool, not something a call left behind.
    started = set(threading.enumerate()) - threads
    for thread in (t for t in started if not t.name.startswith("asyncio_")):
        await asyncio.to_thread(thread.join, WAIT_S)
        assert not thread.is_alive(), f"a cancelled DoGet left a thread behind: {thread}"


async def drain(call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


@pytest.fixture
async def feed_stub(tmp_path: Path) -> AsyncIterator[q_grpc.QueryServiceAsyncStub]:
    """The query service over the restatement scenario, whose change feed holds seven changes of
    SERIES; a caller may hold one subscription."""
    settings = QuerySettings(
        auth="dev", query_address="127.0.0.1:0", query_max_subscriptions_per_caller=1
    )
    async with scenario_service(tmp_path / "feed.db", settings) as stub:
        yield stub


async def test_a_subscription_whose_store_fails_after_a_batch_is_unavailable_and_frees_its_slot(
    feed_stub: q_grpc.QueryServiceAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next subscription of the same caller is admitted only if the failed one gave its
    slot back (the fixture's limit is one)."""
    request = q.SubscribeRequest(series=[f"series/{SERIES}"])
    call = feed_stub.Subscribe(request, metadata=as_user("r"), timeout=WAIT_S)
    first: q.SubscribeResponse = await call.read()  # type: ignore[assignment]
    assert first.values
    fail_after(monkeypatch, 0)  # the store fails under the subscription's next read
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await drain(call)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value.details()
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    assert retry_info_in(status)

    monkeypatch.setattr(SqliteReadStore, "_run", RUN)
    again = feed_stub.Subscribe(request, metadata=as_user("r"), timeout=WAIT_S)
    resumed: q.SubscribeResponse = await again.read()  # type: ignore[assignment]
    assert resumed.values, "the slot of the failed subscription was not given back"
    again.cancel()
