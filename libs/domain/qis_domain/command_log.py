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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from qis_domain.commands import CommandOutcome
from qis_domain.errors import AlreadyExists
from qis_domain.events import CommandAccepted, DomainEvent
from qis_domain.names import command_resource
from qis_domain.series_bucket import Recorded
from qis_domain.snaps import Snap
from qis_domain.values import Price, Volume

COMMAND_REUSED = "COMMAND_ID_REUSED"


def command_stream(scope: str, command_id: str) -> str:
    """`scope` is the resource the command is about ("series/SPX", "sources/bbg")."""
    return f"{scope}/commands/{command_id}"


def fingerprint(command: object) -> str:
    """What the command asks for, independent of who asks and when. Commands are flat frozen
    dataclasses: a field that is a pydantic model (a definition, a source's configuration, with
    maps a client need not send in the same order twice) counts as sorted-key JSON, every other
    field (ids, points, values: tuples, Decimals, frozen dataclasses) as its repr, which is
    deterministic.

    Stored records hold this digest (CommandAccepted.fingerprint) and a retry is recognised by
    equality with it, so the text hashed must never change: a batch of points is written by
    `_sequence_repr`, which makes exactly their repr, a few times faster."""
    assert dataclasses.is_dataclass(command)
    parts = [type(command).__name__]
    for field in dataclasses.fields(command):
        value = getattr(command, field.name)
        if isinstance(value, BaseModel):
            parts.append(json.dumps(value.model_dump(mode="json"), sort_keys=True))
        elif type(value) is list or type(value) is tuple:
            parts.append(_sequence_repr(value))
        else:
            parts.append(repr(value))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


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

    def earlier_streams(self, print_: str) -> list[str] | None:
        """The streams of the earlier command with this id, None if there was none. The same
        id with other arguments is refused: answering it with the first command's outcome
        would tell the client that what it sent now was applied."""
        if self.accepted is None:
            return None
        if self.accepted.fingerprint != print_:
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
