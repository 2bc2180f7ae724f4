"""Quality metrics of a series over a window (one stream per series and window)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from qis_domain.events.base import DomainEvent


class QualityMetricsCalculated(DomainEvent):
    event_type: ClassVar[str] = "QualityMetricsCalculated"
    series_id: str
    window_start_us: int
    window_end_us: int
    # Scores are decimal strings in [0, 1]; the counts they come from are kept as evidence.
    accuracy: str  # points whose sources agree within tolerance / points with 2+ sources
    completeness: str  # expected snaps with a value / expected snaps; "" unknown
    timeliness: str  # first publications within the SLA / first publications
    consistency: str  # source values passing every rule / source values
    expected_snaps: int
    received_snaps: int
    compared_points: int
    agreeing_points: int
    publications: int
    on_time: int
    checked_values: int
    clean_values: int
    # Completeness against an exchange calendar: the expected sessions without a value (ISO
    # dates), and the window's days outside the calendar's coverage (completeness "" then).
    missing_sessions: list[str] = Field(default_factory=list)
    uncovered_days: int = 0
