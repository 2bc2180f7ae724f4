"""qis.data.v1.CommandService over grpc.aio: transport in, application commands out."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import grpc
import grpc.aio
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2
from qis_adapters.proto.checks import collected, id_from_proto, name_from_proto
from qis_adapters.proto.columns import points_from_columns, value_column
from qis_adapters.proto.definitions import (
    series_from_proto,
    series_update_from_proto,
    source_from_proto,
    source_update_from_proto,
)
from qis_adapters.proto.times import (
    micros_from_proto,
    required_snap_micros,
    snap_micros_from_proto,
)
from qis_adapters.proto.values import points_from_proto, value_from_proto
from qis_domain.bounds import MAX_BATCH, MAX_ID_LENGTH, MAX_TEXT_LENGTH, check_length
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    MAX_HEALTH_COUNT,
    MAX_HEALTH_INSTRUMENTS,
    HealthReport,
    InstrumentFreshness,
    SourceStatus,
)
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.names import SERIES_COLLECTION, SOURCES_COLLECTION
from qis_domain.snaps import Snap
from qis_domain.values import DataValue
from qis_runtime.authorization import caller_of
from qis_runtime.errors import abort_with, plain_status, status_for, with_reason
from qis_runtime.identity import current_identity
from qis_runtime.telemetry import current_trace_context

from qis_command.application.access import AccessControl, Call, OpenAccess
from qis_command.application.commands import (
    CalculateQualityMetrics,
    CommandResult,
    ConfigureSource,
    DefineSeries,
    EvolveSeries,
    IngestPoints,
    PublishPoints,
    RegisterSource,
    ReportSourceHealth,
    ResolveIssues,
    RestatePoint,
)
from qis_command.application.handlers import CommandHandlers
from qis_command.entrypoints.policies import delete_policy, record_denial, set_policy
from qis_command.entrypoints.topics import (
    checkpoint_group,
    delete_topic,
    park_entry,
    replay_parked,
    set_topic,
)

BULK_IDLE_TIMEOUT_S = 60.0
"""How long a BulkIngest stream may go without a chunk (default of QIS_BULK_IDLE_TIMEOUT_S)."""
_CORRELATION_HEADER = "x-correlation-id"
Ctx = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")
C = TypeVar("C")
A = TypeVar("A")
B = TypeVar("B")


class _Request(Protocol):
    @property
    def command_id(self) -> str: ...


Q = TypeVar("Q", bound=_Request)
Parse = Callable[[Q, list[FieldViolation]], C | None]
"""A request to its command, recording every violation; None (with violations) if malformed."""
Ingest = Callable[[IngestPoints, CommandContext], Awaitable[CommandResult]]


class CommandService(pb_grpc.CommandServiceServicer):
    def __init__(
        self,
        handlers: CommandHandlers,
        clock_us: Callable[[], int],
        bulk_idle_timeout_s: float = BULK_IDLE_TIMEOUT_S,
        access: AccessControl | None = None,
    ) -> None:
        """`access`: who may send what (qis_command.application.access); None: everyone
        authenticated may send everything (QIS_AUTHZ=open)."""
        self._handlers = handlers
        self._clock_us = clock_us
        self._bulk_idle_timeout_s = bulk_idle_timeout_s
        self._access = access or OpenAccess()

    async def DefineSeries(
        self, request: pb.DefineSeriesRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "DefineSeries", _define_series, self._handlers.define_series
            )
        )

    async def EvolveSeriesSchema(
        self, request: pb.EvolveSeriesSchemaRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "EvolveSeriesSchema", _evolve_series, self._handlers.evolve_series
            )
        )

    async def RegisterDataSource(
        self, request: pb.RegisterDataSourceRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "RegisterDataSource",
                _register_source,
                self._handlers.register_source,
            )
        )

    async def ConfigureDataSource(
        self, request: pb.ConfigureDataSourceRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "ConfigureDataSource",
                _configure_source,
                self._handlers.configure_source,
            )
        )

    async def ReportDataSourceHealth(
        self, request: pb.ReportDataSourceHealthRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "ReportDataSourceHealth",
                _report_health,
                self._handlers.report_source_health,
            )
        )

    async def IngestPoints(
        self, request: pb.IngestPointsRequest, context: Ctx
    ) -> pb.IngestPointsResponse:
        return _ingest_response(
            await self._decide(
                request, context, "IngestPoints", ingest_command, self._ingest(request)
            )
        )

    async def BulkIngest(
        self, request_iterator: AsyncIterator[pb.IngestPointsRequest], context: Ctx
    ) -> AsyncIterator[pb.BulkIngestResponse]:
        chunks = _ReadAhead(aiter(request_iterator))
        try:
            while True:
                # An open stream holds a call, its buffers and a task: a client that stops
                # sending without closing must not hold them forever. Counted from the last
                # answer, however long the next chunk has been read ahead.
                try:
                    async with asyncio.timeout(self._bulk_idle_timeout_s):
                        chunk = await chunks.next()
                except TimeoutError:
                    status = plain_status(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"no chunk for {self._bulk_idle_timeout_s:g} s: stream ended; every"
                        " chunk acknowledged before is committed, send the others on a new"
                        " stream",
                    )
                    await abort_with(context, with_reason(status, "STREAM_IDLE"))
                if chunk is None:
                    return
                request = chunk.request
                chunks.start()
                decided = self._decide(
                    request, context, "BulkIngest", chunk.command, self._ingest(request)
                )
                # Once decided, what the chunk was made into goes (a Python object per point):
                # a stream waiting for its next chunk holds the request it answered, no more.
                del chunk
                try:
                    result = await decided
                except Exception as error:
                    # Per chunk: the chunk stored nothing and the stream stays usable, so a
                    # client resends only what failed (after the RetryInfo delay, for a full or
                    # locked store). In the response body, not in trailers: no size cap to fit.
                    status = status_for(error, in_trailers=False)
                    yield pb.BulkIngestResponse(command_id=request.command_id, error=status)
                    continue
                yield pb.BulkIngestResponse(
                    command_id=request.command_id, result=_ingest_response(result)
                )
        finally:
            chunks.close()

    async def PublishPoints(
        self, request: pb.PublishPointsRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "PublishPoints", _publish_points, self._handlers.publish
            )
        )

    async def RestatePoint(
        self, request: pb.RestatePointRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "RestatePoint", _restate_point, self._handlers.restate
            )
        )

    async def ResolveQualityIssues(
        self, request: pb.ResolveQualityIssuesRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "ResolveQualityIssues",
                _resolve_issues,
                self._handlers.resolve_issues,
            )
        )

    async def CalculateQualityMetrics(
        self, request: pb.CalculateQualityMetricsRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "CalculateQualityMetrics",
                _calculate_metrics,
                self._handlers.calculate_metrics,
            )
        )

    async def SetAccessPolicy(
        self, request: pb.SetAccessPolicyRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "SetAccessPolicy", set_policy, self._handlers.set_policy
            )
        )

    async def DeleteAccessPolicy(
        self, request: pb.DeleteAccessPolicyRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "DeleteAccessPolicy", delete_policy, self._handlers.delete_policy
            )
        )

    async def RecordAccessDenial(
        self, request: pb.RecordAccessDenialRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "RecordAccessDenial",
                record_denial,
                self._handlers.record_denial,
            )
        )

    async def SetTopic(self, request: pb.SetTopicRequest, context: Ctx) -> pb.CommandResponse:
        return _response(
            await self._decide(request, context, "SetTopic", set_topic, self._handlers.set_topic)
        )

    async def DeleteTopic(self, request: pb.DeleteTopicRequest, context: Ctx) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "DeleteTopic", delete_topic, self._handlers.delete_topic
            )
        )

    async def CheckpointConsumerGroup(
        self, request: pb.CheckpointConsumerGroupRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "CheckpointConsumerGroup",
                checkpoint_group,
                self._handlers.checkpoint_group,
            )
        )

    async def ParkTopicEntry(
        self, request: pb.ParkTopicEntryRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request, context, "ParkTopicEntry", park_entry, self._handlers.park_entry
            )
        )

    async def ReplayParkedEntries(
        self, request: pb.ReplayParkedEntriesRequest, context: Ctx
    ) -> pb.CommandResponse:
        return _response(
            await self._decide(
                request,
                context,
                "ReplayParkedEntries",
                replay_parked,
                self._handlers.replay_parked,
            )
        )

    # --- plumbing ---

    def _ingest(self, request: pb.IngestPointsRequest) -> Ingest:
        """The handler of an ingestion: points sent in columns are named by their columns."""
        if not request.HasField("columns"):
            return self._handlers.ingest
        return functools.partial(self._handlers.ingest, columns=value_column(request.columns))

    async def _decide(
        self,
        request: Q,
        context: Ctx,
        method: str,
        parse: Parse[Q, C],
        handle: Callable[[C, CommandContext], Awaitable[R]],
    ) -> R:
        """Checks the whole request, command id included, before anything is loaded or stored,
        then whether the caller may send it (`method`: the RPC, for the record of a refusal).
        Whatever it raises becomes its status in the identity interceptor (errors.status_for)."""
        v: list[FieldViolation] = []
        command_id = request.command_id
        if not 1 <= len(command_id) <= MAX_ID_LENGTH:
            v.append(FieldViolation("command_id", f"1 to {MAX_ID_LENGTH} characters are required"))
        command = parse(request, v)
        if v or command is None:
            raise InvalidArgument(v)
        ctx = self._context(command_id, context)
        caller = caller_of(current_identity())
        await self._access.check(command, caller, ctx, Call(method, context.peer()))
        return await handle(command, ctx)

    def _context(self, command_id: str, context: Ctx) -> CommandContext:
        invocation = context.invocation_metadata()
        metadata = dict(invocation or ())
        correlation = metadata.get(_CORRELATION_HEADER, command_id)
        # W3C trace context travels into the events' metadata, so the projector's work can
        # link to this call's trace.
        trace = current_trace_context(invocation)
        return CommandContext(
            command_id=command_id,
            user_id=current_identity().user_id,
            now_us=self._clock_us(),
            correlation_id=str(correlation),
            causation_id=command_id,
            trace_context=trace,
        )


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A BulkIngest chunk and what `ingest_command` made of it."""

    request: pb.IngestPointsRequest
    made: IngestPoints | None
    violations: list[FieldViolation]
    error: Exception | None  # a bug in the mapping: the chunk's own error, in its turn

    def command(self, _: pb.IngestPointsRequest, v: list[FieldViolation]) -> IngestPoints | None:
        """The chunk's command, as `_decide` parses one (violations recorded in `v`)."""
        if self.error is not None:
            raise self.error
        v.extend(self.violations)
        return self.made


class _ReadAhead:
    """A BulkIngest stream's chunks, each read and made into its command while the chunk
    before it is decided: the mapping (Python, on the loop) then runs while that chunk's events
    are written when the event store writes them on its own thread (a large append, or one
    right after another: eventstore/sqlite.py), where it used to wait for them. One chunk
    ahead at most, and none once the stream ends."""

    def __init__(self, chunks: AsyncIterator[pb.IngestPointsRequest]) -> None:
        self._chunks = chunks
        self._next: asyncio.Task[_Chunk | None] | None = None

    def start(self) -> None:
        if self._next is None:
            self._next = asyncio.ensure_future(self._read())

    async def next(self) -> _Chunk | None:
        """The next chunk; None once the client closed the stream."""
        self.start()
        assert self._next is not None
        task, self._next = self._next, None
        return await task  # cancelled with the caller (the idle timeout)

    def close(self) -> None:
        """Stops reading ahead (the stream ended, or failed): a read still waiting is
        cancelled; one that failed (a client gone mid-read) was the stream's end, not news."""
        if (task := self._next) is not None:
            self._next = None
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" report at collection
            task.cancel()

    async def _read(self) -> _Chunk | None:
        try:
            request = await anext(self._chunks)
        except StopAsyncIteration:
            return None
        v: list[FieldViolation] = []
        try:
            return _Chunk(request, ingest_command(request, v), v, None)
        except Exception as error:  # answered as the chunk's own failure, as before
            return _Chunk(request, None, v, error)


# --- requests to commands: every field checked, every violation recorded ---


def _define_series(request: pb.DefineSeriesRequest, v: list[FieldViolation]) -> DefineSeries | None:
    series_id = id_from_proto(request.series_id, "series_id", v)
    return _made(DefineSeries, series_id, collected(v, lambda: series_from_proto(request.series)))


def _evolve_series(
    request: pb.EvolveSeriesSchemaRequest, v: list[FieldViolation]
) -> EvolveSeries | None:
    series_id = name_from_proto(request.series.name, SERIES_COLLECTION, "series.name", v)
    update = collected(v, lambda: series_update_from_proto(request.series, request.update_mask))
    check_length(request.reason, MAX_TEXT_LENGTH, "reason", v)
    if request.expected_schema_version < 0:
        v.append(FieldViolation("expected_schema_version", "a schema version, or 0: no check"))
    if series_id is None or update is None:
        return None
    return EvolveSeries(series_id, update, request.reason, request.expected_schema_version)


def _register_source(
    request: pb.RegisterDataSourceRequest, v: list[FieldViolation]
) -> RegisterSource | None:
    source_id = id_from_proto(request.source_id, "source_id", v)
    return _made(RegisterSource, source_id, collected(v, lambda: source_from_proto(request.source)))


def _configure_source(
    request: pb.ConfigureDataSourceRequest, v: list[FieldViolation]
) -> ConfigureSource | None:
    source_id = name_from_proto(request.source.name, SOURCES_COLLECTION, "source.name", v)
    update = collected(v, lambda: source_update_from_proto(request.source, request.update_mask))
    return _made(ConfigureSource, source_id, update)


_STATUSES = {
    series_pb2.DATA_SOURCE_STATUS_HEALTHY: SourceStatus.HEALTHY,
    series_pb2.DATA_SOURCE_STATUS_DEGRADED: SourceStatus.DEGRADED,
    series_pb2.DATA_SOURCE_STATUS_DOWN: SourceStatus.DOWN,
}
MAX_LATENCY_US = 86_400 * 1_000_000


def _report_health(
    request: pb.ReportDataSourceHealthRequest, v: list[FieldViolation]
) -> ReportSourceHealth | None:
    source_id = name_from_proto(request.source, SOURCES_COLLECTION, "source", v)
    status = _STATUSES.get(request.status)
    if status is None:
        v.append(FieldViolation("status", "HEALTHY, DEGRADED or DOWN is required"))
    start, end = _interval(request, v)
    counts = {
        "request_count": request.request_count,
        "failure_count": request.failure_count,
        "rate_limited_count": request.rate_limited_count,
        "retry_count": request.retry_count,
        "points_received": request.points_received,
        "points_sent": request.points_sent,
    }
    for field, count in counts.items():
        if not 0 <= count <= MAX_HEALTH_COUNT:
            v.append(FieldViolation(field, f"0 to {MAX_HEALTH_COUNT:,}, got {count:,}"))
    # Each count is part of the one before it (retries are requests made again).
    for part, whole in (
        ("failure_count", "request_count"),
        ("rate_limited_count", "failure_count"),
        ("retry_count", "request_count"),
    ):
        if counts[part] > counts[whole]:
            v.append(FieldViolation(part, f"at most {whole} ({counts[whole]:,})"))
    p50 = _latency(request, "latency_p50", v)
    p99 = _latency(request, "latency_p99", v)
    if p50 is not None and p99 is not None and p99 < p50:
        v.append(FieldViolation("latency_p99", "at least latency_p50"))
    last_success = (
        micros_from_proto(request.last_success_time, "last_success_time", v)
        if request.HasField("last_success_time")
        else None
    )
    check_length(request.last_error, MAX_TEXT_LENGTH, "last_error", v)
    instruments = _instruments(request, v)
    if v or source_id is None or status is None or start is None or end is None:
        return None
    report = HealthReport(
        status=status,
        start_us=start,
        end_us=end,
        requests=request.request_count,
        failures=request.failure_count,
        rate_limited=request.rate_limited_count,
        retries=request.retry_count,
        latency_p50_us=p50,
        latency_p99_us=p99,
        last_success_us=last_success,
        last_error=request.last_error,
        points_received=request.points_received,
        points_sent=request.points_sent,
        instruments=instruments,
    )
    return ReportSourceHealth(source_id, report)


def _instruments(
    request: pb.ReportDataSourceHealthRequest, v: list[FieldViolation]
) -> tuple[InstrumentFreshness, ...]:
    if len(request.instruments) > MAX_HEALTH_INSTRUMENTS:
        v.append(FieldViolation("instruments", f"at most {MAX_HEALTH_INSTRUMENTS:,}"))
        return ()
    found: list[InstrumentFreshness] = []
    seen: set[str] = set()
    for i, instrument in enumerate(request.instruments):
        path = f"instruments[{i}]"
        series_id = name_from_proto(instrument.series, SERIES_COLLECTION, f"{path}.series", v)
        if series_id is None:
            continue
        if series_id in seen:
            v.append(FieldViolation(f"{path}.series", "named twice"))
        seen.add(series_id)
        latest = (
            micros_from_proto(instrument.latest_value_time, f"{path}.latest_value_time", v)
            if instrument.HasField("latest_value_time")
            else None
        )
        found.append(InstrumentFreshness(series_id=series_id, latest_value_us=latest))
    return tuple(found)


def _interval(
    request: pb.ReportDataSourceHealthRequest | pb.CalculateQualityMetricsRequest,
    v: list[FieldViolation],
) -> tuple[int | None, int | None]:
    """[start_time, end_time) of the request, both required, start before end."""
    start = micros_from_proto(request.start_time, "start_time", v)
    end = micros_from_proto(request.end_time, "end_time", v)
    if not request.HasField("start_time"):
        v.append(FieldViolation("start_time", "is required"))
        start = None
    if not request.HasField("end_time"):
        v.append(FieldViolation("end_time", "is required"))
        end = None
    if start is not None and end is not None and start >= end:
        # Both named: either may be the wrong one.
        v.append(FieldViolation("start_time", "must be before end_time"))
        v.append(FieldViolation("end_time", "must be after start_time"))
    return start, end


def _latency(
    request: pb.ReportDataSourceHealthRequest,
    field: Literal["latency_p50", "latency_p99"],
    v: list[FieldViolation],
) -> int | None:
    """Microseconds; None when unset (not measured)."""
    if not request.HasField(field):
        return None
    d = getattr(request, field)
    us = d.seconds * 1_000_000 + d.nanos // 1_000
    if not 0 <= us <= MAX_LATENCY_US or not 0 <= d.nanos < 1_000_000_000:
        v.append(FieldViolation(field, "0 to 1 day"))
        return None
    return int(us)


def ingest_command(request: pb.IngestPointsRequest, v: list[FieldViolation]) -> IngestPoints | None:
    """The command of an IngestPoints request or a BulkIngest chunk (None: `v` says why)."""
    series_id = name_from_proto(request.series, SERIES_COLLECTION, "series", v)
    source_id = name_from_proto(request.source, SOURCES_COLLECTION, "source", v)
    points: Sequence[tuple[Snap, DataValue]] = []
    columnar = request.HasField("columns")
    if columnar == (len(request.points) > 0):
        # Both named: either may be the one meant.
        what = (
            "both points and columns are set: send the points in one form"
            if columnar
            else f"1 to {MAX_BATCH:,} points are required, in points or in columns"
        )
        v.append(FieldViolation("points", what))
        v.append(FieldViolation("columns", what))
    elif columnar:
        points = points_from_columns(request.columns, v)
    elif _batch_within_bounds(len(request.points), "points", v):
        points = points_from_proto(request.points, v)
    if series_id is None or source_id is None:
        return None
    return IngestPoints(series_id, source_id, points)


def _publish_points(
    request: pb.PublishPointsRequest, v: list[FieldViolation]
) -> PublishPoints | None:
    series_id = name_from_proto(request.series, SERIES_COLLECTION, "series", v)
    snaps = []
    if _batch_within_bounds(len(request.snap_times), "snap_times", v):
        snaps = [
            snap_micros_from_proto(t, f"snap_times[{i}]", v)
            for i, t in enumerate(request.snap_times)
        ]
    check_length(request.comment, MAX_TEXT_LENGTH, "comment", v)
    if series_id is None:
        return None
    return PublishPoints(series_id, [Snap(s) for s in snaps if s is not None], request.comment)


def _restate_point(request: pb.RestatePointRequest, v: list[FieldViolation]) -> RestatePoint | None:
    series_id = name_from_proto(request.series, SERIES_COLLECTION, "series", v)
    snap_us = required_snap_micros(request, "snap_time", v)
    value = value_from_proto(request.value, "value", v)
    _check_reason(request.reason, "a restatement needs a reason", v)
    check_length(request.reason_code, MAX_ID_LENGTH, "reason_code", v)
    expires = (
        micros_from_proto(request.expire_time, "expire_time", v)
        if request.HasField("expire_time")
        else 0
    )
    if series_id is None or snap_us is None or value is None or expires is None:
        return None
    return RestatePoint(
        series_id, Snap(snap_us), value, request.reason, request.reason_code, expires
    )


def _resolve_issues(
    request: pb.ResolveQualityIssuesRequest, v: list[FieldViolation]
) -> ResolveIssues | None:
    series_id = name_from_proto(request.series, SERIES_COLLECTION, "series", v)
    issue_ids: list[str] = []
    if _batch_within_bounds(len(request.issue_ids), "issue_ids", v):
        issue_ids = list(request.issue_ids)
        for i, issue_id in enumerate(issue_ids):
            check_length(issue_id, MAX_ID_LENGTH, f"issue_ids[{i}]", v)
    action = _RESOLUTIONS.get(request.resolution)
    if action is None:
        v.append(FieldViolation("resolution", "APPROVE, REJECT or OVERRIDE is required"))
    _check_reason(request.reason, "a resolution needs a reason", v)
    value = value_from_proto(request.value, "value", v) if action == "override" else None
    check_length(request.reason_code, MAX_ID_LENGTH, "reason_code", v)
    expires = (
        micros_from_proto(request.expire_time, "expire_time", v)
        if request.HasField("expire_time")
        else 0
    )
    if series_id is None or action is None or expires is None:
        return None
    return ResolveIssues(
        series_id,
        issue_ids,
        action,
        request.reason,
        value,
        request.reason_code,
        expires,
    )


def _calculate_metrics(
    request: pb.CalculateQualityMetricsRequest, v: list[FieldViolation]
) -> CalculateQualityMetrics | None:
    series_id = name_from_proto(request.series, SERIES_COLLECTION, "series", v)
    start, end = _interval(request, v)
    if series_id is None or start is None or end is None:
        return None
    return CalculateQualityMetrics(series_id, start, end)


def _made(make: Callable[[A, B], C], a: A | None, b: B | None) -> C | None:
    """The command of two parsed parts, None when either is malformed."""
    return None if a is None or b is None else make(a, b)


def _batch_within_bounds(size: int, field: str, v: list[FieldViolation]) -> bool:
    """False (recorded) when a list's length is out of bounds: then its items are not checked,
    since a request of millions of items (a few MiB of empty ones) would otherwise cost a
    violation object each, far more memory and time than the request itself."""
    if 1 <= size <= MAX_BATCH:
        return True
    v.append(FieldViolation(field, f"1 to {MAX_BATCH:,} per request, got {size:,}"))
    return False


def _check_reason(reason: str, missing: str, v: list[FieldViolation]) -> None:
    if not reason.strip():
        v.append(FieldViolation("reason", missing))
    check_length(reason, MAX_TEXT_LENGTH, "reason", v)


_RESOLUTIONS = {
    pb.RESOLUTION_APPROVE: "approve",
    pb.RESOLUTION_REJECT: "reject",
    pb.RESOLUTION_OVERRIDE: "override",
}


def _response(result: CommandResult) -> pb.CommandResponse:
    return pb.CommandResponse(commit_position=result.outcome.position, duplicate=result.duplicate)


def _ingest_response(result: CommandResult) -> pb.IngestPointsResponse:
    o = result.outcome
    return pb.IngestPointsResponse(
        commit_position=o.position,
        duplicate=result.duplicate,
        accepted=o.accepted,
        flagged=o.flagged,
        published=o.published,
    )
