"""OHLC bars and volumes from CSV and Parquet files whose columns have other names
(`--columns`), into series whose data type `qis ingest` reads from their definition."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli.cli_support import DefineSeries, Outcome, Qis, SeriesSetup

pytestmark = pytest.mark.e2e

BARS = "snap=Date,open=Open,high=High,low=Low,close=Close,volume=Volume"


def _ingest(qis: Qis, path: Path, series: SeriesSetup, columns: str) -> Outcome:
    return qis(
        "ingest", str(path), "--series", series.series_id, "--source", series.source_id,
        "--columns", columns,
    )  # fmt: skip


def _official(qis: Qis, series: SeriesSetup, rows: int) -> list[str]:
    """The values column of `qis query` once the read model has `rows` of them."""
    deadline = time.monotonic() + 10
    while True:
        result = qis("query", series.series_id)
        assert result.code == 0, result.err
        lines = result.out.splitlines()[1:]
        if len(lines) >= rows or time.monotonic() > deadline:
            return [line.split("  ")[1].strip() for line in lines]
        time.sleep(0.1)


def test_ohlc_bars_from_csv(qis: Qis, define_series: DefineSeries, tmp_path: Path) -> None:
    series = define_series("ohlc_bar", "USD", "--require-positive")
    path = tmp_path / "bars.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-03-01T21:00:00Z,10.5,11,10,10.75,10.7,120000\n"
        "2024-03-04T21:00:00Z,10.75,12,10.5,11.5,11.4,\n"
    )
    result = _ingest(qis, path, series, BARS)
    assert result.code == 0, result.out + result.err
    assert _official(qis, series, 2) == ["O 10.5 H 11 L 10 C 10.75", "O 10.75 H 12 L 10.5 C 11.5"]


def test_ohlc_bars_from_parquet(qis: Qis, define_series: DefineSeries, tmp_path: Path) -> None:
    series = define_series("ohlc_bar", "USD")
    path = tmp_path / "bars.parquet"
    table = pa.table(
        {
            "Date": pa.array(
                [datetime(2024, 3, 1, 21, tzinfo=UTC), datetime(2024, 3, 4, 21, tzinfo=UTC)],
                pa.timestamp("s", tz="UTC"),
            ),
            "Open": pa.array([Decimal("10.50"), Decimal("10.75")], pa.decimal128(10, 2)),
            "High": ["11", "12"],
            "Low": ["10", "10.5"],
            "Close": ["10.75", "11.5"],
            "Volume": pa.array([120_000, None], pa.int64()),
        }
    )
    pq.write_table(table, path)
    result = _ingest(qis, path, series, BARS)
    assert result.code == 0, result.out + result.err
    assert _official(qis, series, 2) == [
        "O 10.50 H 11 L 10 C 10.75",
        "O 10.75 H 12 L 10.5 C 11.5",
    ]


def test_a_broken_bar_is_reported_by_its_file_column(
    qis: Qis, define_series: DefineSeries, tmp_path: Path
) -> None:
    series = define_series("ohlc_bar", "USD")
    path = tmp_path / "bars.csv"
    path.write_text(
        "Date,Open,High,Low,Close\n"
        "2024-03-01T21:00:00Z,10.5,11,10,10.75\n"
        "2024-03-04T21:00:00Z,10.75,twelve,10.5,11.5\n"
    )
    result = _ingest(qis, path, series, "snap=Date,open=Open,high=High,low=Low,close=Close")
    assert result.code == 1, result.out + result.err
    assert "line 3: High: 'twelve' is not a finite decimal number" in result.out


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_volumes(qis: Qis, define_series: DefineSeries, tmp_path: Path, suffix: str) -> None:
    series = define_series("volume", "shares")
    path = tmp_path / f"volumes.{suffix}"
    snaps = ["2024-03-01T21:00:00Z", "2024-03-04T21:00:00Z"]
    if suffix == "csv":
        path.write_text(
            "Date,Close,Volume\n"
            + "".join(f"{s},1,{v}\n" for s, v in zip(snaps, ["120000", "95000.5"], strict=True))
        )
    else:
        volumes = pa.array([Decimal("120000"), Decimal("95000.5")], pa.decimal128(12, 1))
        pq.write_table(pa.table({"Date": snaps, "Close": ["1", "1"], "Volume": volumes}), path)
    result = _ingest(qis, path, series, "snap=Date,value=Volume")
    assert result.code == 0, result.out + result.err
    expected = ["120000", "95000.5"] if suffix == "csv" else ["120000.0", "95000.5"]
    assert _official(qis, series, 2) == [f"{v} shares" for v in expected]


def test_a_wrong_column_map_stops_before_anything_is_sent(
    qis: Qis, define_series: DefineSeries, tmp_path: Path
) -> None:
    series = define_series("ohlc_bar", "USD")
    path = tmp_path / "bars.csv"
    path.write_text("Date,Open,High,Low,Close\n2024-03-01T21:00:00Z,1,2,0.5,1.5\n")
    result = _ingest(qis, path, series, "snap=Date,open=Open,high=Hi,low=Low,close=Close")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "qis ingest: bars.csv has no 'Hi' (for high) column"
        " (columns: Date, Open, High, Low, Close)\n"
    )
