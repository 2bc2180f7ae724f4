"""Series and data-source definitions between the v1 contract and the domain."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from qis.data.v1 import series_pb2, values_pb2
from qis_domain.bounds import (
    MAX_DECIMAL_PLACES,
    MAX_DURATION_SECONDS,
    MAX_ID_LENGTH,
    MAX_STALE_AFTER_SNAPS,
    MAX_TEXT_LENGTH,
    MAX_ZSCORE_WINDOW,
    MIN_ZSCORE_WINDOW,
    check_length,
)
from qis_domain.definitions import (
    BreakAction,
    DataSourceConfig,
    PublicationMode,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.names import SOURCES_COLLECTION, source_name
from qis_domain.snaps import Frequency
from qis_domain.values import (
    DataType,
    check_currency,
    check_unit,
    parse_decimal,
    parse_optional_decimal,
)

from qis_adapters.proto.checks import name_from_proto

K = TypeVar("K")
V = TypeVar("V")

_DATA_TYPES = {
    values_pb2.DATA_TYPE_PRICE: DataType.PRICE,
    values_pb2.DATA_TYPE_VOLUME: DataType.VOLUME,
    values_pb2.DATA_TYPE_OHLC_BAR: DataType.OHLC_BAR,
    values_pb2.DATA_TYPE_OPTIONS_CHAIN: DataType.OPTIONS_CHAIN,
    values_pb2.DATA_TYPE_CORPORATE_ACTION: DataType.CORPORATE_ACTION,
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


def _back(mapping: dict[K, V]) -> dict[V, K]:
    return {v: k for k, v in mapping.items()}


def series_from_proto(msg: series_pb2.Series, path: str = "series") -> SeriesDefinition:
    """Every field is checked against qis_domain.bounds before a model is made, so that all the
    violations come back together (a model would stop at its first invalid field)."""
    v: list[FieldViolation] = []
    data_type = _DATA_TYPES.get(msg.data_type)
    if data_type is None:
        v.append(FieldViolation(f"{path}.data_type", "a data type is required"))
    frequency = _FREQUENCIES.get(msg.frequency)
    if frequency is None:
        v.append(FieldViolation(f"{path}.frequency", "a frequency is required"))
    sources = []
    for i, s in enumerate(msg.sources):
        source_id = name_from_proto(s.source, SOURCES_COLLECTION, f"{path}.sources[{i}].source", v)
        if source_id is not None:
            sources.append(SeriesSource(source_id=source_id, priority=s.priority or i + 1))
    # Required or not is the domain's rule (reference_data); the shape is the edge's.
    if msg.unit and data_type is DataType.VOLUME:
        check_unit(msg.unit, f"{path}.unit", v)
    elif msg.unit:
        check_currency(msg.unit, f"{path}.unit", v)
    _in_range(msg.precision, 0, MAX_DECIMAL_PLACES, f"{path}.precision", v)
    check_length(msg.time_zone, MAX_ID_LENGTH, f"{path}.time_zone", v)
    check_length(msg.calendar, MAX_ID_LENGTH, f"{path}.calendar", v)
    check_length(msg.description, MAX_TEXT_LENGTH, f"{path}.description", v)
    rules, p = msg.validation, f"{path}.validation"
    max_jump_percent = parse_optional_decimal(rules.max_jump_percent, f"{p}.max_jump_percent", v)
    max_spike_percent = parse_optional_decimal(rules.max_spike_percent, f"{p}.max_spike_percent", v)
    max_zscore = parse_optional_decimal(rules.max_zscore, f"{p}.max_zscore", v)
    if rules.zscore_window:  # 0: the default
        _in_range(
            rules.zscore_window, MIN_ZSCORE_WINDOW, MAX_ZSCORE_WINDOW, f"{p}.zscore_window", v
        )
    _in_range(rules.stale_after_snaps, 0, MAX_STALE_AFTER_SNAPS, f"{p}.stale_after_snaps", v)
    rec, p = msg.reconciliation, f"{path}.reconciliation"
    tolerance_bps = _decimal_or_zero(rec.tolerance_bps, f"{p}.tolerance_bps", v)
    tolerance_abs = _decimal_or_zero(rec.tolerance_abs, f"{p}.tolerance_abs", v)
    pub, p = msg.publication, f"{path}.publication"
    min_quality_score = parse_optional_decimal(pub.min_quality_score, f"{p}.min_quality_score", v)
    if pub.min_sources < 0:  # 0: the default
        v.append(FieldViolation(f"{p}.min_sources", f"{pub.min_sources} is below 0"))
    _in_range(pub.cutoff_seconds, 0, MAX_DURATION_SECONDS, f"{p}.cutoff_seconds", v)
    _in_range(pub.timeliness_sla_seconds, 0, MAX_DURATION_SECONDS, f"{p}.timeliness_sla_seconds", v)
    if v or data_type is None or frequency is None:
        raise InvalidArgument(v)
    return SeriesDefinition(
        data_type=data_type,
        frequency=frequency,
        unit=msg.unit,
        precision=msg.precision,
        time_zone=msg.time_zone or "UTC",
        calendar=msg.calendar,
        sources=tuple(sources),
        validation=ValidationRules(
            require_positive=rules.require_positive,
            max_jump_percent=max_jump_percent,
            max_spike_percent=max_spike_percent,
            max_zscore=max_zscore,
            zscore_window=rules.zscore_window or 20,
            stale_after_snaps=rules.stale_after_snaps,
            check_calendar=rules.check_calendar,
        ),
        reconciliation=ReconciliationPolicy(
            method=_METHODS.get(rec.method, ReconciliationMethod.PRIORITY),
            tolerance_bps=tolerance_bps,
            tolerance_abs=tolerance_abs,
            on_break=_BREAKS.get(rec.on_break, BreakAction.FLAG),
        ),
        publication=PublicationPolicy(
            mode=_MODES.get(pub.mode, PublicationMode.AUTOMATIC),
            min_sources=pub.min_sources or 1,
            min_quality_score=min_quality_score,
            cutoff_seconds=pub.cutoff_seconds,
            timeliness_sla_seconds=pub.timeliness_sla_seconds,
        ),
        description=msg.description,
    )


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
        ),
        reconciliation=series_pb2.ReconciliationPolicy(
            method=_back(_METHODS)[d.reconciliation.method],
            tolerance_bps=str(d.reconciliation.tolerance_bps),
            tolerance_abs=str(d.reconciliation.tolerance_abs),
            on_break=_back(_BREAKS)[d.reconciliation.on_break],
        ),
        publication=series_pb2.PublicationPolicy(
            mode=_back(_MODES)[d.publication.mode],
            min_sources=d.publication.min_sources,
            min_quality_score=_text(d.publication.min_quality_score),
            cutoff_seconds=d.publication.cutoff_seconds,
            timeliness_sla_seconds=d.publication.timeliness_sla_seconds,
        ),
        description=d.description,
        schema_version=schema_version,
    )


def source_from_proto(msg: series_pb2.DataSource, path: str = "source") -> DataSourceConfig:
    v: list[FieldViolation] = []
    if not msg.provider:
        v.append(FieldViolation(f"{path}.provider", "a provider is required"))
    check_length(msg.provider, MAX_ID_LENGTH, f"{path}.provider", v)
    check_length(msg.description, MAX_TEXT_LENGTH, f"{path}.description", v)
    for key, value in msg.settings.items():
        if len(key) > MAX_ID_LENGTH:
            # Too long to quote in a field path: the violation names the map.
            v.append(
                FieldViolation(
                    f"{path}.settings",
                    f"a key of {len(key):,} characters (at most {MAX_ID_LENGTH})",
                )
            )
        else:
            check_length(value, MAX_TEXT_LENGTH, f"{path}.settings[{key!r}]", v)
    cost = _decimal_or_zero(msg.cost_per_request, f"{path}.cost_per_request", v)
    if msg.rate_limit_per_minute < 0:
        v.append(FieldViolation(f"{path}.rate_limit_per_minute", "must be >= 0"))
    if v:
        raise InvalidArgument(v)
    return DataSourceConfig(
        provider=msg.provider,
        description=msg.description,
        rate_limit_per_minute=msg.rate_limit_per_minute,
        cost_per_request=cost,
        settings=dict(msg.settings),
        enabled=msg.enabled,
    )


def _in_range(number: int, low: int, high: int, path: str, v: list[FieldViolation]) -> None:
    if not low <= number <= high:
        v.append(FieldViolation(path, f"{number} is outside {low:,}..{high:,}"))


def _decimal_or_zero(text: str, path: str, v: list[FieldViolation]) -> Decimal:
    return Decimal(0) if text == "" else parse_decimal(text, path, v)


def _text(d: Decimal | None) -> str:
    return "" if d is None else str(d)
