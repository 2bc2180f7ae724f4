"""qis.data.v1.CommandService over grpc.aio: transport in, application commands out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_adapters.eventstore.port import EventStoreUnavailable
from qis_adapters.proto.definitions import series_from_proto, source_from_proto
from qis_adapters.proto.times import micros
from qis_adapters.proto.values import points_from_proto, snap_from_proto, value_from_proto
from qis_domain.commands import CommandContext
from qis_domain.errors import DomainError, FieldViolation, InvalidArgument
from qis_domain.names import SERIES_COLLECTION, SOURCES_COLLECTION, parse_name, validate_id
from qis_runtime.errors import abort_with, plain_status, status_of
from qis_runtime.identity import current_identity

from qis_command.application.commands import (
    CalculateQualityMetrics,
    CommandResult,
    ConfigureSource,
    DefineSeries,
    EvolveSeries,
    IngestPoints,
    PublishPoints,
    RegisterSource,
    ResolveIssues,
    RestatePoint,
)
from qis_command.application.handlers import CommandHandlers, ConcurrencyExhausted

log = logging.getLogger(__name__)

MAX_POINTS = 10_000
_CORRELATION_HEADER = "x-correlation-id"
_TRACE_HEADERS = ("traceparent", "tracestate")
Ctx = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")


class CommandService(pb_grpc.CommandServiceServicer):
    def __init__(self, handlers: CommandHandlers, clock_us: Callable[[], int]) -> None:
        self._handlers = handlers
        self._clock_us = clock_us

    async def DefineSeries(
        self, request: pb.DefineSeriesRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            series_id = validate_id(request.series_id, "series_id")
            definition = series_from_proto(request.series)
            return await self._handlers.define_series(DefineSeries(series_id, definition), ctx)

        return _response(await self._call(request.command_id, context, run))

    async def EvolveSeriesSchema(
        self, request: pb.EvolveSeriesSchemaRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            series_id = parse_name(request.series.name, SERIES_COLLECTION, "series.name")
            definition = series_from_proto(request.series)
            cmd = EvolveSeries(series_id, definition, request.reason)
            return await self._handlers.evolve_series(cmd, ctx)

        return _response(await self._call(request.command_id, context, run))

    async def RegisterDataSource(
        self, request: pb.RegisterDataSourceRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            source_id = validate_id(request.source_id, "source_id")
            cmd = RegisterSource(source_id, source_from_proto(request.source))
            return await self._handlers.register_source(cmd, ctx)

        return _response(await self._call(request.command_id, context, run))

    async def ConfigureDataSource(
        self, request: pb.ConfigureDataSourceRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            source_id = parse_name(request.source.name, SOURCES_COLLECTION, "source.name")
            cmd = ConfigureSource(source_id, source_from_proto(request.source))
            return await self._handlers.configure_source(cmd, ctx)

        return _response(await self._call(request.command_id, context, run))

    async def IngestPoints(
        self, request: pb.IngestPointsRequest, context: Ctx
    ) -> pb.IngestPointsResponse:
        return _ingest_response(
            await self._call(request.command_id, context, self._ingest(request))
        )

    async def BulkIngest(
        self, request_iterator: AsyncIterator[pb.IngestPointsRequest], context: Ctx
    ) -> AsyncIterator[pb.BulkIngestResponse]:
        async for chunk in request_iterator:
            try:
                ctx = self._context(chunk.command_id, context)
                result = await self._ingest(chunk)(ctx)
            except DomainError as error:
                yield pb.BulkIngestResponse(command_id=chunk.command_id, error=status_of(error))
                continue
            except (ConcurrencyExhausted, EventStoreUnavailable) as error:
                # Retryable: the chunk stored nothing, and the stream stays usable.
                unavailable = isinstance(error, EventStoreUnavailable)
                code = grpc.StatusCode.UNAVAILABLE if unavailable else grpc.StatusCode.ABORTED
                status = plain_status(code, str(error))
                yield pb.BulkIngestResponse(command_id=chunk.command_id, error=status)
                continue
            yield pb.BulkIngestResponse(
                command_id=chunk.command_id, result=_ingest_response(result)
            )

    async def PublishPoints(
        self, request: pb.PublishPointsRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            v: list[FieldViolation] = []
            if not 1 <= len(request.snaps) <= MAX_POINTS:
                v.append(FieldViolation("snaps", f"1 to {MAX_POINTS} snaps"))
            snaps = [snap_from_proto(s, f"snaps[{i}]", v) for i, s in enumerate(request.snaps)]
            if v:
                raise InvalidArgument(v)
            cmd = PublishPoints(series_id, [s for s in snaps if s is not None], request.comment)
            return await self._handlers.publish(cmd, ctx)

        return _response(await self._call(request.command_id, context, run))

    async def RestatePoint(
        self, request: pb.RestatePointRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            v: list[FieldViolation] = []
            snap = snap_from_proto(request.snap, "snap", v)
            value = value_from_proto(request.value, "value", v)
            if not request.reason.strip():
                v.append(FieldViolation("reason", "a restatement needs a reason"))
            if v or snap is None or value is None:
                raise InvalidArgument(v)
            expires = micros(request.expire_time) if request.HasField("expire_time") else 0
            cmd = RestatePoint(series_id, snap, value, request.reason, request.reason_code, expires)
            return await self._handlers.restate(cmd, ctx)

        return _response(await self._call(request.command_id, context, run))

    async def ResolveQualityIssues(
        self, request: pb.ResolveQualityIssuesRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            action = _RESOLUTIONS.get(request.resolution)
            v: list[FieldViolation] = []
            if action is None:
                v.append(FieldViolation("resolution", "APPROVE, REJECT or OVERRIDE is required"))
            if not request.issue_ids:
                v.append(FieldViolation("issue_ids", "at least one issue id is required"))
            if not request.reason.strip():
                v.append(FieldViolation("reason", "a resolution needs a reason"))
            value = None
            if action == "override":
                value = value_from_proto(request.value, "value", v)
            if v or action is None:
                raise InvalidArgument(v)
            expires = micros(request.expire_time) if request.HasField("expire_time") else 0
            cmd = ResolveIssues(
                series_id,
                list(request.issue_ids),
                action,
                request.reason,
                value,
                request.reason_code,
                expires,
            )
            return await self._handlers.resolve_issues(cmd, ctx)

        return _response(await self._call(request.command_id, context, run))

    async def CalculateQualityMetrics(
        self, request: pb.CalculateQualityMetricsRequest, context: Ctx
    ) -> pb.CommandResponse:
        async def run(ctx: CommandContext) -> CommandResult:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            if not request.HasField("start_time") or not request.HasField("end_time"):
                raise InvalidArgument.single("start_time", "start_time and end_time are required")
            cmd = CalculateQualityMetrics(
                series_id, micros(request.start_time), micros(request.end_time)
            )
            return await self._handlers.calculate_metrics(cmd, ctx)

        return _response(await self._call(request.command_id, context, run))

    # --- plumbing ---

    def _ingest(
        self, request: pb.IngestPointsRequest
    ) -> Callable[[CommandContext], Awaitable[CommandResult]]:
        async def run(ctx: CommandContext) -> CommandResult:
            v: list[FieldViolation] = []
            try:
                series_id = parse_name(request.series, SERIES_COLLECTION, "series")
                source_id = parse_name(request.source, SOURCES_COLLECTION, "source")
            except InvalidArgument as error:
                v.extend(error.violations)
            if not 1 <= len(request.points) <= MAX_POINTS:
                v.append(FieldViolation("points", f"1 to {MAX_POINTS} points per request"))
            points = points_from_proto(request.points, v)
            if v:
                raise InvalidArgument(v)
            return await self._handlers.ingest(IngestPoints(series_id, source_id, points), ctx)

        return run

    def _context(self, command_id: str, context: Ctx) -> CommandContext:
        if not command_id or len(command_id) > 128:
            raise InvalidArgument.single("command_id", "1 to 128 characters are required")
        metadata = dict(context.invocation_metadata() or ())
        correlation = metadata.get(_CORRELATION_HEADER, command_id)
        # W3C trace context travels into the events' metadata, so the projector's work can
        # join the caller's trace.
        trace = {k: str(metadata[k]) for k in _TRACE_HEADERS if k in metadata}
        return CommandContext(
            command_id=command_id,
            user_id=current_identity().user_id,
            now_us=self._clock_us(),
            correlation_id=str(correlation),
            causation_id=command_id,
            trace_context=trace,
        )

    async def _call(
        self,
        command_id: str,
        context: Ctx,
        run: Callable[[CommandContext], Awaitable[R]],
    ) -> R:
        try:
            return await run(self._context(command_id, context))
        except DomainError as error:
            await abort_with(context, status_of(error))
        except ConcurrencyExhausted as error:
            await abort_with(context, plain_status(grpc.StatusCode.ABORTED, str(error)))
        except EventStoreUnavailable as error:
            await abort_with(context, plain_status(grpc.StatusCode.UNAVAILABLE, str(error)))


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
