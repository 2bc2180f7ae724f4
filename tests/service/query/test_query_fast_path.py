"""The columnar fast paths answer what the plain paths answer (metamorphic):

- the wire encoders (qis_query.entrypoints.wire) write the bytes protobuf itself writes for the
  same packed numbers and repeated strings, for any int64, any double and any text, from
  sliced Arrow arrays too;
- the columnar view built from a few per-point records (GetValues, `fill_versions`) is the one
  built from their Arrow rows (`Pages`), and both are the plain construction the view had
  before it was serialised from buffers (one `extend` per column, written out here);
- an Arrow export's page spanning several segments streams as their batches, uncopied.
(That the columns and Flight answer what the per-point view answers is test_query_columns.py's
and test_query_flight.py's property.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.proto.enums import METHODS, RULES
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import OPEN_END, OfficialVersion
from qis_query.application import arrow_batches, export
from qis_query.application.arrow_batches import BatchBuilder
from qis_query.application.ranges import RangePage
from qis_query.entrypoints import columns as column_view
from qis_query.entrypoints import wire

from tests.service.query.test_query_columns import (
    SERIES,
    History,
    catalogue_entry,
    histories,
)

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
int64s = st.integers(-(2**63), 2**63 - 1)
texts = st.text(max_size=200)


# --- the wire encoders ------------------------------------------------------------------------


def assert_protobufs_own_varints(values: list[int]) -> None:
    expected = pb.OfficialValueColumns(snap_time_micros=values).SerializeToString()
    tag = wire.tag(pb.OfficialValueColumns.SNAP_TIME_MICROS_FIELD_NUMBER)
    assert wire.packed(tag, wire.varints(np.array(values, dtype=np.int64)).data) == expected


@PROPERTY
@given(st.lists(int64s, max_size=50))
def test_packed_varints_are_protobufs_own_bytes(values: list[int]) -> None:
    assert_protobufs_own_varints(values)


@pytest.mark.parametrize(
    "values",
    [
        [-1, -(2**63)],  # all negative: ten bytes each
        [2**49, 2**56 - 1, 1_700_000_000_000_000],  # one length for all (a page of snaps)
        [127, 128, 0, 2**63 - 1],
        [5, -5, 300],
        [1, 300, 2**40, 2**56 - 1],  # mixed lengths of at most eight bytes
    ],
)
def test_packed_varints_of_each_shape_are_protobufs_own_bytes(values: list[int]) -> None:
    assert_protobufs_own_varints(values)


@PROPERTY
@given(st.lists(st.floats(allow_nan=False), max_size=20))
def test_packed_doubles_are_protobufs_own_bytes(values: list[float]) -> None:
    expected = pb.OfficialValueColumns(quality_scores=values).SerializeToString()
    tag = wire.tag(pb.OfficialValueColumns.QUALITY_SCORES_FIELD_NUMBER)
    assert wire.packed(tag, wire.doubles(np.array(values, dtype=np.float64)).data) == expected


@PROPERTY
@given(st.lists(texts, max_size=20), st.integers(0, 3), st.integers(0, 3))
def test_repeated_strings_are_protobufs_own_bytes(values: list[str], cut: int, keep: int) -> None:
    """From an array sliced out of a longer one too (an offset into shared buffers)."""
    padded = ["before"] * cut + values + ["after"] * keep
    array = pa.array(padded, pa.string()).slice(cut, len(values))
    expected = values_pb2.DecimalColumn(texts=values).SerializeToString()
    assert wire.strings(wire.TEXT, array).data == expected


@PROPERTY
@given(st.integers(0, 20), st.data())
def test_repeated_strings_of_one_length_are_protobufs_own_bytes(
    size: int, data: st.DataObject
) -> None:
    """Texts of one length (a page of prices, often) take a path of their own."""
    same = st.text(alphabet="-.0123456789", min_size=size, max_size=size)
    values = data.draw(st.lists(same, min_size=1, max_size=20))
    array = pa.array(["x", *values], pa.string()).slice(1)
    expected = values_pb2.DecimalColumn(texts=values).SerializeToString()
    assert wire.strings(wire.TEXT, array).data == expected


# --- GetValues' columns from per-point records ----------------------------------------------


def plain_columns(versions: Sequence[OfficialVersion], shape: column_view.ValueLayout) -> bytes:
    """The columnar view as it was built before it was serialised from buffers: one extend per
    column from Python values (and the case chosen as the module's docstring says)."""
    out = pb.OfficialValueColumns()
    out.SetInParent()
    out.snap_time_micros.extend(v.snap_us for v in versions)
    out.versions.extend(v.version for v in versions)
    out.quality_scores.extend(v.quality_score for v in versions)
    out.record_time_micros.extend(v.recorded_from_us for v in versions)
    out.record_positions.extend(v.position_from for v in versions)
    out.supersede_positions.extend(
        0 if v.position_to == OPEN_END else v.position_to for v in versions
    )
    out.methods.extend(METHODS[v.method] for v in versions)
    out.flag_counts.extend(len(v.flags) for v in versions)
    out.flags.extend(RULES[f] for v in versions for f in v.flags)
    out.unit = shape.unit
    parsed = [values_pb2.DataValue.FromString(v.value) for v in versions]
    kinds = {p.WhichOneof("kind") for p in parsed}
    case = shape.case
    if case in (column_view.Case.PRICES, column_view.Case.VOLUMES):
        kind = "price" if case is column_view.Case.PRICES else "volume"
        decimals = [getattr(p, kind) for p in parsed]
        units = {d.currency if kind == "price" else d.unit for d in decimals}
        if kinds <= {kind} and units <= {"", shape.unit}:
            column = out.prices if kind == "price" else out.volumes
            column.SetInParent()
            column.texts.extend(d.value if kind == "price" else d.quantity for d in decimals)
            return out.SerializeToString()
    if case is column_view.Case.BARS and kinds <= {"bar"}:
        bars = out.bars
        for name in ("open", "high", "low", "close"):
            getattr(bars, name).SetInParent()
            getattr(bars, name).texts.extend(getattr(p.bar, name) for p in parsed)
        if any(p.bar.volume for p in parsed):
            bars.volume.texts.extend(p.bar.volume for p in parsed)
        return out.SerializeToString()
    out.other.SetInParent()
    out.other.values.extend(parsed)
    return out.SerializeToString()


@PROPERTY
@given(histories(), st.data())
def test_columns_from_records_are_those_from_rows_and_the_plain_ones(
    history: History, data: st.DataObject
) -> None:
    every = history.versions()
    chosen = data.draw(st.lists(st.sampled_from(every), max_size=8))
    shape = column_view.layout(catalogue_entry(history.kind, history.camel_case))
    from_records = pb.OfficialValueColumns()
    column_view.fill_versions(from_records, chosen, shape)
    from_rows = pb.OfficialValueColumns()
    from_rows.MergeFromString(
        column_view.Pages(shape)(RangePage(segments.rows_from_versions(chosen), ""))
    )
    assert from_records == from_rows
    assert from_records.SerializeToString() == plain_columns(chosen, shape)


def test_a_rule_without_an_enum_value_is_an_error_not_a_wrong_number() -> None:
    version = OfficialVersion(
        SERIES,
        0,
        1,
        values_pb2.DataValue().SerializeToString(),
        1.0,
        1,
        1,
        "",
        "u",
        "c",
        ("s",),
        "priority",
        ("no-such-rule",),
    )
    shape = column_view.ValueLayout(column_view.Case.OTHER, "")
    with pytest.raises(KeyError, match="no-such-rule"):
        column_view.fill_versions(pb.OfficialValueColumns(), [version], shape)


# --- Arrow exports ------------------------------------------------------------------------------


def test_an_export_page_of_several_segments_streams_one_batch_per_segment() -> None:
    """No column is copied to join a page's segments: each stays its own batch, and the
    batches hold the page's rows in order."""
    value = values_pb2.DataValue(price=values_pb2.Price(value="1.5")).SerializeToString()
    parts = [
        segments.rows_from_versions(
            [
                OfficialVersion(SERIES, snap, 1, value, 1.0, 5, 5, "", "u", "c", ("s",), "priority")
                for snap in range(first, first + 3)
            ]
        )
        for first in (0, 10)
    ]
    rows = pa.concat_tables(parts)
    series = export.ExportedSeries(SERIES, "price", "USD", export.ValueColumns.DECIMAL)
    builder = BatchBuilder([series], export.ValueColumns.DECIMAL, 5)
    batches = builder.batches(export.ExportPage(0, rows))
    assert [b.num_rows for b in batches] == [3, 3]
    table = pa.Table.from_batches(batches)
    assert [t.value for t in table.column("snap_time")] == [0, 1, 2, 10, 11, 12]
    assert {str(v) for v in table.column("value").to_pylist()} == {"1.500000000000000000"}


TEXTS = st.one_of(
    st.none(), st.sampled_from(["price", "pricf", "Price", "pri", "ceprice", "", "p"])
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.lists(TEXTS, max_size=6), st.integers(0, 3)), max_size=4),
    st.sampled_from([pa.string(), pa.large_string()]),
)
@example([(["pri", "ceprice"], 0)], pa.string())  # the bytes of two "price", not the length
@example([(["pricep", "rice"], 0)], pa.string())
@example([(["pricf", "price", "price"], 1)], pa.string())  # a chunk past a value that differs
@example([(["pricf", "price"], 0)], pa.large_string())  # 64-bit offsets: not read as 32-bit
def test_a_page_column_checked_from_its_buffers_is_all_one_text_as_arrow_says(
    chunks: list[tuple[list[str | None], int]], kind: pa.DataType
) -> None:
    """The kind and unit checks of a page read the columns' buffers (sliced chunks too) and
    answer what Arrow's all(equal()) answers, nulls aside, whatever the string type."""
    column = pa.chunked_array(
        [pa.array(texts, kind).slice(min(cut, len(texts))) for texts, cut in chunks], kind
    )
    by_arrow = pc.all(pc.equal(column, "price")).as_py() is not False
    assert arrow_batches._all_equal(column, "price") == by_arrow
