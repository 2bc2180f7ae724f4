"""A read model whose segments were written in format 1 (before the decimal columns,
qis_adapters.readstore.segments) answers Arrow Flight and QueryRange, per point and in columns,
exactly as the same model written in format 2, as a rebuild would write it: old stores keep
working without a rebuild, and a rebuild changes no answer."""

from __future__ import annotations

import base64
from typing import Any

import pyarrow as pa
import pytest
from qis.data.v1 import query_service_pb2 as q
from qis_adapters.readstore import segments
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore

from tests.service.query.conftest import token_clock_us
from tests.service.query.test_query_flight import (
    BAR,
    LONG,
    PX,
    VOL,
    read,
    settings,
    ticket,
    write_model,
)
from tests.support.segmenting import SegmentingStore
from tests.support.servers import QueryPorts, query_ports

ONE_KEY = base64.b64encode(bytes(range(32))).decode()

QUESTIONS: list[dict[str, Any]] = [{}, {"as_of_position": 10}, {"as_of_position": 20}]


def _format_1(rows: pa.Table) -> bytes:
    """The payload format 1 wrote: the columns before the decimal ones, LZ4."""
    old = rows.select(segments.SCHEMA.names[: -len(segments.DECIMAL_COLUMNS)])
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)
    with pa.ipc.new_stream(sink, old.schema, options=options) as writer:
        writer.write_table(old)
    payload: bytes = sink.getvalue().to_pybytes()
    return payload


async def _model(monkeypatch: pytest.MonkeyPatch, *, format_1: bool) -> InMemoryReadStore:
    written: list[pa.Table] = []
    if format_1:

        def encode(rows: pa.Table) -> bytes:
            written.append(rows)
            return _format_1(rows)

        monkeypatch.setattr(segments, "encode", encode)
    writer = SegmentingStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await write_model(writer)
    monkeypatch.undo()
    assert bool(written) is format_1  # the old model's segments are all format 1
    return InMemoryReadStore(writer.database)


async def _answers(ports: QueryPorts) -> list[Any]:
    found: list[Any] = []
    for question in QUESTIONS:
        for series in (PX, VOL, BAR, LONG):
            found.append(await read(ports.flight, ticket(series, **question)))
            for view in (q.VALUE_VIEW_POINTS, q.VALUE_VIEW_COLUMNS):
                request = q.QueryRangeRequest(
                    series=f"series/{series}", page_size=1_000, view=view, **question
                )
                calls = ports.stub.QueryRange(request, metadata=(("x-qis-user", "alice"),))
                found.append([response async for response in calls])
    return found


async def test_a_format_1_model_answers_as_its_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    old = await _model(monkeypatch, format_1=True)
    rebuilt = await _model(monkeypatch, format_1=False)
    # One page token key and one clock: the two services seal the same tokens.
    same = settings(query_max_points_per_call=10_000, query_page_token_key=ONE_KEY)
    async with query_ports(old, same, token_clock_us) as ports:
        before = await _answers(ports)
    async with query_ports(rebuilt, same, token_clock_us) as ports:
        after = await _answers(ports)
    assert len(before) == len(after) == len(QUESTIONS) * 4 * 3
    assert all(answer for answer in before)  # every question has an answer to compare
    assert before == after
