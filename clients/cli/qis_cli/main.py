"""`qis`: the command line for people. Every command exits with one of the codes of
qis_cli.errors.EXIT_CODES, listed by `qis --help`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from qis.data.v1 import command_service_pb2, command_service_pb2_grpc, query_service_pb2, series_pb2

from qis_cli import reading
from qis_cli.chunks import ImportKey, file_digest
from qis_cli.connection import (
    COMMAND_ADDRESS_ENV,
    FLIGHT_ADDRESS_ENV,
    QUERY_ADDRESS_ENV,
    TOKEN_ENV,
    USER_ENV,
    Metadata,
    call,
    connected_channel,
    default_command_address,
    default_flight_address,
    default_query_address,
    default_user,
    identity,
    normalise_name,
)
from qis_cli.definitions import (
    DATA_TYPES,
    FREQUENCIES,
    add_setting_options,
    changes,
    define_request,
    evolve_request,
    evolved,
    new_command_id,
    outcome_text,
    register_source_request,
)
from qis_cli.errors import EXIT_CODES, EXIT_INTERRUPTED, CliError
from qis_cli.export import ExportFormat, ExportQuery, export
from qis_cli.feed import add_feed_parser
from qis_cli.ingest import DEFAULT_WINDOW, IngestSummary, IngestTarget, render_summary, run_ingest
from qis_cli.kinds import ValueKind
from qis_cli.progress import Progress
from qis_cli.readers import FileFormat, ImportFile, column_map, detect_format, read_rows
from qis_cli.sources import add_sources_parser
from qis_cli.status import run_status
from qis_cli.topics import add_topics_parser
from qis_cli.up import run_up

MAX_CHUNK_SIZE = 10_000  # the server's limit of points per request
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


def _series(args: argparse.Namespace, series_id: str, metadata: Metadata) -> series_pb2.Series:
    return call(
        args.query_address,
        "query",
        reading.Stub,
        lambda stub: reading.get_series(stub, series_id, metadata),
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    file_format = detect_format(path, args.format)
    series_id = normalise_name(args.series, "series")
    metadata = identity(args.user, args.token)
    if args.type:
        kind = ValueKind(args.type)
    else:
        series = _series(args, series_id, metadata)
        kind = ValueKind.of(series.data_type, series.name)
    renamed = column_map(args.columns, kind.fields)
    target = IngestTarget(series_id, normalise_name(args.source, "sources"), kind)
    # Read and checked before sending: a wrong file is reported before anything is stored.
    rows = read_rows(ImportFile(path, file_format, kind.fields, renamed), _warn)
    key = ImportKey(file_digest(path), target.series_id, target.source_id, args.chunk_size, renamed)
    summary = IngestSummary(rows.label, renamed)
    with connected_channel(args.address, "command") as channel:
        run_ingest(
            Stub(channel),
            target,
            rows.rows,
            key,
            metadata,
            summary,
            Progress(sys.stderr, rows.expected),
            args.in_flight,
        )
    if summary.stopped is not None and summary.nothing_done:
        # E.g. an unknown series or no identity: the reason alone says it all.
        raise CliError(summary.stopped, summary.exit_code)
    print(render_summary(summary, path.name, target))
    return summary.exit_code


def _command(
    args: argparse.Namespace, send: Callable[[Stub], command_service_pb2.CommandResponse]
) -> command_service_pb2.CommandResponse:
    return call(args.address, "command", Stub, send)


def cmd_register_source(args: argparse.Namespace) -> int:
    source_id = normalise_name(args.id, "sources")
    request = register_source_request(
        args.command_id or new_command_id(), source_id, args.provider, args.description
    )
    response = _command(
        args,
        lambda stub: stub.RegisterDataSource(request, metadata=identity(args.user, args.token)),
    )
    print(outcome_text(f"registered sources/{source_id}", response))
    return 0


def cmd_define_series(args: argparse.Namespace) -> int:
    series_id = normalise_name(args.id, "series")
    request = define_request(args.command_id or new_command_id(), series_id, args)
    response = _command(
        args, lambda stub: stub.DefineSeries(request, metadata=identity(args.user, args.token))
    )
    print(outcome_text(f"defined series/{series_id}", response))
    return 0


def cmd_evolve_series(args: argparse.Namespace) -> int:
    metadata = identity(args.user, args.token)
    current = _series(args, normalise_name(args.id, "series"), metadata)
    series = evolved(current, args, args.source, args.remove_source)
    changed = changes(current, series)
    if not changed:
        print(f"{current.name} is defined so already: nothing sent")
        return 0
    request = evolve_request(args.command_id or new_command_id(), current, series, args)
    response = _command(args, lambda stub: stub.EvolveSeriesSchema(request, metadata=metadata))
    print(
        outcome_text(
            f"evolved {current.name} (was schema version {current.schema_version})", response
        )
    )
    print("\n".join(f"  {line}" for line in changed))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    series = f"series/{normalise_name(args.series, 'series')}"
    metadata = identity(args.user, args.token)
    try:
        if args.history:
            history_request = query_service_pb2.GetPointHistoryRequest(
                series=series, snap_time=reading.parse_time(args.history)
            )
            rows = call(
                args.address,
                "query",
                reading.Stub,
                lambda stub: reading.history(stub, history_request, metadata),
            )
        else:
            request = query_service_pb2.QueryRangeRequest(series=series, page_size=10_000)
            if args.start:
                request.start_time.CopyFrom(reading.parse_time(args.start))
            if args.end:
                request.end_time.CopyFrom(reading.parse_time(args.end))
            if args.as_of:
                request.as_of_time.CopyFrom(reading.parse_time(args.as_of))
            elif args.at_position is not None:
                request.as_of_position = args.at_position
            rows = call(
                args.address,
                "query",
                reading.Stub,
                lambda stub: reading.query(stub, request, metadata),
            )
    except ValueError as error:
        raise CliError(str(error)) from None
    # sys.stdout as it is now, not as it was at import (a test's capture replaces it).
    reading.render_table(rows, sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    file_format = ExportFormat.of(out, args.format)
    query = ExportQuery(
        tuple(normalise_name(s, "series") for s in args.series),
        args.start,
        args.end,
        args.as_of_time,
        args.as_of_position,
        args.min_position,
    )
    done = export(args.address, query, identity(args.user, args.token), out, file_format)
    named = ", ".join(f"series/{s}" for s in query.series_ids)
    print(
        f"exported {done.points:,} points of {named} to {out} ({file_format},"
        f" read position {done.read_position})"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return run_status(identity(args.user, args.token))


def cmd_subscribe(args: argparse.Namespace) -> int:
    request = query_service_pb2.SubscribeRequest(
        series=[f"series/{normalise_name(s, 'series')}" for s in args.series]
    )
    if args.resume_token:
        request.resume_token = args.resume_token
    else:
        request.after_position = args.after_position
    call(
        args.address,
        "query",
        reading.Stub,
        lambda stub: reading.subscribe(stub, request, identity(args.user, args.token), sys.stdout),
    )
    return 0


def cmd_projector(args: argparse.Namespace) -> int:
    """Runs `qis-projector rebuild` with the same QIS_* settings as `qis up`."""
    env = {**os.environ, "QIS_DATA_DIR": args.data_dir}
    tool = Path(sys.executable).parent / "qis-projector"
    return subprocess.run([str(tool), args.action], env=env, check=False).returncode


def cmd_up(args: argparse.Namespace) -> int:
    return run_up(Path(args.data_dir))


_ADDRESSES = {
    "command": (COMMAND_ADDRESS_ENV, default_command_address),
    "query": (QUERY_ADDRESS_ENV, default_query_address),
    "Arrow Flight": (FLIGHT_ADDRESS_ENV, default_flight_address),
}


def _add_address(parser: argparse._ActionsContainer, flag: str, service: str) -> None:
    env, default = _ADDRESSES[service]
    parser.add_argument(
        flag,
        default=default(),
        metavar="HOST:PORT",
        help=f"{service} service (default: ${env} or %(default)s)",
    )


def _add_connection_options(
    parser: argparse.ArgumentParser, service: str, *, reads_definition: bool = False
) -> None:
    """--address of the service the command is about; --query-address too for commands that
    read the series definition first."""
    group = parser.add_argument_group("connection")
    _add_address(group, "--address", service)
    if reads_definition:
        _add_address(group, "--query-address", "query")
    _add_identity_options(group)


def _add_identity_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--user",
        default=default_user(),
        help=f"who you are, sent as call metadata (default: ${USER_ENV} or your login name)",
    )
    group.add_argument(
        "--token",
        help=f"a bearer token (JWT) proving who you are, for a server in jwt mode; sent instead"
        f" of --user (default: ${TOKEN_ENV})",
    )


def _add_command_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--command-id", help="makes a scripted setup repeatable (default: a random one)"
    )


def _exit_codes() -> str:
    lines = [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES]
    return "exit codes (every command):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qis",
        description="Reference and market data: run the services, define, import, look.",
        epilog=_exit_codes(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    projector.add_argument("action", choices=["rebuild"], help="what to do: rebuild")
    projector.add_argument(
        "--data-dir",
        default=os.environ.get("QIS_DATA_DIR") or ".qis-data",
        help="as for `qis up` (default: $QIS_DATA_DIR or %(default)s)",
    )
    projector.set_defaults(run=cmd_projector)

    source = commands.add_parser("register-source", help="register a data source")
    source.add_argument("id", help="source id, e.g. bloomberg")
    source.add_argument("--provider", required=True, help='e.g. "file", "bloomberg"')
    source.add_argument("--description", default="", help="free text for people")
    _add_command_id(source)
    _add_connection_options(source, "command")
    source.set_defaults(run=cmd_register_source)

    define = commands.add_parser(
        "define-series",
        help="define a series: data type, frequency, sources, rules and policies",
        description="Options left out take the service's defaults (listed with each).",
    )
    define.add_argument("id", help="series id, e.g. AAPL.close")
    define.add_argument("--type", required=True, choices=DATA_TYPES, help="what values it holds")
    define.add_argument("--frequency", required=True, choices=FREQUENCIES, help="how often")
    define.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="ID[:PRIORITY]",
        help="a source allowed to contribute (repeat for several; 1 is the most trusted)",
    )
    add_setting_options(define, "definition, rules and policies")
    _add_command_id(define)
    _add_connection_options(define, "command")
    define.set_defaults(run=cmd_define_series)

    evolve = commands.add_parser(
        "evolve-series",
        help="change the definition of a series (all but its data type and frequency)",
        description=(
            "Starts from the current definition (read from the query service) and changes only"
            " what is given; prints each change. On/off rules take --x / --no-x; 'off' disables"
            " a threshold. Refused, changing nothing, when the series changed since it was read"
            " (exit 4): run it again to make the change from the new definition."
        ),
    )
    evolve.add_argument("id", help="series id (or series/ID)")
    evolve.add_argument("--reason", required=True, help="why, for the audit trail")
    evolve.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="ID[:PRIORITY]",
        help="add a source, or give one another priority (repeat for several)",
    )
    evolve.add_argument(
        "--remove-source",
        action="append",
        default=[],
        metavar="ID",
        help="stop taking values from this source (repeat for several)",
    )
    add_setting_options(evolve, "what to change")
    _add_command_id(evolve)
    _add_connection_options(evolve, "command", reads_definition=True)
    evolve.set_defaults(run=cmd_evolve_series)

    ingest = commands.add_parser(
        "ingest",
        help="import a file of rows (snap and value, or snap and OHLC bar) into a series",
        description=(
            "One row per point: snap (RFC 3339 with an offset) and, by the series' data type,"
            " value[,currency] (price), value[,unit] (volume) or open,high,low,close[,volume]"
            " (ohlc_bar), decimals as text. Columns of other names are mapped with --columns."
            " Re-running the same import changes nothing: chunk ids are derived from the"
            " file's content and the options that shape its rows."
        ),
    )
    ingest.add_argument("file", help="CSV (with a header line), Parquet, JSON or JSON Lines")
    ingest.add_argument("--series", required=True, help="series id (or series/ID)")
    ingest.add_argument("--source", required=True, help="source id (or sources/ID)")
    ingest.add_argument(
        "--type",
        choices=[k.value for k in ValueKind],
        help="data type of the series (default: read from its definition on the query service)",
    )
    ingest.add_argument(
        "--columns",
        default="",
        metavar="FIELD=COLUMN,...",
        help="file columns of fields named otherwise, e.g. snap=Date,close=Close,volume=Volume",
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
    _add_connection_options(ingest, "command", reads_definition=True)
    ingest.set_defaults(run=cmd_ingest)

    add_feed_parser(commands, _add_connection_options)
    add_sources_parser(commands, _add_connection_options)
    add_topics_parser(commands, _add_connection_options)

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
    _add_connection_options(look, "query")
    look.set_defaults(run=cmd_query)

    out = commands.add_parser(
        "export",
        help="write the official values of series to a Parquet or CSV file (Arrow Flight)",
        description=(
            "Reads the whole range in one stream from the query service's Arrow Flight"
            " endpoint: exact decimal128(38,18) values, UTC timestamps, version, quality,"
            " record time and position, flags; a series column when several series are named"
            " (docs/cli.md has the schema). Options chains and corporate actions have no"
            " columns: read them with `qis query`."
        ),
    )
    out.add_argument("series", nargs="+", help="series ids (or series/ID), one or more")
    out.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    out.add_argument(
        "--format",
        choices=[f.value for f in ExportFormat],
        help="default: from the file extension (.parquet, .csv)",
    )
    out.add_argument("--start", help="first snap (RFC 3339, or a date)")
    out.add_argument("--end", help="snaps before this one")
    when_out = out.add_mutually_exclusive_group()
    when_out.add_argument("--as-of-time", help="what was official at this time (knowledge time)")
    when_out.add_argument(
        "--as-of-position", type=int, help="what was official right after this commit position"
    )
    out.add_argument(
        "--min-position", type=int, help="wait until the service has read this commit position"
    )
    _add_connection_options(out, "Arrow Flight")
    out.set_defaults(run=cmd_export)

    follow = commands.add_parser("subscribe", help="print new and restated values as they come")
    follow.add_argument("series", nargs="*", help="series ids (default: every series)")
    follow.add_argument("--after-position", type=int, default=0, help="start after this position")
    follow.add_argument("--resume-token", help="continue from a printed resume token")
    _add_connection_options(follow, "query")
    follow.set_defaults(run=cmd_subscribe)

    status = commands.add_parser(
        "status",
        help="how every qis process and its stores, projector, scheduler and feeds are doing",
        description="Asks each process at its QIS_*_ADDRESS (else the `qis up` defaults) for"
        " its health report. Exit code 4 when anything is NOT_SERVING.",
    )
    _add_identity_options(status.add_argument_group("identity"))
    status.set_defaults(run=cmd_status)
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
