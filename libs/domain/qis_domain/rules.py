"""Business rules run on each ingested value. A failure flags the value; it never drops it."""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from qis_domain.definitions import EXACT, JumpWindow, ValidationRules
from qis_domain.scalar_points import ScalarValues
from qis_domain.snaps import format_snap
from qis_domain.values import CorporateAction, DataValue, OhlcBar, OptionsChain, Price, Volume


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


RULE_NAMES = frozenset(
    {
        "positive",
        "ohlc_consistency",
        "option_strike_unique",
        "option_bid_ask",
        "option_implied_volatility",
        "corporate_action_dates",
        "corporate_action_positive",
        "jump",
        "spike_zscore",
        "stale",
        "spike",
        "calendar",
        "calendar_coverage",
        "source_break",
        "missed_cutoff",
        "zero_value",
        "manual_value",
        "confidence_level",
        "benchmark_move",
        "underlying_move",
        "flat_while_benchmark_moved",
        "late_arrival",
        "late_publication",
        "curve_node_spike",
        "curve_node_jump",
        "curve_flat_spot",
        "curve_monotonicity",
        "surface_calendar_arbitrage",
        "surface_butterfly_arbitrage",
        "day_over_day",
    }
)
"""Every rule a value can fail. The contract names each one (QualityRule), so a rule missing
here is refused when raised rather than reaching clients as an unknown enum value."""


@dataclass(frozen=True, slots=True)
class RuleFailure:
    rule: str
    severity: Severity
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule not in RULE_NAMES:
            raise ValueError(f"unknown rule {self.rule!r}: add it to RULE_NAMES and the contract")

    @property
    def blocking(self) -> bool:
        """Errors hold the point for approval; warnings and infos only flag it."""
        return self.severity is Severity.ERROR


@dataclass(frozen=True, slots=True)
class CalendarView:
    """The exchange's trading days around a command's snaps, and the days the calendar knows
    at all: a day outside [first, last] is of unknown coverage, never "not a session"."""

    sessions: frozenset[date]
    first: date
    last: date


class Received(NamedTuple):
    """A source's received figure at a point, whatever the point's status (held, pending,
    flagged or published), and that source (`sources`, one). `approx`: the figure
    as a float for the float screen (`figure_floats`), made once with the point rather than
    by each command that looks back at it (NaN: none, the exact rules decide)."""

    snap_us: int
    figure: Decimal
    sources: tuple[str, ...]
    approx: float = math.nan


def check_value(value: DataValue, rules: ValidationRules) -> list[RuleFailure]:
    """Rules that need nothing but the value itself and the series' rule set."""
    failures: list[RuleFailure] = []
    if rules.require_positive:
        lowest = _lowest_figure(value)
        if lowest is not None and lowest <= 0:
            failures.append(RuleFailure("positive", Severity.ERROR, {"value": str(lowest)}))
    if rules.forbid_zero is not None and (zeros := _zero_fields(value)):
        failures.append(RuleFailure("zero_value", Severity(rules.forbid_zero), {"fields": zeros}))
    if isinstance(value, OhlcBar):
        failures.extend(_check_bar(value))
    elif isinstance(value, OptionsChain):
        failures.extend(_check_chain(value))
    elif isinstance(value, CorporateAction):
        failures.extend(_check_corporate_action(value))
    return failures


def check_values(
    values: Sequence[DataValue],
    rules: ValidationRules,
    numbers: Sequence[Decimal | None] | None = None,
) -> dict[int, list[RuleFailure]]:
    """`check_value` of each value, by index, for those that fail a rule. A batch of prices
    or volumes can fail positivity and the zero rule alone, which fail no figure above 0: one
    pass over their figures settles most batches (of ScalarValues, no value is made for it).
    `numbers`: the values' figures, when the caller has them."""
    kinds = {values.kind} if type(values) is ScalarValues else {type(value) for value in values}
    if kinds <= {Price, Volume}:
        if not rules.require_positive and rules.forbid_zero is None:
            return {}
        # A price or volume always has a figure.
        figures = cast(
            Sequence[Decimal], [value.number for value in values] if numbers is None else numbers
        )
        if min(figures, default=1) > 0:
            return {}
        return {
            i: failures
            for i, (value, figure) in enumerate(zip(values, figures, strict=True))
            if figure <= 0 and (failures := check_value(value, rules))
        }
    return {
        i: failures for i, value in enumerate(values) if (failures := check_value(value, rules))
    }


def _lowest_figure(value: DataValue) -> Decimal | None:
    """The figure positivity is about: every price of a bar, not only its close."""
    if isinstance(value, Price):
        return value.value
    if isinstance(value, Volume):
        return value.quantity
    if isinstance(value, OhlcBar):
        return min(value.open, value.high, value.low, value.close)
    return None


def _zero_fields(value: DataValue) -> list[str]:
    """The fields of `value` that are exactly 0 and should not be: each price and quantity,
    not a bar's volume (a quiet minute of an illiquid name trades nothing), an option's bid
    (far out of the money nobody bids) nor a corporate action's figures (an error of
    their own, corporate_action_positive)."""
    if isinstance(value, Price | Volume):
        return [] if value.number else ["value" if isinstance(value, Price) else "quantity"]
    if isinstance(value, OhlcBar):
        return [name for name in ("open", "high", "low", "close") if not getattr(value, name)]
    if isinstance(value, OptionsChain):
        zeros = [] if value.underlying_price != 0 else ["underlying_price"]
        for i, q in enumerate(value.quotes):
            zeros.extend(
                f"quotes[{i}].{name}"
                for name in ("strike", "ask", "implied_volatility")
                if getattr(q, name) == 0
            )
        return zeros
    return []


def _check_bar(bar: OhlcBar) -> list[RuleFailure]:
    if bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high:
        return []
    evidence = {k: str(getattr(bar, k)) for k in ("open", "high", "low", "close")}
    return [RuleFailure("ohlc_consistency", Severity.ERROR, evidence)]


def _check_chain(chain: OptionsChain) -> list[RuleFailure]:
    failures: list[RuleFailure] = []
    seen: set[tuple[object, Decimal, str]] = set()
    for i, q in enumerate(chain.quotes):
        key = (q.expiry, q.strike, q.right.value)
        if key in seen:
            failures.append(
                RuleFailure(
                    "option_strike_unique",
                    Severity.ERROR,
                    {"quote": i, "expiry": q.expiry.isoformat(), "strike": str(q.strike)},
                )
            )
        seen.add(key)
        if q.bid is not None and q.ask is not None and q.bid > q.ask:
            failures.append(
                RuleFailure(
                    "option_bid_ask",
                    Severity.ERROR,
                    {"quote": i, "bid": str(q.bid), "ask": str(q.ask)},
                )
            )
        if q.implied_volatility is not None and q.implied_volatility < 0:
            failures.append(
                RuleFailure(
                    "option_implied_volatility",
                    Severity.ERROR,
                    {"quote": i, "implied_volatility": str(q.implied_volatility)},
                )
            )
    return failures


def _check_corporate_action(action: CorporateAction) -> list[RuleFailure]:
    failures: list[RuleFailure] = []
    if action.record_date is not None and action.record_date < action.ex_date:
        # Since T+1 settlement the record date is on or after the ex-date.
        failures.append(
            RuleFailure(
                "corporate_action_dates",
                Severity.WARNING,
                {
                    "ex_date": action.ex_date.isoformat(),
                    "record_date": action.record_date.isoformat(),
                },
            )
        )
    for name in ("ratio", "amount"):
        figure = getattr(action, name)
        if figure is not None and figure <= 0:
            failures.append(
                RuleFailure("corporate_action_positive", Severity.ERROR, {name: str(figure)})
            )
    return failures


def check_history(
    figure: Decimal,
    previous: Sequence[Received],
    rules: ValidationRules,
    window: JumpWindow | None = None,
) -> list[RuleFailure]:
    """Rules that compare a value with the received figures of the points before it (oldest
    first): jump, z-score and stale. `window`: the jump window of the value's time of day."""
    failures: list[RuleFailure] = []
    if not previous:
        return failures
    last = previous[-1]
    rise, fall = rules.jump_limits()
    limit = rise if figure > last.figure else fall
    if limit is not None and window is not None:
        limit = EXACT.multiply(limit, window.multiplier)
    if limit is not None and last.figure != 0:
        jump = _percent(figure - last.figure, last.figure)
        if jump > limit:
            evidence = {
                "previous_snap": format_snap(last.snap_us),
                "previous": str(last.figure),
                "value": str(figure),
                "jump_percent": fixed(jump, 4),
                "limit_percent": str(limit),
            }
            if rules.asymmetric:
                # Which side of the band, only when it has two: evidence of a symmetric one
                # stays what it always was.
                evidence["direction"] = "rise" if figure > last.figure else "fall"
            if window is not None:
                evidence["window"] = f"{_clock(window.start_s)}-{_clock(window.end_s)}"
                evidence["multiplier"] = str(window.multiplier)
            failures.append(RuleFailure("jump", Severity.ERROR, evidence))
    if rules.max_zscore is not None and last.figure != 0:
        z = _zscore(figure, [p.figure for p in previous[-(rules.zscore_window + 1) :]])
        if z is not None and abs(z) > rules.max_zscore:
            failures.append(
                RuleFailure(
                    "spike_zscore",
                    Severity.ERROR,
                    {
                        "previous_snap": format_snap(last.snap_us),
                        "previous": str(last.figure),
                        "value": str(figure),
                        "zscore": fixed(z, 4),
                        "limit": str(rules.max_zscore),
                    },
                )
            )
    n = rules.stale_after_snaps
    if n > 1 and len(previous) >= n - 1 and all(p.figure == figure for p in previous[-(n - 1) :]):
        failures.append(
            RuleFailure(
                "stale",
                Severity.WARNING,
                {
                    "value": str(figure),
                    "unchanged_snaps": n,
                    "since_snap": format_snap(previous[-(n - 1)].snap_us),
                },
            )
        )
    return failures


def check_spike(
    figure: Decimal, snap_us: int, previous: Sequence[Received], rules: ValidationRules
) -> RuleFailure | None:
    """Out and back: the point before `snap_us` moved away from its predecessor and the value
    at `snap_us` moves back, both beyond the limit. The failure is about that earlier point
    (an isolated bad print); this rule does not penalise the value at `snap_us` (the jump rule,
    when configured, still compares it with the bad print). It can only be seen once the move
    back arrives, so it is a warning: the earlier point may be official by then, and a rule must
    decide the same however the points were split into commands."""
    limit = rules.max_spike_percent
    if limit is None or len(previous) < 2:
        return None
    before, spike = previous[-2], previous[-1]
    if before.figure == 0 or spike.figure == 0:
        return None
    move_in, move_out = spike.figure - before.figure, figure - spike.figure
    if (move_in > 0) == (move_out > 0) or move_in == 0 or move_out == 0:
        return None
    in_percent, out_percent = _percent(move_in, before.figure), _percent(move_out, spike.figure)
    if in_percent <= limit or out_percent <= limit:
        return None
    return RuleFailure(
        "spike",
        Severity.WARNING,
        {
            "previous_snap": format_snap(before.snap_us),
            "previous": str(before.figure),
            "value": str(spike.figure),
            "next_snap": format_snap(snap_us),
            "next": str(figure),
            "move_in_percent": fixed(in_percent, 4),
            "move_out_percent": fixed(out_percent, 4),
            "limit_percent": str(limit),
        },
    )


def fixed(figure: Decimal, places: int) -> str:
    """`figure` to `places` decimals for an issue's evidence, in the exact context: the default
    one (28 digits) refuses a longer result (a move of 1e24 percent from a price near zero),
    which would fail the whole command on every retry. The same text as round() gives where
    that succeeds."""
    return str(EXACT.quantize(figure, Decimal(1).scaleb(-places)))


def _clock(seconds: int) -> str:
    """A time of day as hh:mm:ss (24:00:00 for the end of the day)."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _percent(move: Decimal, base: Decimal) -> Decimal:
    return abs(move) / abs(base) * 100


def _zscore(figure: Decimal, window: Sequence[Decimal]) -> Decimal | None:
    """z-score of the move to `figure` against the relative moves within `window`.

    None when there are fewer than two moves or they never vary: a flat history says nothing
    about how large a move is unusual (the percent rule covers that case)."""
    moves = [(b - a) / a for a, b in itertools.pairwise(window) if a != 0]
    if len(moves) < 2:
        return None
    mean = sum(moves, Decimal(0)) / len(moves)
    variance = sum(((m - mean) ** 2 for m in moves), Decimal(0)) / (len(moves) - 1)
    if variance == 0:
        return None
    move = (figure - window[-1]) / window[-1]
    return (move - mean) / variance.sqrt()


FLOAT_SLACK = 1e-11
"""Far more than the rounding of a float computation of a percent, a z-score or a tolerance can
move it (a few units of 1e-16, relative to the figures it is made of), far less than any limit
means: what a float screen keeps between its result and a limit to prove the exact one."""


def history_suspects(
    x: npt.NDArray[np.float64],
    seq: npt.NDArray[np.float64],
    ends: Sequence[int] | npt.NDArray[np.int64],
    back: int,
    rules: ValidationRules,
    multipliers: Sequence[Decimal] | None = None,
) -> npt.NDArray[np.bool_]:
    """Which of the incoming figures `x` `check_history` or `check_spike` may flag, each
    compared with the (at most `back`, at least what the rules look at) figures `seq` before
    `ends[i]`, its jump limits scaled by `multipliers[i]` (its jump window's; None: none has
    one); `x` and `seq` as `figure_floats` makes them. A float screen of a whole batch at once:
    False is proven (the float result is farther from every limit than its rounding error can
    be), True only says "decide this one exactly". Most values of a clean series pass the
    screen, and only the others cost a Decimal computation."""
    if not len(seq) or not len(x):
        return np.zeros(len(x), dtype=np.bool_)
    e = np.asarray(ends, dtype=np.int64)
    count = np.minimum(e, back)
    # Row i's previous figures are pad[e[i] : e[i] + back], NaN where there is none; a figure
    # no float stands for among them (NaN in `seq`) is found by a running count.
    pad = np.concatenate((np.full(back, np.nan), seq))
    nans = np.concatenate(([0], np.cumsum(np.isnan(seq))))
    suspect = np.isnan(x) | (nans[e] > nans[e - count])
    last = pad[e + back - 1]

    def previous(k: int) -> npt.NDArray[np.float64]:
        """The last `k` (at most `back`) previous figures of each row, right-aligned."""
        k = min(k, back)
        return _windows(pad, k, e + back - k)

    with np.errstate(divide="ignore", invalid="ignore"):
        rise, fall = rules.jump_limits()
        if rise is not None or fall is not None:
            # A side without a limit is clear whatever its move: an infinite limit. Rounding to
            # float is monotonic, so a float move up or down is one of the figures; a float tie
            # may hide a tiny move either way, and is held to the tighter side.
            up = np.inf if rise is None else float(rise)
            down = np.inf if fall is None else float(fall)
            band = np.where(x > last, up, np.where(x < last, down, min(up, down)))
            if multipliers is not None:
                # A float product of the limit: within its rounding of the exact one, which
                # the slack below covers as it covers the limit's own.
                band = band * figure_floats(multipliers)
            jump = np.abs(x - last) / np.abs(last) * 100
            within = jump + FLOAT_SLACK * (100 + jump + np.where(np.isinf(band), 0, band))
            clear = (count < 1) | (last == 0) | np.isinf(band) | (within < band)
            suspect |= ~clear
        if rules.max_zscore is not None:
            limit = float(rules.max_zscore)
            suspect |= ~_zscore_clear(x, pad, e + back, count, rules.zscore_window, limit)
        if (n := rules.stale_after_snaps) > 1:
            # Equal figures have equal floats: floats that differ prove figures that do.
            suspect |= ~((count < n - 1) | (previous(n - 1) != x[:, None]).any(axis=1))
        if rules.max_spike_percent is not None:
            limit = float(rules.max_spike_percent)
            before, spike = pad[e + back - 2], last
            move_in = np.abs(spike - before) / np.abs(before) * 100
            move_out = np.abs(x - spike) / np.abs(spike) * 100
            clear = (
                (count < 2)
                | (before == 0)
                | (spike == 0)
                | (move_in + FLOAT_SLACK * (100 + move_in + limit) < limit)
                | (move_out + FLOAT_SLACK * (100 + move_out + limit) < limit)
            )
            suspect |= ~clear
    return suspect


def _zscore_clear(
    x: npt.NDArray[np.float64],
    pad: npt.NDArray[np.float64],
    ends: npt.NDArray[np.int64],
    count: npt.NDArray[np.int64],
    window: int,
    limit: float,
) -> npt.NDArray[np.bool_]:
    """Where `_zscore` is surely None or within the limit, each `x[i]` compared with the
    figures of `pad` before `ends[i]` (at least `window` + 1 of them, NaN where there is
    none). Each move's float error is below 1e-15 (1 + |move|); the mean, the deviations and
    the standard deviation (1.5 times the largest deviation error at most) add a few times
    that, and `bound` covers them all."""
    last = pad[ends - 1]
    # Each move between neighbours once, then the `window` moves before each row.
    a = pad[:-1]
    paired_at = ~np.isnan(a) & (a != 0)
    moves_at = np.where(paired_at, (pad[1:] - a) / a, 0.0)
    first = ends - 1 - window  # of each row's moves
    running = np.concatenate(([0], np.cumsum(paired_at)))
    pairs = running[first + window] - running[first]
    moves = _windows(moves_at, window, first)
    mean = moves.sum(axis=1) / pairs
    deviation = moves - mean[:, None]
    if not (pairs == window).all():  # a row with a move that is none (no figure, or from 0)
        deviation = np.where(_windows(paired_at, window, first), deviation, 0.0)
    sd = np.sqrt((deviation**2).sum(axis=1) / (pairs - 1))
    move = (x - last) / last
    bound = FLOAT_SLACK * (1 + np.abs(moves).max(axis=1) + np.abs(move) + sd)
    highest = (np.abs(move - mean) + bound) / (sd - bound)
    within = (sd > 2 * bound) & (highest < limit * (1 - FLOAT_SLACK))
    clear: npt.NDArray[np.bool_] = (count < 1) | (last == 0) | (pairs < 2) | within
    return clear


_T = TypeVar("_T", bound=np.generic)


def _windows(a: npt.NDArray[_T], k: int, starts: npt.NDArray[np.int64]) -> npt.NDArray[_T]:
    """`a[s : s + k]` for each of `starts`, one row each: rows of a strided view of `a`,
    gathered at once, or that view itself when the starts are consecutive (then the rows share
    `a`'s memory: read them, never write). numpy's sliding_window_view makes the same view at
    ten times the cost, which a command of a few points would notice."""
    a = np.ascontiguousarray(a)  # the view steps through `a`'s own buffer
    view: npt.NDArray[_T] = np.ndarray((len(a) - k + 1, k), a.dtype, a, 0, (a.strides[0],) * 2)
    if len(starts) > 1 and (np.diff(starts) == 1).all():
        # Consecutive rows, as a batch after the points before it makes them: the view's own
        # rows, not a copy of each.
        return view[starts[0] : starts[-1] + 1]
    return view[starts]


def figure_floats(figures: Sequence[Decimal]) -> npt.NDArray[np.float64]:
    """The figures as floats, NaN where a float does not stand for one (beyond the float
    range, or so small it became 0 or subnormal, whose relative error is unbounded): the screen
    then leaves that value to the exact rules."""
    out = np.fromiter(map(float, figures), dtype=np.float64, count=len(figures))
    return _faithful(out, figures)


_ARROW_FROM = 32  # texts: fewer are read one by one


def text_floats(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """`figure_floats` of the figures written `texts` (decimal strings), read from the texts:
    Arrow's parse of a column is correctly rounded, as float() is, at a third of its cost;
    below a few dozen texts Arrow's call costs more than it saves."""
    if len(texts) < _ARROW_FROM:
        out = np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
    else:
        parsed = pa.array(texts, pa.string()).cast(pa.float64())
        out = parsed.to_numpy(zero_copy_only=False).copy()  # writable
    return _faithful(out, texts)


def _faithful(
    out: npt.NDArray[np.float64], figures: Sequence[Decimal] | Sequence[str]
) -> npt.NDArray[np.float64]:
    """`out`, floats of `figures`, with NaN where one does not stand for its figure."""
    magnitude = np.abs(out)
    if ((magnitude >= _SMALLEST_NORMAL) & (magnitude < math.inf)).all():
        # One pass proves the common case: every float normal and finite (NaN fails both).
        return out
    out[~np.isfinite(out)] = math.nan
    with np.errstate(invalid="ignore"):
        out[(out != 0) & (np.abs(out) < _SMALLEST_NORMAL)] = math.nan
    for i in np.flatnonzero(out == 0):
        if Decimal(figures[int(i)]):
            out[i] = math.nan
    return out


def approx(figure: Decimal) -> float:
    """`figure_floats` of one figure."""
    f = float(figure)
    faithful = abs(f) >= _SMALLEST_NORMAL or (f == 0 and not figure)
    return f if math.isfinite(f) and faithful else math.nan


_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)
"""Below it a float is subnormal: fewer significant bits, up to 100 % off its figure."""


def check_session(local_day: date, calendar: CalendarView) -> RuleFailure | None:
    """A value dated on a day the series' exchange was closed, or on a day the calendar does
    not cover (its own rule: nothing is known about that day, so it is not "closed")."""
    if local_day in calendar.sessions:
        return None
    if not calendar.first <= local_day <= calendar.last:
        return RuleFailure(
            "calendar_coverage",
            Severity.WARNING,
            {
                "date": local_day.isoformat(),
                "reason": "outside the exchange calendar's known range",
                "calendar_first": calendar.first.isoformat(),
                "calendar_last": calendar.last.isoformat(),
            },
        )
    return RuleFailure(
        "calendar",
        Severity.WARNING,
        {"date": local_day.isoformat(), "reason": "not a trading session"},
    )
