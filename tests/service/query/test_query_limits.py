"""What one call or one caller may cost the query service (issue 8): a QueryRange call streams a
bounded number of points and ends with a token that continues, in messages of page_size cut
from larger store reads; Subscribe streams are capped per caller and in all; a subscription's
batches are bounded in bytes. Then over gRPC, in process: the statuses, and the request size
limit, checked on the bytes before a request is parsed, and the keepalive that frees the
subscription of a client that vanished."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import grpc
import grpc.aio
import pytest
from google.protobuf import timestamp_pb2
from google.type import date_pb2
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis.data.v1 import values_pb2
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import AsOf, ProjectionBatch, Segment
from qis_query import bootstrap
from qis_query.application.access import admit_all
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.limits import QueryLimits, TooManySubscriptions
from qis_query.application.ranges import RangePage, RangeQuery
from qis_query.application.subscription import FIRST_READ, FeedBatch, FeedSettings
from qis_query.entrypoints.grpc_service import QueryService
from qis_query.settings import QuerySettings
from qis_runtime.server import QisServer, ServiceBinding

from tests.contract.readstore.test_readstore_contract import SNAPS, change, version
from tests.service.query.conftest import FEED, MAX_WAIT_S
from tests.service.query.readmodel import HEAD, OTHER, SERIES

WHOLE = RangeQuery(SERIES)  # five points
WITHIN_S = 2.0
ANY_PORT = "127.0.0.1:0"


class CountingReader(InMemoryReadStore):
    """Counts the store reads of ranges."""

    reads = 0

    async def segments(
        self, series_id: str, from_bucket_us: int, end_us: int, as_of: AsOf, limit: int
    ) -> list[Segment] | None:
        self.reads += 1
        return await super().segments(series_id, from_bucket_us, end_us, as_of, limit)


def handlers(
    writer: InMemoryReadStore, limits: QueryLimits, feed: FeedSettings = FEED
) -> tuple[QueryHandlers, CountingReader]:
    reader = CountingReader(writer.database)
    return QueryHandlers(reader, ReadPosition(reader, MAX_WAIT_S), feed, limits), reader


async def call(queries: QueryHandlers, page_size: int, page_token: str = "") -> list[RangePage]:
    read = await queries.query_range(WHOLE, page_size, page_token, 0)
    return [page async for page in read.value]


def snaps(pages: list[RangePage]) -> list[list[int]]:
    return [[SNAPS.index(s) for s in p.rows.column("snap_us").to_pylist()] for p in pages]


# --- QueryRange: points per call ---------------------------------------------------------------


async def test_a_range_call_ends_at_its_point_cap_with_a_token_that_continues(
    writer: InMemoryReadStore,
) -> None:
    queries, _ = handlers(writer, QueryLimits(max_points_per_call=3))
    first = await call(queries, page_size=2)
    # Messages of page_size, the last one cut to the cap, and its token continues.
    assert snaps(first) == [[0, 1], [2]]
    assert first[-1].next_page_token
    rest = await call(queries, page_size=2, page_token=first[-1].next_page_token)
    assert snaps(rest) == [[3, 4], []]
    assert rest[-1].next_page_token == ""


async def test_small_pages_bound_a_call_by_messages(writer: InMemoryReadStore) -> None:
    queries, _ = handlers(writer, QueryLimits(max_points_per_call=1_000, max_messages_per_call=2))
    first = await call(queries, page_size=1)
    assert snaps(first) == [[0], [1]]
    rest = await call(queries, page_size=2, page_token=first[-1].next_page_token)
    assert snaps(rest) == [[2, 3], [4]]


async def test_small_pages_are_cut_from_one_store_read(writer: InMemoryReadStore) -> None:
    """A page of one point is a message, not a store read (a read costs far more): the
    scenario's five points lie in one segment."""
    queries, reader = handlers(writer, QueryLimits())
    pages = await call(queries, page_size=1)
    assert snaps(pages) == [[0], [1], [2], [3], [4], []]
    assert [bool(p.next_page_token) for p in pages] == [True] * 5 + [False]
    assert reader.reads == 1


# --- Subscribe: streams per caller and in all ----------------------------------------------------


async def test_subscriptions_are_capped_per_caller_and_in_all(writer: InMemoryReadStore) -> None:
    queries, _ = handlers(writer, QueryLimits(max_subscriptions_per_caller=2, max_subscriptions=3))
    slot = queries.subscription_slot
    for _ in range(2):  # the second time round: closed ones gave their slots back
        with slot("alice"), slot("alice"), slot("bob"):
            with pytest.raises(TooManySubscriptions, match="alice has 2 subscriptions open"):
                slot("alice").__enter__()
            with pytest.raises(TooManySubscriptions, match="the service has 3"):
                slot("carol").__enter__()


# --- Subscribe: a batch is bounded in bytes ------------------------------------------------------


def options_chain(quotes: int) -> bytes:
    quote = values_pb2.OptionQuote(
        expiry=date_pb2.Date(year=2024, month=12, day=20),
        strike="4500",
        right=values_pb2.OPTION_RIGHT_CALL,
        bid="125.30",
        ask="126.10",
        implied_volatility="0.1534",
    )
    chain = values_pb2.OptionsChain(underlying_price="4512.25", quotes=[quote] * quotes)
    return values_pb2.DataValue(options_chain=chain).SerializeToString()


async def test_a_feed_of_large_values_is_read_a_few_at_a_time(writer: InMemoryReadStore) -> None:
    chain = options_chain(500)  # 20 KiB: a small real chain
    position = HEAD + 1
    for i in range(60):
        point = version(
            SNAPS[4] + 1 + i, 1, "1", at=9000, position=position + i, series_id=OTHER
        )._replace(value=chain)
        await writer.apply(
            ProjectionBatch(versions=[point], changes=[change(point, 0)]), position + i
        )
    budget = 128 * 1024
    feed = FeedSettings(poll_s=0.005, stall_timeout_s=1, batch_bytes=budget)
    queries, _ = handlers(writer, QueryLimits(), feed)
    batches: list[FeedBatch] = []
    done = asyncio.Event()

    async def accept(batch: FeedBatch) -> None:
        batches.append(batch)
        if sum(len(b.changes) for b in batches) == 60:
            done.set()

    following = asyncio.create_task(queries.subscribe([OTHER], None, HEAD, accept, admit=admit_all))
    try:
        await asyncio.wait_for(done.wait(), WITHIN_S)
    finally:
        following.cancel()
    sizes = [len(b.changes) for b in batches]
    assert sizes[0] == FIRST_READ
    assert all(3 * len(chain) * n <= budget for n in sizes[1:]), sizes


# --- over gRPC, in process -----------------------------------------------------------------------

Serve = Callable[[QuerySettings], Awaitable["pb_grpc.QueryServiceAsyncStub"]]


@pytest.fixture
async def serve(writer: InMemoryReadStore) -> AsyncIterator[Serve]:
    """settings -> a stub of a query service with those settings, on the scenario."""
    async with AsyncExitStack() as stack:

        async def start(settings: QuerySettings) -> pb_grpc.QueryServiceAsyncStub:
            app = await bootstrap.build(settings, InMemoryReadStore(writer.database))
            port = await app.server.start()
            stack.push_async_callback(app.server.stop, 0)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            stack.push_async_callback(channel.close)
            return pb_grpc.QueryServiceStub(channel)

        yield start


def as_user(name: str) -> tuple[tuple[str, str], ...]:
    return (("x-qis-user", name),)


async def sending(
    call: grpc.aio.UnaryStreamCall[pb.SubscribeRequest, pb.SubscribeResponse],
) -> bool:
    """The subscription is open and has sent values."""
    reply = await asyncio.wait_for(call.read(), WITHIN_S)
    return isinstance(reply, pb.SubscribeResponse) and bool(reply.values)


async def admitted(stub: pb_grpc.QueryServiceAsyncStub, caller: str) -> bool:
    """Whether a subscription of `caller` is served (False: refused with RESOURCE_EXHAUSTED)."""
    call = stub.Subscribe(
        pb.SubscribeRequest(series=[f"series/{SERIES}"]), metadata=as_user(caller)
    )
    try:
        return await sending(call)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return False
    finally:
        call.cancel()


async def test_over_grpc_a_callers_subscription_beyond_the_cap_is_resource_exhausted(
    serve: Serve,
) -> None:
    stub = await serve(
        QuerySettings(auth="dev", query_address=ANY_PORT, query_max_subscriptions_per_caller=1)
    )
    request = pb.SubscribeRequest(series=[f"series/{SERIES}"])
    first = stub.Subscribe(request, metadata=as_user("alice"))
    other = stub.Subscribe(request, metadata=as_user("bob"))
    try:
        assert await sending(first)
        assert await sending(other)  # another caller's slots are its own
        refused = stub.Subscribe(request, metadata=as_user("alice"))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await asyncio.wait_for(refused.read(), WITHIN_S)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "close one first" in (error.value.details() or "")
    finally:
        first.cancel()
        other.cancel()
    # Once alice's first subscription has ended, she may open another.
    await asyncio.sleep(0.1)
    assert await admitted(stub, "alice")


async def test_over_grpc_a_request_beyond_the_size_limit_is_resource_exhausted(
    serve: Serve,
) -> None:
    stub = await serve(
        QuerySettings(auth="dev", query_address=ANY_PORT, query_max_request_bytes=64 * 1024)
    )
    snaps = [timestamp_pb2.Timestamp(seconds=s // 1_000_000) for s in SNAPS]
    many = [timestamp_pb2.Timestamp(seconds=s, nanos=999_999_999) for s in range(10_000)]
    oversized = pb.GetValuesRequest(series=f"series/{SERIES}", snap_times=many)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetValues(oversized, metadata=as_user("alice"))
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 65,536 bytes" in (error.value.details() or "")
    # One within the limit is answered.
    request = pb.GetValuesRequest(series=f"series/{SERIES}", snap_times=snaps)
    reply = await stub.GetValues(request, metadata=as_user("alice"))
    assert len(reply.values) == len(SNAPS)


_SUBSCRIBER = """
import sys, grpc
from qis.data.v1 import query_service_pb2 as pb, query_service_pb2_grpc as pb_grpc
stub = pb_grpc.QueryServiceStub(grpc.insecure_channel(sys.argv[1]))
request = pb.SubscribeRequest(series=["series/" + sys.argv[2]])
replies = stub.Subscribe(request, metadata=(("x-qis-user", "alice"),))
next(replies)
print("subscribed", flush=True)
for _ in replies:
    pass
"""


async def test_over_grpc_the_slot_of_a_subscriber_that_vanished_is_freed(
    writer: InMemoryReadStore,
) -> None:
    """A client that stops answering without closing its connection (here: SIGSTOP; a host
    that died, a dropped NAT entry) does not hold its subscription, and the caller's slot,
    forever: the server's keepalive ping goes unanswered and the connection is closed."""
    keepalive_s = 1.5
    settings = QuerySettings(
        auth="dev", query_address=ANY_PORT, query_max_subscriptions_per_caller=1
    )
    handlers = bootstrap.build_handlers(InMemoryReadStore(writer.database), settings)
    service = ServiceBinding(
        bootstrap.SERVICE_NAME, pb_grpc.add_QueryServiceServicer_to_server, QueryService(handlers)
    )
    server = QisServer(ANY_PORT, [service], keepalive_s=keepalive_s)
    address = f"127.0.0.1:{await server.start()}"
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SUBSCRIBER, address, SERIES, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert client.stdout is not None
        assert await client.stdout.readline() == b"subscribed\n"
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.QueryServiceStub(channel)
            assert not await admitted(stub, "alice")  # the client's subscription holds the slot
            client.send_signal(signal.SIGSTOP)
            deadline = time.monotonic() + 4 * keepalive_s
            while not await admitted(stub, "alice"):
                assert time.monotonic() < deadline, "the vanished subscriber kept its slot"
                await asyncio.sleep(0.2)
    finally:
        client.kill()
        await client.wait()
        await server.stop(0)
