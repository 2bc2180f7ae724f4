"""A read store that fails under the query service (its disk gone, its file locked) answers
UNAVAILABLE with RetryInfo, over gRPC, instead of an internal error: the same error policy as
the command side, for every query."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_query.settings import QuerySettings

from tests.e2e.harness import as_user
from tests.service.query.readmodel import SERIES, scenario_service


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[q_grpc.QueryServiceAsyncStub]:
    settings = QuerySettings(auth="dev", query_address="127.0.0.1:0")
    async with scenario_service(tmp_path / "read.db", settings) as stub:
        yield stub


@pytest.mark.parametrize("code", [sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY])
async def test_a_failing_read_store_is_unavailable_with_retry_info(
    stub: q_grpc.QueryServiceAsyncStub, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    async def failing(self: SqliteReadStore, *_: object) -> None:
        error = sqlite3.OperationalError("the read store's disk or lock failed")
        error.sqlite_errorcode = code
        raise error

    monkeypatch.setattr(SqliteReadStore, "_run", failing)
    call = stub.GetSeries(q.GetSeriesRequest(name=f"series/{SERIES}"), metadata=as_user("r"))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value.details()
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)


async def test_a_huge_invalid_name_is_answered_invalid_argument(
    stub: q_grpc.QueryServiceAsyncStub,
) -> None:
    """The whole name once went into the message: 100 KB of it outgrew gRPC's trailer limit and
    the client saw RESOURCE_EXHAUSTED instead of the answer."""
    call = stub.GetSeries(q.GetSeriesRequest(name="x" * 100_000), metadata=as_user("r"))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
