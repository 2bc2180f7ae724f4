"""The page encoder's text shortcuts (a page's rows mostly share their kind, unit and method, and
their prices one length) against their plain meaning, on Arrow columns as pages have them:
sliced from a longer segment, in one or two chunks, with nulls; texts that share their bytes
end to end but not their boundaries ("ab", "ab" against "a", "bab") must not pass for one."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_query.entrypoints import columns, wire

texts = st.sampled_from(["", "a", "ab", "b", "bab", "aba", "price", "x" * 130])


@st.composite
def pages(draw: st.DrawFn, nulls: bool) -> tuple[list[str | None], pa.Array | pa.ChunkedArray]:
    """Rows, and their column: a slice of a longer array, maybe cut in two chunks."""
    row: st.SearchStrategy[str | None] = st.one_of(texts, st.none()) if nulls else texts
    rows = draw(st.lists(row, max_size=8))
    before = draw(st.lists(texts, max_size=3))
    column = pa.array([*before, *rows], pa.string()).slice(len(before))
    in_two = draw(st.booleans())
    if rows and in_two:
        cut = draw(st.integers(0, len(rows)))
        return rows, pa.chunked_array([column.slice(0, cut), column.slice(cut)], pa.string())
    return rows, column


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(pages(nulls=True), st.sets(st.sampled_from(["", "a", "ab", "price"]), max_size=2))
def test_only_is_the_set_of_the_rows(
    page: tuple[list[str | None], pa.Array | pa.ChunkedArray], allowed: set[str]
) -> None:
    rows, column = page
    assert columns._only(column, allowed) == (set(rows) <= allowed)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(pages(nulls=False))
def test_strings_are_the_repeated_field_protobuf_writes(
    page: tuple[list[str | None], pa.Array | pa.ChunkedArray],
) -> None:
    rows = [r for r in page[0] if r is not None]  # none is
    column = page[1]
    contiguous = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    expected = values_pb2.DecimalColumn(texts=rows).SerializeToString()
    assert wire.strings(wire.TEXT, contiguous).data == expected
    if rows:
        lengths = {len(r) for r in rows}
        same = wire.one_length(contiguous)
        assert (same is not None) == (len(lengths) == 1)
        assert same is None or same[1] == lengths.pop()


def test_rows_of_one_length_that_repeat_the_first_end_to_end_are_not_one_text() -> None:
    same_bytes = pa.array(["ab", "a", "bab"], pa.string())  # "ababab", 6 bytes: 3 x "ab"
    assert not columns._only(same_bytes, {"ab"})
    assert wire.one_length(same_bytes) is None
