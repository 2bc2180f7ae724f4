"""QueryRange's pages sent as the servicer builds them (grpc_service.add_to_server: a response
serialiser that passes bytes through) against the message path (the generated registration:
each page parsed into a QueryRangeResponse and serialised by protobuf): the same bytes, page
for page, in either view, for every kind of value, over restatements, as-of reads, page tokens
and per-call bounds (test_query_columns.py's histories and queries); over gRPC, what a client
receives is the same in both, and the interceptors still answer an error's status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis.data.v1 import values_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_query import bootstrap
from qis_query.entrypoints.grpc_service import QueryService, add_to_server
from qis_query.settings import QuerySettings
from qis_runtime.server import QisServer, ServiceBinding

from tests.service.query.test_query_columns import (
    DEFAULT_QUERY,
    KINDS,
    MINUTE,
    NAME,
    TOKENS,
    VERSION,
    History,
    Query,
    histories,
    queries,
    range_request,
    service_on,
    write_history,
)
from tests.service.query.test_query_structure_columns import structure_histories

VIEWS = [pb.VALUE_VIEW_POINTS, pb.VALUE_VIEW_COLUMNS]
PRICE_IN_EUR = values_pb2.DataValue(
    price=values_pb2.Price(value="99.5", currency="EUR")
).SerializeToString()
"""Another currency than the series': a page holding it is in the `other` case."""


class Sent:
    """The grpc.aio context of a streaming call, in process: keeps each reply as the bytes its
    serialiser sends (a message serialised, bytes as they are)."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    async def write(self, reply: bytes | pb.QueryRangeResponse) -> None:
        self.replies.append(reply if isinstance(reply, bytes) else reply.SerializeToString())


async def sent(service: QueryService, q: Query, view: int) -> list[bytes]:
    """Every reply of every call of the range, each call resuming with the previous one's last
    token."""
    out: list[bytes] = []
    token = ""
    for _ in range(1_000):
        context = Sent()
        await service.QueryRange(range_request(q, view, token), cast(Any, context))
        out.extend(context.replies)
        token = pb.QueryRangeResponse.FromString(context.replies[-1]).next_page_token
        if not token:
            return out
    raise AssertionError("the range did not end")


async def check_same_bytes(history: History, ranges: list[Query]) -> None:
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    for q in ranges:
        as_messages = service_on(store, q)
        as_built = service_on(store, q)
        as_built.send_pages_as_built()
        for view in VIEWS:
            built = await sent(as_built, q, view)
            assert built == await sent(as_messages, q, view)
            assert all(isinstance(r, bytes) for r in built)


@st.composite
def scenarios(draw: st.DrawFn, of: st.SearchStrategy[History]) -> tuple[History, list[Query]]:
    history = draw(of)
    return history, draw(st.lists(queries(history), min_size=1, max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(histories()))
def test_page_bytes_as_built_are_the_messages_serialised(
    scenario: tuple[History, list[Query]],
) -> None:
    """Prices, volumes, bars, options chains and corporate actions (the `other` case)."""
    asyncio.run(check_same_bytes(*scenario))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(structure_histories()))
def test_page_bytes_of_curves_and_surfaces_are_the_messages_serialised(
    scenario: tuple[History, list[Query]],
) -> None:
    """`structures` is field 15: written after the columns numbered below it."""
    asyncio.run(check_same_bytes(*scenario))


# --- over gRPC ----------------------------------------------------------------------------------


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, str]]:
    """(address as built, address of the message path), serving the same store: five prices,
    one restated in another currency."""
    snaps = [VERSION.snap_us + k * MINUTE for k in range(5)]
    first = [VERSION._replace(snap_us=s, version=1, position_from=10) for s in snaps]
    restated = [VERSION._replace(snap_us=snaps[1], value=PRICE_IN_EUR, position_from=13)]
    history = History(KINDS["price"][0], False, snaps, [first, restated])
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    started = []
    for register in (add_to_server, pb_grpc.add_QueryServiceServicer_to_server):
        handlers = bootstrap.build_handlers(store, QuerySettings(auth="dev"), tokens=TOKENS)
        binding = ServiceBinding(bootstrap.SERVICE_NAME, register, QueryService(handlers))
        server = QisServer("127.0.0.1:0", [binding])
        started.append((server, f"127.0.0.1:{await server.start()}"))
    yield started[0][1], started[1][1]
    for server, _ in started:
        await server.stop(0)


async def received(address: str, request: pb.QueryRangeRequest) -> list[bytes]:
    """The replies' bytes as the client receives them (no deserialiser)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call: grpc.aio.UnaryStreamMultiCallable[pb.QueryRangeRequest, bytes]
        call = channel.unary_stream(
            "/qis.data.v1.QueryService/QueryRange",
            request_serializer=pb.QueryRangeRequest.SerializeToString,
        )
        metadata = (("x-qis-user", "alice"),)
        return [bytes(r) async for r in call(request, metadata=metadata)]


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("page_size", [1, 0])
async def test_page_bytes_received_over_grpc_are_the_message_paths(
    servers: tuple[str, str], view: int, page_size: int
) -> None:
    as_built, as_messages = servers
    request = range_request(DEFAULT_QUERY, view)
    request.page_size = page_size
    replies = await received(as_built, request)
    assert replies == await received(as_messages, request)
    pages = [pb.QueryRangeResponse.FromString(r) for r in replies]
    assert all(p.next_page_token for p in pages[:-1])
    assert not pages[-1].next_page_token
    assert (view == pb.VALUE_VIEW_COLUMNS) == all(p.HasField("columns") for p in pages)


async def test_page_bytes_errors_keep_their_status_through_the_interceptors(
    servers: tuple[str, str],
) -> None:
    """A refused request and a token of another range: the same status on either path."""
    for request in (
        pb.QueryRangeRequest(series=f"{NAME}X", view=pb.VALUE_VIEW_COLUMNS),
        pb.QueryRangeRequest(series=NAME, page_token="bm90IGEgdG9rZW4="),
    ):
        codes = []
        for address in servers:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await received(address, request)
            codes.append((refused.value.code(), refused.value.details()))
        assert codes[0] == codes[1]
        assert codes[0][0] in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
