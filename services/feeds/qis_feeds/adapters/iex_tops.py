"""IEX-TP 1.25 segments and the TOPS 1.6 messages they carry, as IEX's public specifications
lay them out (all integers little-endian).

IEX-TP segment (one per UDP datagram): a 40-byte header — version (1 byte, 1), reserved (1),
message protocol id (2: 0x8003 TOPS, 0x8004 DEEP), channel id (4), session id (4), payload
length (2), message count (2), stream offset (8), first message sequence number (8), send time
(8) — then `message count` messages, each a 2-byte length and that many bytes. A segment without
messages is a heartbeat.

TOPS messages read here (type byte first; timestamps are int64 nanoseconds since the epoch,
UTC; prices int64 fixed point with 4 implied decimals; symbols 8 ASCII bytes padded with
spaces):
- Quote Update 'Q' (0x51, 42 bytes): flags (0x80 symbol not available, 0x40 outside the regular
  session), timestamp, symbol, bid size (uint32), bid price, ask price, ask size (uint32);
- Trade Report 'T' (0x54, 38 bytes): sale condition flags, timestamp, symbol, size (uint32),
  price, trade id (int64);
- Trade Break 'B' (0x42, 38 bytes): the layout of a trade report, naming the trade broken.
DEEP carries trade reports and breaks in the same layout. The other messages of the
specifications are counted by type and skipped, and so is a type the specifications do not
name (IEX may add some: the length prefix says how far to skip).

Sequence numbers make a capture's defects visible rather than silent: per (protocol, channel,
session), messages already seen (a packet captured twice) are dropped and counted as
duplicates, and a jump forward counts the messages missing.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from qis_feeds.adapters.pcap import CaptureError, Datagram

TOPS, DEEP = 0x8003, 0x8004
_HEADER = struct.Struct("<BBHIIHHQQq")
_LENGTH = struct.Struct("<H")
_TRADE = struct.Struct("<xBq8sIqq")  # type, flags, timestamp, symbol, size, price, trade id
_QUOTE = struct.Struct("<xBq8sIqqI")  # type, flags, timestamp, symbol, bid size/px, ask px/size
TRADE_REPORT, TRADE_BREAK, QUOTE_UPDATE = 0x54, 0x42, 0x51
SPECIFIED = frozenset(b"SDHIOPQTXBA" + b"E85")
"""Message types of TOPS 1.6 (and DEEP's security event and price levels): skipped without
being called unknown."""
QUOTE_UNAVAILABLE = 0x80


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    time_ns: int
    size: int
    price: int
    """Fixed point, 4 implied decimals."""
    trade_id: int
    flags: int
    broken: bool = False
    """A Trade Break naming `trade_id` (same layout as the report)."""


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    time_ns: int
    flags: int
    bid_size: int
    bid_price: int
    ask_price: int
    ask_size: int


Message = Trade | Quote


@dataclass
class TopsStats:
    segments: int = 0
    messages: int = 0
    trades: int = 0
    breaks: int = 0
    quotes: int = 0
    other: Counter[str] = field(default_factory=Counter)
    """Specified messages not mapped here, by type letter."""
    unknown: Counter[int] = field(default_factory=Counter)
    """Types the specifications do not name, by type byte."""
    not_iex: int = 0
    """UDP datagrams that are not IEX-TP TOPS/DEEP segments (other protocols on the capture)."""
    duplicates: int = 0
    missing: int = 0

    def summary(self) -> str:
        other = ", ".join(f"{k} {v:,}" for k, v in sorted(self.other.items())) or "none"
        unknown = ", ".join(f"0x{k:02x} {v:,}" for k, v in sorted(self.unknown.items()))
        return (
            f"segments {self.segments:,}, messages {self.messages:,}: trades {self.trades:,},"
            f" trade breaks {self.breaks:,}, quotes {self.quotes:,}, other ({other}),"
            f" unknown ({unknown or 'none'}); duplicate messages {self.duplicates:,},"
            f" missing {self.missing:,}, datagrams not IEX-TP {self.not_iex:,}"
        )


def messages(
    datagrams: Iterable[Datagram], stats: TopsStats, wanted: frozenset[int]
) -> Iterator[Message]:
    """Decoded messages of the types in `wanted` (TRADE_REPORT, TRADE_BREAK, QUOTE_UPDATE), in
    sequence order; every message is counted in `stats` whether wanted or not."""
    expected: dict[tuple[int, int, int], int] = {}
    for datagram in datagrams:
        payload = datagram.payload
        if len(payload) < _HEADER.size:
            stats.not_iex += 1
            continue
        version, _, protocol, channel, session, length, count, _, first, _ = _HEADER.unpack_from(
            payload
        )
        if version != 1 or protocol not in (TOPS, DEEP):
            stats.not_iex += 1
            continue
        if len(payload) != _HEADER.size + length:
            raise CaptureError(
                f"byte {datagram.offset}: an IEX-TP segment says {length} payload bytes and"
                f" carries {len(payload) - _HEADER.size}"
            )
        stats.segments += 1
        stream = (protocol, channel, session)
        # The first segment of a stream sets where it starts: a capture may begin mid-session.
        skip = max(0, expected.get(stream, first) - first)
        if first > expected.get(stream, first):
            stats.missing += first - expected[stream]
        expected[stream] = max(expected.get(stream, first), first + count)
        yield from _segment(payload, datagram.offset, count, skip, stats, wanted)


def _segment(
    payload: bytes, offset: int, count: int, skip: int, stats: TopsStats, wanted: frozenset[int]
) -> Iterator[Message]:
    position = _HEADER.size
    for index in range(count):
        if position + 2 > len(payload):
            raise CaptureError(f"byte {offset}: message {index + 1} of {count} is missing")
        (size,) = _LENGTH.unpack_from(payload, position)
        start = position + 2
        position = start + size
        if size == 0 or position > len(payload):
            raise CaptureError(
                f"byte {offset}: message {index + 1} of {count} claims {size} bytes,"
                f" {len(payload) - start} left"
            )
        if index < skip:
            stats.duplicates += 1
            continue
        stats.messages += 1
        kind = payload[start]
        if kind in (TRADE_REPORT, TRADE_BREAK):
            if size < _TRADE.size:
                raise CaptureError(f"byte {offset}: a trade message of {size} bytes (38 needed)")
            if kind == TRADE_REPORT:
                stats.trades += 1
            else:
                stats.breaks += 1
            if kind in wanted:
                flags, time_ns, symbol, shares, price, trade_id = _TRADE.unpack_from(payload, start)
                yield Trade(
                    _symbol(symbol), time_ns, shares, price, trade_id, flags, kind == TRADE_BREAK
                )
        elif kind == QUOTE_UPDATE:
            if size < _QUOTE.size:
                raise CaptureError(f"byte {offset}: a quote update of {size} bytes (42 needed)")
            stats.quotes += 1
            if kind in wanted:
                flags, time_ns, symbol, bid_size, bid, ask, ask_size = _QUOTE.unpack_from(
                    payload, start
                )
                yield Quote(_symbol(symbol), time_ns, flags, bid_size, bid, ask, ask_size)
        elif kind in SPECIFIED:
            stats.other[chr(kind)] += 1
        else:
            stats.unknown[kind] += 1
    if position != len(payload):
        raise CaptureError(
            f"byte {offset}: {len(payload) - position} bytes after the segment's {count} messages"
        )


def _symbol(raw: bytes) -> str:
    return raw.rstrip(b" \x00").decode("ascii", "replace")
