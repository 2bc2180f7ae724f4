"""The little of the protobuf wire format that range answers are assembled from: a field of the
length-delimited kind (a string, bytes, a message or a packed repeated scalar) is its tag byte,
its length as a varint, then its bytes. Stored values are serialised DataValue messages, so an
answer can take them as they are; columns of numbers and strings are encoded here from numpy
and Arrow buffers in a few vectorised steps, and protobuf's C parser takes the result in one
call, instead of a Python object per value."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

TEXT = 0x0A
"""Field 1, length-delimited: Price.value, Volume.quantity, DecimalColumn.texts,
DataValues.values."""
UNIT = 0x12
"""Field 2, length-delimited: Price.currency, Volume.unit."""
LENGTH_DELIMITED = 2
_ONE_BYTE = 0x80
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_WIDEST = 10
_SPREADABLE = 8
"""Varints of up to this many bytes (values below 2**56) are spread in place (_spread)."""
_SPREAD_STEPS = tuple(
    (np.uint64(upper), np.uint64(shift), np.uint64(lower))
    for upper, shift, lower in (
        (0x00FFFFFFF0000000, 4, 0x000000000FFFFFFF),  # 28 + 28 bits: into two 32-bit halves
        (0x0FFFC0000FFFC000, 2, 0x00003FFF00003FFF),  # 14 + 14: into 16-bit quarters
        (0x3F803F803F803F80, 1, 0x007F007F007F007F),  # 7 + 7: into bytes
    )
)
_UINT64 = 2**64 - 1
_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
"""A varint of a value below _LIMITS[k] takes k + 1 bytes; of one at or above the last, 10."""


def tag(number: int) -> int:
    """The tag byte of a length-delimited field numbered `number` (1 to 15)."""
    assert 1 <= number <= 15, number
    return number << 3 | LENGTH_DELIMITED


def varint(n: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: `tag` (its number << 3 | 2, under 0x80) and `payload`."""
    return bytes((tag,)) + varint(len(payload)) + payload


def text_field(tag: int, text: str) -> bytes:
    return field(tag, text.encode())


def packed(tag: int, payload: bytes) -> bytes:
    """A packed repeated field holding `payload`; nothing when it is empty (no values)."""
    return field(tag, payload) if payload else b""


def varints(values: npt.NDArray[np.integer] | Sequence[int]) -> bytes:
    """The values of an int32, int64, uint64 or enum column as protobuf writes them packed: a
    negative number as its 64-bit two's complement (ten bytes), as protobuf does for int32 and
    int64. A Python list value by value; a numpy array in a few vectorised steps: one row of
    up to ten 7-bit groups per value, the continuation bit on all but each value's last byte."""
    if not isinstance(values, np.ndarray):
        return b"".join([varint(n & _UINT64) for n in values])
    if not len(values):
        return b""
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < _ONE_BYTE:  # versions, enums, counts
        return values.astype(np.uint8).tobytes()
    v = values.astype(np.uint64)
    if low >= 0:
        shortest, width = _length(low), _length(high)
    else:  # a negative number takes ten bytes: all ten, or mixed lengths
        shortest, width = (_WIDEST if high < 0 else 0), _WIDEST
    if width <= _SPREADABLE:
        groups = _spread(v).astype("<u8").view(np.uint8).reshape(-1, _SPREADABLE)[:, :width]
    else:
        groups = ((v[:, None] >> _SHIFTS[:width]) & np.uint64(0x7F)).astype(np.uint8)
    if shortest == width:  # one length for all, as a page of snaps or times mostly has
        groups[:, :-1] |= _ONE_BYTE
        return groups.tobytes()
    lengths = np.searchsorted(_LIMITS, v, side="right") + 1
    last = np.arange(width) == (lengths - 1)[:, None]
    used = np.arange(width) < lengths[:, None]
    groups[used & ~last] |= _ONE_BYTE
    return groups[used].tobytes()


def _spread(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Values below 2**56 with their 7-bit groups moved one to a byte, the lowest first: each
    step moves the upper half of every part of the value up by the bits that part gains."""
    for upper, shift, lower in _SPREAD_STEPS:
        v = (v & lower) | ((v & upper) << shift)
    return v


def _length(n: int) -> int:
    """The bytes of the varint of a non-negative `n`."""
    return max(1, (n.bit_length() + 6) // 7)


def doubles(values: npt.NDArray[np.floating] | Sequence[float]) -> bytes:
    """A double column packed: each value's 8 bytes, little-endian."""
    if not isinstance(values, np.ndarray):
        return struct.pack(f"<{len(values)}d", *values)
    return values.astype("<f8").tobytes()


def fields(tag: int, payloads: Sequence[str] | Sequence[bytes]) -> bytes:
    """One field `tag` per text or bytes, in order (a repeated string or bytes field, or
    repeated messages given serialised)."""
    return b"".join([field(tag, p if isinstance(p, bytes) else p.encode()) for p in payloads])


def strings(tag: int, texts: pa.Array) -> bytes:
    """One field `tag` per row of a string or binary Arrow array without nulls, in row order (a
    repeated string or bytes field, or repeated messages given serialised)."""
    count = len(texts)
    if not count:
        return b""
    offsets = np.frombuffer(
        texts.buffers()[1], dtype=np.int32, count=count + 1, offset=texts.offset * 4
    )
    start, end = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    if int(lengths.max()) >= _ONE_BYTE:  # rare (options chains): a longer length prefix
        return fields(tag, texts.cast(pa.binary()).to_pylist())
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8, count=end - start, offset=start)
    out = np.empty(2 * count + len(data), dtype=np.uint8)
    heads = offsets[:-1] - start + 2 * np.arange(count)
    out[heads] = tag
    out[heads + 1] = lengths
    body = np.ones(len(out), dtype=bool)
    body[heads] = False
    body[heads + 1] = False
    out[body] = data
    return out.tobytes()
