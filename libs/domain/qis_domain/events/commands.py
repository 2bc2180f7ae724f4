"""Events of the CommandRecord aggregate (see command_log)."""

from __future__ import annotations

from typing import ClassVar

from qis_domain.events.base import DomainEvent


class CommandAccepted(DomainEvent):
    event_type: ClassVar[str] = "CommandAccepted"
    command_id: str
    fingerprint: str
    streams: list[str]  # where its events are: a repeat reads its outcome there
