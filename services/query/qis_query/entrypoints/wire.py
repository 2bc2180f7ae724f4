"""The little of the protobuf wire format that range answers are assembled from: a field of the
length-delimited kind (a string, bytes or a message) is its tag byte, its length as a varint,
then its bytes. Stored values are serialised DataValue messages, so an answer can take them as
they are and let protobuf's C parser do the rest, instead of a Python call per field."""

from __future__ import annotations

TEXT = 0x0A
"""Field 1, length-delimited: Price.value, Volume.quantity, DecimalColumn.texts,
DataValues.values."""
UNIT = 0x12
"""Field 2, length-delimited: Price.currency, Volume.unit."""


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
