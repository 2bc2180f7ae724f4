"""Snaps at the edge: RFC 3339 exactly (not every ISO 8601 form Python accepts), within the
instants every store can hold (qis_domain.bounds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from qis_domain import bounds
from qis_domain.snaps import Snap, format_snap, parse_snap

NOON_US = 1_709_294_400 * 1_000_000  # 2024-03-01T12:00:00Z


@pytest.mark.parametrize(
    "text",
    [
        "20240301T120000Z",  # ISO 8601 basic format
        "2024-W09-5T12:00:00Z",  # ISO week date
        "2024-061T12:00:00Z",  # ISO ordinal date
        "2024-03-01 12:00:00Z",  # space instead of T
        "2024-03-01_12:00:00Z",
        "2024-03-01T12:00Z",  # no seconds
        "2024-03-01T12Z",
        "2024-03-01T12:00:00+0000",  # offset without colon
        "2024-03-01T12:00:00+00",  # offset without minutes
        "2024-03-01T12:00:00+00:00:00",  # offset with seconds
        "2024-03-01T12:00:00.Z",  # empty fraction
        "2024-03-01T12:00:00,5Z",  # comma as decimal sign
        "2024-03-01T12:00:00 Z",
        "2024-03-01T12:00:00UTC",
        "+2024-03-01T12:00:00Z",  # expanded year
        "２０２４-03-01T12:00:00Z",  # non-ASCII digits
        "2024-3-1T12:00:00Z",
        " 2024-03-01T12:00:00Z",
        "2024-03-01T12:00:00Z\n",
        "2024-03-01T23:59:60Z",  # a leap second: no UTC instant in µs since the epoch names it
        "2024-03-01T24:00:00Z",
        "2024-02-30T12:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-03-01T12:00:00+24:00",
    ],
)
def test_only_rfc_3339_date_times_are_snaps(text: str) -> None:
    with pytest.raises(ValueError, match="is not an RFC 3339 timestamp"):
        parse_snap(text)


@pytest.mark.parametrize(
    ("text", "offset_s"),
    [
        # RFC 3339 §5.6: "T" and "Z" may be lower case; refusing them would refuse RFC 3339.
        ("2024-03-01t12:00:00z", 0),
        ("2024-03-01t12:00:00Z", 0),
        ("2024-03-01T13:00:00+01:00", 3600),
        # RFC 3339 §4.3: -00:00 is UTC with an unknown local offset.
        ("2024-03-01T12:00:00-00:00", 0),
        ("2024-03-02T11:59:00+23:59", 23 * 3600 + 59 * 60),
    ],
)
def test_rfc_3339_forms_are_accepted(text: str, offset_s: int) -> None:
    snap = parse_snap(text)
    assert snap.utc_us == NOON_US
    assert snap.offset_s == offset_s


@pytest.mark.parametrize(
    "text", ["2024-03-01T12:00:00", "2024-03-01T12:00:00.5", "2024-03-01", "2024-03-01t12:00:00"]
)
def test_no_offset_is_still_named_as_such(text: str) -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_snap(text)


def test_sub_microsecond_is_still_rejected() -> None:
    with pytest.raises(ValueError, match="microsecond"):
        parse_snap("2024-03-01T12:00:00.0000001Z")


def test_the_first_and_last_instants_of_the_bounds_are_snaps() -> None:
    assert parse_snap("0001-01-01T00:00:00Z") == Snap(bounds.MIN_INSTANT_US, 0)
    assert parse_snap("9999-12-31T23:59:59.999999Z") == Snap(bounds.MAX_INSTANT_US, 0)
    assert format_snap(bounds.MAX_INSTANT_US) == "9999-12-31T23:59:59.999999Z"


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+00:01",  # 0000-12-31T23:59Z
        "9999-12-31T23:59:59-00:01",  # 10000-01-01T00:00:59Z
        "9999-12-31T23:30:00.000001-00:30",
    ],
)
def test_snaps_beyond_the_bounds_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="0001-01-01T00:00:00Z"):
        parse_snap(text)


def test_a_snap_is_exact_to_the_microsecond_up_to_the_last_instant() -> None:
    # A float number of seconds cannot hold 9999-12-31T23:59:59.999999 to the microsecond.
    expected = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert Snap(bounds.MAX_INSTANT_US).to_datetime() == expected
    start = datetime(1, 1, 1, tzinfo=UTC)
    assert Snap(bounds.MIN_INSTANT_US + 1).to_datetime() == start + timedelta(microseconds=1)


def test_a_huge_input_is_not_echoed_whole() -> None:
    with pytest.raises(ValueError, match="is not an RFC 3339 timestamp") as info:
        parse_snap("2024-03-01T12:00:00Z" + "9" * 100_000)
    assert len(str(info.value)) < 300
