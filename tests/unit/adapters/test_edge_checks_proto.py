"""The asymmetric jump band and the jump windows at the edge: each side of the band is
validated like the other thresholds (above 0, a decimal; empty: the symmetric limit), each
window is a time of day with a multiplier above 0, none overlapping, and both travel both
ways."""

from __future__ import annotations

from decimal import Decimal

import pytest
from google.protobuf import duration_pb2
from qis.data.v1 import series_pb2
from qis_adapters.proto.definitions import series_from_proto, series_to_proto

from tests.unit.adapters.test_edge_proto_mapping import series, violations_of


@pytest.mark.parametrize("field", ["max_rise_percent", "max_fall_percent"])
@pytest.mark.parametrize("threshold", ["0", "-0.25", "lots", "1e30"])
def test_a_band_side_that_is_no_threshold_is_a_violation(field: str, threshold: str) -> None:
    assert violations_of(series(**{f"validation__{field}": threshold})) == [
        f"series.validation.{field}"
    ]


def test_both_sides_are_reported_together() -> None:
    msg = series(validation__max_rise_percent="0", validation__max_fall_percent="-1")
    assert violations_of(msg) == [
        "series.validation.max_rise_percent",
        "series.validation.max_fall_percent",
    ]


def test_the_band_travels_both_ways() -> None:
    msg = series(
        validation__max_jump_percent="8",
        validation__max_rise_percent="0.35",
        validation__max_fall_percent="0.25",
    )
    definition = series_from_proto(msg)
    assert definition.validation.jump_limits() == (Decimal("0.35"), Decimal("0.25"))
    back = series_to_proto("SPX", definition, 1).validation
    assert (back.max_jump_percent, back.max_rise_percent, back.max_fall_percent) == (
        "8",
        "0.35",
        "0.25",
    )


def test_without_a_band_both_sides_are_the_symmetric_limit() -> None:
    definition = series_from_proto(series(validation__max_jump_percent="8"))
    assert definition.validation.jump_limits() == (Decimal(8), Decimal(8))
    back = series_to_proto("SPX", definition, 1).validation
    assert (back.max_rise_percent, back.max_fall_percent) == ("", "")


def window(start: int, end: int, multiplier: str = "2") -> series_pb2.JumpWindow:
    return series_pb2.JumpWindow(
        start=duration_pb2.Duration(seconds=start),
        end=duration_pb2.Duration(seconds=end),
        multiplier=multiplier,
    )


def with_windows(*windows: series_pb2.JumpWindow) -> series_pb2.Series:
    msg = series(validation__max_jump_percent="1")
    msg.validation.jump_windows.extend(windows)
    return msg


def test_jump_windows_travel_both_ways() -> None:
    msg = with_windows(window(34_200, 36_000, "3"), window(57_000, 57_600, "1.5"))
    rules = series_from_proto(msg).validation
    assert [(w.start_s, w.end_s, w.multiplier) for w in rules.jump_windows] == [
        (34_200, 36_000, Decimal(3)),
        (57_000, 57_600, Decimal("1.5")),
    ]
    back = series_to_proto("SPX", series_from_proto(msg), 1).validation
    assert list(back.jump_windows) == list(msg.validation.jump_windows)


@pytest.mark.parametrize(
    ("windows", "path"),
    [
        ([window(36_000, 34_200)], "jump_windows[0].end"),  # ends before it starts
        ([window(0, 86_401)], "jump_windows[0].end"),  # beyond the day
        ([window(-1, 60)], "jump_windows[0].start"),
        ([window(0, 60, "0")], "jump_windows[0].multiplier"),
        ([window(0, 60, "")], "jump_windows[0].multiplier"),
        ([window(0, 60, "wide")], "jump_windows[0].multiplier"),
        ([window(0, 120), window(60, 180)], "jump_windows"),  # overlapping
        ([window(h * 60, h * 60 + 30) for h in range(25)], "jump_windows"),  # more than 24
    ],
)
def test_a_window_that_is_no_time_of_day_is_a_violation(
    windows: list[series_pb2.JumpWindow], path: str
) -> None:
    assert violations_of(with_windows(*windows)) == [f"series.validation.{path}"]
