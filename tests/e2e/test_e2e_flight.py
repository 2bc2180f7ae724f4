"""Arrow Flight through the real processes under `qis up`: values ingested and restated over
gRPC, read back through the query service's Flight port equal to what QueryRange answers (latest
and as of a position), and `qis export` to Parquet and CSV giving the same values back."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc.aio
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from qis.data.v1 import query_service_pb2 as q

from tests.e2e.harness import (
    CHANNEL_OPTIONS,
    DAY_US,
    US,
    Clients,
    as_user,
    ingest_request,
    micros,
    price,
    price_series,
    query_all,
    setup_series,
    timestamp,
    unique,
)
from tests.support.qis_up import qis_up

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
FIRST_SNAP = 1_577_998_800 * US  # 2020-01-02T21:00:00Z
DAYS = 1_500
RESTATED = 700
USER = [(b"x-qis-user", b"analyst")]
EDGES = {
    3: "0.000000000000000001",
    4: "99999999999999999.999999999999999999",
    5: "999999999999999999",
    6: "123456.100000000000000001",
}


def text_of(day: int) -> str:
    return EDGES.get(day, f"{4000 + day}.{day % 100:02d}")


@pytest.fixture(scope="module")
def up_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flight-up")


@pytest.fixture(scope="module")
def up(up_root: Path) -> Iterator[dict[str, str]]:
    with qis_up(up_root) as addresses:
        yield addresses


def flight_read(address: str, ticket: dict[str, object]) -> pa.Table:
    with fl.FlightClient(f"grpc+tcp://{address}") as client:
        options = fl.FlightCallOptions(headers=USER, timeout=60)
        return client.do_get(fl.Ticket(json.dumps(ticket).encode()), options).read_all()


def rows_of_values(values: list[q.OfficialValue]) -> list[tuple[int, Decimal, int, int, int]]:
    return [
        (
            micros(v.snap_time),
            Decimal(v.value.price.value),
            v.version,
            micros(v.record_time),
            v.record_position,
        )
        for v in values
    ]


def rows_of_table(table: pa.Table) -> list[tuple[int, Decimal, int, int, int]]:
    return list(
        zip(
            table.column("snap_time").cast(pa.int64()).to_pylist(),
            table.column("value").to_pylist(),
            table.column("version").to_pylist(),
            table.column("record_time").cast(pa.int64()).to_pylist(),
            table.column("record_position").to_pylist(),
            strict=True,
        )
    )


def qis(*args: str, flight: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env.update({"QIS_FLIGHT_ADDRESS": flight, "QIS_USER": "analyst"})
    return subprocess.run(
        [str(BIN / "qis"), *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_flight_reads_what_query_range_reads_and_qis_export_writes_it(
    up: dict[str, str], tmp_path: Path
) -> None:
    flight = up["QIS_FLIGHT_ADDRESS"]
    series_id, other_id, source = unique("flight"), unique("flight-b"), unique("vendor")
    snaps = [FIRST_SNAP + d * DAY_US for d in range(DAYS)]
    async with (
        grpc.aio.insecure_channel(up["QIS_COMMAND_ADDRESS"], options=CHANNEL_OPTIONS) as cch,
        grpc.aio.insecure_channel(up["QIS_QUERY_ADDRESS"], options=CHANNEL_OPTIONS) as qch,
    ):
        c = Clients(
            command_service_pb2_grpc.CommandServiceStub(cch),
            query_service_pb2_grpc.QueryServiceStub(qch),
        )
        await setup_series(c, series_id, price_series([(source, 1)]))
        await setup_series(c, other_id, price_series([(source, 1)]), register_sources=False)
        items = [(s, text_of(d)) for d, s in enumerate(snaps)]
        ingested = await c.command.IngestPoints(
            ingest_request(unique("ing"), series_id, source, items), metadata=as_user("alice")
        )
        assert ingested.published == DAYS
        other = await c.command.IngestPoints(
            ingest_request(unique("ing"), other_id, source, items[:10]), metadata=as_user("alice")
        )
        restated = await c.command.RestatePoint(
            cmd.RestatePointRequest(
                command_id=unique("fix"),
                series=f"series/{series_id}",
                snap_time=timestamp(snaps[RESTATED]),
                value=price("1.000000000000000005"),
                reason="vendor correction",
            ),
            metadata=as_user("carol"),
        )
        head = max(restated.commit_position, other.commit_position)

        latest = await query_all(c, series_id, min_position=head)
        before = await query_all(c, series_id, as_of_position=ingested.commit_position)

    # Flight answers what QueryRange answers: latest, and as of the ingestion's position.
    table = flight_read(flight, {"series": [f"series/{series_id}"], "min_position": head})
    assert rows_of_table(table) == rows_of_values(latest)
    assert table.num_rows == DAYS
    assert table.column("value")[RESTATED].as_py() == Decimal("1.000000000000000005")
    assert table.column("version")[RESTATED].as_py() == 2
    assert [table.column("value")[d].as_py() for d in EDGES] == [Decimal(t) for t in EDGES.values()]
    as_of = flight_read(
        flight, {"series": [f"series/{series_id}"], "as_of_position": ingested.commit_position}
    )
    assert rows_of_table(as_of) == rows_of_values(before)
    assert as_of.column("value")[RESTATED].as_py() == Decimal(text_of(RESTATED))

    # `qis export` to Parquet: the same table back, schema and exact decimals included.
    parquet = tmp_path / "closes.parquet"
    done = qis(
        "export", series_id, "--out", str(parquet), "--min-position", str(head), flight=flight
    )
    assert done.returncode == 0, done.stderr
    assert f"exported {DAYS:,} points of series/{series_id}" in done.stdout
    written = pq.read_table(parquet)
    assert written.schema.equals(table.schema)
    assert written.equals(table)

    # Two series in one file: a series column, the named order.
    both = tmp_path / "both.parquet"
    done = qis("export", other_id, series_id, "--out", str(both), flight=flight)
    assert done.returncode == 0, done.stderr
    two = pq.read_table(both)
    assert two.num_rows == DAYS + 10
    names = two.column("series").to_pylist()
    assert names == [f"series/{other_id}"] * 10 + [f"series/{series_id}"] * DAYS

    # CSV: text, every digit and no more, RFC 3339 times.
    exported = tmp_path / "closes.csv"
    done = qis(
        "export",
        series_id,
        "--out",
        str(exported),
        "--as-of-position",
        str(ingested.commit_position),
        flight=flight,
    )
    assert done.returncode == 0, done.stderr
    with exported.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == DAYS
    assert [rows[d]["value"] for d in EDGES] == list(EDGES.values())
    assert rows[RESTATED]["value"] == "4700"  # "4700.00": decimal128 keeps no scale of its own
    assert rows[0]["snap_time"] == "2020-01-02T21:00:00Z"
    assert rows[0]["flags"] == ""


def test_qis_up_announces_the_flight_port_and_export_refuses_clearly(
    up: dict[str, str], up_root: Path, tmp_path: Path
) -> None:
    flight = up["QIS_FLIGHT_ADDRESS"]
    announced = (up_root / "qis-up.out").read_text()
    query = up["QIS_QUERY_ADDRESS"]
    assert f"qis-query      serving on {query}, Arrow Flight on {flight}" in announced
    done = qis("export", unique("nope"), "--out", str(tmp_path / "x.parquet"), flight=flight)
    assert done.returncode == 3, done.stderr  # not found
    assert "NOT_FOUND: series/" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.parquet").exists()
    done = qis("export", "x", "--out", str(tmp_path / "x.txt"), flight=flight)
    assert done.returncode == 2
    assert "--format" in done.stderr
    unreachable = qis("export", "x", "--out", str(tmp_path / "y.csv"), flight="127.0.0.1:1")
    assert unreachable.returncode == 4, unreachable.stderr
    assert "cannot reach the Arrow Flight endpoint" in unreachable.stderr


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, int(port))) == 0


def test_an_empty_flight_address_turns_the_port_off_under_qis_up(tmp_path: Path) -> None:
    """README: QIS_FLIGHT_ADDRESS empty means off, under `qis up` as for the service alone."""
    from qis_cli.up import FLIGHT_PORT, address_of

    assert address_of(FLIGHT_PORT, {"QIS_FLIGHT_ADDRESS": ""}) == ""
    assert address_of(FLIGHT_PORT, {}) == FLIGHT_PORT.default_address
    default_taken = _listening(FLIGHT_PORT.default_address)  # by something else on this host
    with qis_up(tmp_path, {"QIS_FLIGHT_ADDRESS": ""}) as addresses:
        announced = (tmp_path / "qis-up.out").read_text()
        query = addresses["QIS_QUERY_ADDRESS"]
        assert (
            f"qis-query      serving on {query}, Arrow Flight off (QIS_FLIGHT_ADDRESS is empty)"
            in announced
        ), announced
        assert FLIGHT_PORT.default_address not in announced
        if not default_taken:
            assert not _listening(FLIGHT_PORT.default_address)
