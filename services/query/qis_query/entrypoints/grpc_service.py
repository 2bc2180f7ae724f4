"""qis.data.v1.QueryService over grpc.aio: requests to application calls, their answers to
messages, and the application's exceptions to statuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
import pyarrow as pa
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import OPEN_END
from qis_runtime.identity import current_identity

from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import EARLIEST, RangeQuery
from qis_query.application.subscription import FeedBatch
from qis_query.entrypoints import columns, mapping
from qis_query.entrypoints.fields import RequestFields

Ctx = grpc.aio.ServicerContext[Any, Any]
PutValues = Callable[[pb.QueryRangeResponse | pb.GetValuesResponse, pa.Table], None]
"""Sets the values of an answer (segments rows) in the view its request asked for."""
R = TypeVar("R")


class QueryService(pb_grpc.QueryServiceServicer):
    """Protobuf in, application calls, protobuf out. Whatever a call raises becomes its status
    in the server's interceptor (qis_runtime.errors.status_for): one error policy for every
    process."""

    def __init__(self, queries: QueryHandlers) -> None:
        self._queries = queries

    # Streaming handlers write with `context.write` (which grpc.aio supports besides async
    # generators) so that a write can be bounded in time; the generated stubs only know the
    # generator form, hence the override ignores.

    async def QueryRange(self, request: pb.QueryRangeRequest, context: Ctx) -> None:  # type: ignore[override]
        fields = RequestFields()
        query = RangeQuery(
            fields.series_id(request.series, "series"),
            fields.optional_instant(request, "start_time", EARLIEST),
            fields.optional_instant(request, "end_time", OPEN_END),
            fields.as_of(request),
        )
        min_position = fields.position(request.min_position, "min_position")
        in_columns = fields.columns_view(request)
        fields.check()
        read = await self._queries.query_range(
            query, request.page_size, request.page_token, min_position
        )
        put = await self._values_view(request.series, query.series_id, in_columns)
        async for page in read.value:  # the same pages and tokens in either view
            reply = pb.QueryRangeResponse(
                next_page_token=page.next_page_token, read_position=read.read_position
            )
            put(reply, page.rows)
            await context.write(reply)

    async def GetValues(self, request: pb.GetValuesRequest, context: Ctx) -> pb.GetValuesResponse:
        fields = RequestFields()
        series_id = fields.series_id(request.series, "series")
        snaps = [fields.snap(s, f"snap_times[{i}]") for i, s in enumerate(request.snap_times)]
        as_of = fields.as_of(request)
        min_position = fields.position(request.min_position, "min_position")
        in_columns = fields.columns_view(request)
        fields.check()
        read = await self._queries.values(series_id, snaps, as_of, min_position)
        reply = pb.GetValuesResponse(read_position=read.read_position)
        if in_columns:
            put = await self._values_view(request.series, series_id, in_columns)
            put(reply, segments.rows_from_versions(read.value))
        else:
            mapping.add_official_values(reply.values, request.series, read.value)
        return reply

    async def _values_view(self, name: str, series_id: str, in_columns: bool) -> PutValues:
        """How an answer of the series carries its values: one OfficialValue each in `values`,
        or `columns` (in the case of the series' data type, with its unit)."""
        if not in_columns:
            return lambda reply, rows: mapping.add_official_values(
                reply.values, name, segments.versions_from_rows(series_id, rows)
            )
        shape = columns.layout(await self._queries.definition(series_id))
        return lambda reply, rows: columns.fill(reply.columns, rows, shape)

    async def GetPointHistory(
        self, request: pb.GetPointHistoryRequest, context: Ctx
    ) -> pb.GetPointHistoryResponse:
        fields = RequestFields()
        series_id = fields.series_id(request.series, "series")
        if not request.HasField("snap_time"):
            fields.refuse("snap_time", "the snap of the point is required")
        snap_us = fields.snap(request.snap_time, "snap_time")
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        read = await self._queries.point_history(
            series_id, snap_us, request.page_size, request.page_token, min_position
        )
        return pb.GetPointHistoryResponse(
            versions=[mapping.official_value(request.series, v) for v in read.value.versions],
            observations=[mapping.observation(o) for o in read.value.observations],
            read_position=read.read_position,
            next_page_token=read.value.next_page_token,
        )

    async def GetSeries(self, request: pb.GetSeriesRequest, context: Ctx) -> series_pb2.Series:
        fields = RequestFields()
        series_id = fields.series_id(request.name, "name")
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        return mapping.series(await self._queries.series(series_id, min_position))

    async def ListSeries(
        self, request: pb.ListSeriesRequest, context: Ctx
    ) -> pb.ListSeriesResponse:
        fields = RequestFields()
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        page = await self._queries.list_series(request.page_size, request.page_token, min_position)
        return pb.ListSeriesResponse(
            series=[mapping.series(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Ctx
    ) -> pb.ListAuditEntriesResponse:
        fields = RequestFields()
        parent = fields.audit_parent(request.parent)
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        page = await self._queries.audit_entries(
            parent, request.filter, request.page_size, request.page_token, min_position
        )
        return pb.ListAuditEntriesResponse(
            entries=[mapping.audit_entry(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def Subscribe(self, request: pb.SubscribeRequest, context: Ctx) -> None:  # type: ignore[override]
        fields = RequestFields()
        series_ids = [fields.series_id(s, f"series[{i}]") for i, s in enumerate(request.series)]
        after_position = fields.position(request.after_position, "after_position")
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        resume_token = None
        if request.WhichOneof("start") == "resume_token":
            resume_token = request.resume_token

        async def send(batch: FeedBatch) -> None:
            await context.write(
                pb.SubscribeResponse(
                    values=[mapping.changed_value(c) for c in batch.changes],
                    resume_token=batch.resume_token,
                )
            )

        with self._queries.subscription_slot(current_identity().user_id):
            await self._queries.subscribe(
                series_ids, resume_token, after_position, send, min_position=min_position
            )

    async def ListQualityIssues(
        self, request: pb.ListQualityIssuesRequest, context: Ctx
    ) -> pb.ListQualityIssuesResponse:
        fields = RequestFields()
        series_id = fields.issues_parent(request.parent)
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        page = await self._queries.quality_issues(
            series_id, request.filter, request.page_size, request.page_token, min_position
        )
        return pb.ListQualityIssuesResponse(
            issues=[mapping.quality_issue(i) for i in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListQualityMetrics(
        self, request: pb.ListQualityMetricsRequest, context: Ctx
    ) -> pb.ListQualityMetricsResponse:
        fields = RequestFields()
        series_id = fields.series_id(request.series, "series")
        start_us = fields.optional_instant(request, "start_time", EARLIEST)
        end_us = fields.optional_instant(request, "end_time", OPEN_END)
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        page = await self._queries.quality_metrics(
            series_id, start_us, end_us, request.page_size, request.page_token, min_position
        )
        return pb.ListQualityMetricsResponse(
            metrics=[mapping.quality_metrics(m) for m in page.items],
            next_page_token=page.next_page_token,
        )
