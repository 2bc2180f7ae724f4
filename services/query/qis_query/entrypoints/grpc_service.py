"""qis.data.v1.QueryService over grpc.aio: requests to application calls, their answers to
messages, and the application's exceptions to statuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc
import grpc.aio
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2
from qis_adapters.readstore.port import OPEN_END
from qis_domain.access import Caller, issues_name
from qis_domain.names import series_name, source_name
from qis_runtime.authorization import caller_of
from qis_runtime.identity import current_identity

from qis_query.application.access import (
    ADMIN_OR_READ,
    EVERY_SERIES,
    EVERYTHING,
    Asker,
    OpenAccess,
    ReadAccess,
)
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import EARLIEST, RangePage, RangeQuery
from qis_query.application.sources import SourceFilter, SourceQueries
from qis_query.application.subscription import FeedBatch
from qis_query.entrypoints import columns, mapping, sources, wire
from qis_query.entrypoints.fields import RequestFields

Ctx = grpc.aio.ServicerContext[Any, Any]
PageValues = Callable[[RangePage], bytes]
"""The values of a range page in the view its request asked for: the fields of a
QueryRangeResponse that carry them, serialised."""
R = TypeVar("R")


class QueryService(pb_grpc.QueryServiceServicer):
    """Protobuf in, application calls, protobuf out. Whatever a call raises becomes its status
    in the server's interceptor (qis_runtime.errors.status_for): one error policy for every
    process.

    Every method checks, once its request is found well-formed, that the caller may read what
    it asks for (`access`; a refusal is PERMISSION_DENIED before anything is read, so that
    whether a series exists is told only to callers who may read it); the listings of several
    series and Subscribe show only what the caller may read."""

    def __init__(
        self,
        queries: QueryHandlers,
        access: ReadAccess | None = None,
        sources: SourceQueries | None = None,
    ) -> None:
        """`access`: who may read what (qis_query.application.access); None: every
        authenticated caller may read everything (QIS_AUTHZ=open). `sources`: the data sources'
        queries; None: GetDataSource and ListDataSources are UNIMPLEMENTED."""
        self._queries = queries
        self._access = access or OpenAccess()
        self._sources = sources
        # Direct callers (tests, benchmarks) and the generated registration get messages.
        self._range_reply: Callable[[bytes], bytes | pb.QueryRangeResponse] = (
            pb.QueryRangeResponse.FromString
        )

    def send_pages_as_built(self) -> None:
        """QueryRange writes each reply as the bytes it built, not as a message parsed from
        them: for a method registered with a serialiser that passes bytes through
        (add_to_server). Byte for byte what the message would serialise to."""
        self._range_reply = _as_built

    async def _require_series(
        self, context: Ctx, method: str, series_id: str, min_position: int
    ) -> None:
        await self._access.require(
            asker(context, method),
            series_name(series_id),
            series_id=series_id,
            min_position=min_position,
        )

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
        await self._require_series(context, "QueryRange", query.series_id, min_position)
        # A call continuing a range is never answered from the cache (which keeps whole
        # first pages): in columns, it decodes only the segments' columns the view reads.
        only = columns.READ if in_columns and request.page_token else None
        read = await self._queries.query_range(
            query, request.page_size, request.page_token, min_position, only
        )
        values = await self._values_view(request.series, query.series_id, in_columns)
        # The fields in the order of their numbers, as protobuf writes them (values 1,
        # next_page_token 2, read_position 3, columns 4); a zero or an empty text left out.
        position = b""
        if read.read_position:
            position = bytes((_RANGE_TAGS["read_position"],)) + wire.varint(read.read_position)
        async for page in read.value:  # the same pages and tokens in either view
            token = page.next_page_token
            tail = wire.text_field(_RANGE_TAGS["next_page_token"], token) if token else b""
            if in_columns:
                reply = tail + position + wire.field(_RANGE_TAGS["columns"], values(page))
            else:
                reply = values(page) + tail + position
            await context.write(self._range_reply(reply))

    async def GetValues(self, request: pb.GetValuesRequest, context: Ctx) -> pb.GetValuesResponse:
        fields = RequestFields()
        series_id = fields.series_id(request.series, "series")
        snaps = [fields.snap(s, f"snap_times[{i}]") for i, s in enumerate(request.snap_times)]
        as_of = fields.as_of(request)
        min_position = fields.position(request.min_position, "min_position")
        in_columns = fields.columns_view(request)
        fields.check()
        await self._require_series(context, "GetValues", series_id, min_position)
        read = await self._queries.values(series_id, snaps, as_of, min_position)
        reply = pb.GetValuesResponse(read_position=read.read_position)
        if in_columns:
            # A few points: the columns straight from their records, no Arrow rows between.
            shape = columns.layout(await self._queries.definition(series_id))
            columns.fill_versions(reply.columns, read.value, shape)
        else:
            mapping.add_official_values(reply.values, request.series, read.value)
        return reply

    async def _values_view(self, name: str, series_id: str, in_columns: bool) -> PageValues:
        """How a range page of the series carries its values: one OfficialValue each in
        `values` (the repeated field serialised), or `columns` (the message's own bytes, in
        the case of the series' data type, with its unit)."""
        if not in_columns:
            return lambda page: mapping.official_rows_wire(
                _RANGE_TAGS["values"], name, series_id, page.rows
            )
        return columns.Pages(columns.layout(await self._queries.definition(series_id)))

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
        await self._require_series(context, "GetPointHistory", series_id, min_position)
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
        await self._require_series(context, "GetSeries", series_id, min_position)
        return mapping.series(await self._queries.series(series_id, min_position))

    async def ListSeries(
        self, request: pb.ListSeriesRequest, context: Ctx
    ) -> pb.ListSeriesResponse:
        fields = RequestFields()
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        readable = await self._access.gate(asker(context, "ListSeries"), min_position)
        page = await self._queries.list_series(
            request.page_size, request.page_token, min_position, readable=readable
        )
        return pb.ListSeriesResponse(
            series=[mapping.series(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetDataSource(
        self, request: pb.GetDataSourceRequest, context: Ctx
    ) -> series_pb2.DataSource:
        fields = RequestFields()
        source_id = sources.source_id(fields, request.name, "name")
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        queries = await self._source_queries(context)
        who = asker(context, "GetDataSource")
        await self._access.require(who, source_name(source_id), min_position=min_position)
        readable = await self._access.gate(who, min_position)
        view = await queries.source(source_id, min_position, readable=readable)
        return sources.data_source(view)

    async def ListDataSources(
        self, request: pb.ListDataSourcesRequest, context: Ctx
    ) -> pb.ListDataSourcesResponse:
        fields = RequestFields()
        min_position = fields.position(request.min_position, "min_position")
        if request.state not in _DISABLED:
            fields.refuse("state", "SOURCE_STATE_ENABLED, _DISABLED or unset")
        fields.check()
        queries = await self._source_queries(context)
        readable = await self._access.gate(asker(context, "ListDataSources"), min_position)
        page = await queries.list_sources(
            request.page_size,
            request.page_token,
            min_position,
            SourceFilter(request.provider, _DISABLED.get(request.state)),
            readable=readable,
        )
        return pb.ListDataSourcesResponse(
            data_sources=[sources.data_source(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def _source_queries(self, context: Ctx) -> SourceQueries:
        if self._sources is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "this query service does not serve data sources"
            )
        assert self._sources is not None  # abort raises
        return self._sources

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Ctx
    ) -> pb.ListAuditEntriesResponse:
        fields = RequestFields()
        parent = fields.audit_parent(request.parent)
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        who = asker(context, "ListAuditEntries")
        if parent.series_id:
            await self._access.require(
                who,
                series_name(parent.series_id),
                series_id=parent.series_id,
                min_position=min_position,
            )
        elif parent.source_id:
            await self._access.require(
                who, source_name(parent.source_id), min_position=min_position
            )
        else:
            await self._access.require(
                who, EVERYTHING, min_position=min_position, permissions=ADMIN_OR_READ
            )
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

        who = asker(context, "Subscribe")
        for series_id in dict.fromkeys(series_ids):
            await self._access.require(
                who, series_name(series_id), series_id=series_id, min_position=min_position
            )
        with self._queries.subscription_slot(current_identity().user_id):
            await self._queries.subscribe(
                series_ids,
                resume_token,
                after_position,
                send,
                admit=self._access.admit(who, series_ids),
                min_position=min_position,
            )

    async def ListQualityIssues(
        self, request: pb.ListQualityIssuesRequest, context: Ctx
    ) -> pb.ListQualityIssuesResponse:
        fields = RequestFields()
        series_id = fields.issues_parent(request.parent)
        min_position = fields.position(request.min_position, "min_position")
        fields.check()
        who = asker(context, "ListQualityIssues")
        if series_id:
            await self._access.require(
                who, issues_name(series_id), series_id=series_id, min_position=min_position
            )
        page = await self._queries.quality_issues(
            series_id,
            request.filter,
            request.page_size,
            request.page_token,
            min_position,
            # One series: its queue was allowed above; every series: only the readable ones.
            readable=EVERY_SERIES if series_id else await self._access.gate(who, min_position),
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
        await self._require_series(context, "ListQualityMetrics", series_id, min_position)
        page = await self._queries.quality_metrics(
            series_id, start_us, end_us, request.page_size, request.page_token, min_position
        )
        return pb.ListQualityMetricsResponse(
            metrics=[mapping.quality_metrics(m) for m in page.items],
            next_page_token=page.next_page_token,
        )


_RANGE_TAGS = {
    f.name: wire.tag(f.number, wire.VARINT if f.name == "read_position" else wire.LENGTH_DELIMITED)
    for f in pb.QueryRangeResponse.DESCRIPTOR.fields
}
"""The tag byte of each field of QueryRangeResponse."""


def _as_built(reply: bytes) -> bytes:
    return reply


def add_to_server(servicer: QueryService, server: grpc.aio.Server) -> None:
    """The generated registration (add_QueryServiceServicer_to_server), but for QueryRange's
    response serialiser, which passes the servicer's bytes through as they are (a page's
    parse into a message and serialisation back cost 80-110 µs of a 1,000-point page's
    ~450). The interceptors wrap the handlers with their serialisers unchanged."""
    recorded = _Registration()
    pb_grpc.add_QueryServiceServicer_to_server(servicer, cast(grpc.aio.Server, recorded))
    handlers = dict(recorded.handlers)
    query_range: Any = handlers["QueryRange"]
    handlers["QueryRange"] = grpc.unary_stream_rpc_method_handler(
        query_range.unary_stream, query_range.request_deserializer, _as_built
    )
    servicer.send_pages_as_built()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class _Registration:
    """Takes what the generated registration adds to a server, to change it before it is."""

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers as add_registered_method_handlers's

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        assert service == SERVICE, service
        self.handlers = handlers


SERVICE = pb.DESCRIPTOR.services_by_name["QueryService"].full_name

_DISABLED: dict[int, bool | None] = {
    pb.SOURCE_STATE_UNSPECIFIED: None,
    pb.SOURCE_STATE_ENABLED: False,
    pb.SOURCE_STATE_DISABLED: True,
}
"""The `disabled` value a listing of each SourceState keeps (None: both)."""


class _Call:
    """The caller and peer of a gRPC call, read when asked for."""

    def __init__(self, context: Ctx, method: str) -> None:
        self._context = context
        self.method = method

    @property
    def caller(self) -> Caller:
        return caller_of(current_identity())

    @property
    def peer(self) -> str:
        return self._context.peer()


def asker(context: Ctx, method: str) -> Asker:
    """Who is asking, and by which RPC: what the access checks and their refusals name."""
    return _Call(context, method)
