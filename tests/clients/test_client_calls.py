"""QisClient over real gRPC against a scripted in-process server: identity metadata on every
call, page tokens followed across pages and across calls (a point's history put together from
its pages), list filters built from options, snaps sent with the offset they state, a
subscription that reconnects from its resume token, error details decoded from real trailers,
abandoned streams cancelled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import (
    command_service_pb2,
    command_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
    series_pb2,
    values_pb2,
)
from qis_client import (
    MAX_ROWS,
    BearerToken,
    Identity,
    InvalidArgument,
    NotFound,
    QisClient,
    Scaled,
    User,
    decimal_of,
    error_from_status,
    point_columns,
    price,
    to_datetime,
)

from tests.clients.client_support import bad_request, rich_status

T = TypeVar("T")
RANGE_POINTS = 7
MESSAGES_PER_CALL = 2  # the service's per-call bound, tiny so that a range spans several calls
CATALOGUE = [f"series/S{i}" for i in range(5)]
WINDOWS = 3
SNAP_0 = 1_709_326_800  # 2024-03-01T21:00:00Z
# A point's history as the service pages it: commit positions in order, each a version (v) or
# an observation (o) of a source, up to page_size of them a page.
HISTORY = ["o", "v", "o", "o", "v", "v", "o"]


def official(index: int, version: int = 1) -> query_service_pb2.OfficialValue:
    value = query_service_pb2.OfficialValue(series="series/R", version=version, value=price(index))
    value.snap_time.FromSeconds(SNAP_0 + 86_400 * index)
    return value


def columns_of(
    values: Sequence[query_service_pb2.OfficialValue],
) -> query_service_pb2.OfficialValueColumns:
    """OfficialValues in columns, as the service answers in the columnar view."""
    columns = query_service_pb2.OfficialValueColumns(
        snap_time_micros=[v.snap_time.seconds * 1_000_000 for v in values],
        versions=[v.version for v in values],
        prices=values_pb2.DecimalColumn(texts=[v.value.price.value for v in values]),
        quality_scores=[v.quality_score for v in values],
        record_time_micros=[0 for _ in values],
        record_positions=[v.record_position for v in values],
        supersede_positions=[v.supersede_position for v in values],
        methods=[v.method for v in values],
        flag_counts=[len(v.flags) for v in values],
        flags=[flag for v in values for flag in v.flags],
    )
    return columns


def page_of(items: Sequence[T], token: str, page_size: int) -> tuple[Sequence[T], str]:
    """A page of a list and the token of the next one; the token is the next item's index."""
    start = int(token or 0)
    end = min(start + page_size, len(items))
    return items[start:end], str(end) if end < len(items) else ""


class Recorder:
    """What the scripted services were asked, with the metadata of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Message, dict[str, str]]] = []
        self.cancelled = threading.Event()

    def record(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        self.calls.append((method, request, metadata))

    def requests(self, method: str) -> list[Message]:
        return [request for name, request, _ in self.calls if name == method]


class Queries(query_service_pb2_grpc.QueryServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def QueryRange(
        self, request: query_service_pb2.QueryRangeRequest, context: grpc.ServicerContext
    ) -> Iterator[query_service_pb2.QueryRangeResponse]:
        self.recorder.record("QueryRange", request, context)
        if request.series == "series/endless":
            context.add_callback(self.recorder.cancelled.set)
            while context.is_active():
                yield query_service_pb2.QueryRangeResponse(
                    values=[official(0)], next_page_token="t"
                )
            return
        index = int(request.page_token or 0)
        for _ in range(MESSAGES_PER_CALL):
            end = min(index + request.page_size, RANGE_POINTS)
            token = str(end) if end < RANGE_POINTS else ""
            values = [official(i) for i in range(index, end)]
            if request.view == query_service_pb2.VALUE_VIEW_COLUMNS:
                yield query_service_pb2.QueryRangeResponse(
                    columns=columns_of(values), next_page_token=token, read_position=20 - index
                )
            else:
                yield query_service_pb2.QueryRangeResponse(values=values, next_page_token=token)
            if not token:
                return
            index = end

    def ListSeries(
        self, request: query_service_pb2.ListSeriesRequest, context: grpc.ServicerContext
    ) -> query_service_pb2.ListSeriesResponse:
        self.recorder.record("ListSeries", request, context)
        names, token = page_of(CATALOGUE, request.page_token, request.page_size)
        return query_service_pb2.ListSeriesResponse(
            series=[series_pb2.Series(name=name) for name in names], next_page_token=token
        )

    def ListQualityMetrics(
        self, request: query_service_pb2.ListQualityMetricsRequest, context: grpc.ServicerContext
    ) -> query_service_pb2.ListQualityMetricsResponse:
        self.recorder.record("ListQualityMetrics", request, context)
        windows, token = page_of(range(WINDOWS), request.page_token, request.page_size)
        metrics = [query_service_pb2.QualityMetrics(expected_snaps=w) for w in windows]
        return query_service_pb2.ListQualityMetricsResponse(metrics=metrics, next_page_token=token)

    def GetPointHistory(
        self, request: query_service_pb2.GetPointHistoryRequest, context: grpc.ServicerContext
    ) -> query_service_pb2.GetPointHistoryResponse:
        self.recorder.record("GetPointHistory", request, context)
        items, token = page_of(
            list(enumerate(HISTORY, start=1)), request.page_token, request.page_size
        )
        page = query_service_pb2.GetPointHistoryResponse(
            read_position=10 + len(self.recorder.requests("GetPointHistory")),
            next_page_token=token,
        )
        for position, kind in items:
            if kind == "v":
                page.versions.append(official(0, version=HISTORY[:position].count("v")))
                page.versions[-1].record_position = position
            else:
                observation = page.observations.add(source="sources/a", record_position=position)
                observation.utc_offset.seconds = -18_000
        return page

    def ListQualityIssues(
        self, request: query_service_pb2.ListQualityIssuesRequest, context: grpc.ServicerContext
    ) -> query_service_pb2.ListQualityIssuesResponse:
        self.recorder.record("ListQualityIssues", request, context)
        # A filtered page may hold nothing while a next page is announced (AIP-158).
        if not request.page_token:
            return query_service_pb2.ListQualityIssuesResponse(next_page_token="more")
        return query_service_pb2.ListQualityIssuesResponse(
            issues=[query_service_pb2.QualityIssue(issue_id="i-1", series="series/R")]
        )

    def ListAuditEntries(
        self, request: query_service_pb2.ListAuditEntriesRequest, context: grpc.ServicerContext
    ) -> query_service_pb2.ListAuditEntriesResponse:
        self.recorder.record("ListAuditEntries", request, context)
        return query_service_pb2.ListAuditEntriesResponse(
            entries=[query_service_pb2.AuditEntry(action="SeriesDefined")]
        )

    def GetValues(
        self, request: query_service_pb2.GetValuesRequest, context: grpc.ServicerContext
    ) -> query_service_pb2.GetValuesResponse:
        self.recorder.record("GetValues", request, context)
        not_found = error_details_pb2.ResourceInfo(resource_name=request.series)
        status = rich_status(grpc.StatusCode.NOT_FOUND, "no such series", not_found)
        context.abort_with_status(rpc_status.to_status(status))

    def Subscribe(
        self, request: query_service_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[query_service_pb2.SubscribeResponse]:
        """From the start: one batch, then the connection breaks. From a token: the batch that
        follows it, then live (nothing more) until cancelled."""
        self.recorder.record("Subscribe", request, context)
        if not request.resume_token:
            yield query_service_pb2.SubscribeResponse(values=[official(0)], resume_token="t1")
            context.abort(grpc.StatusCode.UNAVAILABLE, "query service restarting")
        after = int(request.resume_token.removeprefix("t"))
        yield query_service_pb2.SubscribeResponse(
            values=[official(after)], resume_token=f"t{after + 1}"
        )
        while context.is_active():
            time.sleep(0.01)


class Commands(command_service_pb2_grpc.CommandServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def IngestPoints(
        self, request: command_service_pb2.IngestPointsRequest, context: grpc.ServicerContext
    ) -> command_service_pb2.IngestPointsResponse:
        self.recorder.record("IngestPoints", request, context)
        if request.points and request.points[0].value.price.value == "0":
            violation = ("points[0].value.price.value", "must be positive")
            status = rich_status(
                grpc.StatusCode.INVALID_ARGUMENT, ": ".join(violation), bad_request(violation)
            )
            context.abort_with_status(rpc_status.to_status(status))
        return command_service_pb2.IngestPointsResponse(
            commit_position=11, accepted=len(request.points), published=len(request.points)
        )

    def BulkIngest(
        self,
        requests: Iterator[command_service_pb2.IngestPointsRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[command_service_pb2.BulkIngestResponse]:
        """Each chunk answered in turn; a chunk whose first price is 0 is refused, and the
        stream goes on."""
        for position, request in enumerate(requests, start=1):
            self.recorder.record("BulkIngest", request, context)
            rows = len(request.columns.snap_time_micros)
            if request.columns.prices.unscaled[0] == 0:
                violation = ("columns.prices.unscaled[0]", "must be positive")
                yield command_service_pb2.BulkIngestResponse(
                    command_id=request.command_id,
                    error=rich_status(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        ": ".join(violation),
                        bad_request(violation),
                    ),
                )
                continue
            yield command_service_pb2.BulkIngestResponse(
                command_id=request.command_id,
                result=command_service_pb2.IngestPointsResponse(
                    commit_position=position, accepted=rows
                ),
            )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def address(recorder: Recorder) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # The scripted services implement only the methods these tests call (the others stay
    # abstract, and answer UNIMPLEMENTED).
    queries, commands = Queries(recorder), Commands(recorder)  # type: ignore[abstract]
    query_service_pb2_grpc.add_QueryServiceServicer_to_server(queries, server)
    command_service_pb2_grpc.add_CommandServiceServicer_to_server(commands, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def connect(address: str, identity: Identity) -> QisClient:
    return QisClient.connect(address, address, identity, timeout_s=10)


@pytest.fixture
def client(address: str) -> Iterator[QisClient]:
    with connect(address, User("alice")) as qis:
        yield qis


def test_a_range_is_read_across_pages_and_calls(client: QisClient, recorder: Recorder) -> None:
    values = list(client.query_range("R", page_size=2, min_position=5))
    assert [decimal_of(v) for v in values] == [Decimal(i) for i in range(RANGE_POINTS)]
    assert to_datetime(values[0].snap_time) == datetime(2024, 3, 1, 21, tzinfo=UTC)
    requests = recorder.requests("QueryRange")
    # 7 points by 2, two messages a call: the second call resumes at the 5th point.
    assert [r.page_token for r in requests] == ["", "4"]  # type: ignore[attr-defined]
    assert {r.min_position for r in requests} == {5}  # type: ignore[attr-defined]


def test_as_of_is_a_time_or_a_position(client: QisClient, recorder: Recorder) -> None:
    as_of = datetime(2024, 3, 2, tzinfo=UTC)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    list(client.query_range("R", page_size=10, as_of_time=as_of, start_time=start))
    list(client.query_range("series/R", page_size=10, as_of_position=3, end_time=as_of))
    by_time, by_position = recorder.requests("QueryRange")
    assert by_time == query_service_pb2.QueryRangeRequest(
        series="series/R",
        page_size=10,
        start_time=timestamp_pb2.Timestamp(seconds=1_709_251_200),
        as_of_time=timestamp_pb2.Timestamp(seconds=1_709_337_600),
    )
    assert by_position == query_service_pb2.QueryRangeRequest(
        series="series/R",
        page_size=10,
        end_time=timestamp_pb2.Timestamp(seconds=1_709_337_600),
        as_of_position=3,
    )
    with pytest.raises(ValueError, match="not both"):
        list(client.query_range("R", as_of_time=as_of, as_of_position=3))


def test_list_calls_follow_page_tokens(client: QisClient, recorder: Recorder) -> None:
    assert [s.name for s in client.list_series(page_size=2)] == CATALOGUE
    assert [r.page_token for r in recorder.requests("ListSeries")] == ["", "2", "4"]  # type: ignore[attr-defined]
    metrics = client.list_quality_metrics(
        "R", page_size=2, start_time=datetime(2024, 1, 1, tzinfo=UTC)
    )
    assert [m.expected_snaps for m in metrics] == list(range(WINDOWS))
    first, second = recorder.requests("ListQualityMetrics")
    assert first == query_service_pb2.ListQualityMetricsRequest(
        series="series/R", page_size=2, start_time=timestamp_pb2.Timestamp(seconds=1_704_067_200)
    )
    assert second.page_token == "2"  # type: ignore[attr-defined]


def test_a_history_is_put_together_from_its_pages(client: QisClient, recorder: Recorder) -> None:
    snap = datetime(2024, 3, 1, 16, tzinfo=ZoneInfo("America/New_York"))
    history = client.get_point_history("R", snap, page_size=3, min_position=4)
    requests = recorder.requests("GetPointHistory")
    # Seven items by three: three pages, each asked for with the previous page's token.
    assert [r.page_token for r in requests] == ["", "3", "6"]  # type: ignore[attr-defined]
    assert {r.snap_time.ToJsonString() for r in requests} == {"2024-03-01T21:00:00Z"}  # type: ignore[attr-defined]
    assert {(r.page_size, r.min_position) for r in requests} == {(3, 4)}  # type: ignore[attr-defined]
    # Every version and observation of every page, in commit order: versions stay ascending.
    assert [(v.version, v.record_position) for v in history.versions] == [(1, 2), (2, 5), (3, 6)]
    assert [o.record_position for o in history.observations] == [1, 3, 4, 7]
    assert history.observations[0].utc_offset == duration_pb2.Duration(seconds=-18_000)
    assert history.read_position == 11, "the least of the pages' read positions"
    assert history.next_page_token == ""


@pytest.mark.parametrize(
    ("options", "parent", "expected_filter"),
    [
        ({}, "series/-", "status = OPEN"),
        (
            {"series": "R", "rule": "jump", "severity": "error"},
            "series/R",
            "status = OPEN AND rule = JUMP AND severity = ERROR",
        ),
        (
            {"status": "any", "rule": "source_break"},
            "series/-",
            "rule = SOURCE_BREAK",
        ),
        (
            {
                "status": "Approved",
                "raised_before": datetime(2024, 3, 1, 16, tzinfo=ZoneInfo("America/New_York")),
            },
            "series/-",
            'status = APPROVED AND raise_time < "2024-03-01T21:00:00Z"',
        ),
        ({"status": "any"}, "series/-", ""),
    ],
)
def test_the_issue_filter_is_built_from_the_options(
    client: QisClient,
    recorder: Recorder,
    options: dict[str, object],
    parent: str,
    expected_filter: str,
) -> None:
    issues = list(client.list_quality_issues(**options))  # type: ignore[arg-type]
    assert [i.issue_id for i in issues] == ["i-1"], "paged on past an empty page"
    first, second = recorder.requests("ListQualityIssues")
    assert first == query_service_pb2.ListQualityIssuesRequest(
        parent=parent, filter=expected_filter
    )
    assert (second.parent, second.filter, second.page_token) == (parent, expected_filter, "more")  # type: ignore[attr-defined]


@pytest.mark.parametrize("rule", ["jump OR status = APPROVED", "jump'", '"jump"', "1st"])
def test_an_option_cannot_change_the_filter(
    client: QisClient, recorder: Recorder, rule: str
) -> None:
    with pytest.raises(ValueError, match="not the name of an enum value"):
        list(client.list_quality_issues(rule=rule))
    assert recorder.requests("ListQualityIssues") == []


def test_audit_entries_of_a_series_a_point_a_source_or_everything(
    client: QisClient, recorder: Recorder
) -> None:
    snap = datetime(2024, 3, 1, 21, 0, 0, 250_000, tzinfo=UTC)
    list(client.list_audit_entries("R", snap=snap))
    list(client.list_audit_entries("sources/bbg"))
    list(client.list_audit_entries())
    assert [(r.parent, r.filter) for r in recorder.requests("ListAuditEntries")] == [  # type: ignore[attr-defined]
        ("series/R", 'snap_time = "2024-03-01T21:00:00.250Z"'),
        ("sources/bbg", ""),
        ("-", ""),
    ]


def test_a_range_left_early_is_cancelled_on_the_server(
    client: QisClient, recorder: Recorder
) -> None:
    values = client.query_range("endless")
    next(values)
    values.close()  # type: ignore[attr-defined]
    assert recorder.cancelled.wait(5)


@pytest.mark.timeout(30)
def test_a_subscription_reconnects_from_its_resume_token(
    client: QisClient, recorder: Recorder
) -> None:
    with client.subscribe(["R"], after_position=9) as subscription:
        first, second = next(subscription), next(subscription)
        assert subscription.resume_token == "t2"
    assert [decimal_of(b.values[0]) for b in (first, second)] == [Decimal(0), Decimal(1)]
    opened, resumed = recorder.requests("Subscribe")
    assert opened == query_service_pb2.SubscribeRequest(series=["series/R"], after_position=9)
    assert resumed == query_service_pb2.SubscribeRequest(series=["series/R"], resume_token="t1")


@pytest.mark.timeout(30)
def test_a_subscription_cancelled_from_another_thread_ends(client: QisClient) -> None:
    subscription = client.subscribe(resume_token="t4")
    assert next(subscription).resume_token == "t5"
    threading.Timer(0.2, subscription.cancel).start()
    assert list(subscription) == []  # the live wait ends with the cancellation


def test_snaps_go_in_utc_with_the_offset_they_state(client: QisClient, recorder: Recorder) -> None:
    close = datetime(2024, 3, 1, 16, 0, 0, 123_456, tzinfo=ZoneInfo("America/New_York"))
    client.ingest("R", "bbg", {close: Decimal("5137.08")})
    (request,) = recorder.requests("IngestPoints")
    (point,) = request.points  # type: ignore[attr-defined]
    assert point.snap_time == timestamp_pb2.Timestamp(seconds=1_709_326_800, nanos=123_456_000)
    assert point.utc_offset == duration_pb2.Duration(seconds=-18_000)


def test_identity_travels_in_metadata(address: str, recorder: Recorder) -> None:
    with connect(address, User("alice")) as as_user:
        as_user.ingest("R", "bbg", {datetime(2024, 3, 1, 21, tzinfo=UTC): Decimal("1.5")})
    with connect(address, BearerToken(lambda: "signed.jwt")) as with_token:
        with_token.ingest("R", "bbg", [(datetime(2024, 3, 1, 21, tzinfo=UTC), Decimal("1.5"))])
    (_, first, user_md), (_, second, token_md) = recorder.calls
    assert user_md["x-qis-user"] == "alice"
    assert "authorization" not in user_md
    assert token_md["authorization"] == "Bearer signed.jwt"
    assert "x-qis-user" not in token_md
    assert first.points == second.points  # type: ignore[attr-defined]
    assert first.source == "sources/bbg"  # type: ignore[attr-defined]


def test_details_come_from_real_trailers(client: QisClient) -> None:
    with pytest.raises(InvalidArgument) as refused:
        client.ingest("R", "bbg", {datetime(2024, 3, 1, 21, tzinfo=UTC): Decimal(0)})
    assert [(v.field, v.description) for v in refused.value.field_violations] == [
        ("points[0].value.price.value", "must be positive")
    ]
    with pytest.raises(NotFound) as missing:
        client.get_values("nope", [datetime(2024, 3, 1, 21, tzinfo=UTC)])
    assert missing.value.resource is not None
    assert missing.value.resource.resource_name == "series/nope"


def test_a_columnar_range_is_read_across_pages_and_calls(
    client: QisClient, recorder: Recorder
) -> None:
    columns = client.query_range_columns("R", page_size=2, min_position=5)
    points = list(client.query_range("R", page_size=2, min_position=5))
    requests = recorder.requests("QueryRange")
    # The same pages and tokens as the per-point view, with view = COLUMNS asked for.
    assert [r.page_token for r in requests] == ["", "4", "", "4"]  # type: ignore[attr-defined]
    assert [r.view for r in requests[:2]] == [query_service_pb2.VALUE_VIEW_COLUMNS] * 2  # type: ignore[attr-defined]
    assert requests[2].view == query_service_pb2.VALUE_VIEW_UNSPECIFIED  # type: ignore[attr-defined]
    assert columns.decimals() == [decimal_of(v) for v in points]
    assert columns.snap_times() == [to_datetime(v.snap_time) for v in points]
    assert columns.versions == [v.version for v in points]
    assert columns.read_position == 14, "the least of the messages' read positions"


def test_columns_go_in_one_request_or_in_chunks(client: QisClient, recorder: Recorder) -> None:
    snaps = [datetime(2024, 3, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(MAX_ROWS + 2)]
    one = point_columns(snaps[:2], [Decimal("1.5"), "2"])
    client.ingest_columns("R", "bbg", one, command_id="c-1")
    (request,) = recorder.requests("IngestPoints")
    assert request == command_service_pb2.IngestPointsRequest(
        command_id="c-1", series="series/R", source="sources/bbg", columns=one
    )
    many = point_columns(snaps, Scaled([0, *range(1, MAX_ROWS + 2)], 2))
    with pytest.raises(ValueError, match="bulk_ingest"):
        client.ingest_columns("R", "bbg", many)
    answers = client.bulk_ingest("R", "bbg", many, command_id="load")
    chunks = recorder.requests("BulkIngest")
    assert [c.command_id for c in chunks] == ["load:0", "load:1"]  # type: ignore[attr-defined]
    assert [len(c.columns.snap_time_micros) for c in chunks] == [MAX_ROWS, 2]  # type: ignore[attr-defined]
    # One answer per chunk, in order; the refused one carries its status, the next goes on.
    assert [a.command_id for a in answers] == ["load:0", "load:1"]
    refused = error_from_status(answers[0].error)
    assert isinstance(refused, InvalidArgument)
    assert refused.field_violations[0].field == "columns.prices.unscaled[0]"
    assert answers[1].result.accepted == 2
