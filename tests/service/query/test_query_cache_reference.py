"""A cached answer is always the answer of a fresh read at the same position: random
interleavings of publications, restatements, schema changes, projections and reads (latest, as
of a position or a knowledge time, small and larger ranges, definitions), with an L1 small
enough to evict, compared read for read with handlers that have no cache."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_adapters.readstore.port import LATEST, AsOf, AtPosition, KnownAt
from qis_domain.errors import NotFound
from qis_query.application.cache import CacheLimits
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import RangeQuery

from tests.service.query.cache_support import CacheWorld, snap

SERIES = ("S", "T", "U")  # U is never defined
DAYS = 5


@dataclass(frozen=True)
class Publish:
    series_id: str
    days: tuple[int, ...]
    price: int
    project: bool  # else the event waits in the log until a later projection


@dataclass(frozen=True)
class Define:
    series_id: str
    unit: str


@dataclass(frozen=True)
class Values:
    series_id: str
    days: tuple[int, ...]
    as_of: int  # 0: latest; > 0: a position; < 0: a knowledge time, ms after the start
    follow_head: bool  # min_position = the log's head (when projected), else 0


@dataclass(frozen=True)
class Range:
    series_id: str
    first: int
    last: int
    as_of: int


@dataclass(frozen=True)
class Definition:
    series_id: str


Step = Publish | Define | Values | Range | Definition
days = st.lists(st.integers(0, DAYS - 1), min_size=1, max_size=3, unique=True).map(tuple)
as_of = st.integers(-8, 8)
series = st.sampled_from(SERIES)
steps = st.lists(
    st.one_of(
        st.builds(Publish, st.sampled_from(SERIES[:2]), days, st.integers(1, 9), st.booleans()),
        st.builds(Define, st.sampled_from(SERIES[:2]), st.sampled_from(["USD", "EUR"])),
        st.builds(Values, series, days, as_of, st.booleans()),
        st.builds(Range, series, st.integers(0, DAYS), st.integers(0, DAYS), as_of),
        st.builds(Definition, series),
    ),
    min_size=1,
    max_size=40,
)


def as_of_of(world: CacheWorld, code: int) -> AsOf:
    """Around the log's head, where answers stop or go on changing: 0 latest, > 0 a position,
    < 0 a knowledge time."""
    if code == 0:
        return LATEST
    if code > 0:
        return AtPosition(max(1, world.head + code - 6))
    return KnownAt(world.now_us + (code + 4) * 500)


@dataclass(frozen=True)
class Question:
    """A read step with its as-of made absolute when it was first asked: asked again after
    every later step, as the read model moves on."""

    step: Values | Range | Definition
    as_of: AsOf


async def answer(handlers: QueryHandlers, world: CacheWorld, question: Question) -> object:
    try:
        match question.step:
            case Values(series_id, chosen, _, follow_head):
                at = world.projected if follow_head else 0
                snaps = [snap(d) for d in chosen]
                read = await handlers.values(series_id, snaps, question.as_of, at)
                return read.value
            case Range(series_id, first, last, _):
                end = snap(max(first, last))
                ranged = RangeQuery(series_id, snap(first), end, question.as_of)
                pages = await handlers.query_range(ranged, 2, "", 0)
                return [p.rows.to_pylist() async for p in pages.value]
            case Definition(series_id):
                return await handlers.series(series_id, 0)
    except NotFound as error:
        return ("NOT_FOUND", str(error))
    raise AssertionError(question)


async def run(script: list[Step], max_bytes: int) -> None:
    world = CacheWorld()
    cached, _ = world.handlers(CacheLimits(max_bytes=max_bytes, max_range_rows=3))
    fresh = world.fresh()
    await world.define("S")
    await world.define("T")
    await world.project()
    asked: list[Question] = []
    for step in script:
        match step:
            case Publish(series_id, chosen, price, project):
                await world.publish(series_id, [snap(d) for d in chosen], f"{price}.5")
                if project:
                    await world.project()
            case Define(series_id, unit):
                await world.define(series_id, unit)
                await world.project()
            case Values(_, _, code, _) | Range(_, _, _, code):
                asked.append(Question(step, as_of_of(world, code)))
            case Definition():
                asked.append(Question(step, LATEST))
        for question in asked:
            expected = await answer(fresh, world, question)
            assert await answer(cached, world, question) == expected, (question, step)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([2_000, 64 * 2**20]))
def test_a_cached_answer_is_the_answer_of_a_fresh_read(script: list[Step], max_bytes: int) -> None:
    asyncio.run(run(script, max_bytes))
