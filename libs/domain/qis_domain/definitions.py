"""Series and data-source definitions: configuration as data, versioned with the series."""

from __future__ import annotations

import enum
import functools
import itertools
import re
from decimal import Context, Decimal
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from qis_domain.service_levels import ServiceLevel
from qis_domain.snaps import Frequency
from qis_domain.structures import StructureSchema
from qis_domain.values import DataType


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


D = TypeVar("D", bound=BaseModel)


DAY_SECONDS = 86_400
MAX_JUMP_WINDOWS = 24
"""Time-of-day windows of one series' jump rule: a few per trading day (the open, the close,
an auction) in practice."""


class JumpWindow(_Frozen):
    """From `start_s` to `end_s` (seconds after local midnight in the series' time zone, wall
    clock, the end excluded), the jump limits are `multiplier` times what they are (e.g. 2: a
    band twice as wide in the first half hour after the open)."""

    start_s: Annotated[int, Field(ge=0, lt=DAY_SECONDS)]
    end_s: Annotated[int, Field(gt=0, le=DAY_SECONDS)]
    multiplier: Annotated[Decimal, Field(gt=0)]

    @model_validator(mode="after")
    def _ordered(self) -> JumpWindow:
        if self.start_s >= self.end_s:
            raise ValueError("a window starts before it ends (split one across midnight)")
        return self


ZeroSeverity = Literal["warning", "error"]
"""What a figure of exactly 0 is where a series forbids it: flagged, or held."""

MAX_RESIDUAL_WINDOW = 250
"""Intervals a benchmark residual's usual size is taken over: about a year of closes."""


class BenchmarkCheck(_Frozen):
    """Moves of a series against a benchmark series' official values over the same interval
    (qis_domain.cross_series). `max_residual_multiple` (k): rule "benchmark_move" (a warning),
    the residual move (the series' relative move less `beta` times the benchmark's) beyond k
    times the median absolute residual of the previous `residual_window` intervals.
    `flat_move_percent`: rule "flat_while_benchmark_moved" (a warning), an unchanged value
    while the benchmark moved beyond this percentage. Either may be unset, not both."""

    series_id: Annotated[str, Field(min_length=1)]
    beta: Decimal = Decimal(1)
    max_residual_multiple: Annotated[Decimal, Field(gt=0)] | None = None
    residual_window: Annotated[int, Field(ge=2, le=MAX_RESIDUAL_WINDOW)] = 20
    flat_move_percent: Annotated[Decimal, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _some_check(self) -> BenchmarkCheck:
        if self.max_residual_multiple is None and self.flat_move_percent is None:
            raise ValueError("a benchmark needs max_residual_multiple or flat_move_percent")
        return self


class UnderlyingCheck(_Frozen):
    """Rule "underlying_move" (an error: holds): a derivative (a future, an option) moving
    against its underlying series' official move over the same interval (`inverse`: a
    derivative that moves opposite to it, such as a put) beyond `tolerance_percent`."""

    series_id: Annotated[str, Field(min_length=1)]
    inverse: bool = False
    tolerance_percent: Annotated[Decimal, Field(ge=0)] = Decimal(0)


class DayOverDayCheck(_Frozen):
    """Rule "day_over_day" (qis_domain.day_over_day): a value against the official value of
    the same snap-of-day (local wall-clock time) in the previous session of the series'
    calendar (without one: of its service level's weekdays; a series needs one or the other). `max_percent` bounds the change in percent of
    that official figure, `max_rise_percent` / `max_fall_percent` replace it for one side (an
    asymmetric band), `max_abs` bounds the absolute change: a change fails when it is beyond
    every band set for its side (a small absolute move of a tiny price passes with both set).
    `severity`: a warning flags, an error holds."""

    max_percent: Annotated[Decimal, Field(gt=0)] | None = None
    max_rise_percent: Annotated[Decimal, Field(gt=0)] | None = None
    max_fall_percent: Annotated[Decimal, Field(gt=0)] | None = None
    max_abs: Annotated[Decimal, Field(gt=0)] | None = None
    severity: ZeroSeverity = "warning"

    @model_validator(mode="after")
    def _some_band(self) -> DayOverDayCheck:
        if self.max_abs is None and self.limits() == (None, None):
            raise ValueError("day_over_day needs a band: a percent, a rise/fall percent or max_abs")
        return self

    def limits(self) -> tuple[Decimal | None, Decimal | None]:
        """The percent limits of a rise and of a fall (None: no percent band on that side)."""
        rise = self.max_percent if self.max_rise_percent is None else self.max_rise_percent
        fall = self.max_percent if self.max_fall_percent is None else self.max_fall_percent
        return rise, fall


class ValidationRules(_Frozen):
    """Rules as data. `max_jump_percent`: one-sided close-to-close move from the previous
    point's received value (rule "jump", an error: holds); `max_rise_percent` and
    `max_fall_percent` replace it for moves up or down (an asymmetric band, e.g. +0.35 % /
    -0.25 %), each on its own or beside it. `max_spike_percent`: out and back, flags the point
    in between (rule "spike", a warning). `max_zscore`: the move against the moves of the
    previous `zscore_window` received values (an error). `stale_after_snaps`: N unchanged
    received values in a row (a warning). `jump_windows`: times of day whose jump limits are
    scaled (wider after the open), at most one window for any time. `forbid_zero`: a figure
    of exactly 0 (rule "zero_value") is a warning or an error. `review_manual_values`: every
    value set by hand (a restatement, an override) raises a "manual_value" warning on its
    point, for a second person to review. `benchmark` and `underlying`: checks against another
    series' official values (BenchmarkCheck, UnderlyingCheck). `day_over_day`: a check against
    the series' own official value of the previous session (DayOverDayCheck)."""

    require_positive: bool = False
    max_jump_percent: Decimal | None = None
    max_spike_percent: Decimal | None = None
    max_zscore: Decimal | None = None
    zscore_window: Annotated[int, Field(ge=2, le=1000)] = 20
    stale_after_snaps: Annotated[int, Field(ge=0)] = 0
    check_calendar: bool = False
    # Added after the first version: left out of a stored definition while unset, so that the
    # events of a definition without them stay byte for byte what they were.
    max_rise_percent: Decimal | None = None
    max_fall_percent: Decimal | None = None
    jump_windows: Annotated[tuple[JumpWindow, ...], Field(max_length=MAX_JUMP_WINDOWS)] = ()
    forbid_zero: ZeroSeverity | None = None
    review_manual_values: bool = False
    benchmark: BenchmarkCheck | None = None
    underlying: UnderlyingCheck | None = None
    day_over_day: DayOverDayCheck | None = None

    @model_validator(mode="after")
    def _disjoint(self) -> ValidationRules:
        ordered = sorted(self.jump_windows, key=lambda w: w.start_s)
        for before, after in itertools.pairwise(ordered):
            if after.start_s < before.end_s:
                raise ValueError("jump windows overlap: each time of day has one multiplier")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = dump(self)
        for name in _ADDED_RULES:
            # A tuple in Python, a list in JSON; `is False`, as 0 == False.
            if (value := out.get(name)) is None or value is False or value in ((), []):
                out.pop(name, None)
        return out

    def jump_limits(self) -> tuple[Decimal | None, Decimal | None]:
        """The limits of a move up and of a move down (None: that move is not checked)."""
        rise = self.max_jump_percent if self.max_rise_percent is None else self.max_rise_percent
        fall = self.max_jump_percent if self.max_fall_percent is None else self.max_fall_percent
        return rise, fall

    @property
    def asymmetric(self) -> bool:
        return self.max_rise_percent is not None or self.max_fall_percent is not None

    def jump_window(self, local_s: int) -> JumpWindow | None:
        """The window of a time of day (seconds after local midnight), if any."""
        return next((w for w in self.jump_windows if w.start_s <= local_s < w.end_s), None)


_ADDED_RULES = (
    "max_rise_percent",
    "max_fall_percent",
    "jump_windows",
    "forbid_zero",
    "review_manual_values",
    "benchmark",
    "underlying",
    "day_over_day",
)


class ReconciliationMethod(enum.StrEnum):
    PRIORITY = "priority"
    MEDIAN = "median"
    CONSENSUS = "consensus"


class BreakAction(enum.StrEnum):
    FLAG = "flag"
    BLOCK = "block"


MAX_AGREEING_SOURCES = 100
"""Far more sources than any series has: a minimum above its sources is never reached."""


class ReconciliationPolicy(_Frozen):
    """`min_agreeing_sources`: once a point has that many sources' values, fewer of them within
    tolerance of the chosen value is a "confidence_level" issue, a warning, or an error that
    holds the point with `on_low_confidence` BLOCK (0 or 1: no check)."""

    method: ReconciliationMethod = ReconciliationMethod.PRIORITY
    tolerance_bps: Decimal = Decimal(0)
    tolerance_abs: Decimal = Decimal(0)
    on_break: BreakAction = BreakAction.FLAG
    # Added after the first version: left out of a stored definition while at their defaults,
    # so that the events of a definition without them stay byte for byte what they were.
    min_agreeing_sources: Annotated[int, Field(ge=0, le=MAX_AGREEING_SOURCES)] = 0
    on_low_confidence: BreakAction = BreakAction.FLAG

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = dump(self)
        if not self.min_agreeing_sources:
            out.pop("min_agreeing_sources", None)
        if self.on_low_confidence is BreakAction.FLAG:
            out.pop("on_low_confidence", None)
        return out

    @property
    def checks_confidence(self) -> bool:
        return self.min_agreeing_sources > 1


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
    # Added after the first version (docs/service-levels.md): left out of a stored definition
    # while unset, so that the events of a definition without one stay what they were.
    service_level: ServiceLevel | None = None
    # The axes and checks of a term structure or surface (qis_domain.structures); left out of
    # a stored definition while unset, for the same reason.
    structure: StructureSchema | None = Field(default=None, exclude_if=lambda s: s is None)

    @model_serializer(mode="wrap")
    def _without_unset_service_level(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = dump(self)
        if out.get("service_level") is None:
            out.pop("service_level", None)
        return out

    def source(self, source_id: str) -> SeriesSource | None:
        return next((s for s in self.sources if s.source_id == source_id), None)


MAX_RETRY_ATTEMPTS = 20
MAX_BACKOFF_US = 3_600 * 1_000_000
"""A feed's retries are bounded whatever a source says: at most 20 calls for one, at most an
hour between two."""

_CREDENTIALS_REF = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]{0,127}|file:/[^\s\x00-\x1f]{1,1000}")


def credentials_ref_problem(ref: str) -> str | None:
    """Why `ref` is not a reference to a secret (None when it is one, or empty). Only the two
    forms are accepted, so that a secret pasted in its place (an API key, a token) is refused
    before it reaches an event, where it would stay for ever."""
    if ref == "" or _CREDENTIALS_REF.fullmatch(ref):
        return None
    return "a reference to the secret, env:VARIABLE or file:/absolute/path, never the secret itself"


class SourceRetryPolicy(_Frozen):
    """How a feed retries a failed call to the source's provider: `max_attempts` calls at most,
    retries included, waiting a jittered exponential backoff that starts at `initial_backoff_us`
    and never exceeds `max_backoff_us`."""

    max_attempts: Annotated[int, Field(ge=1, le=MAX_RETRY_ATTEMPTS)]
    initial_backoff_us: Annotated[int, Field(ge=0, le=MAX_BACKOFF_US)]
    max_backoff_us: Annotated[int, Field(ge=0, le=MAX_BACKOFF_US)]

    @model_validator(mode="after")
    def _ordered(self) -> SourceRetryPolicy:
        if self.initial_backoff_us > self.max_backoff_us:
            raise ValueError("initial_backoff_us is above max_backoff_us")
        return self


class DataSourceConfig(_Frozen):
    """Fields added after the first version have defaults, so that older events decode."""

    provider: str
    description: str = ""
    rate_limit_per_minute: Annotated[int, Field(ge=0)] = 0
    cost_per_request: Decimal = Decimal(0)
    settings: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    credentials_ref: str = ""
    retry: SourceRetryPolicy | None = None  # None: the feed's own policy

    @field_validator("credentials_ref")
    @classmethod
    def _a_reference(cls, ref: str) -> str:
        problem = credentials_ref_problem(ref)
        if problem is not None:
            raise ValueError(problem)
        return ref


class SourceStatus(enum.StrEnum):
    """How a source's feed fared over an interval (docs/data-sources.md)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"


MAX_HEALTH_COUNT = 10**12
"""Requests (and failures, retries) one health report may count: far beyond any interval."""


MAX_HEALTH_INSTRUMENTS = 1_000
"""Instruments one health report may describe (a feed with more reports the stalest)."""


class InstrumentFreshness(_Frozen):
    """When the latest value of one series of a feed arrived (None: none yet); its staleness
    is the age of that value at the end of the report's interval."""

    series_id: str
    latest_value_us: int | None = None


class HealthReport(_Frozen):
    """What a feed says of its source over [start_us, end_us): counts of that interval alone,
    so that reports add up. Latencies in microseconds, None when the feed did not measure."""

    status: SourceStatus
    start_us: int
    end_us: int
    requests: Annotated[int, Field(ge=0, le=MAX_HEALTH_COUNT)] = 0
    failures: Annotated[int, Field(ge=0, le=MAX_HEALTH_COUNT)] = 0
    rate_limited: Annotated[int, Field(ge=0, le=MAX_HEALTH_COUNT)] = 0
    retries: Annotated[int, Field(ge=0, le=MAX_HEALTH_COUNT)] = 0
    latency_p50_us: int | None = None
    latency_p99_us: int | None = None
    last_success_us: int | None = None
    last_error: str = ""
    # Added after the first version: reports stored without them decode with these defaults.
    points_received: Annotated[int, Field(ge=0, le=MAX_HEALTH_COUNT)] = 0
    points_sent: Annotated[int, Field(ge=0, le=MAX_HEALTH_COUNT)] = 0
    instruments: Annotated[
        tuple[InstrumentFreshness, ...], Field(max_length=MAX_HEALTH_INSTRUMENTS)
    ] = ()


EXACT = Context(prec=200)
"""Costs are products and sums of bounded decimals (|x| < 1e18, 18 places, 1e12 requests per
report): far below 200 digits, so no cost is ever rounded (the default context keeps 28)."""


class SourceUsage(_Frozen):
    """What health reports added up to (cost in the provider's billing currency, exact)."""

    reports: int = 0
    requests: int = 0
    failures: int = 0
    rate_limited: int = 0
    retries: int = 0
    cost: Decimal = Decimal(0)
    points_received: int = 0
    points_sent: int = 0

    def __add__(self, other: SourceUsage) -> SourceUsage:
        return SourceUsage(
            reports=self.reports + other.reports,
            requests=self.requests + other.requests,
            failures=self.failures + other.failures,
            rate_limited=self.rate_limited + other.rate_limited,
            retries=self.retries + other.retries,
            cost=EXACT.add(self.cost, other.cost),
            points_received=self.points_received + other.points_received,
            points_sent=self.points_sent + other.points_sent,
        )

    def plus(self, report: HealthReport, cost: Decimal) -> SourceUsage:
        """With one more report, of that cost."""
        return self + SourceUsage(
            reports=1,
            requests=report.requests,
            failures=report.failures,
            rate_limited=report.rate_limited,
            retries=report.retries,
            cost=cost,
            points_received=report.points_received,
            points_sent=report.points_sent,
        )


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
