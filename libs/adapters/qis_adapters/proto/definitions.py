"""Series and data-source definitions between the v1 contract and the domain."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

from google.protobuf import duration_pb2, field_mask_pb2
from google.protobuf.message import Message
from pydantic import ValidationError
from qis.data.v1 import quality_pb2, series_pb2, values_pb2
from qis_domain.bounds import (
    MAX_DECIMAL_PLACES,
    MAX_ID_LENGTH,
    MAX_STALE_AFTER_SNAPS,
    MAX_TEXT_LENGTH,
    MAX_ZSCORE_WINDOW,
    MIN_ZSCORE_WINDOW,
    check_length,
    quoted,
)
from qis_domain.definitions import (
    DAY_SECONDS,
    DEFAULT_CLASSIFICATION,
    MAX_AGREEING_SOURCES,
    MAX_BACKOFF_US,
    MAX_JUMP_WINDOWS,
    MAX_RESIDUAL_WINDOW,
    MAX_RETRY_ATTEMPTS,
    BenchmarkCheck,
    BreakAction,
    Classification,
    DataSourceConfig,
    DayOverDayCheck,
    JumpWindow,
    PublicationMode,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    SourceRetryPolicy,
    UnderlyingCheck,
    Update,
    ValidationRules,
    ZeroSeverity,
    credentials_ref_problem,
)
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.names import SERIES_COLLECTION, SOURCES_COLLECTION, series_name, source_name
from qis_domain.service_levels import (
    CONTRACT_NAMES,
    Deadline,
    ServiceLevel,
    SourceDeadline,
    contract_path,
    problems,
)
from qis_domain.snaps import Frequency
from qis_domain.structures import (
    MAX_STRUCTURE_NODES,
    CoordinateUnit,
    Monotonicity,
    StructureSchema,
    TenorUnit,
    check_schema_fits,
)
from qis_domain.values import (
    DataType,
    check_series_unit,
    check_unit,
    parse_decimal,
    parse_optional_decimal,
)

from qis_adapters.proto.checks import name_from_proto
from qis_adapters.proto.masks import masked_fields
from qis_adapters.proto.times import duration, seconds_from_proto

K = TypeVar("K")
V = TypeVar("V")

_DATA_TYPES = {
    values_pb2.DATA_TYPE_PRICE: DataType.PRICE,
    values_pb2.DATA_TYPE_VOLUME: DataType.VOLUME,
    values_pb2.DATA_TYPE_OHLC_BAR: DataType.OHLC_BAR,
    values_pb2.DATA_TYPE_OPTIONS_CHAIN: DataType.OPTIONS_CHAIN,
    values_pb2.DATA_TYPE_CORPORATE_ACTION: DataType.CORPORATE_ACTION,
    values_pb2.DATA_TYPE_TERM_STRUCTURE: DataType.TERM_STRUCTURE,
    values_pb2.DATA_TYPE_SURFACE: DataType.SURFACE,
}
_FREQUENCIES = {
    series_pb2.FREQUENCY_TICK: Frequency.TICK,
    series_pb2.FREQUENCY_SECOND: Frequency.SECOND,
    series_pb2.FREQUENCY_MINUTE: Frequency.MINUTE,
    series_pb2.FREQUENCY_HOURLY: Frequency.HOURLY,
    series_pb2.FREQUENCY_DAILY: Frequency.DAILY,
    series_pb2.FREQUENCY_WEEKLY: Frequency.WEEKLY,
    series_pb2.FREQUENCY_MONTHLY: Frequency.MONTHLY,
}
_METHODS = {
    series_pb2.RECONCILIATION_METHOD_PRIORITY: ReconciliationMethod.PRIORITY,
    series_pb2.RECONCILIATION_METHOD_MEDIAN: ReconciliationMethod.MEDIAN,
    series_pb2.RECONCILIATION_METHOD_CONSENSUS: ReconciliationMethod.CONSENSUS,
}
_BREAKS = {
    series_pb2.BREAK_ACTION_FLAG: BreakAction.FLAG,
    series_pb2.BREAK_ACTION_BLOCK: BreakAction.BLOCK,
}
_MODES = {
    series_pb2.PUBLICATION_MODE_AUTOMATIC: PublicationMode.AUTOMATIC,
    series_pb2.PUBLICATION_MODE_MANUAL: PublicationMode.MANUAL,
}
_ZERO_SEVERITIES: dict[quality_pb2.Severity.ValueType, ZeroSeverity] = {
    quality_pb2.SEVERITY_WARNING: "warning",
    quality_pb2.SEVERITY_ERROR: "error",
}
CLASSIFICATIONS = {
    series_pb2.DATA_CLASSIFICATION_PUBLIC: Classification.PUBLIC,
    series_pb2.DATA_CLASSIFICATION_INTERNAL: Classification.INTERNAL,
    series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL: Classification.CONFIDENTIAL,
    series_pb2.DATA_CLASSIFICATION_RESTRICTED: Classification.RESTRICTED,
}


def _back(mapping: dict[K, V]) -> dict[V, K]:
    return {v: k for k, v in mapping.items()}


Parse = Callable[[Any, str, list[FieldViolation]], object]
"""One top-level field of a resource message to its domain value, recording violations at the
path it is given (None for a part that would not make a valid model)."""


class _Field(NamedTuple):
    domain: str  # the field's name in the domain's definition
    parse: Parse


def _data_type(msg: series_pb2.Series, path: str, v: list[FieldViolation]) -> DataType | None:
    data_type = _DATA_TYPES.get(msg.data_type)
    if data_type is None:
        v.append(FieldViolation(path, "a data type is required"))
    return data_type


def _frequency(msg: series_pb2.Series, path: str, v: list[FieldViolation]) -> Frequency | None:
    frequency = _FREQUENCIES.get(msg.frequency)
    if frequency is None:
        v.append(FieldViolation(path, "a frequency is required"))
    return frequency


def _unit(msg: series_pb2.Series, path: str, v: list[FieldViolation]) -> str:
    return msg.unit  # checked in _series_values: its shape depends on the data type


def _precision(msg: series_pb2.Series, path: str, v: list[FieldViolation]) -> int:
    _in_range(msg.precision, 0, MAX_DECIMAL_PLACES, path, v)
    return msg.precision


def _time_zone(msg: series_pb2.Series, path: str, v: list[FieldViolation]) -> str:
    check_length(msg.time_zone, MAX_ID_LENGTH, path, v)
    return msg.time_zone or "UTC"


def _calendar(msg: series_pb2.Series, path: str, v: list[FieldViolation]) -> str:
    check_length(msg.calendar, MAX_ID_LENGTH, path, v)
    return msg.calendar


def _sources(
    msg: series_pb2.Series, path: str, v: list[FieldViolation]
) -> tuple[SeriesSource, ...]:
    sources = []
    for i, s in enumerate(msg.sources):
        source_id = name_from_proto(s.source, SOURCES_COLLECTION, f"{path}[{i}].source", v)
        if source_id is not None:
            sources.append(SeriesSource(source_id=source_id, priority=s.priority or i + 1))
    return tuple(sources)


def _validation(msg: series_pb2.Series, p: str, v: list[FieldViolation]) -> ValidationRules | None:
    rules, before = msg.validation, len(v)
    # Above 0: a threshold of 0 or below holds or flags every move, the quiet ones included.
    max_jump_percent = _above_zero(rules.max_jump_percent, f"{p}.max_jump_percent", v)
    max_spike_percent = _above_zero(rules.max_spike_percent, f"{p}.max_spike_percent", v)
    max_zscore = _above_zero(rules.max_zscore, f"{p}.max_zscore", v)
    max_rise_percent = _above_zero(rules.max_rise_percent, f"{p}.max_rise_percent", v)
    max_fall_percent = _above_zero(rules.max_fall_percent, f"{p}.max_fall_percent", v)
    if rules.zscore_window:  # 0: the default
        _in_range(
            rules.zscore_window, MIN_ZSCORE_WINDOW, MAX_ZSCORE_WINDOW, f"{p}.zscore_window", v
        )
    _in_range(rules.stale_after_snaps, 0, MAX_STALE_AFTER_SNAPS, f"{p}.stale_after_snaps", v)
    windows = _jump_windows(rules.jump_windows, f"{p}.jump_windows", v)
    forbid_zero = None
    if rules.forbid_zero != quality_pb2.SEVERITY_UNSPECIFIED:
        forbid_zero = _ZERO_SEVERITIES.get(rules.forbid_zero)
        if forbid_zero is None:
            v.append(
                FieldViolation(
                    f"{p}.forbid_zero",
                    "SEVERITY_WARNING (flags) or SEVERITY_ERROR (holds); unspecified disables",
                )
            )
    benchmark = underlying = None
    if rules.HasField("benchmark"):
        benchmark = _benchmark(rules.benchmark, f"{p}.benchmark", v)
    if rules.HasField("underlying"):
        underlying = _underlying(rules.underlying, f"{p}.underlying", v)
    day_over_day = None
    if rules.HasField("day_over_day"):
        day_over_day = _day_over_day(rules.day_over_day, f"{p}.day_over_day", v)
    if len(v) > before:
        return None
    return ValidationRules(
        require_positive=rules.require_positive,
        max_jump_percent=max_jump_percent,
        max_spike_percent=max_spike_percent,
        max_zscore=max_zscore,
        zscore_window=rules.zscore_window or 20,
        stale_after_snaps=rules.stale_after_snaps,
        check_calendar=rules.check_calendar,
        max_rise_percent=max_rise_percent,
        max_fall_percent=max_fall_percent,
        jump_windows=windows,
        forbid_zero=forbid_zero,
        review_manual_values=rules.review_manual_values,
        benchmark=benchmark,
        underlying=underlying,
        day_over_day=day_over_day,
    )


def _benchmark(
    msg: series_pb2.BenchmarkCheck, p: str, v: list[FieldViolation]
) -> BenchmarkCheck | None:
    before = len(v)
    series_id = name_from_proto(msg.series, SERIES_COLLECTION, f"{p}.series", v)
    beta = Decimal(1) if msg.beta == "" else parse_decimal(msg.beta, f"{p}.beta", v)
    multiple = _above_zero(msg.max_residual_multiple, f"{p}.max_residual_multiple", v)
    if msg.residual_window:  # 0: the default
        _in_range(msg.residual_window, 2, MAX_RESIDUAL_WINDOW, f"{p}.residual_window", v)
    flat = _above_zero(msg.flat_move_percent, f"{p}.flat_move_percent", v)
    if multiple is None and flat is None and len(v) == before:
        v.append(
            FieldViolation(
                f"{p}.max_residual_multiple",
                "set it, flat_move_percent or both (a benchmark without a rule checks nothing)",
            )
        )
    if len(v) > before or series_id is None:
        return None
    return BenchmarkCheck(
        series_id=series_id,
        beta=beta,
        max_residual_multiple=multiple,
        residual_window=msg.residual_window or 20,
        flat_move_percent=flat,
    )


def _underlying(
    msg: series_pb2.UnderlyingCheck, p: str, v: list[FieldViolation]
) -> UnderlyingCheck | None:
    before = len(v)
    series_id = name_from_proto(msg.series, SERIES_COLLECTION, f"{p}.series", v)
    tolerance = _at_least_zero(msg.tolerance_percent, f"{p}.tolerance_percent", v)
    if len(v) > before or series_id is None:
        return None
    return UnderlyingCheck(series_id=series_id, inverse=msg.inverse, tolerance_percent=tolerance)


def _day_over_day(
    msg: series_pb2.DayOverDayCheck, p: str, v: list[FieldViolation]
) -> DayOverDayCheck | None:
    before = len(v)
    bands = {
        name: _above_zero(getattr(msg, name), f"{p}.{name}", v)
        for name in ("max_percent", "max_rise_percent", "max_fall_percent", "max_abs")
    }
    severity: ZeroSeverity | None = "warning"
    if msg.severity != quality_pb2.SEVERITY_UNSPECIFIED:
        severity = _ZERO_SEVERITIES.get(msg.severity)
    if severity is None:
        v.append(FieldViolation(f"{p}.severity", "SEVERITY_WARNING (flags) or SEVERITY_ERROR"))
    if len(v) == before and all(band is None for band in bands.values()):
        v.append(FieldViolation(f"{p}.max_percent", "set a band: a percent or max_abs"))
    if len(v) > before or severity is None:
        return None
    return DayOverDayCheck(**bands, severity=severity)


def _jump_windows(
    msgs: Sequence[series_pb2.JumpWindow], path: str, v: list[FieldViolation]
) -> tuple[JumpWindow, ...]:
    """Each window in bounds, ordered and with its multiplier above 0, and none overlapping
    another (which would give a time of day two multipliers)."""
    if len(msgs) > MAX_JUMP_WINDOWS:
        v.append(FieldViolation(path, f"{len(msgs):,} windows, at most {MAX_JUMP_WINDOWS}"))
        return ()
    windows: list[JumpWindow] = []
    for i, msg in enumerate(msgs):
        at, before = f"{path}[{i}]", len(v)
        start = seconds_from_proto(msg.start, f"{at}.start", v)
        end = seconds_from_proto(msg.end, f"{at}.end", v)
        multiplier = _above_zero(msg.multiplier, f"{at}.multiplier", v)
        if multiplier is None and len(v) == before:
            v.append(FieldViolation(f"{at}.multiplier", "required"))
        if len(v) > before or start is None or end is None or multiplier is None:
            continue
        if not start < end <= DAY_SECONDS:
            v.append(FieldViolation(f"{at}.end", f"not after start and within a day: {end:,} s"))
            continue
        windows.append(JumpWindow(start_s=start, end_s=end, multiplier=multiplier))
    ordered = sorted(range(len(windows)), key=lambda k: windows[k].start_s)
    for a, b in itertools.pairwise(ordered):
        if windows[b].start_s < windows[a].end_s:
            v.append(FieldViolation(path, "two windows overlap: each time has one multiplier"))
            break
    return tuple(windows)


def _reconciliation(
    msg: series_pb2.Series, p: str, v: list[FieldViolation]
) -> ReconciliationPolicy | None:
    rec = msg.reconciliation
    before = len(v)
    tolerance_bps = _at_least_zero(rec.tolerance_bps, f"{p}.tolerance_bps", v)
    tolerance_abs = _at_least_zero(rec.tolerance_abs, f"{p}.tolerance_abs", v)
    _in_range(rec.min_agreeing_sources, 0, MAX_AGREEING_SOURCES, f"{p}.min_agreeing_sources", v)
    if len(v) > before:
        return None
    return ReconciliationPolicy(
        method=_METHODS.get(rec.method, ReconciliationMethod.PRIORITY),
        tolerance_bps=tolerance_bps,
        tolerance_abs=tolerance_abs,
        on_break=_BREAKS.get(rec.on_break, BreakAction.FLAG),
        min_agreeing_sources=rec.min_agreeing_sources,
        on_low_confidence=_BREAKS.get(rec.on_low_confidence, BreakAction.FLAG),
    )


def _publication(
    msg: series_pb2.Series, p: str, v: list[FieldViolation]
) -> PublicationPolicy | None:
    pub, before = msg.publication, len(v)
    min_quality_score = parse_optional_decimal(pub.min_quality_score, f"{p}.min_quality_score", v)
    if pub.min_sources < 0:  # 0: the default
        v.append(FieldViolation(f"{p}.min_sources", f"{pub.min_sources} is below 0"))
    cutoff = seconds_from_proto(pub.cutoff, f"{p}.cutoff", v)
    timeliness_sla = seconds_from_proto(pub.timeliness_sla, f"{p}.timeliness_sla", v)
    if len(v) > before or cutoff is None or timeliness_sla is None:
        return None
    return PublicationPolicy(
        mode=_MODES.get(pub.mode, PublicationMode.AUTOMATIC),
        min_sources=pub.min_sources or 1,
        min_quality_score=min_quality_score,
        cutoff_seconds=cutoff,
        timeliness_sla_seconds=timeliness_sla,
    )


def _classification(msg: series_pb2.Series, path: str, v: list[FieldViolation]) -> Classification:
    return classification_from_proto(msg.classification, path, v) or DEFAULT_CLASSIFICATION


def classification_from_proto(
    number: series_pb2.DataClassification.ValueType, path: str, v: list[FieldViolation]
) -> Classification | None:
    """None for UNSPECIFIED (each caller says what that means); a number this version does not
    know is a violation, never a level guessed."""
    if number == series_pb2.DATA_CLASSIFICATION_UNSPECIFIED:
        return None
    level = CLASSIFICATIONS.get(number)
    if level is None:
        v.append(FieldViolation(path, f"unknown data classification {number}"))
    return level


# Domain field names that differ from the contract's (spans in seconds, sources by id).
def _service_level(msg: series_pb2.Series, p: str, v: list[FieldViolation]) -> ServiceLevel | None:
    """Checked by the model, then against the series' frequency and sources when the message
    has them (an update may name the service level alone: docs/service-levels.md)."""
    if not msg.HasField("service_level"):
        return None
    level, before = msg.service_level, len(v)
    values: dict[str, object] = {
        "first_snap_s": seconds_from_proto(level.first_snap, f"{p}.first_snap", v),
        "weekdays": tuple(level.weekdays) or (1, 2, 3, 4, 5),
        "source_arrivals": [
            {
                "source_id": name_from_proto(
                    s.source, SOURCES_COLLECTION, f"{p}.source_arrivals[{i}].source", v
                ),
                "deadline": _deadline(s.deadline, f"{p}.source_arrivals[{i}].deadline", v),
            }
            for i, s in enumerate(level.source_arrivals)
        ],
    }
    if level.HasField("last_snap"):
        values["last_snap_s"] = seconds_from_proto(level.last_snap, f"{p}.last_snap", v)
    for name in ("arrival", "publication"):
        if level.HasField(name):
            values[name] = _deadline(getattr(level, name), f"{p}.{name}", v)
    severity: ZeroSeverity | None = "warning"
    if level.publication_severity != quality_pb2.SEVERITY_UNSPECIFIED:
        severity = _ZERO_SEVERITIES.get(level.publication_severity)
    if severity is None:
        v.append(FieldViolation(f"{p}.publication_severity", "SEVERITY_WARNING or SEVERITY_ERROR"))
    values["publication_severity"] = severity
    if len(v) > before:
        return None
    try:
        parsed = ServiceLevel.model_validate(values)
    except ValidationError as error:
        for e in error.errors():
            at = "".join(
                f"[{x}]" if isinstance(x, int) else f".{CONTRACT_NAMES.get(x, x)}" for x in e["loc"]
            )
            v.append(FieldViolation(f"{p}{at}", e["msg"].removeprefix("Value error, ")))
        return None
    frequency = _FREQUENCIES.get(msg.frequency)
    sources = tuple(s.source_id for s in _sources(msg, f"{p}.sources", [])) or None
    for at, reason in problems(parsed, frequency, sources):
        named = contract_path(at)
        v.append(FieldViolation(f"{p}.{named}" if named else p, reason))
    return None if len(v) > before else parsed


def _deadline(
    msg: series_pb2.ServiceLevelDeadline, p: str, v: list[FieldViolation]
) -> dict[str, object]:
    out: dict[str, object] = {"days_after": msg.days_after}
    if msg.HasField("after"):
        out["after_s"] = seconds_from_proto(msg.after, f"{p}.after", v)
    if msg.HasField("local_time"):
        out["local_time_s"] = seconds_from_proto(msg.local_time, f"{p}.local_time", v)
    return out


def service_level_to_proto(level: ServiceLevel) -> series_pb2.ServiceLevel:
    def deadline(d: Deadline) -> series_pb2.ServiceLevelDeadline:
        return series_pb2.ServiceLevelDeadline(
            after=None if d.after_s is None else duration(d.after_s),
            local_time=None if d.local_time_s is None else duration(d.local_time_s),
            days_after=d.days_after,
        )

    def source(s: SourceDeadline) -> series_pb2.SourceDeadline:
        return series_pb2.SourceDeadline(
            source=source_name(s.source_id), deadline=deadline(s.deadline)
        )

    return series_pb2.ServiceLevel(
        first_snap=duration(level.first_snap_s),
        last_snap=None if level.last_snap_s is None else duration(level.last_snap_s),
        weekdays=level.weekdays,
        arrival=None if level.arrival is None else deadline(level.arrival),
        source_arrivals=[source(s) for s in level.source_arrivals],
        publication=None if level.publication is None else deadline(level.publication),
        publication_severity=_back(_ZERO_SEVERITIES)[level.publication_severity],
    )


_TENOR_UNITS = {
    series_pb2.TENOR_UNIT_DAYS: TenorUnit.DAYS,
    series_pb2.TENOR_UNIT_WEEKS: TenorUnit.WEEKS,
    series_pb2.TENOR_UNIT_MONTHS: TenorUnit.MONTHS,
    series_pb2.TENOR_UNIT_YEARS: TenorUnit.YEARS,
}
_COORDINATE_UNITS = {
    series_pb2.COORDINATE_UNIT_STRIKE: CoordinateUnit.STRIKE,
    series_pb2.COORDINATE_UNIT_MONEYNESS: CoordinateUnit.MONEYNESS,
    series_pb2.COORDINATE_UNIT_DELTA: CoordinateUnit.DELTA,
}
_MONOTONICITIES = {
    series_pb2.MONOTONICITY_NON_DECREASING: Monotonicity.NON_DECREASING,
    series_pb2.MONOTONICITY_NON_INCREASING: Monotonicity.NON_INCREASING,
}


def _structure(msg: series_pb2.Series, p: str, v: list[FieldViolation]) -> StructureSchema | None:
    """Shapes here, the model's own rules (what needs a coordinate axis) as one violation; the
    fit with the data type when the message has one (a definition; an update may name the
    structure alone: the domain checks it against the series' own)."""
    if not msg.HasField("structure"):
        return None
    s, before = msg.structure, len(v)
    has_coordinates = s.HasField("coordinate_axis")
    check_length(s.tenor_axis.name, MAX_ID_LENGTH, f"{p}.tenor_axis.name", v)
    tenor_unit = _TENOR_UNITS.get(s.tenor_axis.tenor_unit)
    if s.tenor_axis.tenor_unit and tenor_unit is None:
        v.append(FieldViolation(f"{p}.tenor_axis.tenor_unit", "unknown tenor unit"))
    coordinate_axis = None
    if has_coordinates:
        axis = s.coordinate_axis
        check_length(axis.name, MAX_ID_LENGTH, f"{p}.coordinate_axis.name", v)
        unit = _COORDINATE_UNITS.get(axis.coordinate_unit)
        if unit is None:
            reason = "STRIKE, MONEYNESS or DELTA"
            v.append(FieldViolation(f"{p}.coordinate_axis.coordinate_unit", reason))
        coordinate_axis = {"name": axis.name, "unit": unit}
    _in_range(s.max_nodes, 0, MAX_STRUCTURE_NODES, f"{p}.max_nodes", v)
    monotonicity = _MONOTONICITIES.get(s.monotonicity)
    if s.monotonicity and monotonicity is None:
        v.append(FieldViolation(f"{p}.monotonicity", "unknown monotonicity"))
    c = s.checks
    spike = _above_zero(c.max_node_spike_percent, f"{p}.checks.max_node_spike_percent", v)
    jump = _above_zero(c.max_node_jump_percent, f"{p}.checks.max_node_jump_percent", v)
    _in_range(c.flat_spot_nodes, 0, MAX_STRUCTURE_NODES, f"{p}.checks.flat_spot_nodes", v)
    if len(v) > before:
        return None
    try:
        schema = StructureSchema.model_validate(
            {
                "tenor_axis": {"name": s.tenor_axis.name, "unit": tenor_unit},
                "coordinate_axis": coordinate_axis,
                "max_nodes": s.max_nodes or MAX_STRUCTURE_NODES,
                "full_grid": s.full_grid,
                "monotonicity": monotonicity,
                "checks": {
                    "max_node_spike_percent": spike,
                    "max_node_jump_percent": jump,
                    "flat_spot_nodes": c.flat_spot_nodes,
                    "calendar_arbitrage": c.calendar_arbitrage,
                    "butterfly_arbitrage": c.butterfly_arbitrage,
                },
            }
        )
    except ValidationError as error:
        v.extend(FieldViolation(p, e["msg"].removeprefix("Value error, ")) for e in error.errors())
        return None
    if (data_type := _DATA_TYPES.get(msg.data_type)) is not None:
        check_schema_fits(schema, data_type, p, v)
    return None if len(v) > before else schema


def structure_to_proto(schema: StructureSchema) -> series_pb2.StructureSchema:
    axis, checks, unit = schema.coordinate_axis, schema.checks, schema.tenor_axis.unit
    monotonicity = schema.monotonicity
    return series_pb2.StructureSchema(
        tenor_axis=series_pb2.StructureAxis(
            name=schema.tenor_axis.name,
            tenor_unit=series_pb2.TENOR_UNIT_UNSPECIFIED
            if unit is None
            else _back(_TENOR_UNITS)[unit],
        ),
        coordinate_axis=None
        if axis is None
        else series_pb2.StructureAxis(
            name=axis.name, coordinate_unit=_back(_COORDINATE_UNITS)[axis.unit]
        ),
        max_nodes=schema.max_nodes,
        full_grid=schema.full_grid,
        monotonicity=series_pb2.MONOTONICITY_UNSPECIFIED
        if monotonicity is None
        else _back(_MONOTONICITIES)[monotonicity],
        checks=series_pb2.StructureChecks(
            max_node_spike_percent=_text(checks.max_node_spike_percent),
            max_node_jump_percent=_text(checks.max_node_jump_percent),
            flat_spot_nodes=checks.flat_spot_nodes,
            calendar_arbitrage=checks.calendar_arbitrage,
            butterfly_arbitrage=checks.butterfly_arbitrage,
        ),
    )


def _text_of(attribute: str, limit: int) -> Parse:
    def parse(msg: Any, path: str, v: list[FieldViolation]) -> str:
        text: str = getattr(msg, attribute)
        check_length(text, limit, path, v)
        return text

    return parse


# The top-level fields of a Series, by their names in the contract (the same in the domain),
# in the message's order.
_SERIES_FIELDS = {
    name: _Field(name, parse)
    for name, parse in (
        ("data_type", _data_type),
        ("frequency", _frequency),
        ("unit", _unit),
        ("precision", _precision),
        ("time_zone", _time_zone),
        ("calendar", _calendar),
        ("sources", _sources),
        ("validation", _validation),
        ("reconciliation", _reconciliation),
        ("publication", _publication),
        ("description", _text_of("description", MAX_TEXT_LENGTH)),
        ("classification", _classification),
        ("service_level", _service_level),
        ("structure", _structure),
    )
}
_IMMUTABLE_SERIES_FIELDS = ("data_type", "frequency")


def series_from_proto(msg: series_pb2.Series, path: str = "series") -> SeriesDefinition:
    """Every field is checked against qis_domain.bounds before a model is made, so that all the
    violations come back together (a model would stop at its first invalid field)."""
    v: list[FieldViolation] = []
    values = _series_values(msg, list(_SERIES_FIELDS), path, v)
    if v:
        raise InvalidArgument(v)
    return SeriesDefinition.model_validate(values)


def series_update_from_proto(
    msg: series_pb2.Series, mask: field_mask_pb2.FieldMask, path: str = "series"
) -> Update:
    """The fields of `msg` that `mask` names (AIP-134; see masked_fields), and only those: a
    field it does not name is not read. Data type and frequency may be named, to be compared
    with the series' own."""
    evolvable = [n for n in _SERIES_FIELDS if n not in _IMMUTABLE_SERIES_FIELDS]
    return _update(_series_values, msg, mask, evolvable, _IMMUTABLE_SERIES_FIELDS, path)


def _series_values(
    msg: series_pb2.Series, names: list[str], path: str, v: list[FieldViolation]
) -> dict[str, object]:
    values = _parsed(_SERIES_FIELDS, msg, names, path, v)
    # Required or not is the domain's rule (reference_data); the shape is checked here, so
    # that nothing unbounded reaches the domain. Without a data type (an update that does not
    # name it), the shape of a unit code, which every currency has: the domain then checks the
    # unit against the series' own data type.
    if values.get("unit"):
        data_type = values.get("data_type")
        if isinstance(data_type, DataType):
            check_series_unit(msg.unit, data_type, f"{path}.unit", v)
        else:
            check_unit(msg.unit, f"{path}.unit", v)
    return values


def _update(
    values_of: Callable[[Any, list[str], str, list[FieldViolation]], dict[str, object]],
    msg: Message,
    mask: field_mask_pb2.FieldMask,
    evolvable: list[str],
    fixed: Sequence[str],
    path: str,
) -> Update:
    v: list[FieldViolation] = []
    names = masked_fields(mask, msg, evolvable, fixed, v)
    values = values_of(msg, names, path, v)
    if v:
        raise InvalidArgument(v)
    return Update(values=values)


def _parsed(
    fields: dict[str, _Field], msg: Message, names: list[str], path: str, v: list[FieldViolation]
) -> dict[str, object]:
    """The domain values of the fields `names` of `msg`, by their domain names."""
    return {fields[n].domain: fields[n].parse(msg, f"{path}.{n}", v) for n in names}


def series_to_proto(series_id: str, d: SeriesDefinition, schema_version: int) -> series_pb2.Series:
    r = d.validation
    return series_pb2.Series(
        name=f"series/{series_id}",
        data_type=_back(_DATA_TYPES)[d.data_type],
        frequency=_back(_FREQUENCIES)[d.frequency],
        unit=d.unit,
        precision=d.precision,
        time_zone=d.time_zone,
        calendar=d.calendar,
        sources=[
            series_pb2.SeriesSource(source=source_name(s.source_id), priority=s.priority)
            for s in d.sources
        ],
        validation=series_pb2.ValidationRules(
            require_positive=r.require_positive,
            max_jump_percent=_text(r.max_jump_percent),
            max_spike_percent=_text(r.max_spike_percent),
            max_zscore=_text(r.max_zscore),
            zscore_window=r.zscore_window,
            stale_after_snaps=r.stale_after_snaps,
            check_calendar=r.check_calendar,
            max_rise_percent=_text(r.max_rise_percent),
            max_fall_percent=_text(r.max_fall_percent),
            jump_windows=[
                series_pb2.JumpWindow(
                    start=duration(w.start_s), end=duration(w.end_s), multiplier=str(w.multiplier)
                )
                for w in r.jump_windows
            ],
            forbid_zero=(
                quality_pb2.SEVERITY_UNSPECIFIED
                if r.forbid_zero is None
                else _back(_ZERO_SEVERITIES)[r.forbid_zero]
            ),
            review_manual_values=r.review_manual_values,
            benchmark=None
            if r.benchmark is None
            else series_pb2.BenchmarkCheck(
                series=series_name(r.benchmark.series_id),
                beta=str(r.benchmark.beta),
                max_residual_multiple=_text(r.benchmark.max_residual_multiple),
                residual_window=r.benchmark.residual_window,
                flat_move_percent=_text(r.benchmark.flat_move_percent),
            ),
            underlying=None
            if r.underlying is None
            else series_pb2.UnderlyingCheck(
                series=series_name(r.underlying.series_id),
                inverse=r.underlying.inverse,
                tolerance_percent=str(r.underlying.tolerance_percent),
            ),
            day_over_day=None
            if (dod := r.day_over_day) is None
            else series_pb2.DayOverDayCheck(
                max_percent=_text(dod.max_percent),
                max_rise_percent=_text(dod.max_rise_percent),
                max_fall_percent=_text(dod.max_fall_percent),
                max_abs=_text(dod.max_abs),
                severity=_back(_ZERO_SEVERITIES)[dod.severity],
            ),
        ),
        reconciliation=series_pb2.ReconciliationPolicy(
            method=_back(_METHODS)[d.reconciliation.method],
            tolerance_bps=str(d.reconciliation.tolerance_bps),
            tolerance_abs=str(d.reconciliation.tolerance_abs),
            on_break=_back(_BREAKS)[d.reconciliation.on_break],
            min_agreeing_sources=d.reconciliation.min_agreeing_sources,
            on_low_confidence=_low_confidence_to_proto(d.reconciliation),
        ),
        publication=series_pb2.PublicationPolicy(
            mode=_back(_MODES)[d.publication.mode],
            min_sources=d.publication.min_sources,
            min_quality_score=_text(d.publication.min_quality_score),
            cutoff=duration(d.publication.cutoff_seconds),
            timeliness_sla=duration(d.publication.timeliness_sla_seconds),
        ),
        description=d.description,
        schema_version=schema_version,
        classification=_back(CLASSIFICATIONS)[d.classification],
        service_level=None if d.service_level is None else service_level_to_proto(d.service_level),
        structure=None if d.structure is None else structure_to_proto(d.structure),
    )


def _low_confidence_to_proto(policy: ReconciliationPolicy) -> series_pb2.BreakAction.ValueType:
    """Unspecified while the rule is left at its defaults: a series defined without it reads
    back as it did before the rule existed."""
    if not policy.min_agreeing_sources and policy.on_low_confidence is BreakAction.FLAG:
        return series_pb2.BREAK_ACTION_UNSPECIFIED
    return _back(_BREAKS)[policy.on_low_confidence]


def _provider(msg: series_pb2.DataSource, path: str, v: list[FieldViolation]) -> str:
    if not msg.provider:
        v.append(FieldViolation(path, "a provider is required"))
    check_length(msg.provider, MAX_ID_LENGTH, path, v)
    return msg.provider


def _rate_limit(msg: series_pb2.DataSource, path: str, v: list[FieldViolation]) -> int:
    if msg.rate_limit_per_minute < 0:
        v.append(FieldViolation(path, "must be >= 0"))
    return msg.rate_limit_per_minute


def _cost(msg: series_pb2.DataSource, path: str, v: list[FieldViolation]) -> Decimal:
    return _at_least_zero(msg.cost_per_request, path, v)


def _settings(msg: series_pb2.DataSource, path: str, v: list[FieldViolation]) -> dict[str, str]:
    for key, value in msg.settings.items():
        if len(key) > MAX_ID_LENGTH:
            # Too long to quote in a field path: the violation names the map.
            v.append(
                FieldViolation(path, f"a key of {len(key):,} characters (at most {MAX_ID_LENGTH})")
            )
        else:
            check_length(value, MAX_TEXT_LENGTH, f"{path}[{key!r}]", v)
    return dict(msg.settings)


def _enabled(msg: series_pb2.DataSource, path: str, v: list[FieldViolation]) -> bool:
    return not msg.disabled  # the contract names the exception, the domain the rule


def _credentials_ref(msg: series_pb2.DataSource, path: str, v: list[FieldViolation]) -> str:
    ref = msg.credentials_ref
    # Never quoted back: what was refused may be the secret itself.
    if len(ref) > MAX_TEXT_LENGTH:
        v.append(FieldViolation(path, f"{len(ref):,} characters (at most {MAX_TEXT_LENGTH:,})"))
    elif (problem := credentials_ref_problem(ref)) is not None:
        v.append(FieldViolation(path, problem))
    return ref


def _backoff_us(d: duration_pb2.Duration, path: str, v: list[FieldViolation]) -> int:
    us = d.seconds * 1_000_000 + d.nanos // 1_000
    if d.seconds < 0 or d.nanos < 0 or us > MAX_BACKOFF_US:
        v.append(FieldViolation(path, f"0 to {MAX_BACKOFF_US // 1_000_000:,} s"))
    return us


def _retry_policy(
    msg: series_pb2.DataSource, path: str, v: list[FieldViolation]
) -> SourceRetryPolicy | None:
    if not msg.HasField("retry_policy"):
        return None
    r = msg.retry_policy
    before = len(v)
    _in_range(r.max_attempts, 1, MAX_RETRY_ATTEMPTS, f"{path}.max_attempts", v)
    initial = _backoff_us(r.initial_backoff, f"{path}.initial_backoff", v)
    most = _backoff_us(r.max_backoff, f"{path}.max_backoff", v)
    if len(v) == before and initial > most:
        v.append(FieldViolation(f"{path}.initial_backoff", "at most max_backoff"))
    if len(v) > before:
        return None
    return SourceRetryPolicy(
        max_attempts=r.max_attempts, initial_backoff_us=initial, max_backoff_us=most
    )


def retry_policy_to_proto(policy: SourceRetryPolicy) -> series_pb2.DataSourceRetryPolicy:
    def span(us: int) -> duration_pb2.Duration:
        return duration_pb2.Duration(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1_000)

    return series_pb2.DataSourceRetryPolicy(
        max_attempts=policy.max_attempts,
        initial_backoff=span(policy.initial_backoff_us),
        max_backoff=span(policy.max_backoff_us),
    )


# The fields of a DataSource by their names in the contract, in the message's order.
_SOURCE_FIELDS = {
    "provider": _Field("provider", _provider),
    "description": _Field("description", _text_of("description", MAX_TEXT_LENGTH)),
    "rate_limit_per_minute": _Field("rate_limit_per_minute", _rate_limit),
    "cost_per_request": _Field("cost_per_request", _cost),
    "settings": _Field("settings", _settings),
    "disabled": _Field("enabled", _enabled),
    "credentials_ref": _Field("credentials_ref", _credentials_ref),
    "retry_policy": _Field("retry", _retry_policy),
}


def source_from_proto(msg: series_pb2.DataSource, path: str = "source") -> DataSourceConfig:
    v: list[FieldViolation] = []
    values = _source_values(msg, list(_SOURCE_FIELDS), path, v)
    if v:
        raise InvalidArgument(v)
    return DataSourceConfig.model_validate(values)


def source_update_from_proto(
    msg: series_pb2.DataSource, mask: field_mask_pb2.FieldMask, path: str = "source"
) -> Update:
    """The fields of `msg` that `mask` names (AIP-134; see masked_fields), and only those."""
    return _update(_source_values, msg, mask, list(_SOURCE_FIELDS), (), path)


def _source_values(
    msg: series_pb2.DataSource, names: list[str], path: str, v: list[FieldViolation]
) -> dict[str, object]:
    return _parsed(_SOURCE_FIELDS, msg, names, path, v)


def _in_range(number: int, low: int, high: int, path: str, v: list[FieldViolation]) -> None:
    if not low <= number <= high:
        v.append(FieldViolation(path, f"{number} is outside {low:,}..{high:,}"))


def _above_zero(text: str, path: str, v: list[FieldViolation]) -> Decimal | None:
    before = len(v)
    number = parse_optional_decimal(text, path, v)
    if number is not None and number <= 0 and len(v) == before:
        v.append(FieldViolation(path, f"{quoted(text)} is not above 0 (empty disables the rule)"))
    return number


def _at_least_zero(text: str, path: str, v: list[FieldViolation]) -> Decimal:
    """Empty: 0. Below 0 is a violation: a negative tolerance makes every comparison of two
    sources a break, even of equal values; a negative cost per request, negative costs."""
    number = Decimal(0) if text == "" else parse_decimal(text, path, v)
    if number < 0:
        v.append(FieldViolation(path, f"{quoted(text)} is below 0"))
    return number


def _text(d: Decimal | None) -> str:
    return "" if d is None else str(d)
