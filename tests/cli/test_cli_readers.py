"""The file readers hand values on as the exact text of the file, never through a float."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from qis_cli.errors import CliError
from qis_cli.kinds import ValueKind
from qis_cli.parquet import format_instant
from qis_cli.readers import (
    FileFormat,
    ImportFile,
    Row,
    column_map,
    detect_format,
    read_rows,
)

EXACT = "0.1000000000000000055"  # a binary double would read this back as 0.1


def _read(
    path: Path, kind: ValueKind = ValueKind.PRICE, columns: str = ""
) -> tuple[str, list[Row], list[str]]:
    warnings: list[str] = []
    source = ImportFile(
        path, detect_format(path, None), kind.fields, column_map(columns, kind.fields)
    )
    rows = read_rows(source, warnings.append)
    return rows.label, list(rows.rows), warnings


def test_csv_fields_stay_text_and_rows_are_numbered_by_line(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "\ufeffsnap,value,currency,comment\n"
        f"2024-03-01T16:00:00-05:00,{EXACT},USD,plain\n"
        '2024-03-04T16:00:00-05:00,1E+3,,"a comment\nover two lines"\n'
        "\n"
        "2024-03-05T16:00:00,NaN\n",
        encoding="utf-8",
    )
    label, rows, _ = _read(path)
    assert label == "line"
    assert rows == [
        Row(2, "2024-03-01T16:00:00-05:00", (EXACT, "USD")),
        Row(3, "2024-03-04T16:00:00-05:00", ("1E+3", "")),
        # A naive snap and a NaN go on unchanged: the import refuses the first (chunks_of),
        # the server the second, each with this row's number.
        Row(6, "2024-03-05T16:00:00", ("NaN", "")),
    ]


def test_csv_without_a_required_column_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,close\n2024-03-01,1\n")
    with pytest.raises(CliError, match=r"no 'snap' or 'value' column \(columns: date, close\)"):
        _read(path)


def test_json_lines_keep_number_literals(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        f'{{"snap": "2024-03-01T21:00:00Z", "value": {EXACT}, "currency": "USD"}}\n'
        "\n"
        '{"snap": "2024-03-02T21:00:00Z", "value": "12.50"}\n'
        '{"snap": "2024-03-03T21:00:00Z", "value": NaN}\n'
        '{"snap": "2024-03-04T21:00:00Z", "value": 7}\n'
    )
    label, rows, _ = _read(path)
    assert label == "line"
    assert [(r.number, *r.values) for r in rows] == [
        (1, EXACT, "USD"),
        (3, "12.50", ""),
        (4, "NaN", ""),
        (5, "7", ""),
    ]


def test_a_json_array_is_numbered_by_item(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps([{"snap": "2024-03-01T21:00:00Z", "value": "1.5"}])[:-1]
        + f', {{"snap": "2024-03-02T21:00:00Z", "value": {EXACT}, "unit": "shares"}}]'
    )
    label, rows, _ = _read(path, ValueKind.VOLUME)
    assert label == "item"
    assert rows == [
        Row(1, "2024-03-01T21:00:00Z", ("1.5", "")),
        Row(2, "2024-03-02T21:00:00Z", (EXACT, "shares")),
    ]


def test_parquet_decimals_are_exact_and_timestamps_keep_their_zone(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    new_york = ZoneInfo("America/New_York")
    table = pa.table(
        {
            "snap": pa.array(
                [
                    datetime(2024, 3, 1, 16, tzinfo=new_york),
                    datetime(2024, 7, 1, 16, 0, 0, 250_000, tzinfo=new_york),
                    None,
                ],
                pa.timestamp("us", tz="America/New_York"),
            ),
            "value": pa.array(
                [Decimal(EXACT), Decimal("-12.5000000000000000000"), None],
                pa.decimal128(22, 19),
            ),
            "currency": ["USD", None, "USD"],
        }
    )
    pq.write_table(table, path)
    label, rows, warnings = _read(path)
    assert label == "row"
    assert warnings == []
    assert rows == [
        Row(1, "2024-03-01T16:00:00-05:00", (EXACT, "USD")),
        Row(2, "2024-07-01T16:00:00.25-04:00", ("-12.5000000000000000000", "")),
        Row(3, "", ("", "USD")),
    ]


def test_parquet_floats_warn_and_send_the_shortest_decimal(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    snaps = pa.array([datetime(2024, 3, 1, 21, tzinfo=UTC)] * 3, pa.timestamp("ms", tz="UTC"))
    values = pa.array([0.1, 1e-7, float("nan")], pa.float64())
    pq.write_table(pa.table({"snap": snaps, "value": values}), path)
    _, rows, warnings = _read(path)
    assert [r.values[0] for r in rows] == ["0.1", "1E-7", "NaN"]
    assert [r.snap for r in rows] == ["2024-03-01T21:00:00Z"] * 3
    assert len(warnings) == 1
    assert "is double" in warnings[0]
    assert "decimal128" in warnings[0]


def test_naive_parquet_timestamps_are_not_given_a_zone(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    snaps = pa.array([datetime(2024, 3, 1, 16, 0)], pa.timestamp("s"))
    pq.write_table(pa.table({"snap": snaps, "value": ["1"]}), path)
    _, rows, _ = _read(path)
    assert rows == [Row(1, "2024-03-01T16:00:00", ("1", ""))]


def test_nanosecond_instants_keep_every_digit() -> None:
    """Every digit, so that a snap finer than a microsecond is refused, never truncated into
    another row's snap."""
    ticks = 1_709_308_800_123_456_789  # 2024-03-01T16:00:00.123456789Z
    assert format_instant(ticks, 1_000_000_000, UTC) == "2024-03-01T16:00:00.123456789Z"
    before_epoch = -1_500  # 1.5 ms before 1970, in ms ticks
    assert format_instant(before_epoch, 1_000, UTC) == "1969-12-31T23:59:58.5Z"


def test_format_comes_from_the_extension_unless_given(tmp_path: Path) -> None:
    assert detect_format(tmp_path / "a.CSV", None) is FileFormat.CSV
    assert detect_format(tmp_path / "a.ndjson", None) is FileFormat.JSON
    assert detect_format(tmp_path / "a.pq", None) is FileFormat.PARQUET
    assert detect_format(tmp_path / "a.txt", "csv") is FileFormat.CSV
    with pytest.raises(CliError, match="pass --format"):
        detect_format(tmp_path / "a.txt", None)


def test_json_lines_missing_a_column_fail_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('\n{"time": "2024-03-01T21:00:00Z", "value": 1}\n')
    with pytest.raises(CliError, match="no 'snap' column"):
        read_rows(ImportFile(path, FileFormat.JSON, ValueKind.PRICE.fields), print)


# --- other columns: OHLC bars and volumes, mapped with --columns ---

BARS = "snap=Date,open=Open,high=High,low=Low,close=Close,volume=Volume"


def test_ohlc_csv_columns_are_mapped(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        f"2024-03-01T21:00:00Z,10.5,11,{EXACT},10.75,10.7,120000\n"
        "2024-03-04T21:00:00Z,10.75,12,10.5,11.5,11.4,\n"
    )
    label, rows, _ = _read(path, ValueKind.OHLC_BAR, BARS)
    assert label == "line"
    assert rows == [
        Row(2, "2024-03-01T21:00:00Z", ("10.5", "11", EXACT, "10.75", "120000")),
        Row(3, "2024-03-04T21:00:00Z", ("10.75", "12", "10.5", "11.5", "")),
    ]


def test_ohlc_volume_is_optional_unless_mapped(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("snap,open,high,low,close\n2024-03-01T21:00:00Z,1,2,0.5,1.5\n")
    _, rows, _ = _read(path, ValueKind.OHLC_BAR)
    assert rows == [Row(2, "2024-03-01T21:00:00Z", ("1", "2", "0.5", "1.5", ""))]
    with pytest.raises(CliError, match=r"no 'Vol' \(for volume\) column"):
        _read(path, ValueKind.OHLC_BAR, "volume=Vol")


def test_ohlc_parquet_columns_are_mapped_and_floats_warned_once(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    snaps = pa.array([datetime(2024, 3, 1, 21, tzinfo=UTC)], pa.timestamp("s", tz="UTC"))
    table = pa.table(
        {
            "Date": snaps,
            "Open": pa.array([Decimal("10.50")], pa.decimal128(10, 2)),
            "High": pa.array([11.25], pa.float64()),
            "Low": pa.array([10.0], pa.float32()),
            "Close": ["10.75"],
            "Volume": pa.array([120_000], pa.int64()),
        }
    )
    pq.write_table(table, path)
    label, rows, warnings = _read(path, ValueKind.OHLC_BAR, BARS)
    assert label == "row"
    assert rows == [Row(1, "2024-03-01T21:00:00Z", ("10.50", "11.25", "10.0", "10.75", "120000"))]
    assert len(warnings) == 1
    assert "column 'High' is double, column 'Low' is float" in warnings[0]


def test_volume_csv_and_parquet_columns_are_mapped(tmp_path: Path) -> None:
    csv_path = tmp_path / "v.csv"
    csv_path.write_text("Date,Volume,Unit\n2024-03-01T21:00:00Z,120000,shares\n")
    _, rows, _ = _read(csv_path, ValueKind.VOLUME, "snap=Date,value=Volume,unit=Unit")
    assert rows == [Row(2, "2024-03-01T21:00:00Z", ("120000", "shares"))]

    parquet_path = tmp_path / "v.parquet"
    snaps = pa.array([datetime(2024, 3, 1, 21, tzinfo=UTC)], pa.timestamp("s", tz="UTC"))
    volumes = pa.array([120_000], pa.int64())
    pq.write_table(pa.table({"Date": snaps, "Volume": volumes}), parquet_path)
    _, rows, _ = _read(parquet_path, ValueKind.VOLUME, "snap=Date,value=Volume")
    assert rows == [Row(1, "2024-03-01T21:00:00Z", ("120000", ""))]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("snap=Date,opn=Open", r"--columns: 'opn' is not a field of these rows \(fields: snap,"),
        ("snap=Date,open", r"--columns: 'open' is not FIELD=COLUMN, e.g. snap=Date"),
        ("open=Open,open=O", r"--columns: 'open' is given twice"),
    ],
)
def test_a_wrong_column_map_is_a_usage_error(columns: str, message: str) -> None:
    with pytest.raises(CliError, match=message):
        column_map(columns, ValueKind.OHLC_BAR.fields)


def test_every_missing_column_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("Date,Open,High,Low,Close\n2024-03-01T21:00:00Z,1,2,0.5,1.5\n")
    with pytest.raises(CliError) as unmapped:
        _read(path, ValueKind.OHLC_BAR)
    assert str(unmapped.value) == (
        "bars.csv has no 'snap' or 'open' or 'high' or 'low' or 'close' column"
        " (columns: Date, Open, High, Low, Close); name the columns with --columns FIELD=COLUMN,..."
    )
    with pytest.raises(CliError, match=r"no 'Hi' \(for high\) or 'close' column"):
        _read(path, ValueKind.OHLC_BAR, "snap=Date,open=Open,high=Hi,low=Low")


def test_files_tell_about_how_many_rows_they_hold(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("snap,value\n" + "2024-03-01T21:00:00Z,1\n" * 7)
    source = ImportFile(path, FileFormat.CSV, ValueKind.PRICE.fields)
    assert read_rows(source, print).expected == 7
    parquet_path = tmp_path / "p.parquet"
    pq.write_table(
        pa.table({"snap": ["2024-03-01T21:00:00Z"] * 3, "value": ["1"] * 3}), parquet_path
    )
    source = ImportFile(parquet_path, FileFormat.PARQUET, ValueKind.PRICE.fields)
    assert read_rows(source, print).expected == 3
