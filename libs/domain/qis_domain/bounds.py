"""The one table of bounds: what the command side accepts, every store can represent, and every
client language can parse. The edge checks each request field against it, so that no accepted
command can stop the read side later (a snap or expiry beyond int64, a position beyond what
SQLite or BSON can hold, a decimal a Go or Java client cannot parse exactly).

| quantity                       | bound                                              |
|--------------------------------|----------------------------------------------------|
| instants (snaps, expiries, windows) | 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z, µs (RFC 3339 and google.protobuf.Timestamp) |
| durations (cut-off, SLA)       | 0 .. the span of instants, in whole seconds        |
| UTC offsets a source states    | -23:59 .. +23:59, in whole minutes (as RFC 3339)   |
| commit positions               | 0 .. 2^63 - 1 (int64 in every store)               |
| decimals                       | |x| < 1e18, at most 18 decimal places             |
| z-score window                 | 2 .. 1,000 snaps                                   |
| staleness window               | 0 .. 1,000 snaps                                   |
| identifiers (series, source, command ids, codes) | 1 .. 128 characters            |
| units of volumes               | 1 .. 32 characters                                 |
| free text (reasons, comments)  | at most 1,024 characters                           |
| points, snaps or issue ids per request | 1 .. 10,000                                |
| input quoted in an error       | at most 40 characters                              |
"""

from __future__ import annotations

from datetime import UTC, datetime

from qis_domain.errors import FieldViolation

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


MIN_INSTANT_US = _us(datetime(1, 1, 1, tzinfo=UTC))
MAX_INSTANT_US = _us(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
INSTANTS = "0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z"  # for messages
MIN_TIMESTAMP_SECONDS = MIN_INSTANT_US // 1_000_000
MAX_TIMESTAMP_SECONDS = MAX_INSTANT_US // 1_000_000
# An instant plus a duration stays well within int64 microseconds.
MAX_DURATION_SECONDS = MAX_TIMESTAMP_SECONDS - MIN_TIMESTAMP_SECONDS
MAX_UTC_OFFSET_SECONDS = 23 * 3600 + 59 * 60
MAX_POSITION = 2**63 - 1
MAX_DECIMAL_DIGITS_BEFORE_POINT = 18  # |x| < 1e18
MAX_DECIMAL_PLACES = 18
MIN_ZSCORE_WINDOW = 2
MAX_ZSCORE_WINDOW = 1_000
MAX_STALE_AFTER_SNAPS = 1_000
MAX_ID_LENGTH = 128
MAX_UNIT_LENGTH = 32
MAX_TEXT_LENGTH = 1_024
MAX_BATCH = 10_000
# Errors travel in trailing metadata, which clients cap (8 KiB by default): a violation quotes
# a short head of the input, never all of it.
MAX_QUOTED_LENGTH = 40


def instant_in_range(utc_us: int) -> bool:
    return MIN_INSTANT_US <= utc_us <= MAX_INSTANT_US


def position_in_range(position: int) -> bool:
    return 0 <= position <= MAX_POSITION


def quoted(text: str) -> str:
    """`text` as an error message shows it: repr, shortened to its head when long."""
    if len(text) <= MAX_QUOTED_LENGTH:
        return repr(text)
    return f"{text[:MAX_QUOTED_LENGTH]!r}... ({len(text):,} characters)"


def check_length(text: str, limit: int, field: str, violations: list[FieldViolation]) -> None:
    if len(text) > limit:
        violations.append(FieldViolation(field, f"at most {limit:,} characters, got {len(text):,}"))
