"""`qis evolve-series` against a scripted in-process server: what it sends (the mask of the
options given, the schema version it read) and how a concurrent change is told to a person."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis.data.v1 import (
    command_service_pb2,
    command_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
    series_pb2,
    values_pb2,
)
from qis_cli.main import main

READ_VERSION = 3
MOVED_ON = "series/x is at schema version 4, not 3: read it again"


class Queries(query_service_pb2_grpc.QueryServiceServicer):
    def GetSeries(
        self, request: query_service_pb2.GetSeriesRequest, context: grpc.ServicerContext
    ) -> series_pb2.Series:
        return series_pb2.Series(
            name=request.name,
            data_type=values_pb2.DATA_TYPE_PRICE,
            frequency=series_pb2.FREQUENCY_DAILY,
            unit="USD",
            sources=[series_pb2.SeriesSource(source="sources/a", priority=1)],
            validation=series_pb2.ValidationRules(require_positive=True),
            schema_version=READ_VERSION,
        )


class Commands(command_service_pb2_grpc.CommandServiceServicer):
    """Applies the first evolution; refuses the others as made from a stale version."""

    def __init__(self) -> None:
        self.requests: list[command_service_pb2.EvolveSeriesSchemaRequest] = []

    def EvolveSeriesSchema(
        self, request: command_service_pb2.EvolveSeriesSchemaRequest, context: grpc.ServicerContext
    ) -> command_service_pb2.CommandResponse:
        self.requests.append(request)
        if len(self.requests) > 1:
            info = any_pb2.Any()
            info.Pack(
                error_details_pb2.ErrorInfo(reason="SCHEMA_VERSION_MISMATCH", domain="qis.data")
            )
            status = status_pb2.Status(
                code=grpc.StatusCode.ABORTED.value[0], message=MOVED_ON, details=[info]
            )
            context.abort_with_status(rpc_status.to_status(status))
        return command_service_pb2.CommandResponse(commit_position=12)


# The scripted services implement only the methods evolve-series calls (the others stay
# abstract, and answer UNIMPLEMENTED).
@pytest.fixture
def commands() -> Commands:
    return Commands()  # type: ignore[abstract]


@pytest.fixture
def address(commands: Commands) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    queries = Queries()  # type: ignore[abstract]
    query_service_pb2_grpc.add_QueryServiceServicer_to_server(queries, server)
    command_service_pb2_grpc.add_CommandServiceServicer_to_server(commands, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def evolve(address: str, *options: str) -> int:
    connection = ["--address", address, "--query-address", address, "--user", "alice"]
    return main(["evolve-series", "x", "--reason", "noisy vendor", *options, *connection])


def test_a_change_made_from_a_stale_version_is_refused_clearly(
    address: str, commands: Commands, capsys: pytest.CaptureFixture[str]
) -> None:
    assert evolve(address, "--max-jump-percent", "10", "--cutoff", "2h") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        "  validation.max_jump_percent: (none) -> 10",
        "  publication.cutoff: (none) -> 2h",
    ]
    (sent,) = commands.requests
    assert list(sent.update_mask.paths) == ["validation", "publication"]
    assert sent.expected_schema_version == READ_VERSION
    assert sent.series.validation == series_pb2.ValidationRules(
        require_positive=True, max_jump_percent="10"
    ), "the rules not given go as they were read"

    # Someone else's evolution got in between: the same version read, now a stale one.
    assert evolve(address, "--source", "b:2") == 4
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"qis evolve-series: ABORTED: {MOVED_ON}",
        "  the series changed since its definition was read, and nothing was changed; check"
        " what changed, then run the command again to make this change from the current"
        " definition",
    ]
    assert list(commands.requests[1].update_mask.paths) == ["sources"]
    assert commands.requests[1].expected_schema_version == READ_VERSION
