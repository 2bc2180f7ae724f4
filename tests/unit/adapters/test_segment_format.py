"""The segment format (qis_adapters.readstore.segments), version 2: exact decimal128 value
columns beside the texts, and format-1 payloads (without them) read as if rebuilt.

Every decimal the domain accepts (qis_domain.values.parse_decimal) must come back from a
written and read segment as the same number, exactly, in every notation ingest takes; a text
decimal128(38, 18) cannot hold leaves its own row's decimals null, never rounded.
"""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import LATEST, OfficialVersion
from qis_domain.bounds import MAX_DECIMAL_DIGITS_BEFORE_POINT, MAX_DECIMAL_PLACES
from qis_domain.errors import FieldViolation
from qis_domain.values import parse_decimal

SERIES = "S"
BASE = OfficialVersion(SERIES, 0, 1, b"", 1.0, 5, 10, "", "u", "c", ("bbg",), "priority")
DECIMALS = tuple(segments.DECIMAL_COLUMNS.values())


def _price(text: str) -> bytes:
    return values_pb2.DataValue(
        price=values_pb2.Price(value=text, currency="USD")
    ).SerializeToString()


def _bar(*texts: str) -> bytes:
    fields = dict(zip(("open", "high", "low", "close", "volume"), texts, strict=False))
    return values_pb2.DataValue(bar=values_pb2.OhlcBar(**fields)).SerializeToString()


def _versions(values: list[bytes]) -> list[OfficialVersion]:
    return [BASE._replace(snap_us=i, value=value) for i, value in enumerate(values)]


def _round_trip(values: list[bytes]) -> pa.Table:
    return segments.decode(segments.encode(segments.rows_from_versions(_versions(values))))


def _accepted(text: str) -> bool:
    violations: list[FieldViolation] = []
    parse_decimal(text, "value", violations)
    return not violations


@st.composite
def accepted_texts(draw: st.DrawFn) -> str:
    """A decimal text ingest accepts: up to 36 digits, |x| < 1e18, at most 18 places as
    written, in plain or exponent notation, zeros and negatives included."""
    places = draw(st.integers(0, MAX_DECIMAL_PLACES))
    digits = draw(st.integers(0, 10 ** (MAX_DECIMAL_DIGITS_BEFORE_POINT + places) - 1))
    number = Decimal(f"{draw(st.sampled_from(['', '-']))}{digits}E-{places}")  # no rounding
    form = draw(st.sampled_from(["str", "plain", "exponent"]))
    text = {"str": str(number), "plain": format(number, "f"), "exponent": f"{number:E}"}[form]
    return text if _accepted(text) else str(number)


@settings(max_examples=300, deadline=None)
@given(st.lists(accepted_texts(), min_size=1, max_size=20))
def test_every_accepted_decimal_round_trips_exactly(texts: list[str]) -> None:
    assert all(_accepted(t) for t in texts)
    rows = _round_trip([_price(t) for t in texts])
    assert rows["text"].to_pylist() == texts  # as published, unchanged
    assert rows["decimal"].to_pylist() == [Decimal(t) for t in texts]
    assert rows["decimal"].null_count == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0E+9999", Decimal(0)),
        ("-0E+5", Decimal(0)),
        ("0E-30", Decimal(0)),
        ("1.5E-17", Decimal("0.000000000000000015")),
        (
            "-999999999999999999.999999999999999999",
            Decimal("-999999999999999999.999999999999999999"),
        ),
        ("1E-18", Decimal("1E-18")),
    ],
)
def test_zeros_and_extremes_are_exact(text: str, expected: Decimal) -> None:
    decimal = _round_trip([_price(text)])["decimal"].to_pylist()[0]
    assert decimal == expected
    assert decimal.as_tuple().exponent == -18  # the column's scale: every digit kept


@pytest.mark.parametrize(
    "text",
    [
        "0.1234567890123456789",  # 19 places: rounding would be needed
        "1E-30",
        "1E+20",  # beyond 38 digits at 18 places
        "1234567890123456789012345678901234567890",
        "NaN",
    ],
)
def test_a_text_decimal128_cannot_hold_leaves_its_row_without_a_decimal(text: str) -> None:
    rows = _round_trip(
        [_price("1.5"), _price(text), _bar("1", "2", "0.5", "1.5", "10"), _bar("1", text, "1", "1")]
    )
    assert rows["text"].to_pylist() == ["1.5", text, None, None]  # the texts as they came
    assert rows["decimal"].to_pylist() == [Decimal("1.5"), None, None, None]  # never rounded
    # a bar with one field it cannot hold has none: its open (always there) tells
    assert rows["open_decimal"].to_pylist() == [None, None, Decimal(1), None]
    assert rows["bar_volume_decimal"].to_pylist() == [None, None, Decimal(10), None]


def test_a_restated_text_decimal128_cannot_hold_leaves_the_others_their_decimals() -> None:
    """The bucket's next segment version keeps the rows still official: a restatement of the
    one row that had no decimal must not leave its neighbours without theirs."""
    rows = segments.decode(segments.encode(segments.rows_from_versions(
        _versions([_price("1E-19"), _price("2.5")])
    )))  # fmt: skip
    restated = [BASE._replace(snap_us=0, version=2, value=_price("1.5"), position_from=20)]
    latest = segments.select(segments.extend(rows, restated), LATEST, 0, 10)
    assert latest["decimal"].to_pylist() == [Decimal("1.5"), Decimal("2.5")]


def test_bars_have_a_decimal_per_field_and_no_volume_is_null() -> None:
    rows = _round_trip([_bar("1", "2.5", "0.5", "1.25", "100"), _bar("3", "4", "2", "3.5")])
    assert rows["open_decimal"].to_pylist() == [Decimal(1), Decimal(3)]
    assert rows["high_decimal"].to_pylist() == [Decimal("2.5"), Decimal(4)]
    assert rows["low_decimal"].to_pylist() == [Decimal("0.5"), Decimal(2)]
    assert rows["close_decimal"].to_pylist() == [Decimal("1.25"), Decimal("3.5")]
    assert rows["bar_volume_decimal"].to_pylist() == [Decimal(100), None]
    assert rows["decimal"].to_pylist() == [None, None]


def _format_1(rows: pa.Table) -> bytes:
    """A payload as format 1 wrote it: SCHEMA's columns before the decimal ones."""
    old = rows.select(list(segments.SCHEMA.names[: -len(DECIMALS)]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(
        sink, old.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")
    ) as writer:
        writer.write_table(old)
    payload: bytes = sink.getvalue().to_pybytes()
    return payload


COLUMN_SETS = [
    None,
    frozenset({"snap_us", "decimal", "unit"}),
    frozenset({"snap_us", "open_decimal", "bar_volume_decimal", "flags"}),
    frozenset({"snap_us", "text", "position_to"}),  # no decimal asked for
    frozenset(DECIMALS),
]


@pytest.mark.parametrize("columns", COLUMN_SETS)
def test_a_format_1_payload_reads_as_its_rebuild(columns: frozenset[str] | None) -> None:
    values = [_price("101.25"), _price("0E+9999"), _bar("1", "2", "0.5", "1.5"), _price("-3")]
    rows = segments.rows_from_versions(_versions(values))
    rebuilt = segments.encode(rows)
    old = _format_1(rows)
    assert old != rebuilt
    assert segments.decode(old, columns) == segments.decode(rebuilt, columns)
    if columns is None:
        assert segments.decode(old).schema == segments.SCHEMA


@pytest.mark.parametrize("columns", [c for c in COLUMN_SETS if c is not None])
@pytest.mark.parametrize("format_1", [(), (1,), (0, 2)])
def test_segments_decoded_together_are_each_decoded_one_after_the_other(
    columns: frozenset[str], format_1: tuple[int, ...]
) -> None:
    """decode_many: one IPC stream of several payloads of `encode` (one of none too), and the
    same rows when some are format 1 (each decoded alone)."""
    values = [_price("101.25"), _bar("1", "2", "0.5", "1.5"), _price("-3")]
    tables = [segments.rows_from_versions(_versions(values[: i + 1])) for i in range(len(values))]
    payloads = [
        _format_1(rows) if i in format_1 else segments.encode(rows) for i, rows in enumerate(tables)
    ]
    expected = pa.concat_tables([segments.decode(p, columns) for p in payloads])
    together = segments.decode_many(payloads, columns)
    assert together.equals(expected)
    assert together.num_rows == 6
    assert segments.decode_many([], columns).equals(segments.decode(payloads[0], columns)[:0])


def test_a_format_1_segment_extends_as_its_rebuild_does() -> None:
    """The projector builds a bucket's next version on the stored one, whatever its format."""
    rows = segments.rows_from_versions(_versions([_price("1"), _price("2")]))
    restated = [BASE._replace(snap_us=1, version=2, value=_price("2.5"), position_from=20)]
    from_old = segments.extend(segments.decode(_format_1(rows)), restated)
    from_new = segments.extend(segments.decode(segments.encode(rows)), restated)
    assert from_old == from_new
    latest = segments.select(segments.decode(segments.encode(from_old)), LATEST, 0, 10)
    assert latest["decimal"].to_pylist() == [Decimal(1), Decimal("2.5")]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["priority", "median", "manual"]),
            st.sampled_from([(), ("bbg",), ("bbg", "rtrs")]),
            st.sampled_from([(), ("spike",)]),
            st.integers(1, 3),
            st.sampled_from([0.5, 1.0]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_rows_hold_each_versions_fields_whether_or_not_they_repeat(
    drawn: list[tuple[str, tuple[str, ...], tuple[str, ...], int, float]],
) -> None:
    versions = [
        BASE._replace(
            snap_us=i,
            value=_price(str(i)),
            method=method,
            sources=sources,
            flags=flags,
            version=version,
            quality_score=quality,
        )
        for i, (method, sources, flags, version, quality) in enumerate(drawn)
    ]
    rows = segments.rows_from_versions(versions)
    assert rows.schema == segments.SCHEMA
    assert segments.versions_from_rows(SERIES, rows) == versions
