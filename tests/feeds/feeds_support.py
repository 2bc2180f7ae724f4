"""Command services the feed tests send to, served for real on loopback ports:

- `command_service`: the real qis-command servicer over the in-memory event store, in this
  process (its validation, idempotency and per-chunk answers);
- `ScriptedCommands`: a CommandService whose BulkIngest answers like the real one (a command id
  seen before is a duplicate) but can be slow, break its streams or ask for a retry, for the
  failure paths of the sender that the real one cannot be made to take on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import command_service_pb2_grpc as cmd_grpc
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth
from qis_runtime.errors import code_of

Metadata = tuple[tuple[str, str], ...]
FEEDER: Metadata = (("x-qis-user", "feeder"),)


@dataclass
class Served:
    address: str
    stub: cmd_grpc.CommandServiceAsyncStub


@contextlib.asynccontextmanager
async def command_service() -> AsyncIterator[Served]:
    """The real command service on a free port, events in memory, development identities."""
    settings = CommandSettings(command_address="127.0.0.1:0", scheduler_enabled=False, auth="dev")
    app = await build(settings, InMemoryEventStore())
    port = await app.server.start()
    await app.server.mark_serving()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(f"127.0.0.1:{port}", cmd_grpc.CommandServiceStub(channel))
    finally:
        await app.server.stop(0)
        await app.close()


async def define_series(
    stub: cmd_grpc.CommandServiceAsyncStub,
    series_id: str,
    source_id: str,
    data_type: values_pb2.DataType.ValueType = values_pb2.DATA_TYPE_PRICE,
    frequency: series_pb2.Frequency.ValueType = series_pb2.FREQUENCY_SECOND,
) -> None:
    await stub.RegisterDataSource(
        cmd.RegisterDataSourceRequest(
            command_id=f"reg-{source_id}",  # the same for every series: a duplicate
            source_id=source_id,
            source=series_pb2.DataSource(provider="test"),
        ),
        metadata=FEEDER,
    )
    await stub.DefineSeries(
        cmd.DefineSeriesRequest(
            command_id=f"def-{series_id}",
            series_id=series_id,
            series=series_pb2.Series(
                data_type=data_type,
                frequency=frequency,
                unit="USD",
                sources=[series_pb2.SeriesSource(source=f"sources/{source_id}", priority=1)],
                publication=series_pb2.PublicationPolicy(
                    mode=series_pb2.PUBLICATION_MODE_AUTOMATIC, min_sources=1
                ),
            ),
        ),
        metadata=FEEDER,
    )


@dataclass
class ScriptedCommands:
    delay_s: float = 0.0
    """Before answering each chunk: a slow store."""
    break_after: list[int] = field(default_factory=list)
    """Abort the n-th stream (0-based) with UNAVAILABLE after this many answers, one entry per
    stream to break."""
    break_with_ok: bool = False
    """Break them without a status (OK) instead, the client's half-close not awaited."""
    retry_once: set[int] = field(default_factory=set)
    """Chunk numbers (0-based, in arrival order) refused once with a RetryInfo."""
    seen: dict[str, int] = field(default_factory=dict)
    """Command id -> points, of every chunk committed."""
    arrivals: list[str] = field(default_factory=list)
    streams: int = 0
    in_progress: int = 0

    async def BulkIngest(
        self,
        request_iterator: AsyncIterator[cmd.IngestPointsRequest],
        context: grpc.aio.ServicerContext[cmd.IngestPointsRequest, cmd.BulkIngestResponse],
    ) -> AsyncIterator[cmd.BulkIngestResponse]:
        stream = self.streams
        self.streams += 1
        limit = self.break_after[stream] if stream < len(self.break_after) else None
        answered = 0
        async for chunk in request_iterator:
            number = len(self.arrivals)
            self.arrivals.append(chunk.command_id)
            if limit is not None and answered >= limit:
                if self.break_with_ok:
                    return
                await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted: stream broken")
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            answered += 1
            if number in self.retry_once:
                self.retry_once.discard(number)
                yield cmd.BulkIngestResponse(command_id=chunk.command_id, error=_retry_status())
                continue
            rows = len(chunk.columns.snap_time_micros)
            duplicate = chunk.command_id in self.seen
            self.seen.setdefault(chunk.command_id, rows)
            yield cmd.BulkIngestResponse(
                command_id=chunk.command_id,
                result=cmd.IngestPointsResponse(
                    commit_position=len(self.seen),
                    duplicate=duplicate,
                    accepted=0 if duplicate else rows,
                ),
            )


def _retry_status() -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=50_000_000)))
    return status_pb2.Status(
        code=code_of(grpc.StatusCode.UNAVAILABLE),
        message="scripted: store locked",
        details=[detail],
    )


@contextlib.asynccontextmanager
async def scripted(servicer: ScriptedCommands) -> AsyncIterator[cmd_grpc.CommandServiceAsyncStub]:
    server = grpc.aio.server()
    # BulkIngest alone: the feeds call nothing else.
    bulk = grpc.stream_stream_rpc_method_handler(
        servicer.BulkIngest,
        request_deserializer=cmd.IngestPointsRequest.FromString,
        response_serializer=cmd.BulkIngestResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("qis.data.v1.CommandService", {"BulkIngest": bulk}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield cmd_grpc.CommandServiceStub(channel)
    finally:
        await server.stop(0)


class ListProvider:
    """A provider of given raw values (history), for the sender's refusal paths."""

    name = "list"

    def __init__(
        self, kinds: Mapping[str, ValueKind], values: list[RawValue], fail_after: int | None = None
    ) -> None:
        self.kinds: Mapping[str, ValueKind] = kinds
        self._values = values
        self._fail_after = fail_after

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get_health(self) -> ProviderHealth:
        return ProviderHealth(connected=True)

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        for value in self._values:
            if value.series_id == series_id:
                yield value

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        for number, value in enumerate(self._values):
            if number == self._fail_after:
                raise ConnectionError("scripted: the vendor went away")
            yield value
