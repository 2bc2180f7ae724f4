"""The little of the protobuf wire format that range answers are assembled from: a field of the
length-delimited kind (a string, bytes, a message or a packed repeated scalar) is its tag byte,
its length as a varint, then its bytes. Stored values are serialised DataValue messages, so an
answer can take them as they are; columns of numbers and strings are encoded here from numpy
and Arrow buffers in a few vectorised steps, and protobuf's C parser takes the result in one
call, instead of a Python object per value.

The per-point view is assembled the same way (`Piece`, `joined`): each field of a repeated
message is one byte string per row, built for the whole page at once, and Arrow joins the
pieces of each row, row after row."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

TEXT = 0x0A
"""Field 1, length-delimited: Price.value, Volume.quantity, DecimalColumn.texts,
DataValues.values."""
UNIT = 0x12
"""Field 2, length-delimited: Price.currency, Volume.unit."""
VARINT = 0
FIXED64 = 1
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
_CONTINUATIONS = np.array(
    [sum(_ONE_BYTE << (8 * i) for i in range(length - 1)) for length in range(_SPREADABLE + 1)],
    dtype=np.uint64,
)
"""The continuation bits of a varint of each length up to _SPREADABLE, in its spread form: the
high bit of every byte but the last."""


def tag(number: int, wire_type: int = LENGTH_DELIMITED) -> int:
    """The tag byte of a field numbered `number` (1 to 15), length-delimited unless said."""
    assert 1 <= number <= 15, number
    return number << 3 | wire_type


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


@dataclass(frozen=True, slots=True)
class Encoded:
    """A column's values encoded one after another, so that the bytes of any run of rows can be
    cut out: a page's from the rows it was sliced from, encoded once for all its pages."""

    data: bytes
    ends: npt.NDArray[np.integer] | None
    """Where each row's bytes end; None when every row takes `width` bytes."""
    width: int = 0

    def rows(self, start: int, stop: int) -> bytes:
        """The bytes of rows [start, stop)."""
        if self.ends is None:
            return self.data[start * self.width : stop * self.width]
        if stop <= start:
            return b""
        return self.data[int(self.ends[start - 1]) if start else 0 : int(self.ends[stop - 1])]


def _parts(parts: list[bytes]) -> Encoded:
    """Rows of the bytes `parts`, one each (a few rows made value by value)."""
    return Encoded(b"".join(parts), np.cumsum([len(p) for p in parts], dtype=np.int64))


def varints(values: npt.NDArray[np.integer] | Sequence[int]) -> Encoded:
    """The values of an int32, int64, uint64 or enum column as protobuf writes them packed: a
    negative number as its 64-bit two's complement (ten bytes), as protobuf does for int32 and
    int64. A Python list value by value; a numpy array in a few vectorised steps: one row of
    up to ten 7-bit groups per value, the continuation bit on all but each value's last byte."""
    if not isinstance(values, np.ndarray):
        return _parts([varint(n & _UINT64) for n in values])
    if not len(values):
        return Encoded(b"", None)
    groups, lengths = _groups(values, int(values.min()), int(values.max()))
    width = groups.shape[1]
    if lengths is None:  # one length for all, as a page of snaps or times mostly has
        return Encoded(groups.tobytes(), None, width)
    return Encoded(groups[_used(lengths, width)].tobytes(), np.cumsum(lengths))


def _groups(
    values: npt.NDArray[np.integer], low: int, high: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.intp] | None]:
    """Each value's varint as a row of the widest one's bytes (continuation bits set), and the
    bytes each row uses: None when every row uses them all. `low` and `high` are the least and
    the greatest value."""
    if low >= 0 and high < _ONE_BYTE:  # versions, enums, counts, lengths
        return values.astype(np.uint8).reshape(-1, 1), None
    v = values.astype(np.uint64)
    if low >= 0:
        shortest, width = _length(low), _length(high)
    else:  # a negative number takes ten bytes: all ten, or mixed lengths
        shortest, width = (_WIDEST if high < 0 else 0), _WIDEST
    if width <= _SPREADABLE:
        # The continuation bits set in the value's 64 bits, by a table of each length's, before
        # the split into bytes: a few whole-array steps instead of masks over every byte.
        lengths = None if shortest == width else np.searchsorted(_LIMITS, v, side="right") + 1
        spread = _spread(v)
        spread |= _CONTINUATIONS[width if lengths is None else lengths]
        rows = spread.astype("<u8", copy=False).view(np.uint8).reshape(-1, _SPREADABLE)
        return rows[:, :width], lengths
    groups = ((v[:, None] >> _SHIFTS[:width]) & np.uint64(0x7F)).astype(np.uint8)
    if shortest == width:
        groups[:, :-1] |= _ONE_BYTE
        return groups, None
    lengths = np.searchsorted(_LIMITS, v, side="right") + 1
    last = np.arange(width) == (lengths - 1)[:, None]
    groups[_used(lengths, width) & ~last] |= _ONE_BYTE
    return groups, lengths


def _used(lengths: npt.NDArray[np.integer], width: int) -> npt.NDArray[np.bool_]:
    """Which bytes of rows `width` wide the rows use: the first `lengths` of each."""
    used: npt.NDArray[np.bool_] = np.arange(width) < lengths[:, None]
    return used


def _spread(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Values below 2**56 with their 7-bit groups moved one to a byte, the lowest first: each
    step moves the upper half of every part of the value up by the bits that part gains. In
    place (`v` is the caller's copy): a page's arrays made anew at every step cost a quarter
    more."""
    moved = np.empty_like(v)
    for upper, shift, lower in _SPREAD_STEPS:
        np.bitwise_and(v, upper, out=moved)
        moved <<= shift
        v &= lower
        v |= moved
    return v


def _length(n: int) -> int:
    """The bytes of the varint of a non-negative `n`."""
    return max(1, (n.bit_length() + 6) // 7)


def doubles(values: npt.NDArray[np.floating] | Sequence[float]) -> Encoded:
    """A double column packed: each value's 8 bytes, little-endian."""
    if not isinstance(values, np.ndarray):
        return Encoded(struct.pack(f"<{len(values)}d", *values), None, 8)
    return Encoded(values.astype("<f8").tobytes(), None, 8)


def fields(tag: int, payloads: Sequence[str] | Sequence[bytes]) -> Encoded:
    """One field `tag` per text or bytes, in order (a repeated string or bytes field, or
    repeated messages given serialised)."""
    return _parts([field(tag, p if isinstance(p, bytes) else p.encode()) for p in payloads])


def strings(tag: int, texts: pa.Array) -> Encoded:
    """One field `tag` per row of a string or binary Arrow array without nulls, in row order (a
    repeated string or bytes field, or repeated messages given serialised)."""
    count = len(texts)
    if not count:
        return Encoded(b"", None)
    same_length = one_length(texts)
    if same_length is not None and same_length[1] < _ONE_BYTE:  # a page of prices, often: rows
        start, size = same_length
        data = np.frombuffer(texts.buffers()[2] or b"", np.uint8, size * count, start)
        rows = np.empty((count, 2 + size), dtype=np.uint8)
        rows[:, 0] = tag
        rows[:, 1] = size
        rows[:, 2:] = data.reshape(count, size)
        return Encoded(rows.tobytes(), None, 2 + size)
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
    return Encoded(out.tobytes(), heads + 2 + lengths)


def one_length(texts: pa.Array) -> tuple[int, int] | None:
    """Where the bytes of a non-empty string or binary array start, and the length every row
    has; None when the rows' lengths differ. From the offsets alone, compared with those of
    rows of the first row's length (a few numpy calls fewer than the lengths' extremes)."""
    count = len(texts)
    offsets = texts.buffers()[1].slice(texts.offset * 4, (count + 1) * 4).to_pybytes()
    start, second = struct.unpack_from("<ii", offsets)
    (end,) = struct.unpack_from("<i", offsets, count * 4)
    size = second - start
    if end - start != size * count:
        return None
    if size and offsets != np.arange(start, end + 1, size, dtype="<i4").tobytes():
        return None
    return start, size


@dataclass(frozen=True, slots=True)
class Piece:
    """A part of each row's message on a page, one byte string per row, `lengths` bytes each:
    as `rows` of a numpy matrix when every row has the same length (most pieces of most
    pages: a page's snaps, versions, scores), else as `strings`, an Arrow binary array."""

    lengths: npt.NDArray[np.integer]
    rows: npt.NDArray[np.uint8] | None = None
    strings: pa.Array | None = None


def same(data: bytes, count: int) -> Piece:
    """`data` in each of `count` rows."""
    rows = np.broadcast_to(np.frombuffer(data, dtype=np.uint8), (count, len(data)))
    return Piece(np.full(count, len(data)), rows=rows)


def given(texts: pa.Array) -> Piece:
    """The rows of a string or binary Arrow array without nulls, as they are."""
    offsets = np.frombuffer(
        texts.buffers()[1], dtype=np.int32, count=len(texts) + 1, offset=texts.offset * 4
    )
    return Piece(np.diff(offsets), strings=texts.view(pa.binary()))


def scalars(
    tag: int,
    values: npt.NDArray[np.integer],
    present: npt.NDArray[np.bool_] | None = None,
    *,
    write_zeros: bool = False,
) -> Piece:
    """The varint field `tag` of each value (as protobuf writes an int32, int64, uint64 or
    enum) in the rows `present` (all when None), but for a zero unless `write_zeros` (proto3
    leaves a zero out, not a length); nothing in the other rows."""
    count = len(values)
    low, high = (int(values.min()), int(values.max())) if count else (0, 0)
    if not count or (low == high == 0 and not write_zeros):
        return Piece(np.zeros(count, dtype=np.int64), rows=np.empty((count, 0), dtype=np.uint8))
    groups, lengths = _groups(values, low, high)
    width = groups.shape[1]
    rows = np.empty((count, width + 1), dtype=np.uint8)
    rows[:, 0] = tag
    rows[:, 1:] = groups
    zeros = not write_zeros and low <= 0 <= high
    if present is None and not zeros and lengths is None:  # most columns of most pages
        return Piece(np.full(count, width + 1), rows=rows)
    kept = np.ones(count, dtype=bool) if present is None else present
    if zeros:
        kept = kept & (values != 0)
    return _compact(rows, np.where(kept, (width if lengths is None else lengths) + 1, 0))


def fixed64s(tag: int, values: npt.NDArray[np.floating], kept: npt.NDArray[np.bool_]) -> Piece:
    """The double field `tag` of each value, in the rows `kept`."""
    rows = np.empty((len(values), 9), dtype=np.uint8)
    rows[:, 0] = tag
    rows[:, 1:] = values.astype("<f8").view(np.uint8).reshape(-1, 8)
    return _compact(rows, np.where(kept, 9, 0))


def _compact(rows: npt.NDArray[np.uint8], lengths: npt.NDArray[np.integer]) -> Piece:
    """The first `lengths` bytes of each row."""
    longest = int(lengths.max())
    if int(lengths.min()) == longest:
        return Piece(lengths, rows=rows[:, :longest])
    return Piece(lengths, strings=_strings(rows[_used(lengths, rows.shape[1])], lengths))


def _strings(data: npt.NDArray[np.uint8], lengths: npt.NDArray[np.integer]) -> pa.Array:
    """`data` cut into rows of `lengths` bytes, as an Arrow binary array."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return _binary(data, offsets)


def _binary(data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int32]) -> pa.Array:
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.binary(), len(offsets) - 1, buffers)


def delimited(
    tag: int, pieces: Sequence[Piece], present: npt.NDArray[np.bool_] | None = None
) -> list[Piece]:
    """The length-delimited field `tag` of each row holding `pieces` (a message, a text), in
    the rows `present` (all when None; the pieces of the others must be empty): its tag and
    length, then the pieces."""
    size = pieces[0].lengths.astype(np.int64)
    for piece in pieces[1:]:
        size += piece.lengths
    return [scalars(tag, size, present, write_zeros=True), *pieces]


_NOTHING = pa.scalar(b"", pa.binary())


def joined(pieces: Sequence[Piece]) -> pa.Array:
    """Each row's pieces end to end, as an Arrow binary array: the matrices of neighbouring
    pieces side by side in one, then the rows of these and of the other pieces joined by
    Arrow."""
    parts: list[pa.Array] = []
    beside: list[npt.NDArray[np.uint8]] = []
    for piece in pieces:
        if piece.rows is not None:
            beside.append(piece.rows)
            continue
        if beside:
            parts.append(_matrix(beside))
            beside = []
        parts.append(piece.strings)
    if beside:
        parts.append(_matrix(beside))
    if len(parts) == 1:
        return parts[0]
    rows: pa.Array = pc.binary_join_element_wise(*parts, _NOTHING)
    return rows


def _matrix(pieces: list[npt.NDArray[np.uint8]]) -> pa.Array:
    rows = np.hstack(pieces)
    count, width = rows.shape
    return _binary(rows.reshape(-1), np.arange(count + 1, dtype=np.int32) * np.int32(width))


def concatenated(rows: pa.Array) -> bytes:
    """The rows of a binary array end to end."""
    _, offsets, data = rows.buffers()
    start, end = np.frombuffer(offsets, dtype=np.int32)[[rows.offset, rows.offset + len(rows)]]
    concatenated: bytes = data.slice(start, end - start).to_pybytes()
    return concatenated
