"""UDP payloads of a packet capture: pcap or pcapng, plain or gzip-compressed (by content, not by
name: IEX distributes its HIST files as .pcap.gz).

Both formats are small, so they are read here rather than through a dependency:
- pcap: a 24-byte file header (magic 0xa1b2c3d4 for microsecond or 0xa1b23c4d for nanosecond
  stamps, in the writer's byte order; the link type last), then per packet a 16-byte header
  (seconds, fraction, captured length, original length) and the captured bytes.
- pcapng: blocks of (type, total length, body, total length), the Section Header Block giving
  the byte order (magic 0x1a2b3c4d), Interface Description Blocks the link type of each
  interface, Enhanced (and Simple, and obsolete) Packet Blocks the packets. Other blocks are
  skipped by their length.

Link types read: Ethernet (with 802.1Q/802.1ad tags), raw IP, Linux cooked (SLL, SLL2) and BSD
loopback; then IPv4 or IPv6 (without extension headers), then UDP. Everything else (TCP, ARP,
IP fragments) is counted and skipped. A packet the capture cut short (captured length below the
original length) would lose messages silently, so it is an error, as is a file that ends inside
a header or a packet: `CaptureError` names the byte offset in the (decompressed) capture (the
caller adds the file's name).
"""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_GZIP_MAGIC = b"\x1f\x8b"
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond stamps
    b"\xa1\xb2\x3c\x4d": ">",
}
_PCAPNG_SECTION = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_INTERFACE, _OBSOLETE_PACKET, _SIMPLE_PACKET, _ENHANCED_PACKET = 1, 2, 3, 6

LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = (
    0,
    1,
    101,
    113,
    228,
    229,
    276,
)
_ETHER_IPV4, _ETHER_IPV6, _ETHER_VLANS = 0x0800, 0x86DD, (0x8100, 0x88A8, 0x9100)
_UDP = 17


class CaptureError(ValueError):
    """The capture cannot be read on; the message names the byte offset."""


@dataclass
class CaptureStats:
    packets: int = 0
    udp: int = 0
    """Packets that carried a UDP datagram (handed on)."""
    skipped: int = 0
    """Packets of other protocols or link types, and IP fragments."""


@dataclass(frozen=True, slots=True)
class Datagram:
    offset: int
    """Byte offset of its packet in the (decompressed) capture, for error messages."""
    payload: bytes


class _Reader:
    """Exact reads that know their offset; a short read is a truncated capture."""

    def __init__(self, stream: io.BufferedIOBase) -> None:
        self._stream = stream
        self.offset = 0

    def read(self, size: int, what: str, eof_ok: bool = False) -> bytes:
        start = self.offset
        try:
            data = self._stream.read(size)
        except (EOFError, gzip.BadGzipFile, OSError) as error:
            # gzip raises EOFError for a compressed stream cut short: the download stopped.
            raise CaptureError(f"truncated at byte {start} ({what}): {error}") from None
        self.offset += len(data)
        if len(data) == size or (eof_ok and not data):
            return data
        raise CaptureError(
            f"truncated at byte {start}: {what} needs {size} bytes, {len(data)} left"
        )


def open_capture(path: Path) -> io.BufferedIOBase:
    stream: io.BufferedIOBase = path.open("rb")
    if stream.read(2) == _GZIP_MAGIC:
        stream.close()
        return gzip.open(path, "rb")
    stream.seek(0)
    return stream


def udp_datagrams(path: Path, stats: CaptureStats) -> Iterator[Datagram]:
    """The UDP payloads of the capture at `path`, in capture order."""
    with open_capture(path) as stream:
        reader = _Reader(stream)
        magic = reader.read(4, "the file header")
        if magic in _PCAP_MAGICS:
            yield from _pcap(reader, _PCAP_MAGICS[magic], stats)
        elif magic == _PCAPNG_SECTION:
            yield from _pcapng(reader, stats)
        else:
            raise CaptureError(f"not a pcap or pcapng capture (magic {magic.hex()})")


def _pcap(reader: _Reader, order: str, stats: CaptureStats) -> Iterator[Datagram]:
    header = reader.read(20, "the pcap file header")
    (link,) = struct.unpack_from(order + "I", header, 16)
    packet_header = struct.Struct(order + "IIII")
    while True:
        offset = reader.offset
        raw = reader.read(16, "a packet header", eof_ok=True)
        if not raw:
            return
        _, _, captured, original = packet_header.unpack(raw)
        data = reader.read(captured, "a packet")
        yield from _packet(data, captured, original, link & 0xFFFF, offset, stats)


def _pcapng(reader: _Reader, stats: CaptureStats) -> Iterator[Datagram]:
    order = "<"
    links: list[tuple[int, int]] = []  # per interface: (link type, snap length)
    block_type = _PCAPNG_SECTION
    offset = 0
    while True:
        length_bytes = reader.read(4, "a block length")
        if block_type == _PCAPNG_SECTION:
            body_start = reader.read(4, "the section byte-order magic")
            if body_start not in _PCAPNG_BYTE_ORDER:
                raise CaptureError(f"byte {offset}: bad section magic {body_start.hex()}")
            order = _PCAPNG_BYTE_ORDER[body_start]
            links = []
            consumed = 4
        else:
            consumed = 0
        (total,) = struct.unpack(order + "I", length_bytes)
        if total < 12 + consumed or total % 4:
            raise CaptureError(f"byte {offset}: bad block length {total}")
        body = reader.read(total - 12 - consumed, "a block")
        reader.read(4, "a block's trailing length")
        kind = -1 if block_type == _PCAPNG_SECTION else struct.unpack(order + "I", block_type)[0]
        if kind == _INTERFACE:
            link, _, snap = struct.unpack_from(order + "HHI", body)
            links.append((link, snap))
        elif kind in (_ENHANCED_PACKET, _OBSOLETE_PACKET):
            if kind == _ENHANCED_PACKET:
                interface, _, _, captured, original = struct.unpack_from(order + "IIIII", body)
            else:
                interface, _, _, _, captured, original = struct.unpack_from(order + "HHIIII", body)
            if interface >= len(links):
                raise CaptureError(f"byte {offset}: unknown interface {interface}")
            data = body[20 : 20 + captured]
            link = links[interface][0]
            yield from _packet(data, captured, original, link, offset, stats)
        elif kind == _SIMPLE_PACKET:
            if not links:
                raise CaptureError(f"byte {offset}: a packet before any interface")
            (original,) = struct.unpack_from(order + "I", body)
            link, snap = links[0]
            captured = min(original, snap) if snap else original
            data = body[4 : 4 + captured]
            yield from _packet(data, captured, original, link, offset, stats)
        offset = reader.offset
        block_type = reader.read(4, "a block type", eof_ok=True)
        if not block_type:
            return


def _packet(
    data: bytes,
    captured: int,
    original: int,
    link: int,
    offset: int,
    stats: CaptureStats,
) -> Iterator[Datagram]:
    stats.packets += 1
    if captured < original or len(data) < captured:
        raise CaptureError(
            f"byte {offset}: a packet of {original} bytes was captured as"
            f" {min(captured, len(data))} (snap length too short): its messages are lost"
        )
    payload = _udp_payload(data, link)
    if payload is None:
        stats.skipped += 1
        return
    stats.udp += 1
    yield Datagram(offset, payload)


def _udp_payload(frame: bytes, link: int) -> bytes | None:
    """The UDP payload of one link-layer frame, None when it carries something else."""
    if link == LINK_ETHERNET:
        if len(frame) < 14:
            return None
        (ether_type,) = struct.unpack_from(">H", frame, 12)
        start = 14
        while ether_type in _ETHER_VLANS and len(frame) >= start + 4:
            (ether_type,) = struct.unpack_from(">H", frame, start + 2)
            start += 4
        return _ip_udp(frame, start, ether_type)
    if link in (LINK_RAW, LINK_IPV4, LINK_IPV6):
        if not frame:
            return None
        version = frame[0] >> 4
        return _ip_udp(frame, 0, _ETHER_IPV4 if version == 4 else _ETHER_IPV6)
    if link == LINK_SLL and len(frame) >= 16:
        return _ip_udp(frame, 16, struct.unpack_from(">H", frame, 14)[0])
    if link == LINK_SLL2 and len(frame) >= 20:
        return _ip_udp(frame, 20, struct.unpack_from(">H", frame, 0)[0])
    if link == LINK_NULL and len(frame) >= 4:
        # The family is in the writer's byte order: 2 is IPv4 either way round, IPv6 is not 2.
        family = frame[0] or frame[3]
        return _ip_udp(frame, 4, _ETHER_IPV4 if family == 2 else _ETHER_IPV6)
    return None


def _ip_udp(frame: bytes, start: int, ether_type: int) -> bytes | None:
    if ether_type == _ETHER_IPV4:
        if len(frame) < start + 20 or frame[start] >> 4 != 4:
            return None
        header = (frame[start] & 0x0F) * 4
        total, fragment, protocol = struct.unpack_from(">H2xHxB", frame, start + 2)
        if protocol != _UDP or fragment & 0x3FFF:  # more fragments, or not the first
            return None
        end = start + total  # Ethernet pads short frames: the IP length says where data ends
        udp = start + header
    elif ether_type == _ETHER_IPV6:
        if len(frame) < start + 40 or frame[start] >> 4 != 6 or frame[start + 6] != _UDP:
            return None
        (payload,) = struct.unpack_from(">H", frame, start + 4)
        end = start + 40 + payload
        udp = start + 40
    else:
        return None
    if len(frame) < udp + 8 or len(frame) < end:
        return None
    (length,) = struct.unpack_from(">H", frame, udp + 4)
    if length < 8 or udp + length > end:
        return None
    return frame[udp + 8 : udp + length]
