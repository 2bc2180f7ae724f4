"""Pages of term structures and surfaces are bounded in nodes as well as in snaps
(ranges.NODES_PER_PAGE): 10,000 snaps of 2,000-node values made one 20M-node page. A page ends
at a whole snap within the bound, a snap larger than the bound goes whole, and each page's
token resumes right after its last snap; in both views of QueryRange and in an export's pages
(Flight)."""

from __future__ import annotations

import dataclasses
from typing import cast

import pytest
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import JsonDoc, SeriesEntry
from qis_query.application import ranges
from qis_query.application.consistency import ReadPosition
from qis_query.application.export import ExportRequest, open_export
from qis_query.application.handlers import QueryHandlers

from tests.service.query.conftest import FEED
from tests.service.query.test_query_columns import SERIES, History, calls, service_on, write_history
from tests.service.query.test_query_structure_columns import (
    CURVE,
    LATEST,
    MANY,
    SNAP,
    check_structure_range,
    many_nodes,
    stored,
)


async def curve_store(node_counts: list[int]) -> tuple[InMemoryReadStore, History]:
    """A curve series with one snap per count, each a curve of that many nodes."""
    snaps = [SNAP + i for i in range(len(node_counts))]
    values = {n: many_nodes(n) for n in set(node_counts)}
    event = [stored(s, 1, values[n], 0) for s, n in zip(snaps, node_counts, strict=True)]
    history = History(CURVE, False, snaps, [event])
    store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await write_history(store, history)
    return store, history


async def page_nodes(store: InMemoryReadStore, history: History) -> list[list[int]]:
    """The nodes of each snap of each page, every page of the range in one call (LATEST's
    page size, 10,000 snaps), after checking that both views page alike and read every snap
    once, in order."""
    rows = await check_structure_range(store, history, LATEST)
    nodes = iter(len(cast(tuple[object, ...], row[2][1])) for row in rows)
    [messages] = await calls(service_on(store, LATEST), LATEST, pb.VALUE_VIEW_POINTS)
    return [[next(nodes) for _ in message.values] for message in messages]


async def test_a_page_of_two_thousand_node_curves_ends_at_the_node_bound() -> None:
    store, history = await curve_store([MANY] * 120)  # 240,000 nodes
    pages = await page_nodes(store, history)
    per_page = ranges.NODES_PER_PAGE // MANY
    assert [len(page) for page in pages] == [per_page, per_page, 120 - 2 * per_page]
    assert max(sum(page) for page in pages) <= ranges.NODES_PER_PAGE


async def test_pages_end_at_whole_snaps_and_a_larger_snap_goes_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ranges, "NODES_PER_PAGE", 6)
    store, history = await curve_store([3, 3, 5, 1, 1, 7, 2, 4, 6])
    assert await page_nodes(store, history) == [[3, 3], [5, 1], [1], [7], [2, 4], [6]]


async def test_tokens_resume_a_node_bounded_range_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls of 3 snaps at most: each page and each call resumes right after the snap the last
    one ended with."""
    monkeypatch.setattr(ranges, "NODES_PER_PAGE", 6)
    store, history = await curve_store([3, 3, 5, 1, 1, 7, 2])
    three_a_call = dataclasses.replace(LATEST, points_per_call=3)
    rows = await check_structure_range(store, history, three_a_call)
    assert [row[0] for row in rows] == history.snaps
    service = service_on(store, three_a_call)
    each_call = await calls(service, three_a_call, pb.VALUE_VIEW_POINTS)
    assert [[len(m.values) for m in c] for c in each_call] == [[2, 1], [2, 1], [1]]


async def test_an_export_of_curves_is_paged_by_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranges, "NODES_PER_PAGE", 6)
    store, _ = await curve_store([3, 3, 5, 1, 1, 7, 2])
    queries = QueryHandlers(store, ReadPosition(store, 0.3), FEED)
    export = await open_export(queries, ExportRequest((SERIES,)))
    assert [page.rows.num_rows async for page in export.pages] == [2, 2, 1, 1, 1]


def test_only_series_of_structures_are_paged_by_nodes() -> None:
    """Whichever form of the proto-JSON names and of the enum the catalogue entry holds."""
    structures: list[JsonDoc] = [
        {"data_type": "DATA_TYPE_SURFACE"},
        {"dataType": "DATA_TYPE_TERM_STRUCTURE"},
        {"dataType": values_pb2.DATA_TYPE_SURFACE},
    ]
    for definition in structures:
        assert ranges.nodes_per_page(_entry(definition)) == ranges.NODES_PER_PAGE
    others: list[JsonDoc] = [
        {"data_type": "DATA_TYPE_PRICE"},
        {"dataType": values_pb2.DATA_TYPE_OHLC_BAR},
        {},
    ]
    for definition in others:
        assert ranges.nodes_per_page(_entry(definition)) is None


def _entry(definition: JsonDoc) -> SeriesEntry:
    return SeriesEntry(SERIES, 1, definition, 0, 1)
