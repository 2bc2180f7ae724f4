"""The one table of bounds: what the command side accepts, every store can represent, and every
client language can parse. The edge checks each request field against it, so that no accepted
command can stop the read side later (a snap or expiry beyond int64, a position beyond what
SQLite or BSON can hold, a decimal a Go or Java client cannot parse exactly).

| quantity                       | bound                                              |
|--------------------------------|----------------------------------------------------|
| instants (snaps, expiries, windows) | 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z, µs (RFC 3339 and google.protobuf.Timestamp) |
| commit positions               | 0 .. 2^63 - 1 (int64 in every store)               |
| decimals                       | |x| < 1e18, at most 18 decimal places             |
| z-score window                 | 2 .. 1,000 snaps                                   |
| identifiers (series, source, command ids) | 1 .. 128 characters                   |
| free text (reasons, comments)  | at most 1,024 characters                           |
"""

from __future__ import annotations

from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


MIN_INSTANT_US = _us(datetime(1, 1, 1, tzinfo=UTC))
MAX_INSTANT_US = _us(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
MIN_TIMESTAMP_SECONDS = MIN_INSTANT_US // 1_000_000
MAX_TIMESTAMP_SECONDS = MAX_INSTANT_US // 1_000_000
MAX_POSITION = 2**63 - 1
MAX_DECIMAL_DIGITS_BEFORE_POINT = 18  # |x| < 1e18
MAX_DECIMAL_PLACES = 18
MIN_ZSCORE_WINDOW = 2
MAX_ZSCORE_WINDOW = 1_000
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 1_024


def instant_in_range(utc_us: int) -> bool:
    return MIN_INSTANT_US <= utc_us <= MAX_INSTANT_US


def position_in_range(position: int) -> bool:
    return 0 <= position <= MAX_POSITION
