"""`qis`: the command line for people. Exit codes: 0 done, 1 some rows or the command rejected,
2 usage or connection problem, 130 interrupted."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
from qis.data.v1 import command_service_pb2, command_service_pb2_grpc, query_service_pb2

from qis_cli import reading
from qis_cli.chunks import ImportKey, chunks_of, file_digest
from qis_cli.connection import (
    COMMAND_ADDRESS_ENV,
    QUERY_ADDRESS_ENV,
    USER_ENV,
    command_channel,
    default_command_address,
    default_query_address,
    default_user,
    identity,
    normalise_name,
)
from qis_cli.definitions import (
    DATA_TYPES,
    FREQUENCIES,
    SeriesSpec,
    new_command_id,
    outcome_text,
    register_source_request,
)
from qis_cli.errors import EXIT_INTERRUPTED, CliError, rpc_failure
from qis_cli.ingest import (
    DEFAULT_WINDOW,
    IngestSummary,
    IngestTarget,
    ValueKind,
    render_summary,
    run_ingest,
)
from qis_cli.progress import Progress
from qis_cli.readers import FileFormat, ImportFile, detect_format, read_rows
from qis_cli.up import run_up

MAX_CHUNK_SIZE = 10_000  # the server's limit of points per request
R = TypeVar("R")
Stub = command_service_pb2_grpc.CommandServiceStub


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _chunk_size(text: str) -> int:
    size = int(text)
    if not 1 <= size <= MAX_CHUNK_SIZE:
        raise argparse.ArgumentTypeError(f"between 1 and {MAX_CHUNK_SIZE:,}")
    return size


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def _submit(args: argparse.Namespace, call: Callable[[Stub], R]) -> R:
    with command_channel(args.address) as channel:
        try:
            return call(Stub(channel))
        except grpc.RpcError as error:
            raise rpc_failure(error, args.address) from None


def cmd_ingest(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    kind = ValueKind(args.type)
    target = IngestTarget(
        normalise_name(args.series, "series"), normalise_name(args.source, "sources"), kind
    )
    # Read and checked before connecting: a wrong file is reported without a running service.
    rows = read_rows(ImportFile(path, detect_format(path, args.format), kind.unit_column), _warn)
    key = ImportKey(file_digest(path), target.series_id, target.source_id, args.chunk_size)
    summary = IngestSummary(rows.label)
    with command_channel(args.address) as channel:
        run_ingest(
            Stub(channel),
            target,
            chunks_of(rows.rows, key),
            identity(args.user),
            summary,
            Progress(sys.stderr),
            args.in_flight,
        )
    if summary.stopped is not None and not summary.chunks:
        # Nothing got through (e.g. no identity): the reason alone says it all.
        raise CliError(summary.stopped, summary.exit_code)
    print(render_summary(summary, path.name, target))
    return summary.exit_code


def cmd_register_source(args: argparse.Namespace) -> int:
    source_id = normalise_name(args.id, "sources")
    request = register_source_request(
        args.command_id or new_command_id(), source_id, args.provider, args.description
    )
    response: command_service_pb2.CommandResponse = _submit(
        args, lambda stub: stub.RegisterDataSource(request, metadata=identity(args.user))
    )
    print(outcome_text(f"registered sources/{source_id}", response))
    return 0


def cmd_define_series(args: argparse.Namespace) -> int:
    spec = SeriesSpec(
        series_id=normalise_name(args.id, "series"),
        data_type=args.type,
        frequency=args.frequency,
        unit=args.unit,
        sources=args.source,
        require_positive=args.require_positive,
        time_zone=args.time_zone,
        calendar=args.calendar,
        manual_publication=args.manual_publication,
        precision=args.precision,
        description=args.description,
    )
    request = spec.request(args.command_id or new_command_id())
    response: command_service_pb2.CommandResponse = _submit(
        args, lambda stub: stub.DefineSeries(request, metadata=identity(args.user))
    )
    print(outcome_text(f"defined series/{spec.series_id}", response))
    return 0


def _read(args: argparse.Namespace, call: Callable[[reading.Stub], R]) -> R:
    with command_channel(args.address, service="query") as channel:
        try:
            return call(reading.Stub(channel))
        except grpc.RpcError as error:
            raise rpc_failure(error, args.address) from None


def cmd_query(args: argparse.Namespace) -> int:
    series = f"series/{normalise_name(args.series, 'series')}"
    metadata = identity(args.user)
    try:
        if args.history:
            history_request = query_service_pb2.GetPointHistoryRequest(
                series=series, snap=reading.parse_time(args.history)
            )
            rows = _read(args, lambda stub: reading.history(stub, history_request, metadata))
        else:
            request = query_service_pb2.QueryRangeRequest(series=series, page_size=10_000)
            if args.start:
                request.start.CopyFrom(reading.parse_time(args.start))
            if args.end:
                request.end.CopyFrom(reading.parse_time(args.end))
            if args.as_of:
                request.known_at.CopyFrom(reading.parse_time(args.as_of))
            elif args.at_position is not None:
                request.at_position = args.at_position
            rows = _read(args, lambda stub: reading.query(stub, request, metadata))
    except ValueError as error:
        raise CliError(str(error)) from None
    reading.render_table(rows)
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    request = query_service_pb2.SubscribeRequest(
        series=[f"series/{normalise_name(s, 'series')}" for s in args.series]
    )
    if args.resume_token:
        request.resume_token = args.resume_token
    else:
        request.after_position = args.after_position
    _read(args, lambda stub: reading.subscribe(stub, request, identity(args.user)))
    return 0


def cmd_projector(args: argparse.Namespace) -> int:
    """Runs `qis-projector rebuild` with the same QIS_* settings as `qis up`."""
    env = {**os.environ, "QIS_DATA_DIR": args.data_dir}
    tool = Path(sys.executable).parent / "qis-projector"
    return subprocess.run([str(tool), args.action], env=env, check=False).returncode


def cmd_up(args: argparse.Namespace) -> int:
    return run_up(Path(args.data_dir))


def _add_connection_options(parser: argparse.ArgumentParser, query: bool = False) -> None:
    env, default = (
        (QUERY_ADDRESS_ENV, default_query_address())
        if query
        else (COMMAND_ADDRESS_ENV, default_command_address())
    )
    service = "query" if query else "command"
    parser.add_argument(
        "--address",
        default=default,
        help=f"{service} service host:port (default: ${env} or %(default)s)",
    )
    parser.add_argument(
        "--user",
        default=default_user(),
        help=f"who you are, sent as call metadata (default: ${USER_ENV} or your login name)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qis",
        description="Reference and market data: run the services, define, import, look.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run the qis services on this machine until Ctrl-C")
    up.add_argument(
        "--data-dir",
        default=os.environ.get("QIS_DATA_DIR") or ".qis-data",
        help="where the embedded stores keep their files (default: $QIS_DATA_DIR or %(default)s)",
    )
    up.set_defaults(run=cmd_up)

    projector = commands.add_parser(
        "projector",
        help="rebuild the read models into a fresh generation, then switch (queries go on)",
    )
    projector.add_argument("action", choices=["rebuild"])
    projector.add_argument(
        "--data-dir",
        default=os.environ.get("QIS_DATA_DIR") or ".qis-data",
        help="as for `qis up` (default: $QIS_DATA_DIR or %(default)s)",
    )
    projector.set_defaults(run=cmd_projector)

    source = commands.add_parser("register-source", help="register a data source")
    source.add_argument("id", help="source id, e.g. bloomberg")
    source.add_argument("--provider", required=True, help='e.g. "file", "bloomberg"')
    source.add_argument("--description", default="")
    source.add_argument("--command-id", help="makes a scripted setup repeatable (default: random)")
    _add_connection_options(source)
    source.set_defaults(run=cmd_register_source)

    series = commands.add_parser("define-series", help="define a series")
    series.add_argument("id", help="series id, e.g. AAPL.close")
    series.add_argument("--type", required=True, choices=DATA_TYPES)
    series.add_argument("--frequency", required=True, choices=FREQUENCIES)
    series.add_argument("--unit", default="", help="currency (prices) or unit (volumes)")
    series.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="ID[:PRIORITY]",
        help="a source allowed to contribute (repeat for several; 1 is the most trusted)",
    )
    series.add_argument("--require-positive", action="store_true", help="flag values <= 0")
    series.add_argument("--time-zone", default="", help="IANA zone, e.g. America/New_York")
    series.add_argument("--calendar", default="", help="exchange calendar (MIC), e.g. XNYS")
    series.add_argument(
        "--manual-publication",
        action="store_true",
        help="values become official only by explicit approval",
    )
    series.add_argument("--precision", type=int, default=0, help="decimal places (0: as sent)")
    series.add_argument("--description", default="")
    series.add_argument("--command-id", help="makes a scripted setup repeatable (default: random)")
    _add_connection_options(series)
    series.set_defaults(run=cmd_define_series)

    ingest = commands.add_parser(
        "ingest",
        help="import a file of (snap, value[, currency|unit]) rows into a series",
        description=(
            "Columns: snap (RFC 3339 with offset), value (decimal), and optionally currency"
            " (price series) or unit (volume series). Re-running the same import changes"
            " nothing: chunk ids are derived from the file's content."
        ),
    )
    ingest.add_argument("file")
    ingest.add_argument("--series", required=True, help="series id (or series/ID)")
    ingest.add_argument("--source", required=True, help="source id (or sources/ID)")
    ingest.add_argument(
        "--type",
        choices=[k.value for k in ValueKind],
        default=ValueKind.PRICE.value,
        help="data type of the series (default: %(default)s)",
    )
    ingest.add_argument(
        "--format",
        choices=[f.value for f in FileFormat],
        help="default: from the file extension (.csv, .parquet, .json/.jsonl)",
    )
    ingest.add_argument(
        "--chunk-size", type=_chunk_size, default=1000, help="rows per chunk (default: %(default)s)"
    )
    ingest.add_argument(
        "--in-flight",
        type=_positive,
        default=DEFAULT_WINDOW,
        help="chunks sent ahead of their acknowledgement (default: %(default)s)",
    )
    _add_connection_options(ingest)
    ingest.set_defaults(run=cmd_ingest)

    look = commands.add_parser(
        "query",
        help="show the official values of a series (latest, as of a time, or one point's history)",
    )
    look.add_argument("series", help="series id (or series/ID)")
    look.add_argument("--start", help="first snap (RFC 3339, or a date)")
    look.add_argument("--end", help="snaps before this one")
    when = look.add_mutually_exclusive_group()
    when.add_argument("--as-of", help="what was official at this time (knowledge time)")
    when.add_argument("--at-position", type=int, help="what was official after this position")
    when.add_argument("--history", metavar="SNAP", help="every version of this point")
    _add_connection_options(look, query=True)
    look.set_defaults(run=cmd_query)

    follow = commands.add_parser("subscribe", help="print new and restated values as they come")
    follow.add_argument("series", nargs="*", help="series ids (default: every series)")
    follow.add_argument("--after-position", type=int, default=0, help="start after this position")
    follow.add_argument("--resume-token", help="continue from a printed resume token")
    _add_connection_options(follow, query=True)
    follow.set_defaults(run=cmd_subscribe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CliError as error:
        print(f"qis {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"qis {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
