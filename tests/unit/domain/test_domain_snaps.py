"""Valid time: parsing, formatting and bucketing of snaps (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from qis_domain.snaps import (
    BUCKET_SPAN_US,
    Frequency,
    Snap,
    bucket_of,
    format_snap,
    parse_snap,
)

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US
# 2024-03-01T12:00:00Z
NOON_US = 1_709_294_400 * US


def _utc_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


# --- parse_snap ---


def test_parse_snap_z_suffix_is_utc_with_zero_offset() -> None:
    snap = parse_snap("2024-03-01T12:00:00Z")
    assert snap == Snap(NOON_US, 0)


@pytest.mark.parametrize(
    ("text", "offset_s"),
    [
        ("2024-03-01T17:30:00+05:30", 5 * 3600 + 30 * 60),
        ("2024-03-01T08:00:00-04:00", -4 * 3600),
        ("2024-03-01T12:00:00+00:00", 0),
        ("2024-03-02T01:45:00+13:45", 13 * 3600 + 45 * 60),
    ],
)
def test_parse_snap_converts_offsets_to_utc_and_keeps_the_offset(text: str, offset_s: int) -> None:
    snap = parse_snap(text)
    assert snap.utc_us == NOON_US
    assert snap.offset_s == offset_s


def test_same_instant_in_different_offsets_has_the_same_utc_us() -> None:
    a = parse_snap("2024-03-01T12:00:00Z")
    b = parse_snap("2024-03-01T13:00:00+01:00")
    assert a.utc_us == b.utc_us
    assert (a.offset_s, b.offset_s) == (0, 3600)


def test_parse_snap_keeps_microseconds() -> None:
    assert parse_snap("2024-03-01T12:00:00.000001Z").utc_us == NOON_US + 1
    assert parse_snap("2024-03-01T12:00:00.123456Z").utc_us == NOON_US + 123_456
    assert parse_snap("2024-03-01T12:00:00.5+00:00").utc_us == NOON_US + 500_000


def test_parse_snap_before_the_epoch_is_negative() -> None:
    assert parse_snap("1969-12-31T23:59:59.999999Z").utc_us == -1
    assert parse_snap("1900-01-01T00:00:00Z").utc_us == _utc_us(datetime(1900, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "text", ["2024-03-01T12:00:00", "2024-03-01T12:00:00.123456", "2024-03-01"]
)
def test_parse_snap_rejects_a_timestamp_without_offset(text: str) -> None:
    with pytest.raises(ValueError, match="no UTC offset") as info:
        parse_snap(text)
    message = str(info.value)
    assert text in message
    assert "'Z'" in message
    assert "+hh:mm" in message


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2024-13-01T00:00:00Z", "2024-03-01T25:00:00Z", "12:00"]
)
def test_parse_snap_rejects_garbage_with_a_helpful_message(text: str) -> None:
    with pytest.raises(ValueError, match="is not an RFC 3339 timestamp") as info:
        parse_snap(text)
    assert repr(text) in str(info.value)


def test_parse_snap_does_not_silently_truncate_nanoseconds() -> None:
    with pytest.raises(ValueError, match="microsecond"):
        parse_snap("2024-03-01T12:00:00.123456789Z")


# --- format_snap / Snap ---


@pytest.mark.parametrize(
    ("utc_us", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (NOON_US, "2024-03-01T12:00:00Z"),
        (NOON_US + 123_456, "2024-03-01T12:00:00.123456Z"),
    ],
)
def test_format_snap(utc_us: int, text: str) -> None:
    assert format_snap(utc_us) == text


@pytest.mark.parametrize(
    "utc_us",
    [0, 1, -1, 999_999, NOON_US + 7, -2_208_988_800 * US + 42, 4_102_444_800 * US - 1],
)
def test_format_then_parse_round_trips(utc_us: int) -> None:
    assert parse_snap(format_snap(utc_us)) == Snap(utc_us, 0)


def test_snap_isoformat_is_utc_even_with_an_offset() -> None:
    snap = parse_snap("2024-03-01T17:30:00.25+05:30")
    assert snap.isoformat() == "2024-03-01T12:00:00.250000Z"


def test_snap_to_datetime_is_exact_to_the_microsecond() -> None:
    for utc_us in (NOON_US + 123_457, NOON_US + 999_999, -1, 0):
        expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=utc_us)
        assert Snap(utc_us).to_datetime() == expected


def test_snaps_order_by_instant() -> None:
    later = parse_snap("2024-03-01T12:00:00.000001Z")
    earlier = parse_snap("2024-03-01T12:00:00Z")
    assert sorted([later, earlier]) == [earlier, later]


# --- bucket_of ---


@pytest.mark.parametrize("frequency", list(Frequency))
def test_every_frequency_has_a_positive_span(frequency: Frequency) -> None:
    assert BUCKET_SPAN_US[frequency] > 0


@pytest.mark.parametrize("frequency", list(Frequency))
def test_bucket_is_aligned_on_the_epoch_and_contains_the_point(frequency: Frequency) -> None:
    span = BUCKET_SPAN_US[frequency]
    for utc_us in (0, 1, NOON_US, NOON_US + 123_456, -1, -NOON_US, span, span - 1, -span):
        start = bucket_of(utc_us, frequency)
        assert start % span == 0
        assert start <= utc_us < start + span


@pytest.mark.parametrize("frequency", list(Frequency))
def test_points_on_either_side_of_a_boundary_fall_in_adjacent_buckets(
    frequency: Frequency,
) -> None:
    span = BUCKET_SPAN_US[frequency]
    boundary = 1000 * span
    assert bucket_of(boundary - 1, frequency) == boundary - span
    assert bucket_of(boundary, frequency) == boundary
    assert bucket_of(boundary + span - 1, frequency) == boundary


def test_bucket_spans_of_some_frequencies() -> None:
    midnight = NOON_US - 12 * HOUR_US  # 2024-03-01T00:00:00Z
    # minute series: one bucket per UTC day
    assert bucket_of(NOON_US, Frequency.MINUTE) == midnight
    assert bucket_of(midnight - 1, Frequency.MINUTE) == midnight - DAY_US
    # second series: one bucket per hour
    assert bucket_of(NOON_US + 59 * 60 * US, Frequency.SECOND) == NOON_US
    assert bucket_of(NOON_US + HOUR_US, Frequency.SECOND) == NOON_US + HOUR_US
    # tick series: one bucket per quarter hour
    assert bucket_of(NOON_US + 15 * 60 * US, Frequency.TICK) == NOON_US + 15 * 60 * US
    assert bucket_of(NOON_US + 15 * 60 * US - 1, Frequency.TICK) == NOON_US


def test_negative_epochs_round_down_not_towards_zero() -> None:
    span = BUCKET_SPAN_US[Frequency.DAILY]
    assert bucket_of(-1, Frequency.DAILY) == -span
    assert bucket_of(-span, Frequency.DAILY) == -span
    assert bucket_of(-span - 1, Frequency.DAILY) == -2 * span
    assert bucket_of(0, Frequency.DAILY) == 0
