"""IEX HIST files: the IEX exchange's own captures of its TOPS (or DEEP) feed, one pcap(-ng)
file a day, usually gzip-compressed, mapped to price, volume, bid and ask points.

IEX Cloud, IEX's data API, was shut down by IEX on 2024-08-31: there is no IEX API to connect
to. The exchange still publishes these files; this provider reads them (adapters.pcap,
adapters.iex_tops), it does not download them.

Mapping, per instrument (a symbol and the field it feeds):
- `price` and `volume`: Trade Reports. The service takes one value per snap, and snaps are whole
  microseconds while IEX stamps nanoseconds, so the trades of one symbol in one microsecond
  become one price point (the last of them, in sequence order) and one volume point (the sum of
  their sizes). Prices stay exact: the int64 with 4 implied decimals becomes a 4-decimal string.
- `bid` and `ask`: Quote Updates, a point when that side's price changes (the last update of a
  microsecond counts); a side without a price (0, or the symbol not available) gives no point
  and the next price on that side is a change again.
- Trade Breaks: a broken trade is never sent. A HIST file is a whole day, so the file is read
  twice: first for the trade ids that breaks name (and to find a damaged file before anything
  is sent), then for the values, leaving broken trades out (counted in `broken`). A break can
  come hours after its trade, so no single pass could know.
- A damaged file (cut short, a packet the capture truncated, a malformed segment) fails the
  load in the first read, naming the byte offset, and nothing of that load is sent: a partial
  day would be a silent gap, and a break later in the lost part could not be seen. The earlier
  files of a load with several files are read (and sent) as a whole before a later one is.

Files are read in a worker thread, a batch of values at a time, so the event loop (the sender,
the health endpoint, other feeds) keeps running while a large file is parsed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from qis_feeds.adapters.calls import CallStats
from qis_feeds.adapters.iex_tops import (
    QUOTE_UNAVAILABLE,
    QUOTE_UPDATE,
    TRADE_BREAK,
    TRADE_REPORT,
    Quote,
    TopsStats,
    Trade,
    messages,
)
from qis_feeds.adapters.pcap import CaptureError, CaptureStats, udp_datagrams
from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BATCH = 4096
"""Values parsed per trip to the worker thread: large enough that the trips cost little."""


class IexField(StrEnum):
    PRICE = "price"
    VOLUME = "volume"
    BID = "bid"
    ASK = "ask"


_KINDS = {
    IexField.PRICE: ValueKind.PRICE,
    IexField.VOLUME: ValueKind.VOLUME,
    IexField.BID: ValueKind.PRICE,
    IexField.ASK: ValueKind.PRICE,
}


@dataclass(frozen=True, slots=True)
class IexInstrument:
    series_id: str
    symbol: str
    field: IexField = IexField.PRICE


@dataclass
class IexHistStats:
    """What the latest read found, beside the values it handed over."""

    capture: CaptureStats = field(default_factory=CaptureStats)
    tops: TopsStats = field(default_factory=TopsStats)
    unmapped: int = 0
    """Trades and quotes of symbols no instrument maps."""
    broken: int = 0
    """Trades of mapped symbols left out because a Trade Break named them."""
    no_quote: int = 0
    """Quote sides without a price (none, or the symbol not available): no point."""
    unchanged: int = 0
    """Quote sides whose price did not change: no point."""
    outside: int = 0
    """Points outside the time range asked for."""

    def summary(self) -> str:
        return (
            f"packets {self.capture.packets:,} (not UDP {self.capture.skipped:,});"
            f" {self.tops.summary()}; not mapped {self.unmapped:,}, broken trades left out"
            f" {self.broken:,}, quote sides without a price {self.no_quote:,}, unchanged"
            f" {self.unchanged:,}, outside the range {self.outside:,}"
        )


def price_text(raw: int) -> Decimal:
    """The exact value of a TOPS price (int64, 4 implied decimals)."""
    return Decimal(raw).scaleb(-4)


def broken_trades(path: Path) -> frozenset[int]:
    """Trade ids the file's Trade Breaks name; reading the file whole finds damage too."""
    found = messages(udp_datagrams(path, CaptureStats()), TopsStats(), frozenset({TRADE_BREAK}))
    return frozenset(message.trade_id for message in found if isinstance(message, Trade))


@dataclass
class _Group:
    """The trades of one symbol in one microsecond, or its latest quote in one."""

    snap_us: int
    price: int = 0
    shares: int = 0
    quote: Quote | None = None


class _Mapper:
    def __init__(
        self, instruments: Sequence[IexInstrument], start_us: int, end_us: int, stats: IexHistStats
    ) -> None:
        self._by_symbol: dict[str, list[IexInstrument]] = {}
        for instrument in instruments:
            self._by_symbol.setdefault(instrument.symbol, []).append(instrument)
        self._start_us = start_us
        self._end_us = end_us
        self._stats = stats
        self._trades: dict[str, _Group] = {}
        self._quotes: dict[str, _Group] = {}
        self._sides: dict[str, int | None] = {}
        fields = {i.field for i in instruments}
        wanted = set()
        if fields & {IexField.PRICE, IexField.VOLUME}:
            wanted.add(TRADE_REPORT)
        if fields & {IexField.BID, IexField.ASK}:
            wanted.add(QUOTE_UPDATE)
        self.wanted = frozenset(wanted)

    def read(self, path: Path) -> Iterator[RawValue]:
        try:
            yield from self._read(path)
        except CaptureError as error:
            raise CaptureError(f"{path}: {error}") from None

    def _read(self, path: Path) -> Iterator[RawValue]:
        broken = broken_trades(path)
        stats = self._stats
        for message in messages(udp_datagrams(path, stats.capture), stats.tops, self.wanted):
            if message.symbol not in self._by_symbol:
                stats.unmapped += 1
                continue
            snap_us = message.time_ns // 1000
            if isinstance(message, Trade):
                if message.trade_id in broken:
                    stats.broken += 1
                    continue
                group = self._trades.get(message.symbol)
                if group is None or group.snap_us != snap_us:
                    if group is not None:
                        yield from self._trade_values(message.symbol, group)
                    group = self._trades[message.symbol] = _Group(snap_us)
                group.price = message.price
                group.shares += message.size
            else:
                group = self._quotes.get(message.symbol)
                if group is not None and group.snap_us != snap_us:
                    yield from self._quote_values(message.symbol, group)
                self._quotes[message.symbol] = _Group(snap_us, quote=message)

    def flush(self) -> Iterator[RawValue]:
        for symbol, group in sorted(self._trades.items()):
            yield from self._trade_values(symbol, group)
        for symbol, group in sorted(self._quotes.items()):
            yield from self._quote_values(symbol, group)
        self._trades.clear()
        self._quotes.clear()

    def _inside(self, snap_us: int) -> bool:
        if self._start_us <= snap_us < self._end_us:
            return True
        self._stats.outside += 1
        return False

    def _trade_values(self, symbol: str, group: _Group) -> Iterator[RawValue]:
        for instrument in self._by_symbol[symbol]:
            if instrument.field is IexField.PRICE and self._inside(group.snap_us):
                yield RawValue(instrument.series_id, group.snap_us, price_text(group.price))
            elif instrument.field is IexField.VOLUME and self._inside(group.snap_us):
                yield RawValue(instrument.series_id, group.snap_us, group.shares)

    def _quote_values(self, symbol: str, group: _Group) -> Iterator[RawValue]:
        quote = group.quote
        assert quote is not None
        for instrument in self._by_symbol[symbol]:
            if instrument.field is IexField.BID:
                price = quote.bid_price
            elif instrument.field is IexField.ASK:
                price = quote.ask_price
            else:
                continue
            if price == 0 or quote.flags & QUOTE_UNAVAILABLE:
                self._stats.no_quote += 1
                self._sides[instrument.series_id] = None
            elif self._sides.get(instrument.series_id) == price:
                self._stats.unchanged += 1
            else:
                self._sides[instrument.series_id] = price
                if self._inside(group.snap_us):
                    yield RawValue(instrument.series_id, group.snap_us, price_text(price))


def hist_values(
    paths: Sequence[Path],
    instruments: Sequence[IexInstrument],
    start_us: int,
    end_us: int,
    stats: IexHistStats,
) -> Iterator[RawValue]:
    """The values of `instruments` in the files, in file order (synchronous: CPU work)."""
    mapper = _Mapper(instruments, start_us, end_us, stats)
    for path in paths:
        yield from mapper.read(path)
        yield from mapper.flush()


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _take(values: Iterator[RawValue]) -> list[RawValue]:
    return list(itertools.islice(values, _BATCH))


class IexHistProvider:
    name = "iex-hist"

    def __init__(self, instruments: Sequence[IexInstrument], files: Sequence[Path]) -> None:
        if not files:
            raise ValueError("an IEX HIST feed needs at least one file")
        series = [i.series_id for i in instruments]
        if not series or len(set(series)) != len(series):
            raise ValueError("each instrument needs a series of its own")
        self._instruments = tuple(instruments)
        self._files = tuple(files)
        self.kinds: Mapping[str, ValueKind] = {i.series_id: _KINDS[i.field] for i in instruments}
        self.stats = IexHistStats()
        self._calls = CallStats()
        self._last_value_us: dict[str, int] = {}

    async def connect(self) -> None:
        missing = [str(path) for path in self._files if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"IEX HIST file(s) not found: {', '.join(missing)}")

    async def close(self) -> None:
        return None

    async def get_health(self) -> ProviderHealth:
        return self._calls.health(not self._calls.last_error, self._last_value_us)

    def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        wanted = set(request.series_ids or self.kinds)
        unknown = wanted - set(self.kinds)
        if unknown:
            raise ValueError(f"{', '.join(sorted(unknown))}: not a series of this IEX HIST feed")
        instruments = [i for i in self._instruments if i.series_id in wanted]
        return self._read(instruments, _us(request.start), _us(request.end))

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        """A file has no live values: its values for the series, once, then nothing more."""
        instruments = [i for i in self._instruments if i.series_id == series_id]
        async for value in self._read(instruments, 0, 2**63 - 1):
            yield value
        await asyncio.Event().wait()

    async def _read(
        self, instruments: Sequence[IexInstrument], start_us: int, end_us: int
    ) -> AsyncIterator[RawValue]:
        self.stats = IexHistStats()
        self._calls.started()
        values = hist_values(self._files, instruments, start_us, end_us, self.stats)
        try:
            while batch := await asyncio.to_thread(_take, values):
                now_us = time.time_ns() // 1000
                for value in batch:
                    self._last_value_us[value.series_id] = now_us
                    yield value
        except (CaptureError, OSError) as error:
            self._calls.failed(str(error))
            raise
        # A read goes at the pace of the feed that takes its values: its duration is not timed.
        self._calls.succeeded(None)
