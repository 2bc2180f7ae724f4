"""`qis` against the real qis processes: definitions, a 10,000-row import, its re-run, an import
with malformed rows, and what an unknown series, no identity or no service come to."""

from __future__ import annotations

import re
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from qis.data.v1 import query_service_pb2
from qis_cli import reading
from qis_cli.main import main

from tests.cli.cli_support import DefineSeries, Outcome, Qis, SeriesSetup, free_port
from tests.e2e.harness import Cluster

pytestmark = pytest.mark.e2e

_FIRST_DAY = date(1990, 1, 1)


def _snap(day: int) -> str:
    return f"{_FIRST_DAY + timedelta(days=day)}T21:00:00Z"


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("snap,value\n" + "".join(f"{s},{v}\n" for s, v in rows))
    return path


def _count(label: str, out: str) -> int:
    match = re.search(rf"^\s+{label}:\s+([\d,]+)", out, re.MULTILINE)
    assert match is not None, f"no '{label}' in:\n{out}"
    return int(match[1].replace(",", ""))


def _ingest(qis: Qis, path: Path, series: SeriesSetup, *options: str) -> Outcome:
    return qis(
        "ingest", str(path), "--series", series.series_id, "--source", series.source_id, *options
    )


def _ingested_events(service: Cluster, series_id: str) -> int:
    """DataIngested events of one series, read from the store next to the running service.
    Not the head position: the service appends quality metrics in the background after an
    ingest, so the head moves on its own."""
    with sqlite3.connect(f"file:{service.events_db}?mode=ro", uri=True) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM events WHERE type = 'DataIngested' AND stream LIKE ?",
            (f"series/{series_id}/%",),
        ).fetchone()
    return int(count)


def test_an_import_and_its_rerun(
    qis: Qis, price_series: SeriesSetup, services: Cluster, tmp_path: Path
) -> None:
    rows = [(_snap(i), f"{100 + i / 1000:.3f}") for i in range(10_000)]
    prices = _write_csv(tmp_path / "prices.csv", rows)
    first = _ingest(qis, prices, price_series)
    assert first.code == 0, first.out + first.err
    assert _count("accepted", first.out) == 10_000
    assert _count("rejected", first.out) == 0
    position = _count("last commit position", first.out)
    assert position > 0
    ingested = _ingested_events(services, price_series.series_id)
    assert ingested > 0

    again = _ingest(qis, prices, price_series)
    assert again.code == 0, again.out + again.err
    assert _count("duplicates", again.out) == 10_000
    assert _count("accepted", again.out) == 0
    assert _count("last commit position", again.out) == position
    assert _ingested_events(services, price_series.series_id) == ingested


def test_malformed_rows_are_reported_and_the_rest_imported(
    qis: Qis, price_series: SeriesSetup, tmp_path: Path
) -> None:
    rows = [(_snap(i), f"{50 + i}.25") for i in range(2_500)]
    rows[7] = (rows[7][0], "NaN")  # line 9: header is line 1
    # Line 1205, naive: refused before sending, never read in this machine's zone.
    rows[1_203] = (rows[1_203][0].removesuffix("Z"), rows[1_203][1])
    rows[1_500] = (rows[1_500][0], "-4.5")  # well-formed but not positive: stored and flagged
    prices = _write_csv(tmp_path / "mixed.csv", rows)

    result = _ingest(qis, prices, price_series, "--chunk-size", "1000")

    assert result.code == 1, result.out + result.err
    assert _count("accepted", result.out) == 2_498
    assert _count("rejected", result.out) == 2
    assert "(flagged by quality rules: 1)" in result.out
    assert "line 9: value: 'NaN' is not a finite decimal number" in result.out
    assert re.search(r"line 1205: snap: '[^']+' has no UTC offset", result.out)
    assert "1 re-sent with their valid rows only" in result.out

    rerun = _ingest(qis, prices, price_series, "--chunk-size", "1000")
    assert rerun.code == 1
    # The valid rows of the rejected chunks went in under derived ids: duplicates now.
    assert _count("duplicates", rerun.out) == 2_498
    assert _count("accepted", rerun.out) == 0


def test_the_offset_a_file_states_is_kept_as_lineage(
    qis: Qis, price_series: SeriesSetup, services: Cluster, tmp_path: Path
) -> None:
    prices = _write_csv(tmp_path / "ny.csv", [("2024-03-01T16:00:00-05:00", "5137.08")])
    result = _ingest(qis, prices, price_series)
    assert result.code == 0, result.out + result.err
    request = query_service_pb2.GetPointHistoryRequest(
        series=f"series/{price_series.series_id}",
        snap_time=reading.parse_time("2024-03-01T21:00:00Z"),
        min_position=_count("last commit position", result.out),
    )
    with grpc.insecure_channel(services.address("query")) as channel:
        history = reading.Stub(channel).GetPointHistory(
            request, metadata=(("x-qis-user", "cli-tester"),)
        )
    (observation,) = history.observations
    assert observation.utc_offset == duration_pb2.Duration(seconds=-18_000)
    shown = qis("query", price_series.series_id, "--history", "2024-03-01T16:00:00-05:00")
    assert shown.code == 0, shown.err
    assert shown.out.splitlines()[1].split()[:3] == ["2024-03-01T21:00:00Z", "5137.08", "USD"]


@pytest.mark.parametrize("type_option", [(), ("--type", "price")], ids=["looked-up", "given"])
def test_an_unknown_series_is_one_line_and_exit_3(
    qis: Qis, price_series: SeriesSetup, tmp_path: Path, type_option: tuple[str, ...]
) -> None:
    """Whether the query service (looking up the type) or the command service (refusing the
    first chunk) finds out: one line, no summary of zeros."""
    prices = _write_csv(tmp_path / "p.csv", [(_snap(i), "1") for i in range(3_000)])
    unknown = SeriesSetup("no-such-series", price_series.source_id)
    result = _ingest(qis, prices, unknown, "--chunk-size", "100", *type_option)
    assert result.code == 3
    assert result.out == ""
    assert result.err.startswith("qis ingest: NOT_FOUND: series/no-such-series")
    assert len(result.err.splitlines()) == 1


def test_query_of_an_unknown_series_is_one_line_and_exit_3(qis: Qis) -> None:
    result = qis("query", "no-such-series")
    assert (result.code, result.out) == (3, "")
    assert result.err.startswith("qis query: NOT_FOUND: series/no-such-series")


def test_a_volume_file_into_a_price_series_is_refused_clearly(
    qis: Qis, price_series: SeriesSetup, tmp_path: Path
) -> None:
    volumes = _write_csv(tmp_path / "v.csv", [(_snap(0), "1000")])
    result = _ingest(qis, volumes, price_series, "--type", "volume")
    assert result.code == 2
    assert result.out == ""
    assert "does not take volume values" in result.err
    assert "Leave --type out to have it read from the series definition" in result.err


def test_the_type_is_read_from_the_definition(
    qis: Qis, define_series: DefineSeries, tmp_path: Path
) -> None:
    series = define_series("volume", "shares")
    volumes = _write_csv(tmp_path / "v.csv", [(_snap(i), f"{1000 + i}") for i in range(5)])
    result = _ingest(qis, volumes, series)
    assert result.code == 0, result.out + result.err
    assert _count("accepted", result.out) == 5


def test_definition_errors_show_code_and_fields(qis: Qis, price_series: SeriesSetup) -> None:
    result = qis(
        "define-series", "cli-test-bad", "--type", "price", "--frequency", "daily",
        "--source", price_series.source_id, "--source", price_series.source_id,
        "--time-zone", "Mars/Olympus",
    )  # fmt: skip
    assert result.code == 1
    assert result.err.splitlines() == [
        "qis define-series: INVALID_ARGUMENT",
        "  series.sources[1].source: listed twice",
        "  series.unit: a currency or unit is required",
        "  series.time_zone: unknown time zone 'Mars/Olympus'",
    ]

    again = qis(
        "define-series", price_series.series_id, "--type", "price", "--frequency", "daily",
        "--unit", "USD", "--source", price_series.source_id,
    )  # fmt: skip
    assert again.code == 1
    assert f"ALREADY_EXISTS: series/{price_series.series_id} already exists" in again.err


def test_a_repeated_command_id_changes_nothing(qis: Qis) -> None:
    first = qis("register-source", "cli-test-fixed", "--provider", "file", "--command-id", "c-1")
    again = qis("register-source", "cli-test-fixed", "--provider", "file", "--command-id", "c-1")
    assert first.code == again.code == 0
    assert "already done by this command id, nothing changed" in again.out
    position = re.search(r"commit position (\d+)", first.out)
    assert position is not None
    assert f"commit position {position[1]}" in again.out


def test_no_identity_is_exit_5_and_no_service_exit_4(
    services: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = _write_csv(tmp_path / "p.csv", [(_snap(0), "1")])
    args = ["ingest", str(prices), "--series", "s", "--source", "f"]
    command = ["--address", services.address("command")]
    query = ["--query-address", services.address("query")]

    for service in (["--type", "price"], query):  # refused by the command, then query, service
        assert main([*args, *command, *service, "--user", "no spaces"]) == 5
        err = capsys.readouterr().err
        assert err.startswith("qis ingest: UNAUTHENTICATED: missing or invalid 'x-qis-user'")
        assert "--user NAME or QIS_USER in development mode" in err

    nowhere = f"127.0.0.1:{free_port()}"
    assert main([*args, "--type", "price", "--address", nowhere, "--user", "someone"]) == 4
    err = capsys.readouterr().err
    assert f"cannot reach the command service at {nowhere}" in err
    assert "is `qis up` running?" in err
    assert "Traceback" not in err

    assert main([*args, *command, "--query-address", nowhere, "--user", "someone"]) == 4
    assert f"cannot reach the query service at {nowhere}" in capsys.readouterr().err
