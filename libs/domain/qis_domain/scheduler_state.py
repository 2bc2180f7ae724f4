"""The scheduler's checkpoint as an aggregate: one stream, `scheduler/state`, whose every event
is a whole snapshot of the process manager's state (SchedulerCheckpointed), recorded through
an ordinary command (CheckpointScheduler) like a consumer group's checkpoint.

The state is the stream's last event alone, so the aggregate can be loaded from its last
version on (`SchedulerState(known_version)`), never from the stream's start: a scheduler
checkpointing every few seconds for years does not make loading it slower. Never backwards:
a snapshot behind the recorded one (a second scheduler lagging, a late retry) is refused by
recording nothing, so a start never resumes from further back than it must.
"""

from __future__ import annotations

from qis_domain.commands import CommandOutcome, RemembersCommands
from qis_domain.errors import InvalidArgument
from qis_domain.events import DomainEvent
from qis_domain.events.scheduler import SchedulerCheckpointed, SchedulerSnapshot
from qis_domain.series_bucket import Recorded

SCHEDULER_STREAM = "scheduler/state"


class SchedulerState(RemembersCommands):
    REMEMBERED = 64
    """Command outcomes kept (as a consumer group's: checkpointed for ever, so bounded); an
    older repeat is answered from its command record."""

    def __init__(self, known_version: int | None = None) -> None:
        """`known_version`: the version of the stream's last event as the caller read it (None:
        from the start); loading reads from there, and a later one is read as well."""
        self.version: int | None = None if known_version is None else known_version - 1
        self.snapshot: SchedulerSnapshot | None = None
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return SCHEDULER_STREAM

    def checkpoint(self, snapshot: SchedulerSnapshot) -> list[DomainEvent]:
        if snapshot.position < 0:
            raise InvalidArgument.single("position", "a commit position, 0 or more")
        if self.snapshot is not None and snapshot.position < self.snapshot.position:
            return []
        return [SchedulerCheckpointed(snapshot=snapshot)]

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, SchedulerCheckpointed):
            self.snapshot = event.snapshot
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)
        if len(self._outcomes) > self.REMEMBERED:
            del self._outcomes[next(iter(self._outcomes))]
