"""The rules of one source's history computed again, from their definitions alone, with
pandas and numpy: what the service must have flagged on each point, and which sessions of a
month window must be missing an official value.

Written from the semantics, not from the service's code: no domain or adapter function is
used. Percent rules are compared exactly, on values scaled to integers (a float would put a
move of exactly the limit on either side of it); the z-score is a float computation, and a
point whose |z| is within 1e-9 of the limit is reported as ambiguous instead of guessed.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

import exchange_calendars
import numpy as np
import pandas as pd

from tests.property.history import MAX_PLACES, Point

SCALE = 10**MAX_PLACES  # values are exact integers in units of the last place
BUCKET_US = 364 * 86_400 * 1_000_000  # a daily series' bucket, aligned on the epoch
LOOK_BACK_BUCKETS = 3
COVERAGE = (date(1970, 1, 1), date(2099, 12, 31))
ERRORS = frozenset({"jump", "spike_zscore"})  # they hold the point: no official value
ZONE = "America/New_York"


@dataclass(frozen=True, slots=True)
class Limits:
    jump: Decimal
    spike: Decimal
    zscore: Decimal | None
    zscore_window: int
    stale_after: int
    rise: Decimal | None = None  # replaces `jump` for moves up
    fall: Decimal | None = None  # and for moves down
    window: tuple[int, int, Decimal] | None = None  # local [start s, end s): limits times this


@dataclass(frozen=True, slots=True)
class Expected:
    rules: dict[int, set[str]]  # snap -> rules failed (points with none left out)
    ambiguous: frozenset[int]  # snaps whose z-score is too close to the limit to call
    held: frozenset[int]  # snaps of the points an error holds: no official value

    @property
    def held_days(self) -> frozenset[date]:
        return frozenset(local_days(np.array(sorted(self.held), dtype=np.int64)))


def expected(points: Sequence[Point], limits: Limits) -> Expected:
    snaps = np.array([s for s, _ in points], dtype=np.int64)
    scaled = np.array([int(Decimal(v) * SCALE) for _, v in points], dtype=np.int64)
    n = len(snaps)
    # "Previous" reaches back into at most 3 buckets before the point's own.
    floor = snaps - snaps % BUCKET_US - LOOK_BACK_BUCKETS * BUCKET_US
    available = np.arange(n) - np.searchsorted(snaps, floor, side="left")
    rules: dict[int, set[str]] = {}

    def flag(i: np.ndarray | int, rule: str) -> None:
        for snap in np.atleast_1d(snaps[i]):
            rules.setdefault(int(snap), set()).add(rule)

    previous = np.roll(scaled, 1)
    move = scaled - previous
    rise = Fraction(limits.jump if limits.rise is None else limits.rise)
    fall = Fraction(limits.jump if limits.fall is None else limits.fall)
    jump = np.where(move > 0, beyond(move, previous, rise), beyond(move, previous, fall))
    if limits.window is not None:
        start, end, factor = limits.window
        moments = pd.to_datetime(snaps, unit="us", utc=True).tz_convert(ZONE)
        seconds = np.asarray(moments.hour * 3600 + moments.minute * 60 + moments.second)
        inside = (start <= seconds) & (seconds < end)
        rise, fall = rise * Fraction(factor), fall * Fraction(factor)
        wide = np.where(move > 0, beyond(move, previous, rise), beyond(move, previous, fall))
        jump = np.where(inside, wide, jump)
    flag(np.flatnonzero((available >= 1) & jump), "jump")
    # Out and back around b: a -> b beyond the limit one way, b -> c beyond it the other way;
    # raised on b when c arrives, so a and b must both be within c's reach.
    move_in, base_in = np.roll(move, 1), np.roll(scaled, 2)
    spike = (
        (available >= 2)
        & (np.sign(move_in) * np.sign(move) == -1)
        & beyond(move_in, base_in, limits.spike)
        & beyond(move, previous, limits.spike)
    )
    flag(np.flatnonzero(spike) - 1, "spike")
    if limits.stale_after > 1:
        run = pd.Series(scaled).groupby((move != 0).cumsum()).cumcount().to_numpy()
        want = limits.stale_after - 1
        flag(np.flatnonzero((run >= want) & (available >= want)), "stale")
    ambiguous = set()
    if limits.zscore is not None:
        figures, limit = scaled / SCALE, float(limits.zscore)
        for i in range(1, n):
            window = figures[max(i - available[i], i - limits.zscore_window - 1) : i]
            moves = np.diff(window) / window[:-1]
            if len(moves) < 2 or moves.var() == 0:
                continue
            if moves.var() < 1e-20:
                # Moves equal but for float rounding: exactly equal ones say nothing (no
                # z-score), nearly equal ones make any move unusual. Too close to call.
                ambiguous.add(int(snaps[i]))
                continue
            z = ((figures[i] - window[-1]) / window[-1] - moves.mean()) / moves.std(ddof=1)
            if abs(abs(z) - limit) < 1e-9 * limit:
                ambiguous.add(int(snaps[i]))
            elif abs(z) > limit:
                flag(i, "spike_zscore")
    days = local_days(snaps)
    sessions = set(sessions_between(min(days), max(days)))
    for i, day in enumerate(days):
        if day not in sessions:
            flag(i, "calendar" if COVERAGE[0] <= day <= COVERAGE[1] else "calendar_coverage")
    held = frozenset(s for s, r in rules.items() if r & ERRORS)
    return Expected(rules, frozenset(ambiguous), held)


def beyond(move: np.ndarray, base: np.ndarray, limit: Decimal | Fraction) -> np.ndarray:
    """|move| / |base| * 100 > limit, in integers: |move| * 100 * q > p * |base| for p/q."""
    ratio = Fraction(limit)
    over: np.ndarray = np.abs(move) * 100 * ratio.denominator > ratio.numerator * np.abs(base)
    return over


def local_days(snaps: np.ndarray) -> list[date]:
    moments = pd.to_datetime(snaps, unit="us", utc=True).tz_convert(ZONE)
    return [m.date() for m in moments]


def sessions_between(first: date, last: date) -> list[date]:
    everything = xnys_sessions()
    return everything[bisect.bisect_left(everything, first) : bisect.bisect_right(everything, last)]


@functools.cache
def xnys_sessions() -> list[date]:
    """Every XNYS session the calendar covers (loaded once: it takes a few hundred ms)."""
    calendar = exchange_calendars.get_calendar("XNYS", start=COVERAGE[0], end=COVERAGE[1])
    return [ts.date() for ts in calendar.sessions]


def missing_sessions(
    points: Sequence[Point], held: frozenset[date], year: int, month: int
) -> list[str]:
    """Sessions of the month without an official value: no point, or a held one."""
    first = date(year, month, 1)
    last = (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
    official = set(local_days(np.array([s for s, _ in points], dtype=np.int64))) - held
    return [d.isoformat() for d in sessions_between(first, last) if d not in official]
