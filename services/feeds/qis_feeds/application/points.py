"""Raw values as providers hand them over, and the points they become.

A provider knows its vendor's shapes, not the contract's: it hands over a RawValue (a series, a
time, a number or a bar). `normalise` makes it a Point the command API takes: an instant in
whole microseconds since the epoch with the offset the vendor stated, and decimal strings. A
value that cannot be one (NaN, infinity, a time without a zone, a bar for a price series) is
refused here with its reason, counted, and never sent: the service would reject it anyway, and
one bad tick must not cost a round trip.

Values stay exact: a Decimal, an int or a decimal string goes as written. A float is taken by
its shortest repr (what a vendor library that hands out floats meant, e.g. 0.1 and not
0.1000000000000000055511151231257827), since it is all that is left of the vendor's number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class ValueKind(StrEnum):
    """What a series holds, named like the data types of `qis define-series --type`."""

    PRICE = "price"
    VOLUME = "volume"
    OHLC_BAR = "ohlc_bar"


Number = Decimal | int | str | float


@dataclass(frozen=True, slots=True)
class RawBar:
    open: Number
    high: Number
    low: Number
    close: Number
    volume: Number | None = None


@dataclass(frozen=True, slots=True)
class RawValue:
    series_id: str
    time: datetime | int | str
    """An aware datetime; an int of microseconds since 1970-01-01T00:00:00Z; or RFC 3339 text
    with an offset."""
    value: Number | RawBar
    source_id: str | None = None
    """None: the feed's own source. A provider that speaks for several sources (the synthetic
    feed's disagreeing second source) names the other one here."""


@dataclass(frozen=True, slots=True)
class Point:
    series_id: str
    source_id: str
    kind: ValueKind
    snap_us: int
    offset_min: int
    values: tuple[str, ...]
    """Decimal strings: (value,) for a price or a volume; (open, high, low, close, volume) for
    a bar, the volume "" when the vendor gave none."""


class Malformed(ValueError):
    """A raw value that cannot become a point; the message says why."""


def decimal_text(value: Number, where: str) -> str:
    if isinstance(value, bool):
        raise Malformed(f"{where}: {value!r} is not a number")
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise Malformed(f"{where}: {value!r} is not a decimal")
        return value
    if isinstance(value, int):
        return str(value)
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else value
    except InvalidOperation:
        raise Malformed(f"{where}: {value!r} is not a number") from None
    if not number.is_finite():
        raise Malformed(f"{where}: {value} is not a finite number")
    # Plain notation, exactly: Decimal("1E+2") is 100, never 1E+2 on the wire.
    return format(number, "f")


def _instant(time: datetime | int | str) -> tuple[int, int]:
    """(microseconds since the epoch, offset in minutes) of a raw time."""
    if isinstance(time, bool):
        raise Malformed(f"time {time!r} is not an instant")
    if isinstance(time, int):
        return time, 0
    if isinstance(time, str):
        try:
            time = datetime.fromisoformat(time)
        except ValueError:
            raise Malformed(f"time {time!r} is not RFC 3339") from None
    offset = time.utcoffset()
    if offset is None:
        raise Malformed(f"time {time.isoformat()} has no time zone")
    # An offset with seconds (a local mean time) goes as UTC: the instant is what counts.
    minutes = 0 if offset % _MINUTE else offset // _MINUTE
    return (time - _EPOCH) // _MICROSECOND, minutes


def normalise(raw: RawValue, source_id: str, kind: ValueKind) -> Point:
    """The point a raw value is, or Malformed."""
    snap_us, offset_min = _instant(raw.time)
    value = raw.value
    if kind is ValueKind.OHLC_BAR:
        if not isinstance(value, RawBar):
            raise Malformed(f"{raw.series_id} holds OHLC bars, not {value!r}")
        values: tuple[str, ...] = (
            decimal_text(value.open, "open"),
            decimal_text(value.high, "high"),
            decimal_text(value.low, "low"),
            decimal_text(value.close, "close"),
            "" if value.volume is None else decimal_text(value.volume, "volume"),
        )
    elif isinstance(value, RawBar):
        raise Malformed(f"{raw.series_id} holds {kind} values, not OHLC bars")
    else:
        values = (decimal_text(value, "value"),)
    return Point(raw.series_id, raw.source_id or source_id, kind, snap_us, offset_min, values)
