"""What every command carries besides its own arguments."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Self


@dataclass(frozen=True, slots=True)
class CommandContext:
    command_id: str
    user_id: str
    now_us: int  # the caller's clock, injected: the domain never reads one
    correlation_id: str = ""
    causation_id: str = ""
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What a handled command produced: a repeat of the same command id is answered with it."""

    position: int
    accepted: int = 0
    flagged: int = 0
    published: int = 0

    def __add__(self, other: CommandOutcome) -> CommandOutcome:
        return CommandOutcome(
            max(self.position, other.position),
            self.accepted + other.accepted,
            self.flagged + other.flagged,
            self.published + other.published,
        )


class RemembersCommands:
    """An aggregate whose state besides its memory of handled commands is immutable values: a
    repeated command id is answered with its first outcome, and a shallow copy with its own
    memory shares nothing mutable."""

    _outcomes: dict[str, CommandOutcome]

    def outcome_of(self, command_id: str) -> CommandOutcome | None:
        return self._outcomes.get(command_id)

    @property
    def size(self) -> int:
        """What the aggregate cache counts: the aggregate, and each command outcome it remembers
        (they grow with its stream: a source reporting its health every few seconds, say)."""
        return 1 + len(self._outcomes)

    def clone(self) -> Self:
        twin = copy.copy(self)
        twin._outcomes = dict(self._outcomes)
        return twin
