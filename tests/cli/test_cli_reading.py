"""`qis query` / `qis subscribe` rendering: what a person reads must be the stored values."""

from __future__ import annotations

import io

import pytest
from google.protobuf import timestamp_pb2
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import values_pb2
from qis_cli.reading import parse_time, render_table, rows_of, value_text


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
            snap=snap,
            version=2,
            value=values_pb2.DataValue(price=values_pb2.Price(value="101.5", currency="USD")),
            quality_score=0.8,
            recorded_from=known,
            sources=["bbg", "lseg"],
            flags=["source_break"],
            reason="late source bbg",
            user="alice",
        )
    ]
    out = io.StringIO()
    render_table(rows_of(values), out)
    header, row = out.getvalue().splitlines()
    assert header.split()[:4] == ["snap", "value", "v", "quality"]
    assert row.split() == [
        "2024-03-01T21:00:00Z",
        "101.5",
        "USD",
        "2",
        "0.80",
        "2024-03-01T21:53:20Z",
        "bbg,lseg",
        "source_break",
        "late",
        "source",
        "bbg",
        "alice",
    ]


def test_an_empty_answer_says_so() -> None:
    out = io.StringIO()
    render_table([], out)
    assert out.getvalue().strip() == "(no official values)"
