"""Writes IEX HIST captures byte by byte from the public specifications, for the parser's tests:
TOPS 1.6 messages in IEX-TP 1.25 segments (little-endian), in UDP/IPv4/Ethernet frames, in pcap
or pcapng files. Deliberately written field by field with int.to_bytes, sharing nothing with the
parser (which uses struct layouts), so that a layout mistake in one is not repeated in the
other."""

from __future__ import annotations

import gzip
from collections.abc import Sequence

TOPS_PROTOCOL = 0x8003


def le(value: int, size: int, signed: bool = False) -> bytes:
    return value.to_bytes(size, "little", signed=signed)


def be(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def symbol(text: str) -> bytes:
    return text.encode("ascii").ljust(8, b" ")


def trade(
    time_ns: int, sym: str, size: int, price: int, trade_id: int, flags: int = 0, kind: bytes = b"T"
) -> bytes:
    """Trade Report 'T' 0x54 (or, kind=b"B", Trade Break 0x42): 38 bytes."""
    return (
        kind
        + le(flags, 1)
        + le(time_ns, 8, signed=True)
        + symbol(sym)
        + le(size, 4)
        + le(price, 8, signed=True)
        + le(trade_id, 8, signed=True)
    )


def trade_break(time_ns: int, sym: str, size: int, price: int, trade_id: int) -> bytes:
    return trade(time_ns, sym, size, price, trade_id, kind=b"B")


def quote(
    time_ns: int,
    sym: str,
    bid_size: int,
    bid: int,
    ask: int,
    ask_size: int,
    flags: int = 0,
) -> bytes:
    """Quote Update 'Q' 0x51: 42 bytes."""
    return (
        b"Q"
        + le(flags, 1)
        + le(time_ns, 8, signed=True)
        + symbol(sym)
        + le(bid_size, 4)
        + le(bid, 8, signed=True)
        + le(ask, 8, signed=True)
        + le(ask_size, 4)
    )


def system_event(time_ns: int, event: bytes = b"R") -> bytes:
    """System Event 'S' 0x53: 10 bytes (R: regular market hours start)."""
    return b"S" + event + le(time_ns, 8, signed=True)


def segment(
    messages: Sequence[bytes],
    first_sequence: int,
    session: int = 1_234_567_890,
    send_time_ns: int = 0,
    protocol: int = TOPS_PROTOCOL,
    stream_offset: int = 0,
) -> bytes:
    """An IEX-TP 1.25 segment: the 40-byte header, then each message with its 2-byte length."""
    payload = b"".join(le(len(m), 2) + m for m in messages)
    header = (
        le(1, 1)  # version
        + le(0, 1)  # reserved
        + le(protocol, 2)
        + le(1, 4)  # channel id
        + le(session, 4)
        + le(len(payload), 2)
        + le(len(messages), 2)
        + le(stream_offset, 8)
        + le(first_sequence, 8)
        + le(send_time_ns, 8, signed=True)
    )
    assert len(header) == 40
    return header + payload


def udp_frame(payload: bytes, vlan: int | None = None) -> bytes:
    """Ethernet II (optionally 802.1Q-tagged) / IPv4 / UDP to the TOPS multicast group."""
    udp = be(10378, 2) + be(10378, 2) + be(8 + len(payload), 2) + be(0, 2) + payload
    ip = (
        be(0x45, 1)  # version 4, header of 5 words
        + be(0, 1)
        + be(20 + len(udp), 2)
        + be(0, 2)  # identification
        + be(0x4000, 2)  # don't fragment
        + be(64, 1)  # ttl
        + be(17, 1)  # UDP
        + be(0, 2)  # checksum (not checked)
        + bytes([10, 0, 0, 1])
        + bytes([233, 215, 21, 4])
        + udp
    )
    tag = b"" if vlan is None else be(0x8100, 2) + be(vlan, 2)
    return bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + tag + be(0x0800, 2) + ip


def pcap(frames: Sequence[bytes], cut_to: int | None = None) -> bytes:
    """A classic little-endian pcap (microsecond stamps, Ethernet); `cut_to` captures only that
    many bytes of each frame (a snap length too short)."""
    out = le(0xA1B2C3D4, 4) + le(2, 2) + le(4, 2) + le(0, 4) + le(0, 4) + le(65535, 4) + le(1, 4)
    for number, frame in enumerate(frames):
        kept = frame if cut_to is None else frame[:cut_to]
        out += le(1_700_000_000 + number, 4) + le(0, 4) + le(len(kept), 4) + le(len(frame), 4)
        out += kept
    return out


def _block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return le(kind, 4) + le(12 + len(body), 4) + body + le(12 + len(body), 4)


def pcapng(frames: Sequence[bytes]) -> bytes:
    """A little-endian pcapng: section header, one Ethernet interface, an Enhanced Packet Block
    per frame, and a custom block in between that a reader must skip."""
    section = le(0x1A2B3C4D, 4) + le(1, 2) + le(0, 2) + le(-1, 8, signed=True)
    out = _block(0x0A0D0D0A, section)
    out += _block(1, le(1, 2) + le(0, 2) + le(0, 4))
    out += _block(0x00000BAD, b"custom block")
    for number, frame in enumerate(frames):
        out += _block(
            6,
            le(0, 4) + le(0, 4) + le(number, 4) + le(len(frame), 4) + le(len(frame), 4) + frame,
        )
    return out


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
