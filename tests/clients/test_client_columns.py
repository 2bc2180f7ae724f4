"""qis_client.columns: columns of aware datetimes and decimals in, PointColumns out, with the
point helpers' snap and offset rules, cut into requests of at most 10,000 rows; and
OfficialValueColumns back into lists, flags decoded per row, pages put together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from qis.data.v1 import quality_pb2, query_service_pb2, values_pb2
from qis_client import (
    MAX_ROWS,
    Bar,
    BarColumns,
    MalformedColumns,
    Scaled,
    ValueColumns,
    chunk_columns,
    data_point,
    decimal_column,
    ingest_requests,
    micros_datetime,
    point_columns,
    price,
    rows_as_columns,
)

NEW_YORK = ZoneInfo("America/New_York")
EST = timezone(timedelta(hours=-5))
SNAP_0 = datetime(2024, 3, 1, 21, tzinfo=UTC)


def micros(moment: datetime) -> int:
    point = data_point(moment, 1)
    return point.snap_time.seconds * 1_000_000 + point.snap_time.nanos // 1000


def test_snaps_and_offsets_follow_the_point_helpers() -> None:
    snaps = [
        datetime(2024, 3, 8, 16, tzinfo=NEW_YORK),  # EST, -05:00
        datetime(2024, 3, 11, 16, 0, 0, 123_456, tzinfo=NEW_YORK),  # EDT, -04:00
    ]
    columns = point_columns(snaps, [Decimal("5123.69"), "5117.94"])
    assert list(columns.snap_time_micros) == [micros(s) for s in snaps]
    assert list(columns.snap_time_micros)[1] % 1_000_000 == 123_456
    # One per row when they differ: in minutes, what data_point sends in seconds.
    assert list(columns.utc_offset_minutes) == [
        data_point(s, 1).utc_offset.seconds // 60 for s in snaps
    ]
    assert list(columns.utc_offset_minutes) == [-300, -240]
    assert list(columns.prices.texts) == ["5123.69", "5117.94"]


@pytest.mark.parametrize(
    ("zones", "offsets"),
    [
        ([UTC, UTC], []),  # all UTC: none
        ([EST, EST], [-300]),  # shared: one
        ([timezone(timedelta(hours=-5), "A"), EST], [-300]),  # the same offset by another name
        ([EST, UTC], [-300, 0]),  # one per row
        # Amsterdam's local mean time, +00:19:32: offsets are whole minutes, so it goes as UTC.
        ([ZoneInfo("Europe/Amsterdam"), UTC], []),
    ],
)
def test_offsets_are_collapsed_when_they_allow_it(
    zones: list[timezone | ZoneInfo], offsets: list[int]
) -> None:
    snaps = [datetime(1900, 1, 1, 12, tzinfo=zones[0]), datetime(2024, 1, 1, tzinfo=zones[1])]
    assert list(point_columns(snaps, ["1", "2"]).utc_offset_minutes) == offsets


def test_refused_rows_are_named() -> None:
    with pytest.raises(ValueError, match=r"snaps\[1\]: .* no time zone"):
        point_columns([SNAP_0, datetime(2024, 3, 1)], ["1", "2"])
    with pytest.raises(ValueError, match=r"snaps\[0\]: .* outside years 1\.\.9999"):
        point_columns([datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))], ["1"])
    with pytest.raises(ValueError, match=r"prices\[2\]: '1,5' is not a decimal string"):
        point_columns([SNAP_0] * 3, ["1", "2", "1,5"])
    with pytest.raises(TypeError, match=r"volumes\[0\]: .* not float"):
        point_columns([SNAP_0], volumes=[0.1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"prices\[0\]: .*finite"):
        point_columns([SNAP_0], [Decimal("NaN")])
    with pytest.raises(TypeError, match=r"prices\[0\]: a value is required"):
        point_columns([SNAP_0], [None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="prices has 1 rows, snaps 2"):
        point_columns([SNAP_0, SNAP_0], ["1"])
    with pytest.raises(ValueError, match="exactly one of"):
        point_columns([SNAP_0], ["1"], volumes=["1"])
    with pytest.raises(ValueError, match="exactly one of"):
        point_columns([SNAP_0])


@pytest.mark.parametrize("text", ["NaN", "Infinity", " 1", "1_000", "", "1e", "0x10", "١"])
def test_decimal_strings_are_checked_and_sent_as_written(text: str) -> None:
    with pytest.raises(ValueError, match="not a decimal string"):
        decimal_column([text])
    written = ["101.250", "-0.5", "1E+3", ".5", "+7"]
    assert list(decimal_column(written).texts) == written
    assert list(decimal_column([Decimal("1E+3"), 42]).texts) == ["1000", "42"]


def test_scaled_integers() -> None:
    assert decimal_column(Scaled([10125, -5], 2)) == values_pb2.DecimalColumn(
        unscaled=[10125, -5], scale=2
    )
    # scale=: every value at that scale, exactly; more places than the scale is refused.
    assert decimal_column(["101.25", Decimal("-0.5"), 3], scale=2) == values_pb2.DecimalColumn(
        unscaled=[10125, -50, 300], scale=2
    )
    # Exact at 18 places (no 28-digit context rounding); beyond 64 bits, refused.
    assert list(decimal_column(["9.000000000000000001"], scale=18).unscaled) == [
        9_000_000_000_000_000_001
    ]
    with pytest.raises(ValueError, match="64 bits"):
        decimal_column(["999999999999999999.999999999999999999"], scale=18)
    with pytest.raises(ValueError, match=r"prices\[1\]: 1\.005 has more than 2 decimal places"):
        decimal_column(["1.00", "1.005"], scale=2, name="prices")
    for scale in (-1, 19):
        with pytest.raises(ValueError, match="scale"):
            decimal_column(Scaled([1], scale))
    with pytest.raises(ValueError, match="64 bits"):
        decimal_column(Scaled([2**63], 0))
    with pytest.raises(TypeError, match="int"):
        decimal_column(Scaled([True], 0))


def test_bars_with_and_without_volumes() -> None:
    snaps = [SNAP_0, SNAP_0 + timedelta(days=1)]
    bars = [
        Bar(Decimal("10"), Decimal("12.5"), Decimal("9.75"), Decimal("11"), Decimal(1000)),
        Bar(Decimal("11"), Decimal("11.5"), Decimal("10"), Decimal("10.25")),
    ]
    columns = rows_as_columns(zip(snaps, bars, strict=True), scale=2)
    assert list(columns.bars.high.unscaled) == [1250, 1150]
    assert columns.bars.high.scale == 2
    # A bar without a volume: that column goes as texts, "" for the unknown one.
    assert list(columns.bars.volume.texts) == ["1000", ""]
    no_volumes = rows_as_columns({SNAP_0: bars[1]})
    assert not no_volumes.bars.HasField("volume")
    assert list(no_volumes.bars.close.texts) == ["10.25"]
    explicit = point_columns(
        [SNAP_0], bars=BarColumns(["1"], ["2"], ["0.5"], ["1.5"], volume=Scaled([7], 0))
    )
    assert list(explicit.bars.volume.unscaled) == [7]
    with pytest.raises(TypeError, match="mixed"):
        rows_as_columns([(SNAP_0, bars[0]), (snaps[1], Decimal(1))])


def test_rows_of_prices_or_volumes() -> None:
    rows: dict[datetime, Decimal | str] = {SNAP_0: Decimal("1.5"), SNAP_0 + timedelta(days=1): "2"}
    assert rows_as_columns(rows) == point_columns(list(rows), [Decimal("1.5"), "2"])
    assert list(rows_as_columns(rows, volumes=True).volumes.texts) == ["1.5", "2"]


def test_chunks_of_at_most_ten_thousand_rows() -> None:
    total = 2 * MAX_ROWS + 1
    snaps = [SNAP_0 + timedelta(minutes=i) for i in range(total)]
    columns = point_columns(snaps, Scaled(list(range(total)), 2))
    requests = ingest_requests("SPX", "bbg", columns, command_id="load-1")
    assert [r.command_id for r in requests] == ["load-1:0", "load-1:1", "load-1:2"]
    assert {(r.series, r.source) for r in requests} == {("series/SPX", "sources/bbg")}
    assert [len(r.columns.snap_time_micros) for r in requests] == [MAX_ROWS, MAX_ROWS, 1]
    assert [r.columns.prices.unscaled[0] for r in requests] == [0, MAX_ROWS, 2 * MAX_ROWS]
    assert {r.columns.prices.scale for r in requests} == {2}
    joined = [m for r in requests for m in r.columns.snap_time_micros]
    assert joined == list(columns.snap_time_micros)
    # Without a command id, fresh ones.
    fresh = ingest_requests("SPX", "bbg", columns, chunk_rows=MAX_ROWS)
    assert len({r.command_id for r in fresh}) == 3
    with pytest.raises(ValueError, match="rows per chunk"):
        chunk_columns(columns, MAX_ROWS + 1)


def test_chunks_keep_a_shared_offset_and_cut_per_row_ones() -> None:
    shared = point_columns([datetime(2024, 1, d, tzinfo=EST) for d in (1, 2, 3)], ["1", "2", "3"])
    assert [list(c.utc_offset_minutes) for c in chunk_columns(shared, 2)] == [[-300], [-300]]
    snaps = [datetime(2024, 1, 1, tzinfo=EST), SNAP_0, datetime(2024, 1, 3, tzinfo=EST)]
    per_row = point_columns(snaps, volumes=["1", "2", "3"])
    chunks = chunk_columns(per_row, 2)
    assert [list(c.utc_offset_minutes) for c in chunks] == [[-300, 0], [-300]]
    assert [list(c.volumes.texts) for c in chunks] == [["1", "2"], ["3"]]
    bars = rows_as_columns(
        {s: Bar(Decimal(1), Decimal(2), Decimal(0), Decimal(1), Decimal(5)) for s in snaps}
    )
    assert [list(c.bars.volume.texts) for c in chunk_columns(bars, 2)] == [["5", "5"], ["5"]]


def official_columns(first: int, rows: int) -> query_service_pb2.OfficialValueColumns:
    """Rows first.. of a made-up price series: row i has i % 3 flags."""
    columns = query_service_pb2.OfficialValueColumns(
        snap_time_micros=[micros(SNAP_0) + i * 86_400_000_000 for i in range(first, first + rows)],
        versions=[1] * rows,
        prices=values_pb2.DecimalColumn(texts=[f"{i}.5" for i in range(first, first + rows)]),
        unit="USD",
        quality_scores=[1.0] * rows,
        record_time_micros=[micros(SNAP_0) + 1] * rows,
        record_positions=list(range(first + 10, first + rows + 10)),
        supersede_positions=[0] * rows,
        methods=[query_service_pb2.VALUE_METHOD_PRIORITY] * rows,
        flag_counts=[i % 3 for i in range(first, first + rows)],
    )
    for i in range(first, first + rows):
        columns.flags.extend(
            [quality_pb2.QUALITY_RULE_JUMP, quality_pb2.QUALITY_RULE_STALE][: i % 3]
        )
    return columns


def test_columns_are_read_into_lists_with_flags_per_row() -> None:
    values = ValueColumns()
    values.append(official_columns(0, 4), read_position=12)
    values.append(official_columns(4, 2), read_position=11)
    assert len(values) == 6
    assert values.kind == "prices"
    assert values.unit == "USD"
    assert values.decimals() == [Decimal(f"{i}.5") for i in range(6)]
    assert values.snap_times()[1] == SNAP_0 + timedelta(days=1)
    assert values.flags == [
        [],
        [quality_pb2.QUALITY_RULE_JUMP],
        [quality_pb2.QUALITY_RULE_JUMP, quality_pb2.QUALITY_RULE_STALE],
        [],
        [quality_pb2.QUALITY_RULE_JUMP],
        [quality_pb2.QUALITY_RULE_JUMP, quality_pb2.QUALITY_RULE_STALE],
    ]
    assert values.record_positions == list(range(10, 16))
    assert values.methods == [query_service_pb2.VALUE_METHOD_PRIORITY] * 6
    assert values.read_position == 11


def test_scaled_and_bar_columns_are_read_as_decimal_strings() -> None:
    bars = query_service_pb2.OfficialValueColumns(
        snap_time_micros=[0, 1],
        versions=[1, 2],
        bars=values_pb2.OhlcBarColumns(
            open=values_pb2.DecimalColumn(unscaled=[1000, -5], scale=2),
            high=values_pb2.DecimalColumn(texts=["12", "11"]),
            low=values_pb2.DecimalColumn(texts=["9", "8"]),
            close=values_pb2.DecimalColumn(texts=["11", "10"]),
        ),
        quality_scores=[1, 1],
        record_time_micros=[5, 6],
        record_positions=[1, 2],
        supersede_positions=[0, 0],
        methods=[query_service_pb2.VALUE_METHOD_PRIORITY, query_service_pb2.VALUE_METHOD_MANUAL],
    )
    values = ValueColumns()
    values.append(bars)
    assert values.kind == "bars"
    assert values.bars.open == ["10.00", "-0.05"]
    assert values.bars.volume == ["", ""], "no volume column: none known"
    assert values.bars.bars()[1] == Bar(
        Decimal("-0.05"), Decimal(11), Decimal(8), Decimal(10), None
    )
    assert values.flags == [[], []], "no flag_counts and no flags: no row has one"
    assert micros_datetime(values.record_time_micros[0]) == datetime(
        1970, 1, 1, 0, 0, 0, 5, tzinfo=UTC
    )
    with pytest.raises(TypeError, match="bars"):
        values.decimals()


def test_other_values_come_as_messages() -> None:
    columns = query_service_pb2.OfficialValueColumns(
        snap_time_micros=[0],
        versions=[1],
        other=query_service_pb2.DataValues(values=[price(1)]),
        quality_scores=[1],
        record_time_micros=[0],
        record_positions=[1],
        supersede_positions=[0],
        methods=[query_service_pb2.VALUE_METHOD_PRIORITY],
        flag_counts=[0],
    )
    values = ValueColumns()
    values.append(columns)
    assert (values.kind, values.other) == ("other", [price(1)])


def test_columns_that_do_not_line_up_are_refused() -> None:
    short = official_columns(0, 3)
    del short.versions[-1]
    with pytest.raises(MalformedColumns, match="versions"):
        ValueColumns().append(short)
    miscounted = official_columns(0, 3)
    miscounted.flag_counts[0] = 5
    with pytest.raises(MalformedColumns, match="flag_counts add up to 8"):
        ValueColumns().append(miscounted)
    values = ValueColumns()
    values.append(official_columns(0, 1))
    volumes = official_columns(1, 1)
    volumes.volumes.CopyFrom(volumes.prices)
    with pytest.raises(MalformedColumns, match="volumes after prices"):
        values.append(volumes)
    assert len(values) == 1, "a refused page adds nothing"
    empty = ValueColumns()
    empty.append(query_service_pb2.OfficialValueColumns())
    assert (len(empty), empty.kind, empty.decimals()) == (0, "", [])


def other_columns(
    first: int, values: list[values_pb2.DataValue]
) -> query_service_pb2.OfficialValueColumns:
    """official_columns(first, len(values)) with its values in `other` (the series' unit EUR)."""
    columns = official_columns(first, len(values))
    columns.other.values.extend(values)
    columns.unit = "EUR"
    return columns


def eur_columns(first: int, rows: int) -> query_service_pb2.OfficialValueColumns:
    columns = official_columns(first, rows)
    columns.unit = "EUR"
    return columns


def usd(text: str) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=text, currency="USD"))


def eur(text: str) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=text, currency="EUR"))


def test_prices_after_a_page_in_other_become_other_row_for_row() -> None:
    # A price series evolved USD -> EUR, page_size 2: the page holding a USD value comes in
    # `other`, the later ones in `prices` (EUR).
    values = ValueColumns()
    values.append(other_columns(0, [usd("0.5"), eur("1.5")]), read_position=9)
    values.append(eur_columns(2, 2))
    values.append(eur_columns(4, 1))
    values.append(
        query_service_pb2.OfficialValueColumns(prices=values_pb2.DecimalColumn(), unit="EUR")
    )  # the end
    assert (len(values), values.kind, values.unit) == (5, "other", "EUR")
    assert values.other == [usd("0.5"), eur("1.5"), eur("2.5"), eur("3.5"), eur("4.5")]
    assert values.values == []
    assert len(values.flags) == len(values.versions) == len(values.record_positions) == 5
    assert values.record_positions == list(range(10, 15))
    assert values.flags[4] == [quality_pb2.QUALITY_RULE_JUMP]
    with pytest.raises(TypeError, match="other"):
        values.decimals()


def test_prices_before_a_page_in_other_are_converted() -> None:
    values = ValueColumns()
    values.append(official_columns(0, 2))  # USD, before the unit changed
    values.append(other_columns(2, [usd("2.5"), eur("3.5")]))
    values.append(eur_columns(4, 2))
    assert (len(values), values.kind, values.unit) == (6, "other", "EUR")
    assert values.other == [
        usd("0.5"),
        usd("1.5"),
        usd("2.5"),
        eur("3.5"),
        eur("4.5"),
        eur("5.5"),
    ]
    assert values.snap_time_micros == [micros(SNAP_0) + i * 86_400_000_000 for i in range(6)]
    assert (values.values, values.bars.open) == ([], [])


def test_typed_pages_in_two_units_become_other() -> None:
    values = ValueColumns()
    values.append(official_columns(0, 2))
    values.append(official_columns(2, 1))
    assert (values.kind, values.unit, values.values) == ("prices", "USD", ["0.5", "1.5", "2.5"])
    values.append(eur_columns(3, 2))
    assert (len(values), values.kind, values.unit) == (5, "other", "EUR")
    assert values.other == [usd("0.5"), usd("1.5"), usd("2.5"), eur("3.5"), eur("4.5")]
    # Volumes and bars likewise: Volume(quantity, unit), OhlcBar (volume "" where unknown).
    volumes = ValueColumns()
    shares = official_columns(0, 1)
    shares.volumes.CopyFrom(shares.prices)
    shares.unit = "shares"
    lots = official_columns(1, 1)
    lots.volumes.CopyFrom(lots.prices)
    lots.unit = "lots"
    volumes.append(shares)
    volumes.append(lots)
    assert volumes.other == [
        values_pb2.DataValue(volume=values_pb2.Volume(quantity="0.5", unit="shares")),
        values_pb2.DataValue(volume=values_pb2.Volume(quantity="1.5", unit="lots")),
    ]
    bars = ValueColumns()
    bar_page = official_columns(0, 1)
    bar_page.bars.CopyFrom(
        values_pb2.OhlcBarColumns(
            open=values_pb2.DecimalColumn(unscaled=[1000], scale=2),
            high=values_pb2.DecimalColumn(texts=["12"]),
            low=values_pb2.DecimalColumn(texts=["9"]),
            close=values_pb2.DecimalColumn(texts=["11"]),
        )
    )
    bars.append(bar_page)
    bars.append(other_columns(1, [values_pb2.DataValue(bar=values_pb2.OhlcBar(open="1"))]))
    assert bars.kind == "other"
    assert bars.other[0] == values_pb2.DataValue(
        bar=values_pb2.OhlcBar(open="10.00", high="12", low="9", close="11", volume="")
    )
    assert (bars.bars.open, len(bars)) == ([], 2)


def test_pages_of_one_case_and_unit_keep_their_columns() -> None:
    values = ValueColumns()
    values.append(
        query_service_pb2.OfficialValueColumns(other=query_service_pb2.DataValues(), unit="USD")
    )  # no rows
    values.append(official_columns(0, 2))
    values.append(official_columns(2, 2))
    values.append(
        query_service_pb2.OfficialValueColumns(prices=values_pb2.DecimalColumn(), unit="EUR")
    )  # no rows
    assert (values.kind, values.unit, values.other) == ("prices", "USD", [])
    assert values.decimals() == [Decimal(f"{i}.5") for i in range(4)]
    # Volumes after prices stay malformed, even past a page in `other`.
    values.append(other_columns(4, [usd("4.5")]))
    volumes = official_columns(5, 1)
    volumes.volumes.CopyFrom(volumes.prices)
    with pytest.raises(MalformedColumns, match="volumes after prices"):
        values.append(volumes)
    assert len(values) == len(values.other) == len(values.flags) == 5
