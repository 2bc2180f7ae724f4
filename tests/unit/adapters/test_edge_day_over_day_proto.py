"""`day_over_day` at the edge: it travels both ways, takes a warning when no severity is said,
a malformed one is refused with its fields (a band is needed, decimals above 0, no
SEVERITY_INFO), an unset one stays unset, and an issue of the rule reaches a client as
QUALITY_RULE_DAY_OVER_DAY."""

from __future__ import annotations

from decimal import Decimal

import pytest
from qis.data.v1 import quality_pb2, series_pb2
from qis_adapters.proto.definitions import series_from_proto, series_to_proto
from qis_adapters.proto.enums import RULES
from qis_domain.definitions import DayOverDayCheck

from tests.unit.adapters.test_edge_proto_mapping import series, violations_of


def test_a_day_over_day_check_travels_both_ways() -> None:
    check = series_pb2.DayOverDayCheck(
        max_percent="3",
        max_rise_percent="0.35",
        max_fall_percent="0.25",
        max_abs="0.05",
        severity=quality_pb2.SEVERITY_ERROR,
    )
    definition = series_from_proto(series(validation__day_over_day=check))
    assert definition.validation.day_over_day == DayOverDayCheck(
        max_percent=Decimal(3),
        max_rise_percent=Decimal("0.35"),
        max_fall_percent=Decimal("0.25"),
        max_abs=Decimal("0.05"),
        severity="error",
    )
    assert series_to_proto("AAPL", definition, 1).validation.day_over_day == check


def test_an_unspecified_severity_is_a_warning_and_unset_stays_unset() -> None:
    check = series_pb2.DayOverDayCheck(max_abs="1")
    rule = series_from_proto(series(validation__day_over_day=check)).validation.day_over_day
    assert rule == DayOverDayCheck(max_abs=Decimal(1), severity="warning")
    definition = series_from_proto(series())
    assert definition.validation.day_over_day is None
    assert not series_to_proto("AAPL", definition, 1).validation.HasField("day_over_day")
    assert "day_over_day" not in definition.validation.model_dump(mode="json")


@pytest.mark.parametrize(
    ("check", "wrong"),
    [
        (series_pb2.DayOverDayCheck(), ["max_percent"]),
        (series_pb2.DayOverDayCheck(max_percent="0", max_abs="x"), ["max_percent", "max_abs"]),
        (
            series_pb2.DayOverDayCheck(max_rise_percent="1", severity=quality_pb2.SEVERITY_INFO),
            ["severity"],
        ),
    ],
)
def test_a_malformed_day_over_day_check_is_refused_with_its_fields(
    check: series_pb2.DayOverDayCheck, wrong: list[str]
) -> None:
    assert violations_of(series(validation__day_over_day=check)) == [
        f"series.validation.day_over_day.{name}" for name in wrong
    ]


def test_the_rule_has_its_enum_value() -> None:
    assert RULES["day_over_day"] == quality_pb2.QUALITY_RULE_DAY_OVER_DAY == 18
