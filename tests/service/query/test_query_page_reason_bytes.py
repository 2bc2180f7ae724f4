"""Pages are bounded in the bytes a client receives (ranges.PAGE_VALUE_BYTES): a per-point page
carries each row's reason too, and a restatement's reason may be MAX_TEXT_LENGTH characters (one
ResolveIssues of up to 10,000 issues puts "approved: <its reason>" on every point it restates),
so 10,000 such prices would be a ~10 MB message, over the 4 MiB a gRPC client receives by
default, though their values are ~200 KB."""

from __future__ import annotations

from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_domain.bounds import MAX_TEXT_LENGTH

from tests.service.query.test_query_columns import KINDS, History, Query, calls, write_history
from tests.service.query.test_query_structure_columns import SNAP, stored
from tests.service.query.test_query_structure_pages import GRPC_RECEIVE_LIMIT, service

POINTS = 5_000
REASON = "approved: " + "x" * MAX_TEXT_LENGTH
PAGES_OF_10K = Query("latest", 0, None, None, 10_000, 250_000, 10_000)  # the largest page


async def test_a_per_point_page_of_restated_prices_stays_within_a_clients_limit() -> None:
    snaps = [SNAP + i for i in range(POINTS)]
    price = values_pb2.DataValue(price=values_pb2.Price(value="101.25", currency="USD"))
    first = [stored(s, 1, price, 0) for s in snaps]
    restated = [stored(s, 2, price, 1)._replace(reason=REASON) for s in snaps]
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, History(KINDS["price"][0], False, snaps, [first, restated]))
    [messages] = await calls(service(store), PAGES_OF_10K, pb.VALUE_VIEW_POINTS)
    assert sum(len(m.values) for m in messages) == POINTS
    assert max(m.ByteSize() for m in messages) < GRPC_RECEIVE_LIMIT
    assert [v.snap_time.ToMicroseconds() for m in messages for v in m.values] == snaps
