"""Events of the per-point state of a series, one stream per time bucket.

Each event carries a batch of points in columns (one list per field, index i = point i): a bulk
load of a thousand points is one event, and decoding it costs a few list validations instead of
a thousand small objects. `rows()` gives the per-point view.

Values are encoded by qis_domain.values.encode_value: a decimal string for price and volume
series (currency or unit in the event's `unit`), a value document for the other data types.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from qis_domain.events.base import DomainEvent
from qis_domain.values import DataType

RawValue = str | dict[str, Any]


class _Columns(DomainEvent):
    """All list fields of a columnar event must have the length of `snaps`."""

    snaps: list[int]

    @model_validator(mode="after")
    def _same_lengths(self) -> _Columns:
        n = len(self.snaps)
        for name, value in self:
            if isinstance(value, list) and len(value) != n:
                raise ValueError(f"column {name} has {len(value)} entries for {n} snaps")
        return self


class DataIngested(_Columns):
    """Raw values of one source, as received (after schema validation)."""

    event_type: ClassVar[str] = "DataIngested"
    series_id: str
    source_id: str
    data_type: DataType
    unit: str
    offsets: list[int]  # UTC offset the source sent with each snap, in seconds
    values: list[RawValue]


class Issue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    issue_id: str
    snap_us: int
    source_id: str  # "" when the issue is about the reconciled value, not one source's
    rule: str
    severity: str  # "info" | "warning" | "error"
    blocking: bool
    evidence: dict[str, Any]


class QualityIssueDetected(DomainEvent):
    event_type: ClassVar[str] = "QualityIssueDetected"
    event_version: ClassVar[int] = 2  # v1 named the jump rule "spike" (see upcasters)
    series_id: str
    issues: list[Issue]


class DataReconciled(_Columns):
    """The candidate official value of each point after reconciling its sources."""

    event_type: ClassVar[str] = "DataReconciled"
    series_id: str
    data_type: DataType
    unit: str
    values: list[RawValue]
    methods: list[str]
    contributions: list[dict[str, str]]  # source id -> the figure it contributed
    excluded: list[list[str]]  # sources left out as outliers
    quality_scores: list[str]  # decimal strings in [0, 1]
    statuses: list[str]  # qis_domain.quality.PointStatus


@dataclass(frozen=True, slots=True)
class OfficialRow:
    snap_us: int
    version: int
    value: RawValue
    quality_score: str
    sources: list[str]
    method: str
    flags: list[str]
    reason: str
    cause: str


class _Official(_Columns):
    event_version: ClassVar[int] = 2  # v1 flagged the jump rule as "spike" (see upcasters)
    series_id: str
    data_type: DataType
    unit: str
    versions: list[int]
    values: list[RawValue]
    quality_scores: list[str]
    sources: list[list[str]]
    methods: list[str]  # reconciliation method, or "manual"
    flags: list[list[str]]  # rules failed by what each value was made of
    reasons: list[str]  # why a version > 1 exists ("" for first versions)
    causes: list[str]  # late_source | corrected_source | manual_correction | approved_change | ...
    decided_at_us: int = 0  # the deciding command's clock: publication latency (timeliness)

    def rows(self) -> Iterator[OfficialRow]:
        return map(
            OfficialRow,
            self.snaps,
            self.versions,
            self.values,
            self.quality_scores,
            self.sources,
            self.methods,
            self.flags,
            self.reasons,
            self.causes,
        )


class DataPublished(_Official):
    """First official versions (version 1) of points."""

    event_type: ClassVar[str] = "DataPublished"
    mode: str  # "automatic" | "manual"


class DataRestated(_Official):
    """New official versions (version > 1) of already published points."""

    event_type: ClassVar[str] = "DataRestated"


class PublicationScheduled(_Columns):
    """Points waiting for more sources get a cut-off: at `due_us` they are published with what
    has arrived, or flagged if they are held."""

    event_type: ClassVar[str] = "PublicationScheduled"
    series_id: str
    due_us: list[int]


class _Resolution(DomainEvent):
    """A person's decision on open quality issues (the exception queue)."""

    series_id: str
    issue_ids: list[str]
    snaps: list[int]  # the point of each issue, parallel to issue_ids
    reason: str


class QualityApproved(_Resolution):
    """The flagged values are accepted as they are: they no longer hold their points."""

    event_type: ClassVar[str] = "QualityApproved"


class QualityRejected(_Resolution):
    """The flagged source values are wrong: they stay stored but no longer count."""

    event_type: ClassVar[str] = "QualityRejected"


class QualityOverridden(_Resolution):
    """The issues are settled by a manual value (see ManualOverrideSet)."""

    event_type: ClassVar[str] = "QualityOverridden"


class ManualOverrideSet(_Columns):
    """A manual value stands over automatic reconciliation until `expires_us` (0: for good)."""

    event_type: ClassVar[str] = "ManualOverrideSet"
    series_id: str
    expires_us: list[int]
    reason_codes: list[str]


class ManualOverrideExpired(_Columns):
    """Automatic reconciliation governs these points again."""

    event_type: ClassVar[str] = "ManualOverrideExpired"
    series_id: str
