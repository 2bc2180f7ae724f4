"""A range's columnar pages cut out of their block (the rows read ahead they were sliced from,
encoded once: columns.Pages) are the pages encoded alone, byte for byte, wherever the cuts
fall: a block of mixed values (a price in another currency, a volume in another unit) whose
page holds only the series' own goes in the page's own case, not the block's. (That a page
encoded alone is protobuf's message and the per-point view's answer is
test_query_fast_path.py's and test_query_columns.py's property.) So are any rows' bytes cut
out of a column encoded whole: its rows encoded alone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis_adapters.readstore import segments
from qis_query.application.ranges import RangePage
from qis_query.entrypoints import columns as column_view
from qis_query.entrypoints import wire

from tests.service.query.test_query_columns import History, catalogue_entry, histories


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_query_pages_cut_from_a_block_are_the_pages_encoded_alone(
    history: History, data: st.DataObject
) -> None:
    versions = sorted(history.versions(), key=lambda v: (v.snap_us, v.version))
    split = data.draw(st.integers(0, len(versions)))
    # Read ahead in two parts (a page's tail and the next segment): a block of two chunks.
    block = pa.concat_tables(
        [
            segments.rows_from_versions(versions[:split]),
            segments.rows_from_versions(versions[split:]),
        ]
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(versions)), max_size=6)))
    shape = column_view.layout(catalogue_entry(history.kind, history.camel_case))
    pages = column_view.Pages(shape)
    for start, stop in zip([0, *cuts], [*cuts, len(versions)], strict=True):
        rows = block.slice(start, stop - start)
        alone = column_view.Pages(shape)(RangePage(rows, ""))
        assert pages(RangePage(rows, "", block, start)) == alone


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40),
    st.lists(st.text(max_size=150), max_size=40),
    st.data(),
)
def test_query_page_rows_cut_from_a_column_are_the_rows_encoded_alone(
    numbers: list[int], texts: list[str], data: st.DataObject
) -> None:
    array = np.array(numbers, dtype=np.int64)
    start = data.draw(st.integers(0, len(numbers)))
    stop = data.draw(st.integers(start, len(numbers)))
    assert wire.varints(array).rows(start, stop) == wire.varints(array[start:stop]).data
    assert wire.varints(numbers).rows(start, stop) == wire.varints(array[start:stop]).data
    floats = array.astype(np.float64)
    assert wire.doubles(floats).rows(start, stop) == wire.doubles(floats[start:stop]).data
    first = data.draw(st.integers(0, len(texts)))
    last = data.draw(st.integers(first, len(texts)))
    strings = pa.array(texts, pa.string())
    whole = wire.strings(wire.TEXT, strings).rows(first, last)
    assert whole == wire.strings(wire.TEXT, strings.slice(first, last - first)).data
    assert whole == wire.fields(wire.TEXT, texts[first:last]).data
