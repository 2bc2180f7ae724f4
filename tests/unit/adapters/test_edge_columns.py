"""The columnar ingest form at the edge (qis_adapters.proto.columns): the points of a
PointColumns are the very points of the same DataPoints, within the same bounds, and every
violation names its row."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import event, given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.proto import columns as columns_module
from qis_adapters.proto.columns import points_from_columns, value_column
from qis_adapters.proto.values import points_from_proto
from qis_domain import bounds
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import ScalarPoints
from qis_domain.snaps import Snap
from qis_domain.values import DataValue, OhlcBar, Price, Volume

US = 1_000_000
T0 = 1_709_326_800 * US  # 2024-03-01T21:00:00Z
Points = Sequence[tuple[Snap, DataValue]]


def texts(*values: str) -> values_pb2.DecimalColumn:
    return values_pb2.DecimalColumn(texts=values)


def scaled(*unscaled: int, scale: int = 0) -> values_pb2.DecimalColumn:
    return values_pb2.DecimalColumn(unscaled=unscaled, scale=scale)


def snaps(n: int) -> list[int]:
    return [T0 + i * US for i in range(n)]


def prices(column: values_pb2.DecimalColumn, **fields: Any) -> values_pb2.PointColumns:
    n = max(len(column.texts), len(column.unscaled))
    fields.setdefault("snap_time_micros", snaps(n))
    return values_pb2.PointColumns(prices=column, **fields)


def parsed(columns: values_pb2.PointColumns) -> tuple[Points, list[FieldViolation]]:
    violations: list[FieldViolation] = []
    return points_from_columns(columns, violations), violations


def accepted(columns: values_pb2.PointColumns) -> Points:
    points, violations = parsed(columns)
    assert violations == []
    return points


def refused(columns: values_pb2.PointColumns) -> list[str]:
    """The violations' field paths; nothing is returned when anything is wrong."""
    points, violations = parsed(columns)
    assert points == []
    assert violations
    assert all(v.description for v in violations)
    return [v.field for v in violations]


def per_point(rows: list[tuple[int, values_pb2.DataValue]], offset_s: int | None = None) -> Points:
    """What the per-point form makes of the same points."""
    msgs = []
    for us, value in rows:
        point = values_pb2.DataPoint(
            snap_time=timestamp_pb2.Timestamp(seconds=us // US, nanos=us % US * 1000), value=value
        )
        if offset_s is not None:
            point.utc_offset.CopyFrom(duration_pb2.Duration(seconds=offset_s))
        msgs.append(point)
    violations: list[FieldViolation] = []
    out = points_from_proto(msgs, violations)
    assert violations == []
    return out


def price(text: str) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=text))


# --- the same points as the per-point form ---


def test_decimal_texts_are_the_per_point_values_as_written() -> None:
    written = ["101.25", "-0.50", "7", "007.10", ".5", "5.", "+3", "1.5E+3", "2e-4", "-0"]
    points = accepted(prices(texts(*written)))
    assert points == per_point([(us, price(t)) for us, t in zip(snaps(10), written, strict=True)])
    assert repr(points) == repr(
        per_point([(us, price(t)) for us, t in zip(snaps(10), written, strict=True)])
    )
    assert [p[1] for p in points] == [Price(Decimal(t), "") for t in written]
    assert [str(p[1].value) for p in points][:4] == ["101.25", "-0.50", "7", "7.10"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("written", "made_now"),
    [
        (["101.25", "-0.50", "7", "-0", "0.000001", "9" * 18 + "." + "9" * 18], False),
        (["101.25", "007.10"], True),  # not its Decimal's own text: checked and made now
        (["101.25", "1.5E+3"], True),
    ],
)
def test_a_column_of_own_texts_makes_its_figures_when_read(
    written: list[str], made_now: bool
) -> None:
    """The usual column is checked whole by its texts (ScalarPoints.of_own_texts), and so are
    the same prices sent point by point; the same points, read either way."""
    points = accepted(prices(texts(*written)))
    n = len(written)
    pointwise = per_point([(us, price(t)) for us, t in zip(snaps(n), written, strict=True)])
    for made in (points, pointwise):
        assert isinstance(made, ScalarPoints)
        assert (made._figures is not None) is made_now
    assert points == pointwise
    assert isinstance(points, ScalarPoints)
    assert points.figures == [Decimal(t) for t in written]


@pytest.mark.parametrize(
    ("unscaled", "scale", "text"),
    [
        (10125, 2, "101.25"),
        (0, 2, "0.00"),
        (-5, 3, "-0.005"),
        (100, 2, "1.00"),
        (42, 0, "42"),
        (10**18 - 1, 0, "999999999999999999"),
        (-(10**18) + 1, 0, "-999999999999999999"),
        (123, 18, "0.000000000000000123"),
        (2**63 - 1, 18, "9.223372036854775807"),
        (-(2**63), 18, "-9.223372036854775808"),
        (2**63 - 1, 1, "922337203685477580.7"),
    ],
)
def test_an_unscaled_integer_is_the_decimal_written_with_scale_places(
    unscaled: int, scale: int, text: str
) -> None:
    ((snap, value),) = accepted(prices(scaled(unscaled, scale=scale)))
    assert value == Price(Decimal(text), "")
    assert repr(value) == repr(Price(Decimal(text), ""))  # the same places: the same command
    assert isinstance(value, Price)
    assert str(value.value) == str(Decimal(text))
    assert snap == Snap(T0, 0)


def test_volumes_and_bars_are_the_per_point_values() -> None:
    vol = values_pb2.PointColumns(snap_time_micros=snaps(2), volumes=texts("100", "2.5"))
    assert accepted(vol) == [
        (Snap(T0), Volume(Decimal("100"), "")),
        (Snap(T0 + US), Volume(Decimal("2.5"), "")),
    ]
    bars = values_pb2.OhlcBarColumns(
        open=texts("10", "11"),
        high=scaled(1250, 1300, scale=2),
        low=texts("9.5", "10.5"),
        close=texts("12", "12.5"),
        volume=texts("", "300"),
    )
    got = accepted(values_pb2.PointColumns(snap_time_micros=snaps(2), bars=bars))
    per = per_point(
        [
            (
                T0,
                values_pb2.DataValue(
                    bar=values_pb2.OhlcBar(open="10", high="12.50", low="9.5", close="12")
                ),
            ),
            (
                T0 + US,
                values_pb2.DataValue(
                    bar=values_pb2.OhlcBar(
                        open="11", high="13.00", low="10.5", close="12.5", volume="300"
                    )
                ),
            ),
        ]
    )
    assert got == per
    assert repr(got) == repr(per)
    assert got[0][1] == OhlcBar(
        Decimal("10"), Decimal("12.50"), Decimal("9.5"), Decimal("12"), None
    )


def test_a_bar_volume_column_left_unset_or_empty_means_no_bar_has_one() -> None:
    for volume in (None, values_pb2.DecimalColumn()):
        bars = values_pb2.OhlcBarColumns(
            open=texts("1"), high=texts("2"), low=texts("1"), close=texts("2"), volume=volume
        )
        ((_, bar),) = accepted(values_pb2.PointColumns(snap_time_micros=[T0], bars=bars))
        assert isinstance(bar, OhlcBar)
        assert bar.volume is None
    bars = values_pb2.OhlcBarColumns(
        open=texts("1"), high=texts("2"), low=texts("1"), close=texts("2"), volume=scaled(5)
    )
    ((_, bar),) = accepted(values_pb2.PointColumns(snap_time_micros=[T0], bars=bars))
    assert isinstance(bar, OhlcBar)
    assert bar.volume == Decimal(5)


def test_offsets_none_one_or_one_per_row() -> None:
    base = texts("1", "2", "3")
    assert [s for s, _ in accepted(prices(base))] == [Snap(us, 0) for us in snaps(3)]
    assert [s for s, _ in accepted(prices(base, utc_offset_minutes=[-300]))] == [
        Snap(us, -18_000) for us in snaps(3)
    ]
    assert [s for s, _ in accepted(prices(base, utc_offset_minutes=[60, -1439, 1439]))] == [
        Snap(T0, 3_600),
        Snap(T0 + US, -86_340),
        Snap(T0 + 2 * US, 86_340),
    ]
    # The same snaps as the per-point form with a Duration offset.
    assert accepted(prices(base, utc_offset_minutes=[-300])) == per_point(
        [(us, price(t)) for us, t in zip(snaps(3), "123", strict=True)], offset_s=-18_000
    )


def test_rows_keep_the_order_sent_and_unsorted_unique_snaps_are_accepted() -> None:
    order = [T0 + 5 * US, T0, T0 + 2 * US]
    points = accepted(prices(texts("1", "2", "3"), snap_time_micros=order))
    assert [s.utc_us for s, _ in points] == order


def test_snaps_at_the_ends_of_the_instants_are_accepted() -> None:
    ends = [bounds.MIN_INSTANT_US, bounds.MAX_INSTANT_US]
    assert [s.utc_us for s, _ in accepted(prices(texts("1", "2"), snap_time_micros=ends))] == ends


def test_decimals_at_the_bounds_are_accepted() -> None:
    edge = ["999999999999999999", "-999999999999999999.999999999999999999", "0.000000000000000001"]
    edge += ["0000000000000000000001.5", "1.000000000000000000", "9.99999999999999999E+17"]
    points = accepted(prices(texts(*edge)))
    assert [p[1] for p in points] == [Price(Decimal(t), "") for t in edge]


def test_ten_thousand_rows_are_accepted_and_one_more_is_refused() -> None:
    n = bounds.MAX_BATCH
    assert len(accepted(prices(scaled(*range(n), scale=2)))) == n
    assert refused(prices(scaled(*range(n + 1), scale=2))) == ["columns.snap_time_micros"]
    assert refused(values_pb2.PointColumns(prices=texts())) == ["columns.snap_time_micros"]


# --- every violation names its row ---


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "NaN",
        "Infinity",
        "1_000",
        " 1",
        "1 ",
        "1,5",
        "١٢",  # Arabic-Indic digits: Decimal() takes them, the contract does not
        "+-1",
        "1.2.3",
        "-",
        ".",
        "1e19",
        "1" * 19,
        "-" + "9" * 18 + ".5" + "0" * 17 + "1",
        "0." + "0" * 18 + "1",
        "1.0000000000000000000",
        "1E-19",
    ],
)
def test_a_bad_decimal_text_is_named_by_its_row(bad: str) -> None:
    good = ["1.5"] * 20
    good[17] = bad
    assert refused(prices(texts(*good))) == ["columns.prices.texts[17]"]
    # The same text is refused in the per-point form too.
    v: list[FieldViolation] = []
    points_from_proto(
        [values_pb2.DataPoint(snap_time=timestamp_pb2.Timestamp(seconds=1), value=price(bad))], v
    )
    assert [f.field for f in v] == ["points[0].value.price.value"]


def test_every_bad_row_is_named_and_the_description_is_the_per_point_one() -> None:
    _, violations = parsed(prices(texts("1", "x", "2", "1e40", "3")))
    assert [v.field for v in violations] == ["columns.prices.texts[1]", "columns.prices.texts[3]"]
    assert "'x' is not a finite decimal number" in violations[0].description
    assert "beyond |x| < 1e18" in violations[1].description


def test_an_unscaled_integer_beyond_the_bounds_at_its_scale_is_named_by_its_row() -> None:
    rows = [1, 10**18, 2, -(10**18), 10**18 - 1]
    assert refused(prices(scaled(*rows))) == [
        "columns.prices.unscaled[1]",
        "columns.prices.unscaled[3]",
    ]
    # At scale 1 and more every sint64 is within |x| < 1e18.
    assert len(accepted(prices(scaled(*rows, scale=1)))) == 5


@pytest.mark.parametrize("scale", [-1, 19, 2**31 - 1])
def test_a_scale_beyond_0_to_18_is_refused(scale: int) -> None:
    assert refused(prices(scaled(1, 2, scale=scale))) == ["columns.prices.scale"]


def test_a_bar_field_is_named_by_its_row() -> None:
    high = [100] * 12
    high[9] = 10**18
    bars = values_pb2.OhlcBarColumns(
        open=texts(*["1"] * 12),
        high=scaled(*high),
        low=texts(*["1"] * 11, "one"),
        close=texts(*["1"] * 12),
        volume=texts(*["", "x"] + [""] * 10),
    )
    assert refused(values_pb2.PointColumns(snap_time_micros=snaps(12), bars=bars)) == [
        "columns.bars.high.unscaled[9]",
        "columns.bars.low.texts[11]",
        "columns.bars.volume.texts[1]",
    ]


def test_a_column_of_another_length_is_named_whole() -> None:
    bars = values_pb2.OhlcBarColumns(
        open=texts("1", "1", "1"),
        high=texts("2", "2", "2"),
        low=texts("1", "1"),
        close=scaled(1, 2, 3, 4),
        volume=texts("1"),
    )
    assert refused(values_pb2.PointColumns(snap_time_micros=snaps(3), bars=bars)) == [
        "columns.bars.low",
        "columns.bars.close",
        "columns.bars.volume",
    ]
    missing = values_pb2.OhlcBarColumns(open=texts("1"), high=texts("2"), low=texts("1"))
    assert refused(values_pb2.PointColumns(snap_time_micros=[T0], bars=missing)) == [
        "columns.bars.close"
    ]
    assert refused(prices(texts("1", "2"), snap_time_micros=[T0])) == ["columns.prices"]


def test_a_decimal_column_is_texts_or_unscaled_and_its_scale_is_for_unscaled() -> None:
    both = values_pb2.DecimalColumn(texts=["1"], unscaled=[1])
    assert refused(prices(both, snap_time_micros=[T0])) == ["columns.prices"]
    assert refused(prices(values_pb2.DecimalColumn(texts=["1"], scale=2))) == [
        "columns.prices.scale"
    ]


def test_a_value_column_is_required() -> None:
    assert refused(values_pb2.PointColumns(snap_time_micros=[T0])) == ["columns"]


def test_a_snap_beyond_the_instants_is_named_by_its_row() -> None:
    rows = snaps(5)
    rows[3] = bounds.MAX_INSTANT_US + 1
    rows[1] = bounds.MIN_INSTANT_US - 1
    assert refused(prices(texts(*"12345"), snap_time_micros=rows)) == [
        "columns.snap_time_micros[1]",
        "columns.snap_time_micros[3]",
    ]
    extreme = [-(2**63), 2**63 - 1]
    assert refused(prices(texts("1", "2"), snap_time_micros=extreme)) == [
        "columns.snap_time_micros[0]",
        "columns.snap_time_micros[1]",
    ]


def test_a_repeated_snap_is_named_with_its_first_row() -> None:
    rows = [T0, T0 + US, T0, T0 + 2 * US, T0 + US]
    _, violations = parsed(prices(texts(*"12345"), snap_time_micros=rows))
    assert [(v.field, v.description) for v in violations] == [
        ("columns.snap_time_micros[2]", "the same instant as columns.snap_time_micros[0]"),
        ("columns.snap_time_micros[4]", "the same instant as columns.snap_time_micros[1]"),
    ]


def test_an_offset_beyond_23_59_is_named_by_its_row() -> None:
    assert refused(prices(texts("1", "2", "3"), utc_offset_minutes=[0, 1, 1440])) == [
        "columns.utc_offset_minutes[2]"
    ]
    assert refused(prices(texts("1", "2", "3"), utc_offset_minutes=[-1440])) == [
        "columns.utc_offset_minutes[0]"
    ]


def test_offsets_neither_none_one_nor_one_per_row_are_named_whole() -> None:
    assert refused(prices(texts("1", "2", "3"), utc_offset_minutes=[0, 60])) == [
        "columns.utc_offset_minutes"
    ]


def test_every_violation_is_in_one_answer() -> None:
    rows = [T0, T0, bounds.MAX_INSTANT_US + 1]
    columns = values_pb2.PointColumns(
        snap_time_micros=rows,
        utc_offset_minutes=[0, 0, 2000],
        bars=values_pb2.OhlcBarColumns(
            open=texts("1", "x", "1"),
            high=scaled(1, 2, 3, scale=40),
            low=texts("1", "1"),
            close=texts("1", "1", "1"),
        ),
    )
    assert refused(columns) == [
        "columns.snap_time_micros[2]",
        "columns.snap_time_micros[1]",
        "columns.utc_offset_minutes[2]",
        "columns.bars.open.texts[1]",
        "columns.bars.high.scale",
        "columns.bars.low",
    ]


def test_the_happy_path_builds_no_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Field paths are formatted only for what fails: a good batch never makes one."""

    def no_violation(*_: object) -> FieldViolation:
        raise AssertionError("a violation was built for a good batch")

    monkeypatch.setattr(columns_module, "FieldViolation", no_violation)
    n = 1_000
    rows = [T0 + i * US for i in range(n)][::-1]  # unsorted: the slower check
    columns = values_pb2.PointColumns(
        snap_time_micros=rows,
        utc_offset_minutes=[60] * n,
        bars=values_pb2.OhlcBarColumns(
            open=texts(*[f"{i}.25" for i in range(n)]),
            high=scaled(*range(n), scale=18),
            low=texts(*["0.1234567890123456789"[:20]] * n),  # long: checked on its own
            close=texts(*["1.5E+3"] * n),  # exponent: row by row
            volume=texts(*["", "5"] * (n // 2)),
        ),
    )
    assert len(accepted(columns)) == n


def test_the_value_column_is_named_for_the_series_type_check() -> None:
    assert value_column(prices(texts("1"))) == "columns.prices"
    assert value_column(values_pb2.PointColumns(volumes=texts("1"))) == "columns.volumes"
    assert value_column(values_pb2.PointColumns(bars=values_pb2.OhlcBarColumns())) == "columns.bars"
    assert value_column(values_pb2.PointColumns()) == "columns"


# --- differential: any columns, against the per-point form of the same points ---

_ALPHABET = "0123456789.+-eE ,_x١"
_INT64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def any_columns(draw: st.DrawFn) -> values_pb2.PointColumns:
    """Columns of prices, half of them plausible, the others a little off: snaps near the
    bounds, offsets of every count, texts of digits and near-digits, unscaled integers at any
    scale."""
    n = draw(st.integers(1, 12))
    plausible = draw(st.booleans())
    lengths = st.just(n) if plausible else st.sampled_from([n, n, n - 1, n + 1, 0])
    snap = st.integers(T0, T0 + 1_000 * US)
    if not plausible:
        ends = [bounds.MIN_INSTANT_US - 1, bounds.MIN_INSTANT_US, bounds.MAX_INSTANT_US]
        snap = snap | st.sampled_from([*ends, bounds.MAX_INSTANT_US + 1, T0]) | _INT64
    snaps = draw(st.lists(snap, min_size=n, max_size=n, unique=plausible))
    minute = st.integers(-1_439, 1_439)
    if not plausible:
        minute = minute | st.sampled_from([-1_440, 1_440]) | st.integers(-(2**31), 2**31 - 1)
    offsets = draw(
        st.sampled_from([0, 1, n]).flatmap(lambda k: st.lists(minute, min_size=k, max_size=k))
    )
    if not plausible:
        offsets = draw(lengths.flatmap(lambda k: st.lists(minute, min_size=k, max_size=k)))
    scale = draw(st.integers(0, 18) if plausible else st.integers(-1, 19))
    unscaled = st.integers(-(2**63), 2**63 - 1)
    if draw(st.booleans()):
        text = unscaled.map(lambda u: _written(u, scale))
        if not plausible:
            text = text | st.text(_ALPHABET, max_size=24) | st.decimals(allow_nan=False).map(str)
        k = draw(lengths)
        column = values_pb2.DecimalColumn(texts=draw(st.lists(text, min_size=k, max_size=k)))
    else:
        k = draw(lengths)
        column = values_pb2.DecimalColumn(
            unscaled=draw(st.lists(unscaled, min_size=k, max_size=k)), scale=scale
        )
    return values_pb2.PointColumns(
        snap_time_micros=snaps, utc_offset_minutes=offsets, prices=column
    )


def _written(unscaled: int, scale: int) -> str:
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    whole, places = digits[: len(digits) - scale], digits[len(digits) - scale :]
    return ("-" if unscaled < 0 else "") + (f"{whole}.{places}" if scale else whole)


def _per_point_of(columns: values_pb2.PointColumns) -> list[values_pb2.DataPoint] | None:
    """The same points per point; None when the columns do not line up (no per-point form)."""
    n = len(columns.snap_time_micros)
    offsets = list(columns.utc_offset_minutes)
    prices = columns.prices
    if len(offsets) not in (0, 1, n) or (prices.scale and prices.texts):
        return None
    if prices.texts:
        written = list(prices.texts)
    elif 0 <= prices.scale <= 18:
        written = [_written(u, prices.scale) for u in prices.unscaled]
    else:
        return None
    if len(written) != n:
        return None
    out = []
    for i, us in enumerate(columns.snap_time_micros):
        point = values_pb2.DataPoint(
            snap_time=timestamp_pb2.Timestamp(seconds=us // US, nanos=us % US * 1000),
            value=price(written[i]),
        )
        if offsets:
            point.utc_offset.CopyFrom(
                duration_pb2.Duration(seconds=60 * offsets[i if len(offsets) > 1 else 0])
            )
        out.append(point)
    return out


@settings(max_examples=600, deadline=None, derandomize=True)
@given(any_columns())
def test_columns_are_accepted_exactly_when_the_same_points_are(
    columns: values_pb2.PointColumns,
) -> None:
    points, violations = parsed(columns)
    assert bool(points) != bool(violations)  # points, or why not: never both, never an error
    assert all(v.field.startswith("columns") and v.description for v in violations)
    same = _per_point_of(columns)
    if same is None:
        assert violations
        return
    expected: list[FieldViolation] = []
    reference = points_from_proto(same, expected)
    unique = len(set(columns.snap_time_micros)) == len(columns.snap_time_micros)
    assert bool(points) == (not expected and unique)
    event("accepted" if points else "refused by both forms")
    if points:
        assert points == reference
        assert repr(points) == repr(reference)
