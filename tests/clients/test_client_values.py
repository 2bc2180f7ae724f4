"""qis_client.values: Decimal and aware datetime in, the contract's strings and timestamps out,
and back, with nothing rounded, no instant left to a machine's time zone, and the offset a
datetime states kept as the point's utc_offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from qis.data.v1 import query_service_pb2, values_pb2
from qis_client import (
    Bar,
    bar_of,
    data_point,
    decimal_of,
    decimal_text,
    optional_decimal,
    parse_decimal,
    price,
    series_name,
    source_name,
    timestamp,
    to_datetime,
    utc_offset,
    volume,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("101.25"), "101.25"),
        (Decimal("101.250"), "101.250"),  # places as given: the server bounds and keeps them
        (Decimal("-0.5"), "-0.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("999999999999999999.999999999999999999"), "999999999999999999.999999999999999999"),
        (42, "42"),
    ],
)
def test_decimal_text_is_positional_and_exact(value: Decimal | int, text: str) -> None:
    assert decimal_text(value) == text
    assert parse_decimal(text) == Decimal(value)


@pytest.mark.parametrize("value", [0.1, True, "1.5"])
def test_decimal_text_refuses_what_is_not_a_decimal(value: object) -> None:
    with pytest.raises(TypeError):
        decimal_text(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN")])
def test_decimal_text_refuses_non_finite_values(value: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        decimal_text(value)


@pytest.mark.parametrize("text", ["", "1,015.25", "NaN", "Infinity", "abc"])
def test_parse_decimal_refuses_what_the_contract_never_sends(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        parse_decimal(text)


def test_optional_decimal_reads_empty_as_unknown() -> None:
    assert optional_decimal("") is None
    assert optional_decimal("12.50") == Decimal("12.50")


NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("moment", "utc", "offset_s"),
    [
        (datetime(2024, 3, 1, 16, tzinfo=NEW_YORK), "2024-03-01T21:00:00Z", -18_000),
        (datetime(2024, 3, 15, 16, tzinfo=NEW_YORK), "2024-03-15T20:00:00Z", -14_400),
        (datetime(2024, 3, 1, 21, tzinfo=UTC), "2024-03-01T21:00:00Z", 0),
        (datetime(2024, 3, 1, 21, 0, 0, 5, tzinfo=UTC), "2024-03-01T21:00:00.000005Z", 0),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z", 0),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "9999-12-31T23:59:59.999999Z", 0),
        (
            datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2024-01-01T00:00:00Z",
            19_800,
        ),
        (
            datetime(2024, 1, 1, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
            "2024-01-01T23:59:00Z",
            -86_340,
        ),
        # Amsterdam's local mean time was +00:19:32: offsets are whole minutes, so this one is
        # sent as UTC; the instant is the same.
        (datetime(1900, 1, 1, 12, tzinfo=ZoneInfo("Europe/Amsterdam")), "1900-01-01T11:40:28Z", 0),
    ],
)
def test_a_point_keeps_the_instant_in_utc_and_the_offset_stated(
    moment: datetime, utc: str, offset_s: int
) -> None:
    point = data_point(moment, Decimal(1))
    assert point.snap_time.ToJsonString() == utc
    assert point.utc_offset == duration_pb2.Duration(seconds=offset_s)
    assert point.snap_time == timestamp(moment)
    assert point.utc_offset == utc_offset(moment)
    # Read back in the offset it was sent with: the same instant, as the source wrote it.
    back = to_datetime(point.snap_time, point.utc_offset)
    assert back == moment
    assert back.utcoffset() == timedelta(seconds=offset_s)


def test_snaps_are_whole_microseconds() -> None:
    """A datetime holds nothing finer than a microsecond, so a snap is never truncated on the
    way: nanos are always a multiple of 1,000, as the service requires."""
    moment = datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert timestamp(moment) == timestamp_pb2.Timestamp(seconds=-1, nanos=999_999_000)
    assert to_datetime(timestamp(moment)) == moment


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2024, 3, 1, 16)
    with pytest.raises(ValueError, match="no time zone"):
        timestamp(naive)
    with pytest.raises(ValueError, match="no time zone"):
        utc_offset(naive)
    with pytest.raises(ValueError, match="no time zone"):
        data_point(naive, Decimal(1))


def test_timestamps_round_trip_to_aware_utc_datetimes() -> None:
    moment = datetime(2024, 3, 1, 16, 0, 0, 123456, tzinfo=NEW_YORK)
    message = timestamp(moment)
    assert message == timestamp_pb2.Timestamp(seconds=1_709_326_800, nanos=123_456_000)
    back = to_datetime(message)
    assert back == moment
    assert back.tzinfo is UTC


def test_values_in_decimals_out() -> None:
    assert price(Decimal("5137.08"), "USD") == values_pb2.DataValue(
        price=values_pb2.Price(value="5137.08", currency="USD")
    )
    assert decimal_of(price(Decimal("5137.08"))) == Decimal("5137.08")
    assert decimal_of(volume(Decimal("1200"), "shares")) == Decimal("1200")
    official = query_service_pb2.OfficialValue(value=price(Decimal("-0.25")))
    assert decimal_of(official) == Decimal("-0.25")

    bar = Bar(Decimal("10"), Decimal("12.5"), Decimal("9.75"), Decimal("11"))
    assert bar_of(bar.to_value()) == bar
    assert bar.to_value().bar.volume == ""
    with pytest.raises(TypeError, match="bar"):
        decimal_of(bar.to_value())
    with pytest.raises(TypeError, match="price"):
        bar_of(price(1))


def test_data_points_take_numbers_bars_or_messages() -> None:
    snap = datetime(2024, 3, 1, 21, tzinfo=UTC)
    assert data_point(snap, Decimal("1.5")) == values_pb2.DataPoint(
        snap_time=timestamp_pb2.Timestamp(seconds=1_709_326_800),
        utc_offset=duration_pb2.Duration(),
        value=price(Decimal("1.5")),
    )
    assert data_point(snap, volume(7)).value.volume.quantity == "7"
    assert data_point(snap, Bar(*(Decimal(n) for n in "4231"))).value.bar.low == "3"


def test_resource_names_accept_ids_and_names() -> None:
    assert series_name("SPX.CLOSE") == series_name("series/SPX.CLOSE") == "series/SPX.CLOSE"
    assert source_name("bbg") == source_name("sources/bbg") == "sources/bbg"
