"""Contract messages to domain objects at the command edge: every malformed field becomes a field
violation with its path, all of them in one pass, never an exception of another kind."""

from __future__ import annotations

from decimal import Decimal

import pytest
from google.protobuf import timestamp_pb2
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.proto.definitions import series_from_proto, series_to_proto, source_from_proto
from qis_adapters.proto.times import micros_from_proto
from qis_adapters.proto.values import points_from_proto, value_from_proto
from qis_domain import bounds
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.values import CorporateAction, Price, Volume

SNAP = "2024-03-01T21:00:00Z"


def price(value: str = "101.5", currency: str = "") -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=value, currency=currency))


def point(value: values_pb2.DataValue, snap: str = SNAP) -> values_pb2.DataPoint:
    return values_pb2.DataPoint(snap=snap, value=value)


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
            point(price(), snap="2024-03-01 21:00:00Z"),
            point(price(currency="usd")),
            point(price("1e30", currency="eur"), snap="20240301T210000Z"),
        ],
        v,
    )
    assert fields(v) == [
        "points[0].snap",
        "points[1].value.price.currency",
        "points[2].snap",
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
        publication__cutoff_seconds=-1,
        publication__timeliness_sla_seconds=2**62,
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
            "series.publication.cutoff_seconds",
            "series.publication.timeliness_sla_seconds",
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
