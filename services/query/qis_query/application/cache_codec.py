"""How the query cache's answers are held: their size in memory (the L1 bound) and their bytes
in the shared L2, without pickle (an L2 is shared, and a pickle from it would run code).

- a point's value: JSON of the OfficialVersion's fields after series_id (its DataValue bytes in
  base64), empty when the snap has no value;
- a series definition: JSON of the SeriesEntry's fields after series_id;
- a range's rows: the Arrow IPC stream of a read-model segment (segments.encode, LZ4).

The series id is the key's, so it is not repeated in the value.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pyarrow as pa
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import VERSION_FIELDS, VERSION_TUPLES, OfficialVersion, SeriesEntry

FORMAT = 2
"""Of the encodings below: part of every L2 key, bumped when one changes."""

ENTRY_BYTES = 240
"""Memory of an L1 entry besides its value: key, entry, LRU and series index links (measured
with tracemalloc, as the two below)."""
VERSION_BYTES = 560
"""Memory of an OfficialVersion besides its value bytes."""
DEFINITION_BYTES = 4_096
"""Memory of a SeriesEntry with its definition (a dict of a few dozen fields)."""

Value = Any  # what one codec holds: OfficialVersion | None, SeriesEntry, pa.Table


@dataclass(frozen=True, slots=True)
class Codec:
    encode: Callable[[Value], bytes]
    decode: Callable[[str, memoryview], Value]  # (series_id, bytes)
    size: Callable[[Value], int]  # in memory, entry included


def _encode_point(version: OfficialVersion | None) -> bytes:
    if version is None:
        return b""
    values: list[object] = [getattr(version, name) for name in VERSION_FIELDS]
    values[_VALUE] = base64.b64encode(version.value).decode("ascii")
    return json.dumps(values, separators=(",", ":")).encode()


def _decode_point(series_id: str, payload: memoryview) -> OfficialVersion | None:
    if not payload:
        return None
    values = json.loads(bytes(payload))
    values[_VALUE] = base64.b64decode(values[_VALUE])
    for i in VERSION_TUPLES:
        values[i] = tuple(values[i])
    return OfficialVersion(series_id, *values)


_VALUE = VERSION_FIELDS.index("value")
_ENTRY_FIELDS = tuple(f.name for f in fields(SeriesEntry))[1:]


def _point_size(version: OfficialVersion | None) -> int:
    return ENTRY_BYTES + (0 if version is None else VERSION_BYTES + len(version.value))


def _encode_definition(entry: SeriesEntry) -> bytes:
    values = [getattr(entry, name) for name in _ENTRY_FIELDS]
    return json.dumps(values, separators=(",", ":")).encode()


def _decode_definition(series_id: str, payload: memoryview) -> SeriesEntry:
    return SeriesEntry(series_id, *json.loads(bytes(payload)))


def _decode_rows(_series_id: str, payload: memoryview) -> pa.Table:
    return segments.decode(bytes(payload))


def _rows_size(rows: pa.Table) -> int:
    return ENTRY_BYTES + int(rows.nbytes)


POINT = Codec(_encode_point, _decode_point, _point_size)
DEFINITION = Codec(_encode_definition, _decode_definition, lambda _entry: DEFINITION_BYTES)
ROWS = Codec(segments.encode, _decode_rows, _rows_size)
