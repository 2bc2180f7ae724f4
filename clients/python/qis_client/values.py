"""Python values <-> the contract's wire forms.

The contract carries decimals as strings, so that no value is ever rounded through a binary
float, and instants as google.protobuf.Timestamp (UTC); beside a point's snap, the UTC offset its
source stated travels as a google.protobuf.Duration (lineage: it never changes the instant).
These helpers keep Python code on `Decimal` and aware `datetime` at both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from google.protobuf import duration_pb2, timestamp_pb2
from qis.data.v1 import query_service_pb2, values_pb2

SERIES_COLLECTION = "series"
SOURCES_COLLECTION = "sources"


# --- decimals ---------------------------------------------------------------------------------


def decimal_text(value: Decimal | int) -> str:
    """The contract's decimal string of `value`, digits exactly as held by the Decimal.

    Floats are refused rather than converted: `Decimal(0.1)` is
    0.1000000000000000055511151231257827..., never what the caller meant. Positional notation
    (never "1E+3") keeps the number of decimal places visible, which the server bounds."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"a decimal value must be a Decimal or an int, not {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{number} is not a finite decimal: the contract has no NaN or infinity")
    return format(number, "f")


def parse_decimal(text: str) -> Decimal:
    """A decimal string of the contract as a Decimal (ValueError if it is not one)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal string") from None
    if not number.is_finite():
        raise ValueError(f"{text!r} is not a finite decimal")
    return number


def optional_decimal(text: str) -> Decimal | None:
    """For the fields the contract leaves empty when unknown (a bar's volume, a bid)."""
    return parse_decimal(text) if text else None


# --- instants ---------------------------------------------------------------------------------


def _aware(moment: datetime) -> timedelta:
    if not isinstance(moment, datetime):
        raise TypeError(f"an instant must be a datetime, not {type(moment).__name__}")
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(
            f"{moment.isoformat()} has no time zone: an instant needs one (tzinfo=UTC or a"
            " zoneinfo.ZoneInfo), or it would mean a different instant on every machine"
        )
    return offset


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """An aware datetime as a google.protobuf.Timestamp: a snap, a query bound, an as-of time.
    Whole microseconds, as the service requires of snaps: a datetime holds nothing finer."""
    _aware(moment)
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment)
    return message


def utc_offset(moment: datetime) -> duration_pb2.Duration:
    """The UTC offset an aware datetime states, as DataPoint.utc_offset: 16:00 EST is -05:00,
    -18,000 s. The contract's offsets are whole minutes, as RFC 3339's; a zone
    whose offset has seconds (local mean times before 1900) is sent as UTC rather than refused:
    the instant is the same, only that lineage is lost."""
    offset = _aware(moment)
    if offset % timedelta(minutes=1):
        offset = timedelta(0)
    message = duration_pb2.Duration()
    message.FromTimedelta(offset)
    return message


def to_datetime(
    message: timestamp_pb2.Timestamp, offset: duration_pb2.Duration | None = None
) -> datetime:
    """A google.protobuf.Timestamp as an aware datetime (microseconds: what the service
    stores), in UTC, or in a stated offset: `to_datetime(version.snap_time,
    observation.utc_offset)` is the snap as that source wrote it."""
    zone = UTC if offset is None else timezone(offset.ToTimedelta())
    return message.ToDatetime(tzinfo=zone)


# --- resource names ---------------------------------------------------------------------------


def resource_name(collection: str, id_or_name: str) -> str:
    """ "spx" or "series/spx" -> "series/spx": callers may hold either form."""
    prefix = f"{collection}/"
    return id_or_name if id_or_name.startswith(prefix) else prefix + id_or_name


def series_name(series: str) -> str:
    return resource_name(SERIES_COLLECTION, series)


def source_name(source: str) -> str:
    return resource_name(SOURCES_COLLECTION, source)


# --- values -----------------------------------------------------------------------------------


def price(value: Decimal | int, currency: str = "") -> values_pb2.DataValue:
    """A price; an empty currency means the series' unit."""
    return values_pb2.DataValue(
        price=values_pb2.Price(value=decimal_text(value), currency=currency)
    )


def volume(quantity: Decimal | int, unit: str = "") -> values_pb2.DataValue:
    """A volume; an empty unit means the series' unit."""
    return values_pb2.DataValue(
        volume=values_pb2.Volume(quantity=decimal_text(quantity), unit=unit)
    )


@dataclass(frozen=True, slots=True)
class Bar:
    """An OHLC bar in Decimals; `volume` is None when unknown."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None

    def to_value(self) -> values_pb2.DataValue:
        return values_pb2.DataValue(
            bar=values_pb2.OhlcBar(
                open=decimal_text(self.open),
                high=decimal_text(self.high),
                low=decimal_text(self.low),
                close=decimal_text(self.close),
                volume="" if self.volume is None else decimal_text(self.volume),
            )
        )


def _data_value(
    value: values_pb2.DataValue | query_service_pb2.OfficialValue,
) -> values_pb2.DataValue:
    return value.value if isinstance(value, query_service_pb2.OfficialValue) else value


def decimal_of(value: values_pb2.DataValue | query_service_pb2.OfficialValue) -> Decimal:
    """The number of a price or volume (of a DataValue, or of an OfficialValue's value)."""
    data = _data_value(value)
    kind = data.WhichOneof("kind")
    if kind == "price":
        return parse_decimal(data.price.value)
    if kind == "volume":
        return parse_decimal(data.volume.quantity)
    raise TypeError(f"a {kind or 'empty'} value is not one number: use bar_of or read the message")


def bar_of(value: values_pb2.DataValue | query_service_pb2.OfficialValue) -> Bar:
    data = _data_value(value)
    if data.WhichOneof("kind") != "bar":
        raise TypeError(f"a {data.WhichOneof('kind') or 'empty'} value is not an OHLC bar")
    bar = data.bar
    return Bar(
        parse_decimal(bar.open),
        parse_decimal(bar.high),
        parse_decimal(bar.low),
        parse_decimal(bar.close),
        optional_decimal(bar.volume),
    )


Value = Decimal | int | Bar | values_pb2.DataValue
"""What a point's value may be given as: a bare number is a price, a Bar an OHLC bar; any other
data type as its DataValue message (price(), volume() build them)."""


def data_value(value: Value) -> values_pb2.DataValue:
    if isinstance(value, values_pb2.DataValue):
        return value
    if isinstance(value, Bar):
        return value.to_value()
    return price(value)


def data_point(snap: datetime, value: Value) -> values_pb2.DataPoint:
    """A point of an ingestion: `snap` (an aware datetime) as its snap_time, and the offset the
    datetime states as its utc_offset, so that the service keeps what the source said:
    16:00-05:00 is sent as snap_time 21:00Z with utc_offset -18,000 s."""
    return values_pb2.DataPoint(
        snap_time=timestamp(snap), utc_offset=utc_offset(snap), value=data_value(value)
    )
