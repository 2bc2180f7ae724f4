"""QisClient: the command and query services behind one object, in Python terms.

Every call carries the caller's identity, fails with a QisError subclass (never a bare
grpc.RpcError), takes and returns Decimals and aware datetimes where the contract has decimal
strings and timestamps, and pages for the caller. The answers themselves are the contract's
messages (qis.data.v1), so nothing the service says is lost in a translation; `call` and
`stream` reach any method the helpers do not cover, with the same identity and errors.
"""

from __future__ import annotations

import copy
import functools
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from qis.data.v1 import (
    command_service_pb2,
    command_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
    series_pb2,
    values_pb2,
)

from qis_client.columns import MAX_ROWS, ValueColumns, ingest_requests
from qis_client.errors import error_from_rpc
from qis_client.filters import issue_filter, time_literal
from qis_client.identity import Identity, User
from qis_client.paging import pages
from qis_client.subscription import Stream, Subscription
from qis_client.values import (
    Value,
    data_point,
    data_value,
    series_name,
    source_name,
    timestamp,
)

COMMAND_ADDRESS_ENV = "QIS_COMMAND_ADDRESS"
QUERY_ADDRESS_ENV = "QIS_QUERY_ADDRESS"
DEFAULT_COMMAND_ADDRESS = "127.0.0.1:50051"
DEFAULT_QUERY_ADDRESS = "127.0.0.1:50052"
DEFAULT_TIMEOUT_S = 30.0

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Points = Mapping[datetime, Value] | Iterable[tuple[datetime, Value]]
"""Points of one ingestion: {snap: value} or (snap, value) pairs; snaps are aware datetimes."""


def new_command_id() -> str:
    """A fresh command id. Pass your own instead where a command may be sent again (a re-run
    import, a retry after a lost answer): the service applies one id once."""
    return str(uuid.uuid4())


class _TokenRequest(Protocol):
    page_token: str


class _Page(Protocol):
    next_page_token: str


TokenReq = TypeVar("TokenReq", bound=_TokenRequest)
Page = TypeVar("Page", bound=_Page)


def _at_token(request: TokenReq, token: str) -> TokenReq:
    page = copy.deepcopy(request)
    page.page_token = token
    return page


def _next_token(page: _Page) -> str:
    return page.next_page_token


def _optional_timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    return None if moment is None else timestamp(moment)


def _range_request(
    series: str,
    start_time: datetime | None,
    end_time: datetime | None,
    as_of_time: datetime | None,
    as_of_position: int | None,
    page_size: int,
    min_position: int,
) -> query_service_pb2.QueryRangeRequest:
    request = query_service_pb2.QueryRangeRequest(
        series=series_name(series),
        start_time=_optional_timestamp(start_time),
        end_time=_optional_timestamp(end_time),
        page_size=page_size,
        min_position=min_position,
    )
    _as_of(request, as_of_time, as_of_position)
    return request


def _values_request(
    series: str,
    snaps: Iterable[datetime],
    as_of_time: datetime | None,
    as_of_position: int | None,
    min_position: int,
) -> query_service_pb2.GetValuesRequest:
    request = query_service_pb2.GetValuesRequest(
        series=series_name(series),
        snap_times=[timestamp(snap) for snap in snaps],
        min_position=min_position,
    )
    _as_of(request, as_of_time, as_of_position)
    return request


def _as_of(
    request: query_service_pb2.QueryRangeRequest | query_service_pb2.GetValuesRequest,
    as_of_time: datetime | None,
    as_of_position: int | None,
) -> None:
    if as_of_time is not None and as_of_position is not None:
        raise ValueError("as of a time or as of a position, not both")
    if as_of_time is not None:
        request.as_of_time.CopyFrom(timestamp(as_of_time))
    elif as_of_position is not None:
        request.as_of_position = as_of_position


def _audit_parent(parent: str) -> str:
    """ "-" (everything) and "sources/{id}" as given; a series as its id or its name."""
    if parent == "-" or parent.startswith("sources/"):
        return parent
    return series_name(parent)


class QisClient:
    """One client for both services. Use it as a context manager, or call close()."""

    def __init__(
        self,
        command_channel: grpc.Channel,
        query_channel: grpc.Channel,
        identity: Identity,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        """`timeout_s` bounds every unary call; streams (ranges, subscriptions) have none."""
        self._channels = (command_channel, query_channel)
        self._identity = identity
        self._timeout_s = timeout_s
        self.commands = command_service_pb2_grpc.CommandServiceStub(command_channel)
        self.queries = query_service_pb2_grpc.QueryServiceStub(query_channel)

    @classmethod
    def connect(
        cls,
        command_address: str,
        query_address: str,
        identity: Identity,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> QisClient:
        """Channels to both services: TLS with `credentials`, plaintext without (a local
        `qis up`)."""

        def channel(address: str) -> grpc.Channel:
            if credentials is None:
                return grpc.insecure_channel(address, options=options)
            return grpc.secure_channel(address, credentials, options=options)

        return cls(channel(command_address), channel(query_address), identity, timeout_s=timeout_s)

    @classmethod
    def from_env(cls, identity: Identity | None = None) -> QisClient:
        """The addresses in QIS_COMMAND_ADDRESS and QIS_QUERY_ADDRESS, as `qis up` and the `qis`
        command read them; without an identity, QIS_USER (else the login name)."""
        return cls.connect(
            os.environ.get(COMMAND_ADDRESS_ENV) or DEFAULT_COMMAND_ADDRESS,
            os.environ.get(QUERY_ADDRESS_ENV) or DEFAULT_QUERY_ADDRESS,
            identity or User.from_env(),
        )

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> QisClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- any method -------------------------------------------------------------------------

    def call(self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        """One unary call, e.g. `client.call(client.commands.RestatePoint, request)`."""
        try:
            return method(request, timeout=self._timeout_s, metadata=self._identity.metadata())
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def stream(
        self, method: grpc.UnaryStreamMultiCallable[Req, Resp], request: Req
    ) -> Iterator[Resp]:
        """The messages of one server-streaming call; the call is cancelled when the iterator
        is closed or dropped before its end, so the service stops sending."""
        messages = method(request, metadata=self._identity.metadata())
        try:
            yield from messages
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        finally:
            messages.cancel()

    # --- commands ---------------------------------------------------------------------------

    def register_source(
        self,
        source_id: str,
        *,
        provider: str,
        description: str = "",
        settings: Mapping[str, str] | None = None,
        command_id: str | None = None,
    ) -> command_service_pb2.CommandResponse:
        # DataSource.disabled left false: registered in use.
        source = series_pb2.DataSource(
            provider=provider, description=description, settings=settings or {}
        )
        request = command_service_pb2.RegisterDataSourceRequest(
            command_id=command_id or new_command_id(), source_id=source_id, source=source
        )
        return self.call(self.commands.RegisterDataSource, request)

    def define_series(
        self, series_id: str, series: series_pb2.Series, *, command_id: str | None = None
    ) -> command_service_pb2.CommandResponse:
        request = command_service_pb2.DefineSeriesRequest(
            command_id=command_id or new_command_id(), series_id=series_id, series=series
        )
        return self.call(self.commands.DefineSeries, request)

    def ingest(
        self, series: str, source: str, points: Points, *, command_id: str | None = None
    ) -> command_service_pb2.IngestPointsResponse:
        """One all-or-nothing batch (1 to 10,000 points) of one series from one source. A bare
        number is a price; other data types go as their DataValue (values.volume, a Bar, ...).
        Each snap's offset is kept as its point's utc_offset (see values.data_point)."""
        pairs = points.items() if isinstance(points, Mapping) else points
        request = command_service_pb2.IngestPointsRequest(
            command_id=command_id or new_command_id(),
            series=series_name(series),
            source=source_name(source),
            points=[data_point(snap, value) for snap, value in pairs],
        )
        return self.call(self.commands.IngestPoints, request)

    def ingest_columns(
        self,
        series: str,
        source: str,
        columns: values_pb2.PointColumns,
        *,
        command_id: str | None = None,
    ) -> command_service_pb2.IngestPointsResponse:
        """One all-or-nothing batch in columns (columns.point_columns, rows_as_columns): 1 to
        10,000 rows. The same command as `ingest` of the same points: sending one form after
        the other with the same command id is a duplicate. More rows: bulk_ingest."""
        rows = len(columns.snap_time_micros)
        if rows > MAX_ROWS:
            raise ValueError(f"{rows} rows: one request takes {MAX_ROWS} at most (bulk_ingest)")
        request = command_service_pb2.IngestPointsRequest(
            command_id=command_id or new_command_id(),
            series=series_name(series),
            source=source_name(source),
            columns=columns,
        )
        return self.call(self.commands.IngestPoints, request)

    def bulk_ingest(
        self,
        series: str,
        source: str,
        columns: values_pb2.PointColumns,
        *,
        command_id: str | None = None,
        chunk_rows: int = MAX_ROWS,
    ) -> list[command_service_pb2.BulkIngestResponse]:
        """Columns of any length over one BulkIngest stream, in chunks of at most `chunk_rows`
        rows, each its own all-or-nothing command `{command_id}:{i}` (fresh ids without a
        command id): pass one to make a re-run of the same load resend duplicates. Returns one
        answer per chunk, in order: a rejected chunk's `error` is a google.rpc.Status
        (`error_from_status` makes it a QisError); the other chunks go on regardless."""
        requests = ingest_requests(
            series, source, columns, command_id=command_id, chunk_rows=chunk_rows
        )
        answers = self.commands.BulkIngest(iter(requests), metadata=self._identity.metadata())
        try:
            return list(answers)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        finally:
            answers.cancel()

    def restate(
        self,
        series: str,
        snap: datetime,
        value: Value,
        *,
        reason: str,
        reason_code: str = "",
        command_id: str | None = None,
    ) -> command_service_pb2.CommandResponse:
        """Corrects a published point: a new version; the old one stays in its history."""
        request = command_service_pb2.RestatePointRequest(
            command_id=command_id or new_command_id(),
            series=series_name(series),
            snap_time=timestamp(snap),
            value=data_value(value),
            reason=reason,
            reason_code=reason_code,
        )
        return self.call(self.commands.RestatePoint, request)

    # --- queries ----------------------------------------------------------------------------

    def query_range(
        self,
        series: str,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        as_of_time: datetime | None = None,
        as_of_position: int | None = None,
        page_size: int = 0,
        min_position: int = 0,
    ) -> Iterator[query_service_pb2.OfficialValue]:
        """The official values with snaps in [start_time, end_time), latest or as of a
        knowledge time or commit position, across as many calls as the range takes."""
        request = _range_request(
            series, start_time, end_time, as_of_time, as_of_position, page_size, min_position
        )
        for message in self._range_messages(request):
            yield from message.values

    def query_range_columns(
        self,
        series: str,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        as_of_time: datetime | None = None,
        as_of_position: int | None = None,
        page_size: int = 0,
        min_position: int = 0,
    ) -> ValueColumns:
        """query_range in the columnar view (VALUE_VIEW_COLUMNS): the same values, pages and
        tokens, read into lists per field across as many calls as the range takes."""
        request = _range_request(
            series, start_time, end_time, as_of_time, as_of_position, page_size, min_position
        )
        request.view = query_service_pb2.VALUE_VIEW_COLUMNS
        columns = ValueColumns()
        for message in self._range_messages(request):
            columns.append(message.columns, message.read_position)
        return columns

    def _range_messages(
        self, request: query_service_pb2.QueryRangeRequest
    ) -> Iterator[query_service_pb2.QueryRangeResponse]:
        # A long range may take several calls: each is a stream of pages.
        streamed = functools.partial(self.stream, self.queries.QueryRange)
        return self._follow(streamed, request)

    def get_values(
        self,
        series: str,
        snaps: Iterable[datetime],
        *,
        as_of_time: datetime | None = None,
        as_of_position: int | None = None,
        min_position: int = 0,
    ) -> list[query_service_pb2.OfficialValue]:
        """The official values of given points (those that had one then), in the order asked."""
        request = _values_request(series, snaps, as_of_time, as_of_position, min_position)
        return list(self.call(self.queries.GetValues, request).values)

    def get_values_columns(
        self,
        series: str,
        snaps: Iterable[datetime],
        *,
        as_of_time: datetime | None = None,
        as_of_position: int | None = None,
        min_position: int = 0,
    ) -> ValueColumns:
        """get_values in the columnar view: the values that exist, in the order asked."""
        request = _values_request(series, snaps, as_of_time, as_of_position, min_position)
        request.view = query_service_pb2.VALUE_VIEW_COLUMNS
        answer = self.call(self.queries.GetValues, request)
        columns = ValueColumns()
        columns.append(answer.columns, answer.read_position)
        return columns

    def get_point_history(
        self, series: str, snap: datetime, *, page_size: int = 0, min_position: int = 0
    ) -> query_service_pb2.GetPointHistoryResponse:
        """Every version of one point and the observations they were made from, in one answer
        however many pages the service takes: it pages them in commit order, so the pages put
        together keep the versions ascending by version and the observations by position.
        `read_position` is the least of the pages' (the whole reflects at least that)."""
        request = query_service_pb2.GetPointHistoryRequest(
            series=series_name(series),
            snap_time=timestamp(snap),
            page_size=page_size,
            min_position=min_position,
        )
        history = query_service_pb2.GetPointHistoryResponse()
        read_positions = []
        for page in self._pages(self.queries.GetPointHistory, request):
            history.versions.extend(page.versions)
            history.observations.extend(page.observations)
            read_positions.append(page.read_position)
        history.read_position = min(read_positions)
        return history

    def list_series(
        self, *, page_size: int = 0, min_position: int = 0
    ) -> Iterator[series_pb2.Series]:
        request = query_service_pb2.ListSeriesRequest(
            page_size=page_size, min_position=min_position
        )
        for page in self._pages(self.queries.ListSeries, request):
            yield from page.series

    def list_audit_entries(
        self,
        parent: str = "-",
        *,
        snap: datetime | None = None,
        page_size: int = 0,
        min_position: int = 0,
    ) -> Iterator[query_service_pb2.AuditEntry]:
        """Who did what, when: on a series (its id or "series/{id}"; `snap` for one point's
        entries only), on a data source ("sources/{id}"), or on anything ("-")."""
        request = query_service_pb2.ListAuditEntriesRequest(
            parent=_audit_parent(parent),
            filter=f"snap_time = {time_literal(snap)}" if snap is not None else "",
            page_size=page_size,
            min_position=min_position,
        )
        for page in self._pages(self.queries.ListAuditEntries, request):
            yield from page.entries

    def list_quality_issues(
        self,
        *,
        series: str = "",
        status: str = "open",
        rule: str = "",
        severity: str = "",
        raised_before: datetime | None = None,
        page_size: int = 0,
        min_position: int = 0,
    ) -> Iterator[query_service_pb2.QualityIssue]:
        """The exception queue, of one series or (no series) of all. `status`, `rule` and
        `severity` are enum value names without their prefix, in any case ("open", "jump",
        "error"); the open issues unless `status` says otherwise, "any" for every status.
        They become the request's AIP-160 filter, e.g. `status = OPEN AND rule = JUMP`."""
        request = query_service_pb2.ListQualityIssuesRequest(
            parent=series_name(series) if series else "series/-",
            filter=issue_filter(
                status=status, rule=rule, severity=severity, raised_before=raised_before
            ),
            page_size=page_size,
            min_position=min_position,
        )
        for page in self._pages(self.queries.ListQualityIssues, request):
            yield from page.issues

    def list_quality_metrics(
        self,
        series: str,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 0,
        min_position: int = 0,
    ) -> Iterator[query_service_pb2.QualityMetrics]:
        """Quality metrics of a series per window, for windows starting in
        [start_time, end_time)."""
        request = query_service_pb2.ListQualityMetricsRequest(
            series=series_name(series),
            start_time=_optional_timestamp(start_time),
            end_time=_optional_timestamp(end_time),
            page_size=page_size,
            min_position=min_position,
        )
        for page in self._pages(self.queries.ListQualityMetrics, request):
            yield from page.metrics

    def subscribe(
        self,
        series: Iterable[str] = (),
        *,
        resume_token: str = "",
        after_position: int | None = None,
        reconnects: int = 5,
    ) -> Subscription:
        """New and restated official values of the series (all series when none are given):
        catch-up from `resume_token` or `after_position` (else from the beginning), then live.
        Keep `subscription.resume_token` to continue later without a gap."""
        if resume_token and after_position is not None:
            raise ValueError("from a resume token or from a position, not both")
        request = query_service_pb2.SubscribeRequest(series=[series_name(s) for s in series])
        if resume_token:
            request.resume_token = resume_token
        elif after_position is not None:
            request.after_position = after_position

        def open_stream(
            request: query_service_pb2.SubscribeRequest,
        ) -> Stream[query_service_pb2.SubscribeResponse]:
            return self.queries.Subscribe(request, metadata=self._identity.metadata())

        return Subscription(open_stream, request, reconnects=reconnects)

    # --- paging -----------------------------------------------------------------------------

    def _pages(
        self, method: grpc.UnaryUnaryMultiCallable[TokenReq, Page], request: TokenReq
    ) -> Iterator[Page]:
        """The pages of a list call, from the request's own page token on."""
        return self._follow(lambda page_request: (self.call(method, page_request),), request)

    def _follow(
        self, call: Callable[[TokenReq], Iterable[Page]], request: TokenReq
    ) -> Iterator[Page]:
        return pages(lambda token: call(_at_token(request, token)), _next_token, request.page_token)
