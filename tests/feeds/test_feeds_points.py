"""Raw values to points: exact decimals, instants with their offsets, and refusals with reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from qis_feeds.application.points import Malformed, Number, RawBar, RawValue, ValueKind, normalise

NEW_YORK_WINTER = timezone(timedelta(hours=-5))


def test_values_stay_exact_whatever_form_they_come_in() -> None:
    forms: list[Number] = [
        Decimal("67234.123456789"),
        "67234.123456789",
        67234,
        0.1,
        Decimal("1E+2"),
    ]
    texts = [normalise(RawValue("S", 0, v), "src", ValueKind.PRICE).values[0] for v in forms]
    # A float by its shortest repr, never its binary expansion; an exponent as plain digits.
    assert texts == ["67234.123456789", "67234.123456789", "67234", "0.1", "100"]


def test_instants_keep_the_vendors_offset() -> None:
    moment = datetime(2024, 1, 2, 16, 0, tzinfo=NEW_YORK_WINTER)
    point = normalise(RawValue("S", moment, "1"), "src", ValueKind.PRICE)
    assert point.snap_us == int(datetime(2024, 1, 2, 21, 0, tzinfo=UTC).timestamp()) * 1_000_000
    assert point.offset_min == -300
    text = normalise(RawValue("S", "2024-01-02T16:00:00-05:00", "1"), "src", ValueKind.PRICE)
    assert (text.snap_us, text.offset_min) == (point.snap_us, point.offset_min)
    assert normalise(RawValue("S", 1_700_000_000_123_456, "1"), "s", ValueKind.PRICE).snap_us == (
        1_700_000_000_123_456
    )


def test_bars_and_their_missing_volume() -> None:
    point = normalise(
        RawValue("S", 0, RawBar(Decimal("1.5"), "2", 1, 1.75)), "src", ValueKind.OHLC_BAR
    )
    assert point.values == ("1.5", "2", "1", "1.75", "")


def test_a_second_source_named_by_the_provider_is_kept() -> None:
    assert normalise(RawValue("S", 0, "1", "other"), "feed", ValueKind.PRICE).source_id == "other"
    assert normalise(RawValue("S", 0, "1"), "feed", ValueKind.PRICE).source_id == "feed"


@pytest.mark.parametrize(
    ("raw", "kind", "reason"),
    [
        (RawValue("S", 0, float("nan")), ValueKind.PRICE, "not a finite number"),
        (RawValue("S", 0, Decimal("Infinity")), ValueKind.PRICE, "not a finite number"),
        (RawValue("S", 0, "1,5"), ValueKind.PRICE, "not a decimal"),
        (RawValue("S", 0, True), ValueKind.PRICE, "not a number"),
        (RawValue("S", datetime(2024, 1, 1), "1"), ValueKind.PRICE, "no time zone"),
        (RawValue("S", "2024-01-01T00:00:00", "1"), ValueKind.PRICE, "no time zone"),
        (RawValue("S", "yesterday", "1"), ValueKind.PRICE, "not RFC 3339"),
        (RawValue("S", 0, RawBar(1, 2, 1, 2)), ValueKind.PRICE, "not OHLC bars"),
        (RawValue("S", 0, "1"), ValueKind.OHLC_BAR, "holds OHLC bars"),
    ],
)
def test_malformed_values_are_refused_with_a_reason(
    raw: RawValue, kind: ValueKind, reason: str
) -> None:
    with pytest.raises(Malformed, match=reason):
        normalise(raw, "src", kind)
