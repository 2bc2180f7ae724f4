"""Pages are bounded in the bytes of their serialised values (ranges.PAGE_VALUE_BYTES), what a
gRPC client's 4 MiB receive limit bounds, and calls in them too (max_value_bytes_per_call):
100,000-node pages of realistic surfaces were 4.7 MB. A page ends at a whole snap within the
bound, a larger snap goes whole, and every token resumes right after its last snap; in both
views of QueryRange and in an export's pages (Flight). An export's pages are not gRPC messages:
they hold more snaps than a QueryRange page may (EXPORT_PAGE)."""

from __future__ import annotations

from typing import Any

import pytest
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_query.application import ranges
from qis_query.application.consistency import ReadPosition
from qis_query.application.export import EXPORT_PAGE, ExportRequest, open_export
from qis_query.application.handlers import MAX_RANGE_PAGE, QueryHandlers
from qis_query.application.limits import QueryLimits
from qis_query.application.ranges import RangeQuery
from qis_query.entrypoints.grpc_service import QueryService

from tests.service.query.conftest import FEED, TOKENS
from tests.service.query.test_query_columns import SERIES, History, calls, write_history
from tests.service.query.test_query_structure_columns import (
    CURVE,
    LATEST,
    MANY,
    SNAP,
    SURFACE,
    check_structure_range,
    curve,
    stored,
    surface,
)

GRPC_RECEIVE_LIMIT = 4 << 20  # a gRPC client's default


def realistic_surface(seed: int) -> values_pb2.DataValue:
    """2,000 nodes of the widest texts a vol surface commonly has (94.6 KB serialised)."""
    return surface(
        [
            (f"P{120 - i % 7}M", "-0.250000000000", f"0.21345678901234{seed:04d}")
            for i in range(MANY)
        ]
    )


async def store_of(
    kind: Any, values: list[values_pb2.DataValue]
) -> tuple[InMemoryReadStore, History]:
    """A series of `kind` with a snap a microsecond for each of `values`."""
    snaps = [SNAP + i for i in range(len(values))]
    event = [stored(s, 1, v, 0) for s, v in zip(snaps, values, strict=True)]
    history = History(kind, False, snaps, [event])
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    return store, history


def curves(node_counts: list[int]) -> list[values_pb2.DataValue]:
    return [curve(["1.5"] * n, tuple(f"P{i + 1}D" for i in range(n))) for n in node_counts]


def service(store: InMemoryReadStore, **limits: int) -> QueryService:
    queries = QueryHandlers(
        store, ReadPosition(store, 0.3), FEED, QueryLimits(**limits), tokens=TOKENS
    )
    return QueryService(queries)


def check_page_bytes(pages: list[list[int]], bound: int) -> None:
    """Each page (the value bytes of its snaps) is within `bound` but for a single larger snap,
    and ends there because the next snap would pass it."""
    for page, following in zip(pages, [*pages[1:], []], strict=True):
        assert len(page) == 1 or sum(page) <= bound
        if following:
            assert sum(page) + following[0] > bound


async def test_pages_of_realistic_surfaces_stay_within_a_clients_receive_limit() -> None:
    store, _ = await store_of(SURFACE, [realistic_surface(i) for i in range(60)])
    q = LATEST  # pages of 10,000 snaps asked for
    service_ = service(store)
    for view in (pb.VALUE_VIEW_POINTS, pb.VALUE_VIEW_COLUMNS):
        [messages] = await calls(service_, q, view)
        assert len(messages) > 1
        assert max(m.ByteSize() for m in messages) < GRPC_RECEIVE_LIMIT
    [messages] = await calls(service_, q, pb.VALUE_VIEW_POINTS)
    sizes = [[len(p.value.SerializeToString()) for p in m.values] for m in messages]
    check_page_bytes(sizes, ranges.PAGE_VALUE_BYTES)
    assert sum(len(page) for page in sizes) == 60


async def test_pages_end_at_whole_snaps_and_a_larger_snap_goes_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = curves([3, 3, 5, 1, 1, 7, 2, 4, 6])
    sizes = [v.ByteSize() for v in values]
    monkeypatch.setattr(ranges, "PAGE_VALUE_BYTES", sizes[0] + sizes[1])
    store, history = await store_of(CURVE, values)
    rows = await check_structure_range(store, history, LATEST)  # both views page alike
    assert [row[0] for row in rows] == history.snaps
    [messages] = await calls(service(store), LATEST, pb.VALUE_VIEW_POINTS)
    pages = [[p.value.ByteSize() for p in m.values] for m in messages]
    check_page_bytes(pages, ranges.PAGE_VALUE_BYTES)
    assert pages[0] == sizes[:2]
    assert sizes[5] > ranges.PAGE_VALUE_BYTES
    assert [sizes[5]] in pages  # the 7-node curve, alone


async def test_a_call_ends_at_its_value_bytes_with_a_token_that_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = curves([3, 3, 5, 1, 1, 7, 2, 4, 6, 2, 2])
    sizes = [v.ByteSize() for v in values]
    monkeypatch.setattr(ranges, "PAGE_VALUE_BYTES", sizes[0] + sizes[1])
    bound = 2 * ranges.PAGE_VALUE_BYTES
    store, history = await store_of(CURVE, values)
    service_ = service(store, max_value_bytes_per_call=bound)
    per_point = await calls(service_, LATEST, pb.VALUE_VIEW_POINTS)
    in_columns = await calls(service_, LATEST, pb.VALUE_VIEW_COLUMNS)
    assert len(per_point) > 1
    assert [[m.next_page_token for m in c] for c in in_columns] == [
        [m.next_page_token for m in c] for c in per_point
    ]
    snaps: list[int] = []
    for call in per_point:
        call_bytes = [p.value.ByteSize() for m in call for p in m.values]
        last_page = sum(p.value.ByteSize() for p in call[-1].values)
        if call[-1].next_page_token:  # ended by the bound: after the page that reached it
            assert sum(call_bytes) >= bound > sum(call_bytes) - last_page
        snaps.extend(p.snap_time.ToMicroseconds() for m in call for p in m.values)
    assert snaps == history.snaps


async def test_an_export_of_curves_is_paged_by_value_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    values = curves([3, 3, 5, 1, 1, 7, 2])
    sizes = [v.ByteSize() for v in values]
    monkeypatch.setattr(ranges, "PAGE_VALUE_BYTES", sizes[0] + sizes[1])
    store, _ = await store_of(CURVE, values)
    queries = QueryHandlers(store, ReadPosition(store, 0.3), FEED)
    export = await open_export(queries, ExportRequest((SERIES,)))
    pages = [page.rows.column("value").to_pylist() async for page in export.pages]
    check_page_bytes([[len(v) for v in page] for page in pages], ranges.PAGE_VALUE_BYTES)
    assert [v for page in pages for v in page] == [v.SerializeToString() for v in values]


async def test_an_export_pages_more_snaps_than_a_query_range_page_holds() -> None:
    count = MAX_RANGE_PAGE + 2_000
    assert count <= EXPORT_PAGE
    store, _ = await store_of(CURVE, curves([1] * count))
    queries = QueryHandlers(store, ReadPosition(store, 0.3), FEED)
    export = await open_export(queries, ExportRequest((SERIES,)))
    assert [page.rows.num_rows async for page in export.pages] == [count]
    read = await queries.query_range(RangeQuery(SERIES), EXPORT_PAGE, "", 0)
    assert [page.rows.num_rows async for page in read.value] == [MAX_RANGE_PAGE, 2_000]
