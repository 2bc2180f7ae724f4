"""Events of the per-point state of a series, one stream per time bucket; each carries a batch."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from qis_domain.events.base import DomainEvent

ValueDoc = dict[str, Any]


class _Item(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestedPoint(_Item):
    snap_us: int
    offset_s: int
    value: ValueDoc


class DataIngested(DomainEvent):
    """Raw values of one source, as received (after schema validation)."""

    event_type: ClassVar[str] = "DataIngested"
    series_id: str
    source_id: str
    points: list[IngestedPoint]


class Issue(_Item):
    issue_id: str
    snap_us: int
    source_id: str  # "" when the issue is about the reconciled value, not one source's
    rule: str
    severity: str  # "info" | "warning" | "error"
    blocking: bool
    evidence: dict[str, Any]


class QualityIssueDetected(DomainEvent):
    event_type: ClassVar[str] = "QualityIssueDetected"
    series_id: str
    issues: list[Issue]


class ReconciledPoint(_Item):
    snap_us: int
    value: ValueDoc
    method: str
    contributions: dict[str, str]  # source id -> the figure it contributed
    excluded: list[str]  # sources left out (outliers)
    quality_score: str  # decimal string in [0, 1]
    status: str  # see PointStatus


class DataReconciled(DomainEvent):
    event_type: ClassVar[str] = "DataReconciled"
    series_id: str
    points: list[ReconciledPoint]


class OfficialPoint(_Item):
    snap_us: int
    version: int
    value: ValueDoc
    quality_score: str
    sources: list[str]
    method: str  # reconciliation method, or "manual"
    flags: list[str]  # rules failed by what the value was made of
    reason: str = ""  # why a version > 1 exists
    cause: str = ""  # machine-readable: late_source | corrected_source | manual_correction | ...


class DataPublished(DomainEvent):
    """First official versions (version 1) of points."""

    event_type: ClassVar[str] = "DataPublished"
    series_id: str
    mode: str  # "automatic" | "manual"
    points: list[OfficialPoint]


class DataRestated(DomainEvent):
    """New official versions (version > 1) of already published points."""

    event_type: ClassVar[str] = "DataRestated"
    series_id: str
    points: list[OfficialPoint]
