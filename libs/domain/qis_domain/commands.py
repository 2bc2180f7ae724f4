"""What every command carries besides its own arguments."""

from __future__ import annotations

from dataclasses import dataclass, field


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
