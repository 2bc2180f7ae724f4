"""Business rules run on each ingested value. A failure flags the value; it never drops it."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from qis_domain.definitions import ValidationRules
from qis_domain.values import CorporateAction, DataValue, OhlcBar, OptionsChain, Price, Volume


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RuleFailure:
    rule: str
    severity: Severity
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        """Errors hold the point for approval; warnings and infos only flag it."""
        return self.severity is Severity.ERROR


def check_value(value: DataValue, rules: ValidationRules) -> list[RuleFailure]:
    """Rules that need nothing but the value itself and the series' rule set."""
    failures: list[RuleFailure] = []
    if rules.require_positive:
        lowest = _lowest_figure(value)
        if lowest is not None and lowest <= 0:
            failures.append(RuleFailure("positive", Severity.ERROR, {"value": str(lowest)}))
    if isinstance(value, OhlcBar):
        failures.extend(_check_bar(value))
    elif isinstance(value, OptionsChain):
        failures.extend(_check_chain(value))
    elif isinstance(value, CorporateAction):
        failures.extend(_check_corporate_action(value))
    return failures


def _lowest_figure(value: DataValue) -> Decimal | None:
    """The figure positivity is about: every price of a bar, not only its close."""
    if isinstance(value, Price):
        return value.value
    if isinstance(value, Volume):
        return value.quantity
    if isinstance(value, OhlcBar):
        return min(value.open, value.high, value.low, value.close)
    return None


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
    figure: Decimal, previous: Sequence[Decimal], rules: ValidationRules
) -> list[RuleFailure]:
    """Rules that compare a value with the official values before it (oldest first)."""
    failures: list[RuleFailure] = []
    if not previous:
        return failures
    last = previous[-1]
    if rules.max_jump_percent is not None and last != 0:
        jump = abs(figure - last) / abs(last) * 100
        if jump > rules.max_jump_percent:
            failures.append(
                RuleFailure(
                    "spike",
                    Severity.ERROR,
                    {
                        "previous": str(last),
                        "value": str(figure),
                        "jump_percent": str(round(jump, 4)),
                        "limit_percent": str(rules.max_jump_percent),
                    },
                )
            )
    if rules.max_zscore is not None and last != 0:
        z = _zscore(figure, previous[-(rules.zscore_window + 1) :])
        if z is not None and abs(z) > rules.max_zscore:
            failures.append(
                RuleFailure(
                    "spike_zscore",
                    Severity.ERROR,
                    {
                        "previous": str(last),
                        "value": str(figure),
                        "zscore": str(round(z, 4)),
                        "limit": str(rules.max_zscore),
                    },
                )
            )
    n = rules.stale_after_snaps
    if n > 1 and len(previous) >= n - 1 and all(p == figure for p in previous[-(n - 1) :]):
        failures.append(
            RuleFailure("stale", Severity.WARNING, {"value": str(figure), "unchanged_snaps": n})
        )
    return failures


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


def check_session(local_day: date, sessions: frozenset[date]) -> RuleFailure | None:
    """A value dated on a day the series' exchange was closed."""
    if local_day in sessions:
        return None
    return RuleFailure(
        "calendar",
        Severity.WARNING,
        {"date": local_day.isoformat(), "reason": "not a trading session"},
    )
