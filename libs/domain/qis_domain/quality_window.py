"""The QualityWindow aggregate: the metrics calculations of one series over one window."""

from __future__ import annotations

from qis_domain.commands import CommandOutcome, RemembersCommands
from qis_domain.events import DomainEvent, QualityMetricsCalculated
from qis_domain.series_bucket import Recorded


def quality_stream(series_id: str, start_us: int, end_us: int) -> str:
    return f"series/{series_id}/quality/{start_us}-{end_us}"


class QualityWindow(RemembersCommands):
    """Idempotency for metrics commands (a scheduler may ask twice); a later calculation of the
    same window (after late data) is a new event, and the read side keeps the latest."""

    def __init__(self, series_id: str, start_us: int, end_us: int) -> None:
        self.series_id = series_id
        self.start_us = start_us
        self.end_us = end_us
        self.version: int | None = None
        self.latest: QualityMetricsCalculated | None = None
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return quality_stream(self.series_id, self.start_us, self.end_us)

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, QualityMetricsCalculated):
            self.latest = event
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)
