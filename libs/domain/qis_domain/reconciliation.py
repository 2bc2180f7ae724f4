"""Choosing one value for a point from the values of several sources."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from qis_domain.definitions import ReconciliationMethod, ReconciliationPolicy, SeriesDefinition
from qis_domain.values import DataValue, OhlcBar, Price, Volume

_BPS = Decimal(10_000)


class Reconciliation(NamedTuple):
    value: DataValue
    method: ReconciliationMethod
    contributors: tuple[str, ...]  # sources the value was made from, by priority
    excluded: tuple[str, ...]  # sources left out as outliers
    breaks: tuple[str, ...]  # sources beyond tolerance of the chosen value


def within_tolerance(a: DataValue, b: DataValue, policy: ReconciliationPolicy) -> bool:
    """Prices and volumes within the policy's tolerance, bars on each of their figures; other
    values (chains, corporate actions) only when identical: a corrected ex-date or strike is a
    different value whatever the amounts."""
    if isinstance(a, Price) and isinstance(b, Price):
        return figures_close(a.value, b.value, policy)
    if isinstance(a, Volume) and isinstance(b, Volume):
        return figures_close(a.quantity, b.quantity, policy)
    if isinstance(a, OhlcBar) and isinstance(b, OhlcBar):
        return (
            figures_close(a.open, b.open, policy)
            and figures_close(a.high, b.high, policy)
            and figures_close(a.low, b.low, policy)
            and figures_close(a.close, b.close, policy)
            and (
                a.volume == b.volume
                or (
                    a.volume is not None
                    and b.volume is not None
                    and figures_close(a.volume, b.volume, policy)
                )
            )
        )
    return a == b


def figures_close(x: Decimal, y: Decimal, policy: ReconciliationPolicy) -> bool:
    allowed = max(policy.tolerance_abs, abs(y) * policy.tolerance_bps / _BPS)
    return abs(x - y) <= allowed


def reconcile(
    values: dict[str, DataValue],
    definition: SeriesDefinition,
    priority: dict[str, int] | None = None,
) -> Reconciliation:
    """`values` maps source id to that source's latest value; it is never empty. `priority`:
    the definition's, by source id, when the caller has it at hand."""
    if len(values) == 1:
        ((source, only),) = values.items()
        return Reconciliation(only, ReconciliationMethod.PRIORITY, (source,), (), ())
    if priority is None:
        priority = {s.source_id: s.priority for s in definition.sources}
    ranked = sorted(values, key=lambda source: (priority.get(source, 1 << 30), source))
    policy = definition.reconciliation
    numbers = {s: values[s].number for s in ranked}
    comparable = [s for s in ranked if numbers[s] is not None]
    method = policy.method
    if method is ReconciliationMethod.PRIORITY or len(comparable) < len(ranked) or len(ranked) == 1:
        # Values without a figure (chains, actions) can only be taken whole from one source.
        chosen = values[ranked[0]]
        breaks = tuple(s for s in ranked[1:] if not within_tolerance(values[s], chosen, policy))
        return Reconciliation(chosen, ReconciliationMethod.PRIORITY, (ranked[0],), (), breaks)
    median = _median([numbers[s] for s in comparable])
    if method is ReconciliationMethod.MEDIAN:
        chosen = _closest(values, comparable, median)
        breaks = tuple(s for s in comparable if not within_tolerance(values[s], chosen, policy))
        return Reconciliation(chosen, method, tuple(comparable), (), breaks)
    reference = values[_closest_source(values, comparable, median)]
    agreeing = [s for s in comparable if within_tolerance(values[s], reference, policy)]
    excluded = tuple(s for s in comparable if s not in agreeing)
    chosen = _closest(values, agreeing, _median([numbers[s] for s in agreeing]))
    return Reconciliation(chosen, method, tuple(agreeing), excluded, excluded)


def _median(figures: list[Decimal | None]) -> Decimal:
    """As `statistics.median` computes it (the mean of the middle two of an even count), at a
    fraction of its cost."""
    ordered = sorted(f for f in figures if f is not None)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _closest_source(values: dict[str, DataValue], sources: list[str], target: Decimal) -> str:
    return min(sources, key=lambda s: abs((values[s].number or Decimal(0)) - target))


def _closest(values: dict[str, DataValue], sources: list[str], target: Decimal) -> DataValue:
    """The median of an even count is not any source's value: publish the closest real one.

    An official value is always one a source actually sent, so its lineage is exact.
    """
    return values[_closest_source(values, sources, target)]
