"""Over the wire, every way of asking for official values as of a time or a position agrees with
a reference computed here from the versions written: QueryRange in both views at several page
sizes, GetValues in both views, and Arrow Flight DoGet for one series and for two.

The history (tests/property/test_property_read_asof.py's, written as the projector writes it) puts
snaps on and beside bucket starts, restates one point three times (twice in one batch, once in
the same microsecond as the commit before), and publishes a second series later; the as-ofs
are every commit position, every commit time and a microsecond either side, before the
series existed, and far in the future.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, cast

import pyarrow as pa
import pytest
from qis.data.v1 import query_service_pb2 as pb
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import OPEN_END, AsOf, AtPosition, KnownAt, Latest
from qis_domain.snaps import format_snap
from qis_query.application.ranges import EARLIEST

from tests.property.test_property_read_asof import DAY, MINUTE, SERIES, Commit, Scenario, written
from tests.service.query.test_query_flight import read, settings
from tests.service.query.views import column_rows, point_rows
from tests.support.servers import QueryPorts, query_ports

AT = 1_700_000_000_000_000  # commit times from here
B = 1_700_006_400_000_000  # a bucket start (of the segments' one-day buckets)
assert B % DAY == 0
SNAPS = (B - 1, B, B + 1, B + MINUTE, B + DAY - 1, B + DAY)
HISTORY = Scenario(
    (
        Commit(3, AT, (B, B + 1, B + MINUTE, B + DAY - 1)),
        Commit(4, AT + 1000, (B - 1, B)),  # a restatement and a late arrival before the bucket
        Commit(6, AT + 1000, (B, B + DAY)),  # the same microsecond as the commit before
        Commit(7, AT + 5000, (B, B + DAY - 1)),
        Commit(9, AT + 9000, (B + 1,)),
    ),
    frozenset({0, 2}),  # batches: [3], [4, 6], [7, 9]
)
OTHER = Scenario(  # a series defined after the first was restated
    (Commit(11, AT + 11_000, (B, B + DAY)), Commit(12, AT + 12_000, (B + DAY,))),
    frozenset(),
    "S2",
)
NAME = f"series/{SERIES}"
USER = (("x-qis-user", "alice"),)


@pytest.fixture
async def ports() -> AsyncIterator[QueryPorts]:
    database = InMemoryReadDatabase()
    writer = InMemoryReadStore(database, "g1")
    await written(HISTORY, writer)
    await written(OTHER, writer)
    async with query_ports(InMemoryReadStore(database), settings()) as ports:
        yield ports


def as_ofs() -> list[AsOf]:
    positions = [AtPosition(p) for p in range(0, 14)]
    times = sorted({c.at_us for c in (*HISTORY.commits, *OTHER.commits)})
    known = [KnownAt(t + d) for t in times for d in (-1, 0, 1)]
    return [Latest(), *positions, *known, KnownAt(AT - 10**9), KnownAt(AT + 10**15)]


def as_of_fields(as_of: AsOf) -> dict[str, Any]:
    match as_of:
        case AtPosition(position):
            return {"as_of_position": position}
        case KnownAt(at_us):
            return {"as_of_time": format_snap(at_us)}
    return {}


def with_as_of(request: Any, as_of: AsOf) -> Any:
    match as_of:
        case AtPosition(position):
            request.as_of_position = position
        case KnownAt(at_us):
            request.as_of_time.CopyFrom(timestamp(at_us))
    return request


Answer = list[tuple[int, int, Decimal]]


def reference(as_of: AsOf, start: int = EARLIEST, end: int = OPEN_END) -> Answer:
    return [(s, v, Decimal(t)) for s, v, t in HISTORY.expected(as_of, start, end)]


async def grpc_range(
    ports: QueryPorts, as_of: AsOf, size: int, view: int, start: int | None, end: int | None
) -> Answer:
    request = with_as_of(
        pb.QueryRangeRequest(series=NAME, page_size=size, view=view),  # type: ignore[arg-type]
        as_of,
    )
    if start is not None:
        request.start_time.CopyFrom(timestamp(start))
    if end is not None:
        request.end_time.CopyFrom(timestamp(end))
    rows: Answer = []
    for _ in range(100):
        token = ""
        async for response in ports.stub.QueryRange(request, metadata=USER):
            rows += answer(response, view)
            token = response.next_page_token
        if not token:
            return rows
        request.page_token = token
    raise AssertionError("paging did not end")


async def grpc_values(ports: QueryPorts, as_of: AsOf, view: int) -> Answer:
    request = pb.GetValuesRequest(
        series=NAME,
        snap_times=[timestamp(s) for s in (B - 2, *SNAPS, B + 2 * DAY)],
        view=view,  # type: ignore[arg-type]
    )
    return answer(await ports.stub.GetValues(with_as_of(request, as_of), metadata=USER), view)


def answer(reply: pb.QueryRangeResponse | pb.GetValuesResponse, view: int) -> Answer:
    """A reply's rows, read by the tests' own converters of either view (views.py)."""
    if view == pb.VALUE_VIEW_COLUMNS:
        assert not reply.values
        rows = column_rows(reply.columns, "prices")
    else:
        assert not reply.HasField("columns")
        rows = point_rows(reply.values, NAME, "USD")
    return [(snap, version, Decimal(str(value[1]))) for snap, version, value, *_ in rows]


def flight_answer(table: pa.Table) -> Answer:
    return list(
        zip(
            table.column("snap_time").cast(pa.int64()).to_pylist(),
            table.column("version").to_pylist(),
            table.column("value").to_pylist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("as_of", as_ofs(), ids=repr)
async def test_every_port_answers_the_reference(ports: QueryPorts, as_of: AsOf) -> None:
    want = reference(as_of)
    for view in (pb.VALUE_VIEW_POINTS, pb.VALUE_VIEW_COLUMNS):
        for size in (1, 2, 3, 1000):
            assert await grpc_range(ports, as_of, size, view, None, None) == want, (view, size)
        for start, end in ((B, B + DAY), (B + 1, B + DAY - 1), (B - 1, B), (B, B)):
            got = await grpc_range(ports, as_of, 2, view, start, end)
            assert got == reference(as_of, start, end), (view, start, end)
        assert await grpc_values(ports, as_of, view) == want, view
    ticket = {"series": [NAME], **as_of_fields(as_of)}
    assert flight_answer(await read(ports.flight, ticket)) == want
    bounded = {**ticket, "start_time": format_snap(B), "end_time": format_snap(B + DAY)}
    assert flight_answer(await read(ports.flight, bounded)) == reference(as_of, B, B + DAY)


@pytest.mark.parametrize("as_of", as_ofs(), ids=repr)
async def test_flight_of_two_series_answers_each_as_of_the_same_time(
    ports: QueryPorts, as_of: AsOf
) -> None:
    """The second series did not exist before position 11: as of earlier, it is empty."""
    table = await read(ports.flight, {"series": ["series/S2", NAME], **as_of_fields(as_of)})
    second = [(s, v, Decimal(t)) for s, v, t in OTHER.expected(as_of, EARLIEST, OPEN_END)]
    want = [("series/S2", *row) for row in second] + [(NAME, *row) for row in reference(as_of)]
    names = table.column("series").to_pylist()
    assert [(name, *row) for name, row in zip(names, flight_answer(table), strict=True)] == want


@pytest.mark.parametrize("after", [0, 3, 4, 5, 6, 9, 12])
async def test_a_subscription_folds_into_the_latest_values(ports: QueryPorts, after: int) -> None:
    """What a subscriber ends with, from any position on, on top of what was official right
    after that position: the latest values."""
    changes = sum(len(c.snaps) for c in (*HISTORY.commits, *OTHER.commits) if c.position > after)
    state = {(NAME, s): (s, v, t) for s, v, t in reference(AtPosition(after))}
    second = OTHER.expected(AtPosition(after), EARLIEST, OPEN_END)
    state |= {("series/S2", s): (s, v, Decimal(t)) for s, v, t in second}
    calls = ports.stub.Subscribe(pb.SubscribeRequest(after_position=after), metadata=USER)
    seen = 0
    try:
        while seen < changes:
            response = cast(pb.SubscribeResponse, await asyncio.wait_for(calls.read(), 5))
            for v in response.values:
                snap = micros(v.snap_time)
                state[v.series, snap] = (snap, v.version, Decimal(v.value.price.value))
                seen += 1
    finally:
        calls.cancel()
    assert seen == changes
    assert [row for key, row in sorted(state.items()) if key[0] == NAME] == reference(Latest())
    latest_second = [(s, v, Decimal(t)) for s, v, t in OTHER.expected(Latest(), EARLIEST, OPEN_END)]
    assert [row for key, row in sorted(state.items()) if key[0] != NAME] == latest_second


def micros(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1_000
