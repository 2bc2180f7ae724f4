"""Ticks in JSON, as WebSocket and REST feeds send them: objects with a symbol, a time and a
value under configured field names, mapped to raw values of the configured instruments.

A tick is taken in time order per symbol: one not newer than the latest of its symbol is a
replay (a server resending after a resume, a poll whose window overlaps the previous one) and is
dropped, counted in `replayed`. Other objects (acknowledgements, heartbeats, other symbols) are
ignored; a tick whose time cannot be read is counted in `malformed`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from qis_feeds.application.points import Number, RawValue, ValueKind

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class TimeUnit(StrEnum):
    SECONDS = "s"
    MILLISECONDS = "ms"
    MICROSECONDS = "us"
    RFC3339 = "rfc3339"


_US_PER = {TimeUnit.SECONDS: 1_000_000, TimeUnit.MILLISECONDS: 1_000, TimeUnit.MICROSECONDS: 1}


@dataclass(frozen=True, slots=True)
class TickInstrument:
    series_id: str
    symbol: str
    kind: ValueKind = ValueKind.PRICE


@dataclass(frozen=True, slots=True)
class TickFields:
    symbol_field: str = "s"
    time_field: str = "t"
    time_unit: TimeUnit = TimeUnit.MILLISECONDS
    value_field: str = "p"


class TickReader:
    def __init__(self, instruments: Sequence[TickInstrument], fields: TickFields) -> None:
        self._fields = fields
        self._by_symbol = {i.symbol: i for i in instruments}
        self.kinds: Mapping[str, ValueKind] = {i.series_id: i.kind for i in instruments}
        self.symbols = sorted(self._by_symbol)
        self._latest_us: dict[str, int] = {}
        self.last_value_us: dict[str, int] = {}
        self.replayed = 0
        self.malformed = 0

    def since_ms(self) -> int:
        """The time of the oldest of the latest ticks per symbol (0 before any): what a resume
        asks from, so that no symbol misses a tick."""
        return min(self._latest_us.values(), default=0) // 1_000

    def read(self, body: Any) -> Iterator[RawValue]:
        """The new ticks of a message: one tick object, or a list of them."""
        for tick in body if isinstance(body, list) else [body]:
            found = self._tick(tick)
            if found is None:
                continue
            at_us, raw = found
            latest = self._latest_us.get(raw.series_id)
            if latest is not None and at_us <= latest:
                self.replayed += 1
                continue
            self._latest_us[raw.series_id] = at_us
            self.last_value_us[raw.series_id] = time.time_ns() // 1000
            yield raw

    def _tick(self, tick: Any) -> tuple[int, RawValue] | None:
        fields = self._fields
        if not isinstance(tick, dict):
            return None
        instrument = self._by_symbol.get(str(tick.get(fields.symbol_field)))
        stamp, value = tick.get(fields.time_field), tick.get(fields.value_field)
        if instrument is None or stamp is None or value is None:
            return None
        try:
            at = _instant(stamp, fields.time_unit)
        except ValueError:
            self.malformed += 1
            return None
        number: Number = value if isinstance(value, Decimal | int | str) else str(value)
        at_us = at if isinstance(at, int) else (at - _EPOCH) // _MICROSECOND
        return at_us, RawValue(instrument.series_id, at, number)


def _instant(stamp: Any, unit: TimeUnit) -> int | datetime:
    """µs since the epoch, or the aware datetime RFC 3339 text states (its offset is kept)."""
    if unit is TimeUnit.RFC3339:
        moment = datetime.fromisoformat(str(stamp))
        if moment.utcoffset() is None:
            raise ValueError(f"{stamp!r} has no offset")
        return moment
    if isinstance(stamp, bool) or not isinstance(stamp, int | Decimal):
        raise ValueError(f"{stamp!r} is not a number of {unit}")
    return int(stamp * _US_PER[unit])
