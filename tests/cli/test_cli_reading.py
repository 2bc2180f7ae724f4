"""`qis query` / `qis subscribe` rendering: what a person reads must be the stored values; and
the definition lookup of `qis ingest` and `qis evolve-series`."""

from __future__ import annotations

import io

import grpc
import pytest
from google.protobuf import timestamp_pb2
from qis.data.v1 import quality_pb2, series_pb2, values_pb2
from qis.data.v1 import query_service_pb2 as q
from qis_cli.reading import (
    get_series,
    history,
    parse_time,
    query,
    render_table,
    rows_of,
    value_text,
)


def test_parse_time_needs_an_offset_and_takes_bare_dates_as_utc_midnight() -> None:
    assert parse_time("2024-03-01").ToJsonString() == "2024-03-01T00:00:00Z"
    assert parse_time("2024-03-01T16:00:00-05:00").ToJsonString() == "2024-03-01T21:00:00Z"
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2024-03-01T16:00:00")


def test_values_render_exactly_as_stored() -> None:
    price = values_pb2.DataValue(
        price=values_pb2.Price(value="0.1000000000000000055", currency="USD")
    )
    bar = values_pb2.DataValue(bar=values_pb2.OhlcBar(open="1", high="2", low="0.5", close="1.5"))
    assert value_text(price) == "0.1000000000000000055 USD"
    assert value_text(bar) == "O 1 H 2 L 0.5 C 1.5"


def test_table_lists_versions_with_reason_and_user() -> None:
    snap = timestamp_pb2.Timestamp(seconds=1_709_326_800)
    known = timestamp_pb2.Timestamp(seconds=1_709_330_000)
    values = [
        q.OfficialValue(
            snap_time=snap,
            version=2,
            value=values_pb2.DataValue(price=values_pb2.Price(value="101.5", currency="USD")),
            quality_score=0.8,
            record_time=known,
            sources=["sources/bbg", "sources/lseg"],
            method=q.VALUE_METHOD_MEDIAN,
            flags=[quality_pb2.QUALITY_RULE_SOURCE_BREAK, quality_pb2.QUALITY_RULE_JUMP],
            reason="late source bbg",
            user="alice",
        ),
        # A manual value has no sources; a rule newer than this client shows as its number.
        q.OfficialValue(
            snap_time=snap,
            version=3,
            value=values_pb2.DataValue(price=values_pb2.Price(value="101.4", currency="USD")),
            quality_score=1.0,
            record_time=known,
            method=q.VALUE_METHOD_MANUAL,
            flags=[99],  # type: ignore[list-item]
            reason="restated",
            user="bob",
        ),
    ]
    out = io.StringIO()
    render_table(rows_of(values), out)
    header, row, manual = out.getvalue().splitlines()
    assert header.split()[:7] == ["snap", "value", "v", "quality", "known", "since", "method"]
    assert row.split() == [
        "2024-03-01T21:00:00Z",
        "101.5",
        "USD",
        "2",
        "0.80",
        "2024-03-01T21:53:20Z",
        "median",
        "bbg,lseg",
        "source_break,jump",
        "late",
        "source",
        "bbg",
        "alice",
    ]
    assert manual.split()[6:] == ["manual", "99", "restated", "bob"]


def test_an_empty_answer_says_so() -> None:
    out = io.StringIO()
    render_table([], out)
    assert out.getvalue().strip() == "(no official values)"


# The grpc stubs type details() and trailing_metadata() differently on RpcError and on Call,
# yet what a sync stub raises is both.
class _Failure(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed call with its code."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class _Definitions:
    """GetSeries answering NOT_FOUND `misses` times (a read model behind), then the series."""

    def __init__(self, misses: int, error: grpc.StatusCode = grpc.StatusCode.NOT_FOUND) -> None:
        self.calls = 0
        self._misses = misses
        self._error = error

    def GetSeries(self, request: q.GetSeriesRequest, metadata: object) -> series_pb2.Series:
        self.calls += 1
        if self.calls <= self._misses:
            raise _Failure(self._error)  # type: ignore[abstract]  # only code() is called
        return series_pb2.Series(name=request.name, data_type=values_pb2.DATA_TYPE_VOLUME)


def test_a_series_not_projected_yet_is_asked_for_again() -> None:
    stub = _Definitions(misses=2)
    found = get_series(stub, "x", (), wait_s=5.0)  # type: ignore[arg-type]
    assert (found.name, found.data_type, stub.calls) == ("series/x", values_pb2.DATA_TYPE_VOLUME, 3)


def test_not_found_after_the_wait_and_other_errors_at_once() -> None:
    stub = _Definitions(misses=1_000)
    with pytest.raises(grpc.RpcError):
        get_series(stub, "x", (), wait_s=0.3)  # type: ignore[arg-type]
    assert 2 <= stub.calls <= 5
    denied = _Definitions(misses=1, error=grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(grpc.RpcError):
        get_series(denied, "x", (), wait_s=5.0)  # type: ignore[arg-type]
    assert denied.calls == 1


class _Pages:
    """QueryRange that streams two points per call and continues by token, as the query
    service does past its per-call cap."""

    def __init__(self, calls: int) -> None:
        self.tokens: list[str] = []
        self._calls = calls

    def QueryRange(
        self, request: q.QueryRangeRequest, metadata: object
    ) -> list[q.QueryRangeResponse]:
        self.tokens.append(request.page_token)
        call = len(self.tokens)
        values = [
            q.OfficialValue(
                snap_time=timestamp_pb2.Timestamp(seconds=call * 10 + i),
                version=1,
                value=values_pb2.DataValue(price=values_pb2.Price(value=f"{call}.{i}")),
            )
            for i in range(2)
        ]
        token = f"after-{call}" if call < self._calls else ""
        return [q.QueryRangeResponse(values=values, next_page_token=token)]


def test_query_follows_next_page_token_to_the_end_of_the_range() -> None:
    stub = _Pages(calls=3)
    request = q.QueryRangeRequest(series="series/x", page_size=2)
    rows = query(stub, request, ())  # type: ignore[arg-type]
    assert stub.tokens == ["", "after-1", "after-2"]
    assert [row[1].strip() for row in rows] == ["1.0", "1.1", "2.0", "2.1", "3.0", "3.1"]
    assert request.page_token == ""  # the caller's request is left as it was


class _History:
    """GetPointHistory paging a point's five versions two items a page, with observations in
    between, as the query service pages by commit position."""

    def __init__(self) -> None:
        self.requests: list[q.GetPointHistoryRequest] = []

    def GetPointHistory(
        self, request: q.GetPointHistoryRequest, metadata: object
    ) -> q.GetPointHistoryResponse:
        self.requests.append(request)
        page = len(self.requests)
        versions = [
            q.OfficialValue(
                snap_time=request.snap_time,
                version=version,
                value=values_pb2.DataValue(price=values_pb2.Price(value=f"{version}.0")),
            )
            for version in (2 * page - 1, 2 * page)
            if version <= 5
        ]
        return q.GetPointHistoryResponse(
            versions=versions,
            observations=[q.SourceObservation(source="sources/a")],
            next_page_token=f"p{page}" if page < 3 else "",
        )


def test_a_history_is_read_through_every_page() -> None:
    stub = _History()
    request = q.GetPointHistoryRequest(
        series="series/x", snap_time=parse_time("2024-03-01T16:00:00-05:00")
    )
    rows = history(stub, request, ())  # type: ignore[arg-type]
    assert [r.page_token for r in stub.requests] == ["", "p1", "p2"]
    assert {r.snap_time.ToJsonString() for r in stub.requests} == {"2024-03-01T21:00:00Z"}
    assert [(row[2], row[1].strip()) for row in rows] == [
        ("1", "1.0"),
        ("2", "2.0"),
        ("3", "3.0"),
        ("4", "4.0"),
        ("5", "5.0"),
    ]
    assert request.page_token == ""
