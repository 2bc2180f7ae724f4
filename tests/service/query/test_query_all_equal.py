"""arrow_batches._all_equal (the kind and unit checks of a page, read from
a string column's buffers) answers what Arrow's all(equal()) answers for any text, the empty
unit too, on sliced, empty and null-holding chunks of either string type."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st
from qis_query.application import arrow_batches

TEXTS = st.sampled_from(["", "USD", "US", "USDUSD", "é", "ée", "\x00", "D"])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.one_of(st.none(), TEXTS), max_size=5), st.integers(0, 3)),
        max_size=4,
    ),
    TEXTS,
    st.sampled_from([pa.string(), pa.large_string()]),
)
def test_all_equal_answers_as_arrow_for_any_text_and_chunking(
    chunks: list[tuple[list[str | None], int]], text: str, kind: pa.DataType
) -> None:
    column = pa.chunked_array(
        [pa.array(values, kind).slice(min(cut, len(values))) for values, cut in chunks], kind
    )
    by_arrow = pc.all(pc.equal(column, text)).as_py() is not False
    assert arrow_batches._all_equal(column, text) == by_arrow


def test_a_column_cut_from_a_longer_one_is_read_from_its_own_offsets() -> None:
    whole = pa.array(["EUR", "USD", "USD", "EUR"])
    assert arrow_batches._all_equal(pa.chunked_array([whole.slice(1, 2)]), "USD")
    assert not arrow_batches._all_equal(pa.chunked_array([whole.slice(1, 3)]), "USD")
    assert arrow_batches._all_equal(pa.chunked_array([whole.slice(4)]), "USD")
