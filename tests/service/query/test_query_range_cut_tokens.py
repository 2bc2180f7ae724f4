"""Calls bounded by their budget (ranges._Ending.cut): calls resumed from their tokens, each bounded by its
points and its value and reason bytes, against the stored versions, where the budget is spent
at a segment's end, at the range's end, on an overflowing bucket, by rows an as-of drops, by
reasons of any size (unicode), mid-bucket, and with columns with and without value or reason.
A call without rows must be the range's last (no token): else a client never stops, or loses
the rest."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_adapters.readstore.port import LATEST, KnownAt, Latest, OfficialVersion
from qis_query.application.ranges import SEGMENTS_PER_READ, RangeQuery

from tests.service.query.test_query_range_read_ahead_ends import (
    BUCKET_US,
    RANGE_PROPERTY,
    TOKENS,
    VALUE,
    S,
    Store,
    plain_buckets,
    read,
)

COLUMNS = [
    frozenset({"snap_us", "version", "value"}),
    frozenset({"snap_us", "version", "reason"}),
    frozenset({"snap_us", "version", "value", "reason"}),
    frozenset({"snap_us", "version"}),
]


def version(snap_us: int, number: int, known_us: int, reason: str) -> OfficialVersion:
    return OfficialVersion(
        S, snap_us, number, VALUE, 1.0, known_us, number, reason, "u", "c", ("s",), "priority"
    )


Call = tuple[list[tuple[int, int, str]], str]


async def calls(
    store: Store,
    query: RangeQuery,
    page_size: int,
    max_points: int,
    max_value_bytes: int | None,
    columns: frozenset[str],
) -> list[Call]:
    """Each call's (snap, version, reason)s and its last token, resumed from the one before."""
    out: list[Call] = []
    after: int | None = None
    for _ in range(2_000):
        got: list[tuple[int, int, str]] = []
        token = ""
        async for page in read(
            store, query, page_size, max_points, after, max_value_bytes, columns
        ):
            reasons = (
                page.rows.column("reason").to_pylist()
                if "reason" in columns
                else [""] * page.rows.num_rows
            )
            got += zip(
                page.rows.column("snap_us").to_pylist(),
                page.rows.column("version").to_pylist(),
                reasons,
                strict=True,
            )
            token = page.next_page_token
        out.append((got, token))
        if not token:
            return out
        after = TOKENS.range_after(token, query)
    raise AssertionError("the calls never end")


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[list[OfficialVersion]], frozenset[int]]:
    """Buckets of points, some known late (an as-of drops them, whole segments too), some
    restated with reasons of any size, some overflowing."""
    count = draw(st.integers(0, 2 * SEGMENTS_PER_READ + 3))
    text = st.text(max_size=30)
    buckets: list[list[OfficialVersion]] = []
    for b in range(count):
        offsets = draw(st.lists(st.integers(0, BUCKET_US - 1), max_size=5, unique=True))
        known = draw(st.sampled_from([1, 1, 4]))  # 4: after every as-of below but latest
        bucket = [version(b * BUCKET_US + o, 1, known, "") for o in sorted(offsets)]
        for n, offset in enumerate(
            draw(st.lists(st.sampled_from(sorted(offsets)), max_size=3)) if offsets else [],
            start=2,
        ):
            bucket.append(version(b * BUCKET_US + offset, n, known + n, draw(text)))
        buckets.append(bucket)
    overflowing = draw(st.frozensets(st.integers(0, max(0, count - 1)), max_size=3))
    return buckets, overflowing


def expected(
    store: Store, query: RangeQuery, at: int | None, reasons: bool = True
) -> list[tuple[int, int, str]]:
    official = store._official(query.start_us, query.end_us, at)
    return [(v.snap_us, v.version, v.reason if reasons else "") for v in official]


@settings(RANGE_PROPERTY, max_examples=200)
@given(
    histories(),
    st.integers(1, 12),
    st.integers(1, 40),
    st.one_of(st.none(), st.integers(1, 40 * len(VALUE))),
    st.integers(-BUCKET_US, 30 * BUCKET_US),
    st.integers(0, 40 * BUCKET_US),
    st.sampled_from([LATEST, KnownAt(1), KnownAt(3), KnownAt(5)]),
    st.sampled_from(COLUMNS),
)
def test_calls_resumed_from_their_tokens_give_every_value_once_and_end(
    history: tuple[list[list[OfficialVersion]], frozenset[int]],
    page_size: int,
    max_points: int,
    max_value_bytes: int | None,
    start_us: int,
    length_us: int,
    as_of: Latest | KnownAt,
    columns: frozenset[str],
) -> None:
    buckets, overflowing = history
    store = Store(buckets, overflowing)
    query = RangeQuery(S, start_us, start_us + length_us, as_of)
    at = None if isinstance(as_of, Latest) else as_of.at_us
    done = asyncio.run(calls(store, query, page_size, max_points, max_value_bytes, columns))
    assert [v for rows, _ in done for v in rows] == expected(store, query, at, "reason" in columns)
    # Only the last call may be empty, and it has no token.
    assert all(rows for rows, _ in done[:-1])


async def test_a_call_whose_points_end_with_the_range_costs_one_empty_tokenless_call() -> None:
    # 3 buckets of 10, a call of 30 points: the pages end at max_points with a token (as they
    # did before the budget), the next call answers nothing and no token.
    store = Store(plain_buckets(3, 10))
    done = await calls(store, RangeQuery(S), 7, 30, None, COLUMNS[0])
    assert [len(rows) for rows, _ in done] == [30, 0]
    assert done[-1][1] == ""


async def test_a_call_whose_bytes_end_with_the_range_has_the_rest_in_the_next() -> None:
    # The budget counts the offsets too: 30 values' bytes stop the read after the 2nd bucket,
    # the call ends with a token and the next holds the 3rd bucket, with no token.
    store = Store(plain_buckets(3, 10))
    done = await calls(store, RangeQuery(S), 7, 10**6, 30 * len(VALUE), COLUMNS[0])
    assert [v for rows, _ in done for v in rows] == expected(store, RangeQuery(S), None)
    assert done[-1][1] == ""
    assert all(rows for rows, _ in done)


async def test_a_budget_spent_by_a_full_store_read_ending_the_range_costs_one_empty_call() -> None:
    # Exactly SEGMENTS_PER_READ buckets, all of them the call's points: the store read cannot
    # tell the range ended, so the call ends with a token (_Ending.cut); the next answers
    # nothing and ends the range.
    store = Store(plain_buckets(SEGMENTS_PER_READ, 10))
    done = await calls(store, RangeQuery(S), 1_000, SEGMENTS_PER_READ * 10, None, COLUMNS[0])
    assert [len(rows) for rows, _ in done] == [SEGMENTS_PER_READ * 10, 0]
    assert done[-1][1] == ""


async def test_a_budget_spent_before_segments_an_as_of_empties_costs_one_empty_tokenless_call() -> (
    None
):
    # The bucket after the budget's last holds only points known later than the as-of: the
    # read stopped before it, so the call ends with a token and the next ends the range empty.
    buckets = [
        [version(b * BUCKET_US + i, 1, 1 if b == 0 else 9, "") for i in range(10)] for b in range(3)
    ]
    store = Store(buckets)
    done = await calls(
        store, RangeQuery(S, as_of=KnownAt(3)), 1_000, 10**6, 10 * len(VALUE), COLUMNS[0]
    )
    assert [v for rows, _ in done for v in rows] == expected(store, RangeQuery(S), 3)
    assert done[-1] == ([], "")
    assert all(rows for rows, _ in done[:-1])
