"""Series and data-source definitions: configuration as data, versioned with the series."""

from __future__ import annotations

import enum
import functools
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field

from qis_domain.snaps import Frequency
from qis_domain.values import DataType


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


D = TypeVar("D", bound=BaseModel)


class ValidationRules(_Frozen):
    """Rules as data. `max_jump_percent`: one-sided close-to-close move from the previous
    point's received value (rule "jump", an error: holds). `max_spike_percent`: out and back,
    flags the point in between (rule "spike", a warning). `max_zscore`: the move against the
    moves of the previous `zscore_window` received values (an error). `stale_after_snaps`: N
    unchanged received values in a row (a warning)."""

    require_positive: bool = False
    max_jump_percent: Decimal | None = None
    max_spike_percent: Decimal | None = None
    max_zscore: Decimal | None = None
    zscore_window: Annotated[int, Field(ge=2, le=1000)] = 20
    stale_after_snaps: Annotated[int, Field(ge=0)] = 0
    check_calendar: bool = False


class ReconciliationMethod(enum.StrEnum):
    PRIORITY = "priority"
    MEDIAN = "median"
    CONSENSUS = "consensus"


class BreakAction(enum.StrEnum):
    FLAG = "flag"
    BLOCK = "block"


class ReconciliationPolicy(_Frozen):
    method: ReconciliationMethod = ReconciliationMethod.PRIORITY
    tolerance_bps: Decimal = Decimal(0)
    tolerance_abs: Decimal = Decimal(0)
    on_break: BreakAction = BreakAction.FLAG


class PublicationMode(enum.StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class PublicationPolicy(_Frozen):
    mode: PublicationMode = PublicationMode.AUTOMATIC
    min_sources: Annotated[int, Field(ge=1)] = 1
    min_quality_score: Decimal | None = None
    cutoff_seconds: Annotated[int, Field(ge=0)] = 0
    timeliness_sla_seconds: Annotated[int, Field(ge=0)] = 0  # 0: every publication is on time


class Classification(enum.StrEnum):
    """How sensitive a series' data is, from the least to the most (access policies allow up to
    a level)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return _CLASSIFICATION_RANKS[self]


_CLASSIFICATION_RANKS = {level: rank for rank, level in enumerate(Classification)}
DEFAULT_CLASSIFICATION = Classification.INTERNAL
"""A series defined without a classification (and every series defined before they existed):
not public unless someone says so, not secret either."""


@functools.cache
def known_time_zones() -> frozenset[str]:
    """The IANA zone names (read once: the list is static data of the interpreter)."""
    return frozenset(available_timezones())


class SeriesSource(_Frozen):
    source_id: str
    priority: int  # 1 = most trusted


class SeriesDefinition(_Frozen):
    data_type: DataType
    frequency: Frequency
    unit: str = ""
    precision: Annotated[int, Field(ge=0, le=18)] = 0
    time_zone: str = "UTC"
    calendar: str = ""
    sources: tuple[SeriesSource, ...]
    validation: ValidationRules = ValidationRules()
    reconciliation: ReconciliationPolicy = ReconciliationPolicy()
    publication: PublicationPolicy = PublicationPolicy()
    description: str = ""
    classification: Classification = DEFAULT_CLASSIFICATION

    def source(self, source_id: str) -> SeriesSource | None:
        return next((s for s in self.sources if s.source_id == source_id), None)


class DataSourceConfig(_Frozen):
    provider: str
    description: str = ""
    rate_limit_per_minute: Annotated[int, Field(ge=0)] = 0
    cost_per_request: Decimal = Decimal(0)
    settings: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True


class Permission(enum.StrEnum):
    """What an access policy lets its principals do (qis_domain.access says which command needs
    which)."""

    READ = "read"
    WRITE = "write"
    PUBLISH = "publish"
    ADMIN = "admin"


class TimeWindow(_Frozen):
    """Only from `start_s` to `end_s` (seconds after local midnight, wall clock) in `time_zone`
    on `days` (ISO weekdays, 1 = Monday; empty: every day). A window that ends at or before its
    start runs overnight: it belongs to the day it starts on."""

    kind: Literal["time_window"] = "time_window"
    days: tuple[int, ...] = ()
    start_s: int
    end_s: int
    time_zone: str


class ClassificationLimit(_Frozen):
    """Only on series classified at most `max_level`."""

    kind: Literal["data_classification"] = "data_classification"
    max_level: Classification


class SourceRestriction(_Frozen):
    """Only ingesting as sources whose names match one of `sources` ("sources/bbg",
    "sources/vendor-*")."""

    kind: Literal["source_restriction"] = "source_restriction"
    sources: tuple[str, ...]


AccessCondition = Annotated[
    TimeWindow | ClassificationLimit | SourceRestriction, Field(discriminator="kind")
]


class AccessPolicy(_Frozen):
    """The architecture's DataAccessPolicy: `principals` ("user:alice", "role:data-ops", "*")
    may use `permissions` on `resources` (patterns of resource names, see qis_domain.access)
    while every one of `conditions` holds."""

    principals: tuple[str, ...]
    resources: tuple[str, ...]
    permissions: tuple[Permission, ...]
    conditions: tuple[AccessCondition, ...] = ()
    description: str = ""


class Update(_Frozen):
    """New values for some fields of a definition (AIP-134's update mask, as the domain sees
    it): the fields it holds are replaced, a cleared one by its default, every other one is
    kept. It is applied to the state the command is decided on, so a change another writer
    made since the client read is kept, never overwritten by a merge made before the load."""

    values: dict[str, Any]

    def applied_to(self, current: D) -> D:
        """Validated like a new definition: a field this model does not have is refused."""
        return current.model_validate({**dict(current), **self.values})
