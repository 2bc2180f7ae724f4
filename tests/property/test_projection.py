"""Projection equality: the read model the projector keeps while commands arrive (small batches,
sometimes restarted from its checkpoint) equals the read model of a rebuild from position 0 in
large batches (docs/architecture.md §3: a rebuild reproduces the same read model).

Segments are the exception that proves the rule: a segment version is made per batch, so other
batches make other versions. What must not differ is what they answer: at every commit
position, the rows a segment read selects are, in both read models, exactly the versions the
per-point records give."""

from __future__ import annotations

import asyncio

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_adapters.readstore import segments
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import OPEN_END, AtPosition
from qis_projector.application.projector import Projector, ProjectorLimits

from tests.property.service import (
    PROPERTY,
    RICH,
    Scenario,
    Service,
    describe,
    effect_of,
    instant_us,
    scenarios,
)

NOW_US = instant_us(2025)
EARLIEST = -(2**63)
TIMEOUT_S = 60.0


async def catch_up(projector: Projector, position: int) -> None:
    """The position a command answers with is the last of its append, one the projector
    follows (a command's record goes first): it must reach it, not wait forever."""
    try:
        await asyncio.wait_for(projector.run(until_position=position), TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"the projector never reached position {position}") from None


async def live_and_rebuilt(
    scenario: Scenario, batch: int, restarts: bool
) -> tuple[dict[str, object], dict[str, object]]:
    service = Service.start(NOW_US)
    live_store = InMemoryReadStore(generation="live")
    small = ProjectorLimits(max_batch_events=batch, max_batch_points=batch * 500)
    live = Projector(service.store, live_store, limits=small)
    for step in scenario.steps(NOW_US):
        (answer,) = await service.run([step])
        if restarts:
            # A new process resumes from the checkpoint the store kept.
            live = Projector(service.store, live_store, limits=small)
        await catch_up(live, answer.outcome.position)
    describe(scenario.history, effect_of(await service.log()))

    rebuilt_store = InMemoryReadStore(generation="rebuilt")
    head = await service.store.head_position()
    await catch_up(Projector(service.store, rebuilt_store), head)
    live_dump, rebuilt_dump = await live_store.dump_all(), await rebuilt_store.dump_all()
    await live_store.set_active_generation("live")
    await rebuilt_store.set_active_generation("rebuilt")
    for store in (live_store, rebuilt_store):
        assert await segment_answers(store, head) == await point_answers(store, head)
    for dump in (live_dump, rebuilt_dump):
        del dump["segments"]
    return live_dump, rebuilt_dump


Answers = dict[tuple[str, int], list[tuple[int, int, bytes]]]


async def segment_answers(store: InMemoryReadStore, head: int) -> Answers:
    """(series, position) -> the (snap, version, value) rows segments give at that position."""
    answers: Answers = {}
    decoded: dict[bytes, pa.Table] = {}

    def decode(payload: bytes) -> pa.Table:
        """A segment version is read at every later position: its bytes are decoded once."""
        if payload not in decoded:
            decoded[payload] = segments.decode(payload)
        return decoded[payload]

    for series_id in await series_ids(store):
        for position in range(head + 2):
            found = await store.segments(series_id, EARLIEST, OPEN_END, AtPosition(position), 10**6)
            assert found is not None
            rows = [
                segments.select(decode(s.payload), AtPosition(position), EARLIEST, OPEN_END)
                for s in found
            ]
            answers[series_id, position] = [
                (snap, version, value)
                for r in rows
                for snap, version, value in zip(
                    r["snap_us"].to_pylist(),
                    r["version"].to_pylist(),
                    r["value"].to_pylist(),
                    strict=True,
                )
            ]
    return answers


async def point_answers(store: InMemoryReadStore, head: int) -> Answers:
    answers: Answers = {}
    for series_id in await series_ids(store):
        for position in range(head + 2):
            versions = await store.as_of_position_range(
                series_id, EARLIEST, OPEN_END, position, 10**6
            )
            answers[series_id, position] = [(v.snap_us, v.version, v.value) for v in versions]
    return answers


async def series_ids(store: InMemoryReadStore) -> list[str]:
    return [entry.series_id for entry in await store.list_series("", 10**6)]


@settings(PROPERTY)
@given(scenarios(), st.integers(1, 8), st.booleans())
@example(RICH, 3, False)
def test_the_live_read_model_equals_a_rebuild(
    scenario: Scenario, batch: int, restarts: bool
) -> None:
    live, rebuilt = asyncio.run(live_and_rebuilt(scenario, batch, restarts))
    assert live.keys() == rebuilt.keys()
    for kind in live:
        assert live[kind] == rebuilt[kind], kind
