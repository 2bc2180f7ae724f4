"""Valid time: the instant a value describes, and how a series' points are partitioned by it."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from qis_domain.bounds import INSTANTS, instant_in_range, quoted

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_S = 1_000_000
# RFC 3339 §5.6 date-time, with the offset and the time optional only to name what is missing.
# [0-9], not \d: a str pattern's \d also matches other scripts' digits.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?P<time>[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?P<fraction>[0-9]+))?)?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_FORM = "YYYY-MM-DDThh:mm:ss[.ffffff] then 'Z' or ±hh:mm"


class Snap(NamedTuple):
    """A UTC instant at microsecond precision, with the UTC offset the source sent (lineage).

    A NamedTuple rather than a frozen dataclass: as immutable, and three times cheaper to make,
    which counts when every ingested point has one."""

    utc_us: int
    offset_s: int = 0

    def to_datetime(self) -> datetime:
        # Integer arithmetic: a float of seconds loses microseconds far from the epoch.
        return _EPOCH + timedelta(microseconds=self.utc_us)

    def isoformat(self) -> str:
        return format_snap(self.utc_us)


def parse_snap(text: str) -> Snap:
    """Parse an RFC 3339 date-time, which has an explicit offset, within the instants of
    qis_domain.bounds. Raises ValueError with a reason.

    Only RFC 3339, not every ISO 8601 form `datetime.fromisoformat` takes (basic format, week
    or ordinal dates, a space for "T", no seconds, "+hhmm"): clients in other languages must
    be able to produce and read back the same text. Lower-case "t" and "z" are RFC 3339 (§5.6).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{quoted(text)} is not an RFC 3339 timestamp: {_FORM}")
    if match["offset"] is None:
        time = "" if match["time"] else "no time and "
        raise ValueError(f"{quoted(text)} has {time}no UTC offset: add 'Z' or '+hh:mm'")
    if match["time"] is None:
        raise ValueError(f"{quoted(text)} is not an RFC 3339 timestamp: it has no time")
    if (fraction := match["fraction"]) is not None and len(fraction) > 6:
        # Truncating would merge distinct source timestamps into one snap.
        raise ValueError(f"{quoted(text)} is finer than microsecond precision")
    try:
        # fromisoformat refuses a lower-case "z"; the pattern already refused all it must not take.
        moment = datetime.fromisoformat(text.upper())
    except ValueError as error:
        raise ValueError(f"{quoted(text)} is not an RFC 3339 timestamp: {error}") from None
    delta = moment - _EPOCH
    utc_us = (delta.days * 86_400 + delta.seconds) * _US_PER_S + delta.microseconds
    if not instant_in_range(utc_us):
        raise ValueError(f"{quoted(text)} is outside {INSTANTS}")
    offset = moment.utcoffset()
    assert offset is not None  # the pattern requires one
    return Snap(utc_us, int(offset.total_seconds()))


def format_snap(utc_us: int) -> str:
    seconds, micros = divmod(utc_us, _US_PER_S)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
    return moment.isoformat().replace("+00:00", "Z")


class Frequency(enum.StrEnum):
    TICK = "tick"
    SECOND = "second"
    MINUTE = "minute"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


_HOUR_US = 3600 * _US_PER_S
_DAY_US = 24 * _HOUR_US

# Bucket spans keep a bucket to a few thousand points at most, so handling a command reads a
# bounded amount of state however long the series' history grows.
BUCKET_SPAN_US: dict[Frequency, int] = {
    Frequency.TICK: _HOUR_US // 4,
    Frequency.SECOND: _HOUR_US,
    Frequency.MINUTE: _DAY_US,
    Frequency.HOURLY: 28 * _DAY_US,
    Frequency.DAILY: 364 * _DAY_US,
    Frequency.WEEKLY: 7 * 364 * _DAY_US,
    Frequency.MONTHLY: 28 * 364 * _DAY_US,
}


def bucket_of(utc_us: int, frequency: Frequency) -> int:
    """Start (UTC µs) of the bucket holding `utc_us`; buckets are aligned on the epoch."""
    span = BUCKET_SPAN_US[frequency]
    return utc_us - utc_us % span
