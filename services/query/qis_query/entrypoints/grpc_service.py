"""qis.data.v1.QueryService over grpc.aio."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2
from qis_adapters.proto.times import micros
from qis_adapters.readstore.port import (
    OPEN_END,
    IssueFilter,
    OfficialVersion,
    ReadModelReader,
    ResumeToken,
)
from qis_domain.errors import DomainError, InvalidArgument, NotFound
from qis_domain.names import SERIES_COLLECTION, parse_name
from qis_runtime.errors import abort_with, plain_status, status_of

from qis_query.application.consistency import ReadModelBehind, ReadPosition
from qis_query.entrypoints import mapping
from qis_query.settings import QuerySettings

Ctx = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")
_EARLIEST = -(2**63)
DEFAULT_PAGE = 1_000
MAX_PAGE = 10_000
MAX_VALUES = 1_000


class QueryService(pb_grpc.QueryServiceServicer):
    def __init__(self, reader: ReadModelReader, settings: QuerySettings) -> None:
        self._reader = reader
        self._settings = settings
        self._read_position = ReadPosition(reader, settings.query_max_wait_s)

    # Streaming handlers write with `context.write` (which grpc.aio supports besides async
    # generators) so that a write can be bounded in time; the generated stubs only know the
    # generator form, hence the override ignores.

    async def QueryRange(self, request: pb.QueryRangeRequest, context: Ctx) -> None:  # type: ignore[override]
        async def run() -> None:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            name = request.series
            page = _page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
            start = micros(request.start) if request.HasField("start") else _EARLIEST
            end = micros(request.end) if request.HasField("end") else OPEN_END
            if request.page_token:
                start = max(
                    start,
                    mapping.decode_token(request.page_token, "page_token", "range", after=int)[
                        "after"
                    ]
                    + 1,
                )
            read_position = await self._consistent(request.min_position)
            fetch = self._range_fetcher(request, series_id)
            first = True
            while True:
                rows = await fetch(start, end, page)
                if first and not rows:
                    await self._require_series(series_id)  # an unknown series is NOT_FOUND
                first = False
                last = len(rows) < page
                token = "" if last else mapping.encode_token("range", after=rows[-1].snap_us)
                await context.write(
                    pb.QueryRangeResponse(
                        values=[mapping.official_value(name, v) for v in rows],
                        next_page_token=token,
                        read_position=read_position,
                    )
                )
                if last:
                    return
                start = rows[-1].snap_us + 1

        await self._guard(context, run)

    async def GetValues(self, request: pb.GetValuesRequest, context: Ctx) -> pb.GetValuesResponse:
        async def run() -> pb.GetValuesResponse:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            if not 1 <= len(request.snaps) <= MAX_VALUES:
                raise InvalidArgument.single("snaps", f"1 to {MAX_VALUES} snaps")
            read_position = await self._consistent(request.min_position)
            fetch = self._range_fetcher(request, series_id)
            values = []
            for snap in request.snaps:
                snap_us = micros(snap)
                values.extend(await fetch(snap_us, snap_us + 1, 1))
            if not values:
                await self._require_series(series_id)  # an unknown series is NOT_FOUND
            return pb.GetValuesResponse(
                values=[mapping.official_value(request.series, v) for v in values],
                read_position=read_position,
            )

        return await self._guard(context, run)

    async def GetPointHistory(
        self, request: pb.GetPointHistoryRequest, context: Ctx
    ) -> pb.GetPointHistoryResponse:
        async def run() -> pb.GetPointHistoryResponse:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            if not request.HasField("snap"):
                raise InvalidArgument.single("snap", "the snap of the point is required")
            snap_us = micros(request.snap)
            read_position = await self._consistent(request.min_position)
            versions = await self._reader.history(series_id, snap_us)
            observations = await self._reader.observations(series_id, snap_us)
            if not versions and not observations:
                await self._require_series(series_id)
                raise NotFound(f"{request.series} has no point at that snap", "snap")
            return pb.GetPointHistoryResponse(
                versions=[mapping.official_value(request.series, v) for v in versions],
                observations=[mapping.observation(o) for o in observations],
                read_position=read_position,
            )

        return await self._guard(context, run)

    async def GetSeries(self, request: pb.GetSeriesRequest, context: Ctx) -> series_pb2.Series:
        async def run() -> series_pb2.Series:
            series_id = parse_name(request.name, SERIES_COLLECTION, "name")
            await self._consistent(request.min_position)
            return await self._require_series(series_id)

        return await self._guard(context, run)

    async def ListSeries(
        self, request: pb.ListSeriesRequest, context: Ctx
    ) -> pb.ListSeriesResponse:
        async def run() -> pb.ListSeriesResponse:
            page = _page_size(request.page_size, 100, 1_000)
            after = _key_after(request.page_token, "series")
            await self._consistent(request.min_position)
            entries = await self._reader.list_series(after, page)
            token = _next_key_token("series", [e.series_id for e in entries], page)
            return pb.ListSeriesResponse(
                series=[mapping.series(e) for e in entries], next_page_token=token
            )

        return await self._guard(context, run)

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Ctx
    ) -> pb.ListAuditEntriesResponse:
        async def run() -> pb.ListAuditEntriesResponse:
            series_id = (
                ""
                if request.series == "series/-"
                else parse_name(request.series, SERIES_COLLECTION, "series")
            )
            snap_us = micros(request.snap) if request.HasField("snap") else None
            page = _page_size(request.page_size, 100, 1_000)
            after = None
            if request.page_token:
                t = mapping.decode_token(
                    request.page_token, "page_token", "audit", position=int, index=int
                )
                after = ResumeToken(int(t["position"]), int(t["index"]))
            await self._consistent(request.min_position)
            entries = await self._reader.audit_trail(series_id, snap_us, after, page)
            token = ""
            if len(entries) == page:
                token = mapping.encode_token(
                    "audit", position=entries[-1].position, index=entries[-1].index
                )
            return pb.ListAuditEntriesResponse(
                entries=[mapping.audit_entry(e) for e in entries], next_page_token=token
            )

        return await self._guard(context, run)

    async def Subscribe(self, request: pb.SubscribeRequest, context: Ctx) -> None:  # type: ignore[override]
        async def run() -> None:
            series_ids = [
                parse_name(s, SERIES_COLLECTION, f"series[{i}]")
                for i, s in enumerate(request.series)
            ]
            token = ResumeToken(request.after_position, 2**31)  # after every index of that event
            if request.WhichOneof("start") == "resume_token":
                t = mapping.decode_token(
                    request.resume_token, "resume_token", "feed", position=int, index=int
                )
                token = ResumeToken(int(t["position"]), int(t["index"]))
            elif request.after_position == 0:
                token = ResumeToken(0, -1)
            settings = self._settings
            while True:
                changes = await self._reader.changes_after(token, series_ids, DEFAULT_PAGE)
                if not changes:
                    await asyncio.sleep(settings.subscribe_poll_s)
                    continue
                token = ResumeToken(changes[-1].position, changes[-1].index)
                message = pb.SubscribeResponse(
                    values=[mapping.changed_value(c) for c in changes],
                    resume_token=mapping.encode_token(
                        "feed", position=token.position, index=token.index
                    ),
                )
                try:
                    await asyncio.wait_for(
                        context.write(message), settings.subscribe_stall_timeout_s
                    )
                except TimeoutError:
                    await abort_with(
                        context,
                        plain_status(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"subscriber accepted nothing for {settings.subscribe_stall_timeout_s:.0f} s:"
                            " disconnected; resume from your last resume_token",
                        ),
                    )

        await self._guard(context, run)

    async def ListQualityIssues(
        self, request: pb.ListQualityIssuesRequest, context: Ctx
    ) -> pb.ListQualityIssuesResponse:
        async def run() -> pb.ListQualityIssuesResponse:
            series_id = ""
            if request.series:
                series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            status = {"": "open", "any": ""}.get(request.status, request.status)
            raised_before = OPEN_END
            if request.HasField("raised_before"):
                raised_before = micros(request.raised_before)
            issue_filter = IssueFilter(
                series_id, request.rule, request.severity, status, raised_before
            )
            page = _page_size(request.page_size, 100, 1_000)
            after = _key_after(request.page_token, "issues")
            await self._consistent(request.min_position)
            issues = await self._reader.list_issues(issue_filter, after, page)
            token = _next_key_token("issues", [i.issue_id for i in issues], page)
            return pb.ListQualityIssuesResponse(
                issues=[mapping.quality_issue(i) for i in issues], next_page_token=token
            )

        return await self._guard(context, run)

    async def ListQualityMetrics(
        self, request: pb.ListQualityMetricsRequest, context: Ctx
    ) -> pb.ListQualityMetricsResponse:
        async def run() -> pb.ListQualityMetricsResponse:
            series_id = parse_name(request.series, SERIES_COLLECTION, "series")
            start = micros(request.start) if request.HasField("start") else _EARLIEST
            end = micros(request.end) if request.HasField("end") else OPEN_END
            await self._consistent(request.min_position)
            metrics = await self._reader.metrics(series_id, start, end)
            return pb.ListQualityMetricsResponse(
                metrics=[mapping.quality_metrics(m) for m in metrics]
            )

        return await self._guard(context, run)

    # --- plumbing ---

    def _range_fetcher(
        self, request: pb.QueryRangeRequest | pb.GetValuesRequest, series_id: str
    ) -> Callable[[int, int, int], Awaitable[list[OfficialVersion]]]:
        reader = self._reader
        kind = request.WhichOneof("as_of")
        if kind == "known_at":
            known_at = micros(request.known_at)
            return lambda s, e, n: reader.as_of_time_range(series_id, s, e, known_at, n)
        if kind == "at_position":
            position = request.at_position
            return lambda s, e, n: reader.as_of_position_range(series_id, s, e, position, n)
        return lambda s, e, n: reader.latest_range(series_id, s, e, n)

    async def _require_series(self, series_id: str) -> series_pb2.Series:
        entry = await self._reader.get_series(series_id)
        if entry is None:
            raise NotFound(f"series/{series_id}", "series")
        return mapping.series(entry)

    async def _consistent(self, min_position: int) -> int:
        return await self._read_position.at_least(min_position)

    async def _guard(self, context: Ctx, run: Callable[[], Awaitable[R]]) -> R:
        try:
            return await run()
        except DomainError as error:
            await abort_with(context, status_of(error))
        except ReadModelBehind as error:
            status = plain_status(grpc.StatusCode.UNAVAILABLE, str(error))
            retry = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(nanos=200_000_000)
            )
            status.details.add().Pack(retry)
            await abort_with(context, status)


def _key_after(page_token: str, kind: str) -> str:
    """Where a listing ordered by a string key resumes ("" from the start)."""
    if not page_token:
        return ""
    key: str = mapping.decode_token(page_token, "page_token", kind, after=str)["after"]
    return key


def _next_key_token(kind: str, keys: list[str], page: int) -> str:
    """A full page may have a next one; a short page is the last."""
    return mapping.encode_token(kind, after=keys[-1]) if len(keys) == page else ""


def _page_size(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument.single("page_size", "must not be negative")
    return min(requested or default, maximum)
