"""Long real-calendar histories for the property tests: New York closes on every XNYS session
from 2003 to 2024, a random walk with injected jumps, out-and-back spikes, gaps, stale runs,
prints on days that are not sessions, and sometimes a second source with small differences.

Hypothesis draws only a small `Shape` (a seed and a few counts); the history is made from it
with `random.Random(seed)`, so drawing an example costs a few milliseconds however long the
history is, and shrinking works on the counts.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import exchange_calendars
from hypothesis import strategies as st
from qis_domain.definitions import (
    JumpWindow,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.scalar_points import ScalarPoints
from qis_domain.snaps import Frequency, Snap, bucket_of
from qis_domain.values import DataType, Price

NEW_YORK = ZoneInfo("America/New_York")
FIRST_DAY = date(2003, 1, 2)
LAST_DAY = date(2024, 12, 31)
CLOSE = time(16, 0)
CLOSE_S = 16 * 3600  # seconds after local midnight
PRIMARY = "feed1"
SECONDARY = "feed2"
SERIES = "SPX.CLOSE"
MAX_PLACES = 4  # values have 2 to 4 decimal places
# Before the calendar's fixed coverage (ExchangeCalendars.coverage starts in 1970).
ANCIENT_DAY = date(1969, 12, 30)

Point = tuple[int, str]
"""(snap in UTC µs, value as a decimal string)"""


@functools.cache
def sessions() -> tuple[date, ...]:
    """XNYS sessions of the histories, straight from exchange_calendars with explicit bounds
    (the tests' own source, not the service's adapter)."""
    calendar = exchange_calendars.get_calendar("XNYS", start=FIRST_DAY, end=LAST_DAY)
    return tuple(ts.date() for ts in calendar.sessions)


def close_us(day: date) -> int:
    moment = datetime.combine(day, CLOSE, NEW_YORK)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def snap_of(utc_us: int) -> Snap:
    """With the New York offset of the moment, as a source would send it (lineage only)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=utc_us)
    offset = moment.astimezone(NEW_YORK).utcoffset()
    assert offset is not None
    return Snap(utc_us, int(offset.total_seconds()))


def local_day(utc_us: int) -> date:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=utc_us)
    return moment.astimezone(NEW_YORK).date()


def prices(points: Sequence[Point]) -> list[tuple[Snap, Price]]:
    return [(snap_of(snap_us), Price(Decimal(text), "")) for snap_us, text in points]


def price_columns(points: Sequence[Point]) -> ScalarPoints:
    """The same prices as `prices`, in columns as the columnar form brings them: with their
    texts when every one is its Decimal's own (else the figures' are written when needed)."""
    snaps = [snap_of(snap_us) for snap_us, _ in points]
    figures = [Decimal(text) for _, text in points]
    texts = [text for _, text in points]
    own = texts if list(map(str, figures)) == texts else None
    return ScalarPoints(Price, [s.utc_us for s in snaps], [s.offset_s for s in snaps], figures, own)


@dataclass(frozen=True, slots=True)
class Shape:
    """What hypothesis draws about a history."""

    seed: int
    start: int  # price level on the first session
    sigma: float  # daily volatility of the walk
    jumps: int  # level shifts of 8-11 %
    spikes: int  # one print 8-11 % off, then back
    gaps: int  # runs of 1-5 sessions without a value
    stale_runs: int  # runs of 2-8 repeats of the previous value
    strays: int  # prints on weekends and holidays
    ancient: bool  # one print before the calendar's coverage
    outage: bool  # 3.5-4.5 years without any value: longer than the look-back reaches
    second: float  # share of sessions the second source sends too, and half of those the
    # primary misses (0: no second source)
    order: int  # deliveries: 0 primary then secondary, 1 the other way, 2+ alternating blocks


@dataclass(frozen=True, slots=True)
class History:
    shape: Shape | None  # None: made by hand
    primary: tuple[Point, ...]
    secondary: tuple[Point, ...]
    deliveries: tuple[tuple[str, tuple[Point, ...]], ...]  # in arrival order
    missing: frozenset[date]  # sessions the primary source has no value for

    @property
    def sources(self) -> tuple[str, ...]:
        return (PRIMARY, SECONDARY) if self.secondary else (PRIMARY,)


def shapes(*, second_source: bool = True) -> st.SearchStrategy[Shape]:
    return st.builds(
        Shape,
        seed=st.integers(0, 2**32 - 1),
        start=st.integers(50, 3000),
        sigma=st.sampled_from([0.004, 0.008, 0.012]),
        jumps=st.integers(0, 6),
        spikes=st.integers(0, 6),
        gaps=st.integers(0, 8),
        stale_runs=st.integers(0, 4),
        strays=st.integers(0, 4),
        ancient=st.booleans(),
        outage=st.booleans(),
        second=st.sampled_from([0.0, 0.3, 1.0]) if second_source else st.just(0.0),
        order=st.integers(0, 3),
    )


@functools.lru_cache(maxsize=64)
def history(shape: Shape) -> History:
    rng = random.Random(shape.seed)
    days = sessions()
    n = len(days)
    level, true = float(shape.start), []
    for _ in range(n):
        level *= math.exp(rng.gauss(0.0, shape.sigma))
        true.append(level)
    for _ in range(shape.jumps):
        i, factor = rng.randrange(1, n), _move(rng)
        true[i:] = [v * factor for v in true[i:]]
    printed = list(true)
    for _ in range(shape.spikes):
        i = rng.randrange(1, n - 1)
        printed[i] *= _move(rng)
    texts = [_text(rng, v) for v in printed]
    for _ in range(shape.stale_runs):
        length = rng.randint(2, 8)
        i = rng.randrange(0, n - length)
        texts[i + 1 : i + 1 + length] = [texts[i]] * length
    kept = set(range(n))
    for _ in range(shape.gaps):
        i = rng.randrange(1, n - 5)
        kept -= set(range(i, i + rng.randint(1, 5)))
    if shape.outage:
        first = rng.randrange(n // 4, n // 2)
        kept -= set(range(first, first + rng.randint(880, 1130)))
    primary = [(close_us(days[i]), texts[i]) for i in sorted(kept)]
    primary += _strays(rng, shape, true)
    primary.sort()
    secondary: list[Point] = []
    if shape.second:
        for i in range(n):
            if rng.random() < shape.second or (i not in kept and rng.random() < 0.5):
                secondary.append((close_us(days[i]), _text(rng, true[i] * rng.gauss(1, 2e-4))))
    return History(
        shape,
        tuple(primary),
        tuple(secondary),
        _deliveries(shape, primary, secondary),
        frozenset(days[i] for i in range(n) if i not in kept),
    )


def _move(rng: random.Random) -> float:
    size = rng.uniform(0.08, 0.11)
    return 1 + size if rng.random() < 0.5 else 1 - size


def _text(rng: random.Random, value: float) -> str:
    return f"{value:.{rng.choice(range(2, MAX_PLACES + 1))}f}"


def _strays(rng: random.Random, shape: Shape, true: list[float]) -> list[Point]:
    days = sessions()
    known = set(days)
    out: list[Point] = []
    while len(out) < shape.strays:
        i = rng.randrange(3, len(days))  # from the third session on: the day is in range
        day = days[i] - timedelta(days=rng.randint(1, 3))
        if day not in known:  # a weekend or a holiday just before a session
            out.append((close_us(day), _text(rng, true[i - 1])))
            known.add(day)
    if shape.ancient:
        out.append((close_us(ANCIENT_DAY), _text(rng, true[0])))
    return out


def _deliveries(
    shape: Shape, primary: list[Point], secondary: list[Point]
) -> tuple[tuple[str, tuple[Point, ...]], ...]:
    if not secondary:
        return ((PRIMARY, tuple(primary)),)
    if shape.order < 2:
        pair = [(PRIMARY, tuple(primary)), (SECONDARY, tuple(secondary))]
        return tuple(pair if shape.order == 0 else pair[::-1])
    # Blocks of a few years, the sources taking turns: a source that arrives first publishes,
    # the other restates or confirms, and the look-back rules see either one's figure.
    years = 2 * shape.order - 1
    blocks: dict[tuple[int, int], list[Point]] = {}
    for rank, points in enumerate((primary, secondary)):
        for point in points:
            blocks.setdefault((local_day(point[0]).year // years, rank), []).append(point)
    names = (PRIMARY, SECONDARY)
    return tuple((names[rank], tuple(block)) for (_, rank), block in sorted(blocks.items()))


@dataclass(frozen=True, slots=True)
class Cuts:
    """Where a delivery is split into commands: at fractions of its length, and just around the
    first point of some of its buckets (so that commands end and start at bucket boundaries)."""

    fractions: tuple[float, ...]
    boundaries: tuple[tuple[int, int], ...]  # (bucket ordinal, offset from its first point)

    def split(self, points: Sequence[Point]) -> list[Sequence[Point]]:
        n = len(points)
        at = {int(f * n) for f in self.fractions}
        firsts = [i for i in range(n) if i == 0 or _bucket(points[i]) != _bucket(points[i - 1])]
        for ordinal, offset in self.boundaries:
            at.add(firsts[ordinal % len(firsts)] + offset)
        edges = [0, *sorted(i for i in at if 0 < i < n), n]
        return [points[a:b] for a, b in itertools.pairwise(edges) if a < b]


def _bucket(point: Point) -> int:
    return bucket_of(point[0], Frequency.DAILY)


def cuts() -> st.SearchStrategy[Cuts]:
    fractions = st.lists(st.floats(0.0, 1.0), max_size=12).map(tuple)
    boundaries = st.lists(st.tuples(st.integers(0, 30), st.integers(-1, 1)), max_size=8)
    return st.one_of(
        st.just(Cuts((), ())),  # everything in one command
        st.builds(Cuts, fractions, boundaries.map(tuple)),
    )


@dataclass(frozen=True, slots=True)
class Rules:
    """What hypothesis draws about the series' definition."""

    jump: str
    spike: str
    zscore: str | None
    zscore_window: int
    stale_after: int
    precision: int
    method: ReconciliationMethod
    tolerance_bps: str
    min_sources: int
    cutoff_seconds: int
    rise: str | None = None  # an asymmetric jump band: each side replaces `jump` when set
    fall: str | None = None
    window: tuple[int, int, str] | None = None  # a jump window: start s, end s, multiplier

    def jump_windows(self) -> tuple[JumpWindow, ...]:
        if self.window is None:
            return ()
        start, end, factor = self.window
        return (JumpWindow(start_s=start, end_s=end, multiplier=Decimal(factor)),)

    def definition(self, history: History) -> SeriesDefinition:
        return SeriesDefinition(
            data_type=DataType.PRICE,
            frequency=Frequency.DAILY,
            unit="USD",
            precision=self.precision,
            time_zone="America/New_York",
            calendar="XNYS",
            sources=tuple(
                SeriesSource(source_id=s, priority=p) for p, s in enumerate(history.sources, 1)
            ),
            validation=ValidationRules(
                require_positive=True,
                max_jump_percent=Decimal(self.jump),
                max_spike_percent=Decimal(self.spike),
                max_zscore=None if self.zscore is None else Decimal(self.zscore),
                zscore_window=self.zscore_window,
                stale_after_snaps=self.stale_after,
                check_calendar=True,
                max_rise_percent=None if self.rise is None else Decimal(self.rise),
                max_fall_percent=None if self.fall is None else Decimal(self.fall),
                jump_windows=self.jump_windows(),
            ),
            reconciliation=ReconciliationPolicy(
                method=self.method, tolerance_bps=Decimal(self.tolerance_bps)
            ),
            publication=PublicationPolicy(
                min_sources=min(self.min_sources, len(history.sources)),
                cutoff_seconds=self.cutoff_seconds,
            ),
        )


def rules(*, one_source: bool = False) -> st.SearchStrategy[Rules]:
    """`one_source`: reconciliation and publication settings that one source cannot reach
    are left at their defaults; precision is none or one the data already has (4 places), so a
    point's received figure is its own value."""
    return st.builds(
        Rules,
        jump=st.sampled_from(["7.5", "8", "9.5"]),
        spike=st.sampled_from(["4", "5", "6.5"]),
        zscore=st.sampled_from([None, "5", "6", "8"]),
        zscore_window=st.sampled_from([2, 5, 20]),
        stale_after=st.sampled_from([0, 3, 4, 6]),
        precision=st.sampled_from([0, MAX_PLACES] if one_source else [0, 2, MAX_PLACES]),
        method=st.just(ReconciliationMethod.PRIORITY)
        if one_source
        else st.sampled_from(list(ReconciliationMethod)),
        tolerance_bps=st.sampled_from(["0", "2", "5"]),
        min_sources=st.just(1) if one_source else st.integers(1, 2),
        cutoff_seconds=st.sampled_from([0, 7200]),
        # Around the injected 8-11 % jumps and 1 % daily moves: each side tighter or looser.
        rise=st.sampled_from([None, "2.5", "12"]),
        fall=st.sampled_from([None, "2.5", "12"]),
        # Every point is a 16:00 close: a window starting then scales its limits, one ending
        # then does not (the end is excluded).
        window=st.sampled_from([None, (CLOSE_S, CLOSE_S + 1800, "1.25"), (0, CLOSE_S, "3")]),
    )


# Explicit examples every profile runs first: two sources with the secondary first (restatements
# when the primary arrives), every rule firing, an outage, cuts on bucket boundaries.
RICH_SHAPE = Shape(
    seed=8,
    start=800,
    sigma=0.01,
    jumps=5,
    spikes=5,
    gaps=6,
    stale_runs=4,
    strays=3,
    ancient=True,
    outage=True,
    second=0.3,
    order=1,
)
RICH_RULES = Rules("8", "5", "6", 20, 3, 2, ReconciliationMethod.PRIORITY, "2", 1, 7200)
BOUNDARY_CUTS = Cuts((0.3, 0.5), ((3, 0), (10, -1), (15, 1)))
