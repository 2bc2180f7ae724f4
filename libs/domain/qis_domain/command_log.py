"""The CommandRecord aggregate: one tiny stream per (scope, command id), appended atomically with
the command's own events.

A client that retries after a timeout must never cause a second effect, whichever buckets the
command touches: the buckets' own memory of command ids only covers the buckets a retry happens
to touch again, and a command id reused on another series or two years later would slip past
it. A stream per command id makes the check one read of a stream of at most one event, and the
atomic append makes "recorded" and "applied" the same fact. Every handled command is recorded,
one that changed nothing too, so that its id cannot be reused for other arguments.

The stream lives under its resource ("series/SPX/commands/{id}"): the read side follows
`series/` and `sources/`, so its checkpoint passes every position a command answers with (a
record it ignores, in a stream it never reads twice), and read-your-writes can always reach it.

A repeat is recognised by the command's `fingerprint`, which the record holds. Its scheme
changed once (for cost: the first hashed the repr of every point): a record is compared in the
scheme it was written in, so a retry of a command that an older version handled still gets
that command's outcome, and its id still cannot be reused for other arguments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from decimal import Decimal
from operator import attrgetter
from typing import Any

import numpy as np
from pydantic import BaseModel

from qis_domain.commands import CommandOutcome
from qis_domain.errors import AlreadyExists
from qis_domain.events import CommandAccepted, DomainEvent
from qis_domain.names import command_resource
from qis_domain.scalar_points import ScalarPoints
from qis_domain.series_bucket import Recorded
from qis_domain.snaps import Snap
from qis_domain.values import Price, Volume

COMMAND_REUSED = "COMMAND_ID_REUSED"
SCHEME = "2:"  # starts a `fingerprint`; a record without it holds a `legacy_fingerprint`


def command_stream(scope: str, command_id: str) -> str:
    """`scope` is the resource the command is about ("series/SPX", "sources/bbg")."""
    return f"{scope}/commands/{command_id}"


def fingerprint(command: object) -> str:
    """What the command asks for, independent of who asks and when: the scheme's tag (which a
    `legacy_fingerprint`, 64 hex digits, never starts with), then the sha256 of the command's
    `canonical` form. Stored records hold it (CommandAccepted.fingerprint) and a retry is
    recognised by equality with it, so the form hashed must never change: another form needs
    another tag, and this one must stay to read the records it wrote."""
    return SCHEME + hashlib.sha256(canonical(command)).hexdigest()


def canonical(command: object) -> bytes:
    """The command as bytes. Commands are flat frozen dataclasses: a field that is a pydantic
    model (a definition, a source's configuration, with maps a client need not send in the
    same order twice) counts as sorted-key JSON, a batch of scalar points as `_columns` (points
    kept in columns, ScalarPoints, as the same bytes made from their columns), any other field
    (ids, values, bars, mixed batches: tuples, Decimals, frozen dataclasses) as its repr,
    which is deterministic. So two commands that the legacy text tells apart are told
    apart here too, and equal ones are written alike.

    Unambiguous by construction: every part is a tag saying how it is written, its length
    (8 bytes, little-endian) and its bytes, so a part can neither run into the next one nor be
    read as a part of another kind; the fields follow the dataclass's order."""
    assert dataclasses.is_dataclass(command)
    parts = [_part(b"T", type(command).__name__)]
    for field in dataclasses.fields(command):
        value = getattr(command, field.name)
        columns = _scalar_columns(value) if type(value) is ScalarPoints else None
        if columns is None:
            columns = _columns(_hashed(value))
        if columns is not None:
            parts.append(_part(b"C", columns))
        else:
            parts.append(
                _part(b"J" if isinstance(value, BaseModel) else b"R", _text(_hashed(value)))
            )
    return b"".join(parts)


def _scalar_columns(points: ScalarPoints) -> bytes | None:
    """What `_columns` writes for the list of pairs `points` stand for, from their columns
    (no pass over pairs in Python): the kind, a list of n points in no unit of their own, the
    snaps' UTC µs then their offsets as int64, and the figures' own texts. None for no points
    (which `_columns` leaves to the repr too)."""
    n = len(points)
    if not n:
        return None
    offsets = np.array(points.offsets_s, dtype=np.int64)
    ints = np.concatenate((points.array, offsets)).astype("<i8", copy=False).tobytes()
    return _scalar_bytes(points.kind, b"[", n, "", ints, ",".join(points.own_texts()))


def _hashed(value: object) -> object:
    """A field as both schemes read it: points kept in columns as the list of pairs they stand
    for, so that a command hashes alike in either form."""
    return value.pairs() if type(value) is ScalarPoints else value


def _part(tag: bytes, content: str | bytes) -> bytes:
    # surrogatepass: every str encodes (a lone surrogate too), distinct ones to distinct bytes
    data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
    return tag + len(data).to_bytes(8, "little") + data


def _columns(items: object) -> bytes | None:
    """A batch of scalar points (the bulk of every ingest: a list or tuple of (Snap, Price) or
    of (Snap, Volume), each number a Decimal, all in one currency or unit) written a column at
    a time: each check and conversion is one pass in C over a column, where `_point_repr` makes
    a Python call per point. None for anything else, which `canonical` writes by its repr.

    Types are checked exactly, so what a repr tells apart stays apart (an offset of True for 1,
    a float or a str for a Decimal, a subclass of a value). The bytes: the kind, list or tuple,
    the number of points n, the unit (framed by `_part`), the utc_us column then the offset_s
    column as little-endian int64 (8n bytes each, on every platform), then the Decimals' texts
    joined by ",". A Decimal's text is exact (sign, digits and exponent: "1.5" is not "1.50")
    and made of digits, ".", "+", "-", "E" or the letters of "Infinity", "NaN" and "sNaN",
    never a comma, so the rest splits back into the n texts."""
    if type(items) is list:
        form = b"["
    elif type(items) is tuple:
        form = b"("
    else:
        return None
    n = len(items)
    if n == 0 or list(map(type, items)) != [tuple] * n:
        return None
    try:
        # strict: points of another length than the first are refused, not cut to the shortest
        snaps, values = zip(*items, strict=True)
    except ValueError:  # not every point a pair
        return None
    kind = type(values[0])
    if kind is Price:
        number, unit = _PRICE
    elif kind is Volume:
        number, unit = _VOLUME
    else:
        return None
    if list(map(type, values)) != [kind] * n or list(map(type, snaps)) != [Snap] * n:
        return None
    try:
        utc_us, offsets_s = zip(*snaps, strict=True)
    except ValueError:  # a Snap of another length, made by tuple.__new__
        return None
    ints = utc_us + offsets_s
    numbers = list(map(number, values))
    units = list(map(unit, values))
    if (
        list(map(type, ints)) != [int] * (2 * n)
        or list(map(type, numbers)) != [Decimal] * n
        or list(map(type, units)) != [str] * n
        or units.count(units[0]) != n
    ):
        return None
    try:
        columns = struct.pack(f"<{2 * n}q", *ints)
    except struct.error:  # beyond int64: no instant the bounds take
        return None
    return _scalar_bytes(kind, form, n, units[0], columns, ",".join(map(str, numbers)))


def _scalar_bytes(
    kind: type[Price] | type[Volume], form: bytes, n: int, unit: str, ints: bytes, texts: str
) -> bytes:
    return b"".join(
        (
            b"P" if kind is Price else b"V",
            form,
            n.to_bytes(8, "little"),
            _part(b"U", unit),
            ints,
            texts.encode("ascii"),
        )
    )


_PRICE = attrgetter("value"), attrgetter("currency")
_VOLUME = attrgetter("quantity"), attrgetter("unit")


def legacy_fingerprint(command: object) -> str:
    """The fingerprint records written before `SCHEME` hold (a bare sha256 hex digest), read
    only to compare with such a record. Its text must never change: the type's name and each
    field's `_text`, joined by the unit separator (0x1F)."""
    assert dataclasses.is_dataclass(command)
    parts = [type(command).__name__]
    parts.extend(
        _text(_hashed(getattr(command, field.name))) for field in dataclasses.fields(command)
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _text(value: object) -> str:
    """A field as both schemes write it but for batches of scalar points: a pydantic model as
    sorted-key JSON, anything else as its repr (a batch by `_sequence_repr`, the same text a
    few times faster)."""
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"), sort_keys=True)
    if type(value) is list or type(value) is tuple:
        return _sequence_repr(value)
    return repr(value)


def _sequence_repr(items: list[Any] | tuple[Any, ...]) -> str:
    """`repr(items)`, each item by `_point_repr`."""
    texts = ", ".join(map(_point_repr, items))
    if type(items) is list:
        return f"[{texts}]"
    return f"({texts},)" if len(items) == 1 else f"({texts})"


def _point_repr(item: object) -> str:
    """`repr(item)`. A scalar point (a Snap and a Price or a Volume of a Decimal: the bulk of
    every ingest) is formatted in one expression instead of through the generated reprs of
    three classes and a Decimal."""
    if type(item) is tuple and len(item) == 2 and type(item[0]) is Snap:
        snap, value = item
        head = f"(Snap(utc_us={snap.utc_us!r}, offset_s={snap.offset_s!r}), "
        if type(value) is Price and type(value.value) is Decimal:
            return f"{head}Price(value=Decimal('{value.value!s}'), currency={value.currency!r}))"
        if type(value) is Volume and type(value.quantity) is Decimal:
            return f"{head}Volume(quantity=Decimal('{value.quantity!s}'), unit={value.unit!r}))"
    return repr(item)


class CommandRecord:
    def __init__(self, scope: str, command_id: str) -> None:
        self.scope = scope
        self.command_id = command_id
        self.version: int | None = None
        self.accepted: CommandAccepted | None = None
        self.position = 0  # of the append that recorded it: the command's consistency token

    @property
    def stream(self) -> str:
        return command_stream(self.scope, self.command_id)

    @property
    def size(self) -> int:
        return 1

    def outcome_of(self, command_id: str) -> CommandOutcome | None:
        return None  # the outcome lives with the streams the command changed

    def clone(self) -> CommandRecord:
        copy = CommandRecord(self.scope, self.command_id)
        copy.version, copy.accepted, copy.position = self.version, self.accepted, self.position
        return copy

    def earlier_streams(self, print_: str, command: object) -> list[str] | None:
        """The streams of the earlier command with this id, None if there was none. The same
        id with other arguments is refused: answering it with the first command's outcome
        would tell the client that what it sent now was applied. `print_` is the command's
        `fingerprint`; a record written before it holds a `legacy_fingerprint`, which is
        computed (from `command`) only then."""
        if self.accepted is None:
            return None
        recorded = self.accepted.fingerprint
        if recorded.startswith(SCHEME):
            same = recorded == print_
        else:
            same = recorded == legacy_fingerprint(command)
        if not same:
            raise AlreadyExists(
                command_resource(self.scope, self.command_id),
                reason=COMMAND_REUSED,
                detail=f"command id {self.command_id!r} was used on {self.scope} for a different"
                " command: a retry must send the same arguments, a new command a new id",
            )
        return self.accepted.streams

    def accept(self, print_: str, streams: list[str]) -> list[DomainEvent]:
        return [CommandAccepted(command_id=self.command_id, fingerprint=print_, streams=streams)]

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, CommandAccepted):
            self.accepted = event
            self.position = meta.position
