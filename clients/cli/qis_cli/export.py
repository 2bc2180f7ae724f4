"""`qis export`: the official values of one or more series into a Parquet or CSV file, read
from the query service's Arrow Flight endpoint (QIS_FLIGHT_ADDRESS) as one stream of columns.

Batches are written as they arrive, so an export of any length holds one batch in memory, into
a temporary file beside the target that replaces it only once the stream has ended: a failed
export leaves no partial file. Parquet keeps the stream's schema as it is (exact decimal128
values, UTC timestamps, the flags as a list); CSV, which has no types, gets RFC 3339 times,
decimals as plain text (no exponent, no trailing zeros) and the flags joined by ';'.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.flight as fl
import pyarrow.parquet as pq

from qis_cli import reading
from qis_cli.connection import Metadata, tls_files
from qis_cli.errors import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    CliError,
)

FLAGS_SEPARATOR = ";"
_PYARROW_DETAIL = ". Detail: "  # what pyarrow appends to a server's message


class ExportFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"

    @classmethod
    def of(cls, path: Path, given: str | None) -> ExportFormat:
        if given:
            return cls(given)
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            return cls.PARQUET
        if suffix == ".csv":
            return cls.CSV
        raise CliError(f"{path.name}: say --format parquet or csv (or name it .parquet or .csv)")


@dataclass(frozen=True, slots=True)
class ExportQuery:
    series_ids: tuple[str, ...]
    start: str | None = None
    end: str | None = None
    as_of_time: str | None = None
    as_of_position: int | None = None
    min_position: int | None = None

    def ticket(self) -> bytes:
        """The Flight ticket (qis_query.entrypoints.flight): times as RFC 3339, a bare date
        as midnight UTC (as `qis query` takes them)."""
        body: dict[str, Any] = {"series": [f"series/{s}" for s in self.series_ids]}
        for field, text in (
            ("start_time", self.start),
            ("end_time", self.end),
            ("as_of_time", self.as_of_time),
        ):
            if text:
                try:
                    body[field] = reading.parse_time(text).ToJsonString()
                except ValueError as error:
                    raise CliError(f"{field}: {error}") from None
        if self.as_of_position is not None:
            body["as_of_position"] = self.as_of_position
        if self.min_position is not None:
            body["min_position"] = self.min_position
        return json.dumps(body).encode()


@dataclass(frozen=True, slots=True)
class Exported:
    points: int
    read_position: int


def export(
    address: str, query: ExportQuery, metadata: Metadata, out: Path, file_format: ExportFormat
) -> Exported:
    """Streams the export into `out`; a CliError with the exit code of the refusal."""
    partial = out.with_name(f".{out.name}.partial")
    try:
        with _client(address) as client, _failures(address):
            options = fl.FlightCallOptions(headers=[(k.encode(), v.encode()) for k, v in metadata])
            reader = client.do_get(fl.Ticket(query.ticket()), options)
            points = _write(reader, partial, file_format)
            read_position = int((reader.schema.metadata or {}).get(b"qis.read_position", b"0"))
        partial.replace(out)
        return Exported(points, read_position)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _client(address: str) -> Iterator[fl.FlightClient]:
    files = tls_files()
    if files is None:
        client = fl.FlightClient(f"grpc+tcp://{address}")
    else:
        client = fl.FlightClient(
            f"grpc+tls://{address}",
            tls_root_certs=files.ca,
            cert_chain=files.client_cert,
            private_key=files.client_key,
        )
    try:
        yield client
    finally:
        client.close()


def _write(reader: fl.FlightStreamReader, path: Path, file_format: ExportFormat) -> int:
    points = 0
    if file_format is ExportFormat.PARQUET:
        with pq.ParquetWriter(path, reader.schema) as parquet:
            for batch in _batches(reader):
                parquet.write_batch(batch)
                points += batch.num_rows
        return points
    schema = csv_schema(reader.schema)
    with pa_csv.CSVWriter(path, schema) as writer:
        for batch in _batches(reader):
            writer.write_batch(csv_batch(batch, schema))
            points += batch.num_rows
    return points


def _batches(reader: fl.FlightStreamReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        yield chunk.data


# --- CSV: text columns ------------------------------------------------------------------------


def csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.string(), nullable=f.nullable) for f in schema])


def csv_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = [_text(batch.column(i)) for i in range(batch.num_columns)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _text(column: pa.Array) -> pa.Array:
    kind = column.type
    if pa.types.is_timestamp(kind):
        # RFC 3339 in UTC, microseconds only where there are some.
        text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
        return pc.replace_substring_regex(text, pattern=r"\.000000Z$", replacement="Z")
    if pa.types.is_decimal(kind):
        return pa.array([_plain(d) for d in column.to_pylist()], pa.string())
    if pa.types.is_list(kind):
        return pc.binary_join(column, FLAGS_SEPARATOR)
    return column.cast(pa.string())


def _plain(value: Decimal | None) -> str | None:
    """Every digit of the value, none more: 100.250000000000000000 as 100.25, 1E-18 as
    0.000000000000000001."""
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- failures -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _failures(address: str) -> Iterator[None]:
    """Flight's errors as the CLI's: the server's message (without pyarrow's debug context)
    and the exit code of its status (qis_cli.errors.EXIT_CODES)."""
    try:
        yield
    except fl.FlightUnauthenticatedError as error:
        raise CliError(
            _message(error) + "\n  pass --token TOKEN or set QIS_TOKEN (a server in jwt mode);"
            " --user NAME or QIS_USER in development mode",
            EXIT_DENIED,
        ) from None
    except fl.FlightUnavailableError as error:
        if not error.extra_info:  # the server never answered: not even a status of ours
            raise CliError(
                f"cannot reach the Arrow Flight endpoint at {address} — is `qis up` running?"
                " (--address, QIS_FLIGHT_ADDRESS)",
                EXIT_UNAVAILABLE,
            ) from None
        raise CliError(
            _message(error) + "\n  temporary: run the same command again later", EXIT_UNAVAILABLE
        ) from None
    except KeyError as error:  # pyarrow.ArrowKeyError: NOT_FOUND
        raise CliError(_message(error), EXIT_NOT_FOUND) from None
    except pa.ArrowException as error:
        raise CliError(_message(error), _exit_code(error)) from None


_EXIT_BY_PREFIX: tuple[tuple[str, int], ...] = (
    ("UNAVAILABLE:", EXIT_UNAVAILABLE),
    ("RESOURCE_EXHAUSTED:", EXIT_UNAVAILABLE),
    ("NOT_FOUND:", EXIT_NOT_FOUND),
)


def _exit_code(error: Exception) -> int:
    message = _message(error)
    return next((code for p, code in _EXIT_BY_PREFIX if message.startswith(p)), EXIT_FAILED)


def _message(error: Exception) -> str:
    text = str(error.args[0]) if error.args else str(error)
    return text.split(_PYARROW_DETAIL, 1)[0]
