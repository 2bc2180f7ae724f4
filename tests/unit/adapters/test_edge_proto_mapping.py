"""Contract messages to domain objects at the command edge: every malformed field becomes a field
violation with its path, all of them in one pass, never an exception of another kind."""

from __future__ import annotations

from decimal import Decimal

import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.proto.definitions import (
    series_from_proto,
    series_to_proto,
    series_update_from_proto,
    source_from_proto,
    source_update_from_proto,
)
from qis_adapters.proto.times import micros_from_proto
from qis_adapters.proto.values import points_from_proto, value_from_proto
from qis_domain import bounds
from qis_domain.definitions import (
    Classification,
    PublicationPolicy,
    ReconciliationPolicy,
    SeriesSource,
    Update,
    ValidationRules,
)
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.snaps import Frequency, Snap
from qis_domain.values import CorporateAction, DataType, Price, Volume

SNAP_S = 1_709_326_800  # 2024-03-01T21:00:00Z
SNAP = timestamp_pb2.Timestamp(seconds=SNAP_S)
US = 1_000_000


def price(value: str = "101.5", currency: str = "") -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=value, currency=currency))


def point(
    value: values_pb2.DataValue,
    snap: timestamp_pb2.Timestamp = SNAP,
    offset: duration_pb2.Duration | None = None,
) -> values_pb2.DataPoint:
    return values_pb2.DataPoint(snap_time=snap, utc_offset=offset, value=value)


def fields(violations: list[FieldViolation]) -> list[str]:
    return [v.field for v in violations]


# --- values ---


@pytest.mark.parametrize(
    "text", ["1e9999", "1E+20", "1000000000000000000", "0.1234567890123456789"]
)
def test_a_price_beyond_the_decimal_bounds_is_a_violation(text: str) -> None:
    # Well-formed decimals used to slip through the per-point fast path unbounded.
    v: list[FieldViolation] = []
    points_from_proto([point(price(text))], v)
    assert fields(v) == ["points[0].value.price.value"]


@pytest.mark.parametrize("currency", ["usd", "US", "EURO", " USD", "USD ", "U$D", "ÉUR", "123"])
def test_a_currency_is_three_upper_case_letters(currency: str) -> None:
    v: list[FieldViolation] = []
    points_from_proto([point(price(currency=currency))], v)
    assert fields(v) == ["points[0].value.price.currency"]
    assert "ISO 4217" in v[0].description


def test_an_empty_or_iso_currency_is_accepted() -> None:
    v: list[FieldViolation] = []
    points = points_from_proto([point(price(currency="")), point(price(currency="CHF"))], v)
    assert v == []
    assert [p[1] for p in points] == [Price(Decimal("101.5"), ""), Price(Decimal("101.5"), "CHF")]


def test_every_violation_of_a_batch_is_reported_whatever_its_kind() -> None:
    v: list[FieldViolation] = []
    points_from_proto(
        [
            point(price(), snap=timestamp_pb2.Timestamp(seconds=SNAP_S, nanos=1)),
            point(price(currency="usd")),
            point(price("1e30", currency="eur"), offset=duration_pb2.Duration(seconds=30)),
        ],
        v,
    )
    assert fields(v) == [
        "points[0].snap_time",
        "points[1].value.price.currency",
        "points[2].utc_offset",
        "points[2].value.price.value",
        "points[2].value.price.currency",
    ]


@pytest.mark.parametrize("unit", [" shares", "shares and more", "x" * 33, "€"])
def test_a_volume_unit_is_a_short_code(unit: str) -> None:
    v: list[FieldViolation] = []
    msg = values_pb2.DataValue(volume=values_pb2.Volume(quantity="10", unit=unit))
    value_from_proto(msg, "value", v)
    assert fields(v) == ["value.volume.unit"]


def test_a_volume_unit_is_accepted() -> None:
    v: list[FieldViolation] = []
    msg = values_pb2.DataValue(volume=values_pb2.Volume(quantity="10", unit="shares"))
    assert value_from_proto(msg, "value", v) == Volume(Decimal(10), "shares")
    assert v == []


def test_a_corporate_action_currency_is_checked() -> None:
    v: list[FieldViolation] = []
    action = values_pb2.CorporateAction(
        type=values_pb2.CORPORATE_ACTION_TYPE_CASH_DIVIDEND,
        ex_date={"year": 2024, "month": 3, "day": 1},
        amount="0.25",
        currency="gbp",
    )
    value = value_from_proto(values_pb2.DataValue(corporate_action=action), "value", v)
    assert isinstance(value, CorporateAction)
    assert fields(v) == ["value.corporate_action.currency"]


# --- definitions ---


def series(**changes: object) -> series_pb2.Series:
    msg = series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=series_pb2.FREQUENCY_DAILY,
        unit="USD",
        sources=[series_pb2.SeriesSource(source="sources/bbg", priority=1)],
    )
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = msg
        for parent in parents:
            target = getattr(target, parent)
        if isinstance(value, Message):
            getattr(target, leaf).CopyFrom(value)
        else:
            setattr(target, leaf, value)
    return msg


def violations_of(msg: series_pb2.Series) -> list[str]:
    with pytest.raises(InvalidArgument) as error:
        series_from_proto(msg)
    return fields(error.value.violations)


@pytest.mark.parametrize("window", [1, -5, bounds.MAX_ZSCORE_WINDOW + 1, 2**31 - 1])
def test_a_zscore_window_beyond_the_bounds_is_a_violation_not_a_crash(window: int) -> None:
    assert violations_of(series(validation__zscore_window=window)) == [
        "series.validation.zscore_window"
    ]


def test_zscore_window_bounds_are_accepted() -> None:
    for window in (0, bounds.MIN_ZSCORE_WINDOW, bounds.MAX_ZSCORE_WINDOW):
        series_from_proto(series(validation__zscore_window=window))


@pytest.mark.parametrize(
    "field", ["max_jump_percent", "max_spike_percent", "max_zscore"], ids=lambda f: f
)
@pytest.mark.parametrize("threshold", ["0", "-5", "-0.0001", "0.000"])
def test_a_rule_threshold_of_zero_or_below_is_a_violation(field: str, threshold: str) -> None:
    """Such a threshold would hold or flag every move, quiet ones included: a mistake, not a
    policy (empty disables the rule)."""
    assert violations_of(series(**{f"validation__{field}": threshold})) == [
        f"series.validation.{field}"
    ]


def test_rule_thresholds_above_zero_or_empty_are_accepted() -> None:
    rules = series_from_proto(
        series(validation__max_jump_percent="0.01", validation__max_zscore="3")
    ).validation
    assert (rules.max_jump_percent, rules.max_spike_percent, rules.max_zscore) == (
        Decimal("0.01"),
        None,
        Decimal(3),
    )


@pytest.mark.parametrize("field", ["tolerance_bps", "tolerance_abs"])
def test_a_negative_reconciliation_tolerance_is_a_violation(field: str) -> None:
    """A negative tolerance made every comparison of two sources a break, equal values too."""
    assert violations_of(series(**{f"reconciliation__{field}": "-1"})) == [
        f"series.reconciliation.{field}"
    ]
    accepted = series_from_proto(series(**{f"reconciliation__{field}": "0"}))
    assert getattr(accepted.reconciliation, field) == 0


def test_a_negative_cost_per_request_is_a_violation() -> None:
    with pytest.raises(InvalidArgument) as error:
        source_from_proto(series_pb2.DataSource(provider="p", cost_per_request="-0.01"))
    assert [v.field.rsplit(".", 1)[-1] for v in error.value.violations] == ["cost_per_request"]


@pytest.mark.parametrize("unit", ["usd", "US", "Dollar", " USD"])
def test_a_price_series_unit_is_a_currency(unit: str) -> None:
    assert violations_of(series(unit=unit)) == ["series.unit"]


def test_a_volume_series_unit_is_a_unit() -> None:
    msg = series(unit="shares", data_type=values_pb2.DATA_TYPE_VOLUME)
    assert series_from_proto(msg).unit == "shares"
    assert violations_of(series(unit="many shares", data_type=values_pb2.DATA_TYPE_VOLUME)) == [
        "series.unit"
    ]


def test_every_violation_of_a_definition_is_reported_together() -> None:
    msg = series(
        unit="usd",
        validation__zscore_window=5000,
        validation__stale_after_snaps=-1,
        validation__max_jump_percent="1e30",
        publication__cutoff=duration_pb2.Duration(seconds=-1),
        publication__timeliness_sla=duration_pb2.Duration(seconds=2**62),
        publication__min_sources=-2,
        description="d" * (bounds.MAX_TEXT_LENGTH + 1),
        calendar="X" * (bounds.MAX_ID_LENGTH + 1),
        time_zone="Z" * (bounds.MAX_ID_LENGTH + 1),
    )
    assert sorted(violations_of(msg)) == sorted(
        [
            "series.unit",
            "series.validation.zscore_window",
            "series.validation.stale_after_snaps",
            "series.validation.max_jump_percent",
            "series.publication.cutoff",
            "series.publication.timeliness_sla",
            "series.publication.min_sources",
            "series.description",
            "series.calendar",
            "series.time_zone",
        ]
    )


def test_a_source_definition_is_bounded() -> None:
    msg = series_pb2.DataSource(
        provider="p" * (bounds.MAX_ID_LENGTH + 1),
        description="d" * (bounds.MAX_TEXT_LENGTH + 1),
        settings={"k" * (bounds.MAX_ID_LENGTH + 1): "v", "url": "u" * (bounds.MAX_TEXT_LENGTH + 1)},
    )
    with pytest.raises(InvalidArgument) as error:
        source_from_proto(msg)
    assert sorted(fields(error.value.violations)) == sorted(
        [
            "source.provider",
            "source.description",
            "source.settings",  # a key too long to quote in a path
            "source.settings['url']",
        ]
    )


# --- timestamps ---


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (bounds.MIN_TIMESTAMP_SECONDS, 0, bounds.MIN_INSTANT_US),
        (bounds.MAX_TIMESTAMP_SECONDS, 999_999_999, bounds.MAX_INSTANT_US),
        (1, 1_999, 1_000_001),  # below the microsecond: dropped, not refused
        (-1, 0, -1_000_000),
    ],
)
def test_a_timestamp_within_the_bounds_is_an_instant(
    seconds: int, nanos: int, expected: int
) -> None:
    v: list[FieldViolation] = []
    ts = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert micros_from_proto(ts, "expire_time", v) == expected
    assert v == []


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (bounds.MAX_TIMESTAMP_SECONDS + 1, 0, ["t.seconds"]),
        (bounds.MIN_TIMESTAMP_SECONDS - 1, 0, ["t.seconds"]),
        (2**62, 0, ["t.seconds"]),
        (0, -1, ["t.nanos"]),
        (0, 1_000_000_000, ["t.nanos"]),
        (-(2**63), -(2**31), ["t.seconds", "t.nanos"]),
    ],
)
def test_a_timestamp_beyond_the_bounds_is_a_violation(
    seconds: int, nanos: int, expected: list[str]
) -> None:
    v: list[FieldViolation] = []
    ts = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert micros_from_proto(ts, "t", v) is None
    assert fields(v) == expected


def test_the_look_back_rules_travel_both_ways() -> None:
    msg = series(
        validation__max_jump_percent="8",
        validation__max_spike_percent="5.5",
        validation__max_zscore="4",
        validation__stale_after_snaps=3,
    )
    definition = series_from_proto(msg)
    rules = definition.validation
    assert (rules.max_jump_percent, rules.max_spike_percent, rules.max_zscore) == (
        Decimal(8),
        Decimal("5.5"),
        Decimal(4),
    )
    back = series_to_proto("SPX", definition, 1).validation
    assert (back.max_jump_percent, back.max_spike_percent, back.max_zscore) == ("8", "5.5", "4")
    with pytest.raises(InvalidArgument) as bad:
        series_from_proto(series(validation__max_spike_percent="lots"))
    assert fields(bad.value.violations) == ["series.validation.max_spike_percent"]


# --- snaps and offsets ---


def ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def offset(seconds: int, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def snaps_of(*points: values_pb2.DataPoint) -> tuple[list[Snap], list[str]]:
    v: list[FieldViolation] = []
    return [snap for snap, _ in points_from_proto(points, v)], fields(v)


def test_a_snap_is_a_utc_instant_with_the_offset_the_source_stated() -> None:
    found = snaps_of(
        point(price()),  # utc_offset unset: UTC
        point(price(), ts(SNAP_S, 123_456_000), offset(-5 * 3600)),
        point(price(), ts(-1, 999_999_000), offset(5 * 3600 + 30 * 60)),
        point(price(), ts(bounds.MIN_TIMESTAMP_SECONDS), offset(-bounds.MAX_UTC_OFFSET_SECONDS)),
        point(price(), ts(bounds.MAX_TIMESTAMP_SECONDS, 999_999_000), offset(86_340)),
    )
    assert found == (
        [
            Snap(SNAP_S * US, 0),
            Snap(SNAP_S * US + 123_456, -18_000),
            Snap(-1, 19_800),
            Snap(bounds.MIN_INSTANT_US, -86_340),
            Snap(bounds.MAX_INSTANT_US, 86_340),
        ],
        [],
    )


@pytest.mark.parametrize("nanos", [1, 999, 1_001, 999_999_999])
def test_a_snap_finer_than_a_microsecond_is_refused_not_truncated(nanos: int) -> None:
    # Truncated, two snaps of one request 1 ns apart would merge into one point.
    assert snaps_of(point(price()), point(price(), ts(SNAP_S, nanos))) == (
        [Snap(SNAP_S * US)],
        ["points[1].snap_time"],
    )


@pytest.mark.parametrize(
    ("snap", "expected"),
    [
        (ts(bounds.MAX_TIMESTAMP_SECONDS + 1), ["points[0].snap_time.seconds"]),
        (ts(bounds.MIN_TIMESTAMP_SECONDS - 1), ["points[0].snap_time.seconds"]),
        (ts(SNAP_S, -1_000), ["points[0].snap_time.nanos"]),
        (ts(SNAP_S, 1_000_000_000), ["points[0].snap_time.nanos"]),
    ],
)
def test_a_snap_beyond_the_instant_bounds_is_refused(
    snap: timestamp_pb2.Timestamp, expected: list[str]
) -> None:
    assert snaps_of(point(price(), snap)) == ([], expected)


def test_a_snap_is_required() -> None:
    unset = values_pb2.DataPoint(value=price())
    assert snaps_of(unset) == ([], ["points[0].snap_time"])


@pytest.mark.parametrize(
    "utc_offset",
    [
        offset(30),  # seconds: RFC 3339 offsets are whole minutes
        offset(3600 + 1),
        offset(0, 500_000_000),
        offset(bounds.MAX_UTC_OFFSET_SECONDS + 60),  # +24:00
        offset(-bounds.MAX_UTC_OFFSET_SECONDS - 60),
        offset(2**40),
    ],
)
def test_an_offset_is_whole_minutes_within_23_59(utc_offset: duration_pb2.Duration) -> None:
    assert snaps_of(point(price(), offset=utc_offset)) == ([], ["points[0].utc_offset"])


# --- durations ---


def test_a_cutoff_and_an_sla_travel_both_ways_in_whole_seconds() -> None:
    msg = series(
        publication__cutoff=offset(7_200),
        publication__timeliness_sla=offset(bounds.MAX_DURATION_SECONDS),
    )
    definition = series_from_proto(msg)
    policy = definition.publication
    assert (policy.cutoff_seconds, policy.timeliness_sla_seconds) == (
        7_200,
        bounds.MAX_DURATION_SECONDS,
    )
    back = series_to_proto("SPX", definition, 1)
    assert (back.publication.cutoff, back.publication.timeliness_sla) == (
        offset(7_200),
        offset(bounds.MAX_DURATION_SECONDS),
    )
    assert series_from_proto(back) == definition
    assert series_from_proto(series()).publication == PublicationPolicy()  # unset: disabled


@pytest.mark.parametrize(
    "span",
    [offset(-1), offset(0, 1), offset(1, 500_000_000), offset(bounds.MAX_DURATION_SECONDS + 1)],
)
def test_a_negative_fractional_or_unbounded_duration_is_refused(
    span: duration_pb2.Duration,
) -> None:
    msg = series(publication__cutoff=span, publication__timeliness_sla=span)
    assert violations_of(msg) == [
        "series.publication.cutoff",
        "series.publication.timeliness_sla",
    ]


# --- data sources ---


def test_a_source_is_enabled_unless_it_says_disabled() -> None:
    assert source_from_proto(series_pb2.DataSource(provider="p")).enabled
    assert not source_from_proto(series_pb2.DataSource(provider="p", disabled=True)).enabled


# --- update masks (AIP-134) ---


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=paths)


def update_violations(msg: series_pb2.Series, m: field_mask_pb2.FieldMask) -> list[str]:
    with pytest.raises(InvalidArgument) as error:
        series_update_from_proto(msg, m)
    return fields(error.value.violations)


def test_a_mask_reads_the_fields_it_names_and_only_those() -> None:
    msg = series(
        name="series/PX",
        precision=4,
        description="closing prices",
        validation__zscore_window=5000,  # invalid, but not named: not read
    )
    assert series_update_from_proto(msg, mask("description", "precision")) == Update(
        values={"precision": 4, "description": "closing prices"}
    )


def test_a_named_field_unset_in_the_request_is_cleared() -> None:
    assert series_update_from_proto(
        series_pb2.Series(), mask("description", "validation", "time_zone", "sources")
    ) == Update(
        values={
            "time_zone": "UTC",
            "sources": (),
            "validation": ValidationRules(),
            "description": "",
        }
    )


def test_a_star_names_every_evolvable_field_but_not_the_immutable_ones() -> None:
    found = series_update_from_proto(series_pb2.Series(unit="EUR"), mask("*"))
    assert found == Update(
        values={
            "unit": "EUR",
            "precision": 0,
            "time_zone": "UTC",
            "calendar": "",
            "sources": (),
            "validation": ValidationRules(),
            "reconciliation": ReconciliationPolicy(),
            "publication": PublicationPolicy(),
            "description": "",
            "classification": Classification.INTERNAL,
            "service_level": None,
            "structure": None,
        }
    )


def test_without_a_mask_the_fields_set_in_the_request_are_named() -> None:
    # As read from GetSeries: name and schema_version are set, and ignored.
    msg = series_pb2.Series(
        name="series/PX",
        schema_version=3,
        frequency=series_pb2.FREQUENCY_DAILY,
        sources=[series_pb2.SeriesSource(source="sources/bbg")],
        publication=series_pb2.PublicationPolicy(),  # present, though empty
        precision=0,  # the default: not set, so not named (an implied mask cannot clear)
    )
    assert series_update_from_proto(msg, mask()) == Update(
        values={
            "frequency": Frequency.DAILY,
            "sources": (SeriesSource(source_id="bbg", priority=1),),
            "publication": PublicationPolicy(),
        }
    )


def test_a_named_data_type_is_checked_but_cannot_be_cleared() -> None:
    named = series_update_from_proto(
        series_pb2.Series(data_type=values_pb2.DATA_TYPE_VOLUME), mask("data_type")
    )
    assert named == Update(values={"data_type": DataType.VOLUME})  # compared by the domain
    assert update_violations(series_pb2.Series(), mask("data_type", "frequency")) == [
        "series.data_type",
        "series.frequency",
    ]


@pytest.mark.parametrize(
    ("paths", "refused"),
    [
        (["unit", "colour"], ["update_mask.paths[1]"]),
        (["name"], ["update_mask.paths[0]"]),
        (["schema_version", "unit"], ["update_mask.paths[0]"]),
        (["publication.cutoff"], ["update_mask.paths[0]"]),
        (["unit.x", "unknown.field"], ["update_mask.paths[0]", "update_mask.paths[1]"]),
        (["*", "unit"], ["update_mask.paths[0]"]),
        ([""], ["update_mask.paths[0]"]),
    ],
)
def test_a_mask_path_must_be_an_updatable_top_level_field(
    paths: list[str], refused: list[str]
) -> None:
    assert update_violations(series(), mask(*paths)) == refused


def test_a_nested_path_is_told_to_name_its_top_level_field() -> None:
    with pytest.raises(InvalidArgument) as error:
        series_update_from_proto(series(), mask("publication.cutoff"))
    assert "'publication'" in error.value.violations[0].description


def test_a_unit_without_a_data_type_is_checked_for_its_shape_only() -> None:
    # Either kind of unit fits an update that does not name the data type; the domain
    # checks it against the series' own.
    for unit in ("USD", "shares"):
        assert series_update_from_proto(series_pb2.Series(unit=unit), mask("unit")) == Update(
            values={"unit": unit}
        )
    assert update_violations(series_pb2.Series(unit="many shares"), mask("unit")) == ["series.unit"]
    priced = series_pb2.Series(unit="shares", data_type=values_pb2.DATA_TYPE_PRICE)
    assert update_violations(priced, mask("unit", "data_type")) == ["series.unit"]


def test_a_source_mask_maps_disabled_to_the_domains_enabled() -> None:
    msg = series_pb2.DataSource(name="sources/bbg", disabled=True, provider="other")
    assert source_update_from_proto(msg, mask("disabled")) == Update(values={"enabled": False})
    assert source_update_from_proto(msg, mask()) == Update(
        values={"provider": "other", "enabled": False}
    )
    assert source_update_from_proto(series_pb2.DataSource(provider="p"), mask("*")) == Update(
        values={
            "provider": "p",
            "description": "",
            "rate_limit_per_minute": 0,
            "cost_per_request": Decimal(0),
            "settings": {},
            "enabled": True,
            "credentials_ref": "",
            "retry": None,  # "*" without a policy: back to the feed's own
        }
    )
