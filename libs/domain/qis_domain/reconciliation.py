"""Choosing one value for a point from the values of several sources."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, getcontext
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from qis_domain.definitions import ReconciliationMethod, ReconciliationPolicy, SeriesDefinition
from qis_domain.rules import FLOAT_SLACK
from qis_domain.structure_checks import differing_nodes
from qis_domain.values import DataValue, OhlcBar, Price, Surface, TermStructure, Volume

_BPS = Decimal(10_000)
_PLAIN = re.compile(r"[0-9.+-]*")
_UNRANKED = 1 << 30  # a source the definition does not list: after every listed one


class Reconciliation(NamedTuple):
    value: DataValue
    method: ReconciliationMethod
    contributors: tuple[str, ...]  # sources the value was made from, by priority
    excluded: tuple[str, ...]  # sources left out as outliers
    breaks: tuple[str, ...]  # sources beyond tolerance of the chosen value


def within_tolerance(a: DataValue, b: DataValue, policy: ReconciliationPolicy) -> bool:
    """Prices and volumes within the policy's tolerance, bars on each of their figures, curves
    and surfaces on each of their nodes (with the same nodes); other values (chains, corporate
    actions) only when identical: a corrected ex-date or strike is a different value whatever
    the amounts."""
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
    if isinstance(a, TermStructure | Surface) and isinstance(b, TermStructure | Surface):
        return not break_nodes(a, b, policy)
    return a == b


def break_nodes(
    a: TermStructure | Surface, b: TermStructure | Surface, policy: ReconciliationPolicy
) -> list[str] | None:
    """The nodes of `a` beyond tolerance of `b`'s (None: not the same nodes at all)."""
    return differing_nodes(a, b, lambda x, y: figures_close(x, y, policy))


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
    ranked = by_priority(values, priority)
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


def by_priority(sources: Iterable[str], priority: dict[str, int]) -> list[str]:
    """The sources by the definition's priority, ties (and unlisted sources) by id."""
    return sorted(sources, key=lambda source: (priority.get(source, _UNRANKED), source))


def pair_contributors(
    policy: ReconciliationPolicy, first: str, second: str
) -> tuple[ReconciliationMethod, tuple[str, ...]]:
    """What `reconcile` makes of two figures (scalar values) of sources ranked `first` and
    `second` that are within tolerance of each other, when `midpoints_exact` holds: the first's
    value (the median of two is equally far from both, and a tie goes to the first), by the
    policy's method, made from the first alone by priority, else from both."""
    if policy.method is ReconciliationMethod.PRIORITY:
        return policy.method, (first,)
    return policy.method, (first, second)


def close_proven(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], policy: ReconciliationPolicy
) -> npt.NDArray[np.bool_]:
    """Where `figures_close(x, y, policy)` surely holds, from floats of the figures (each
    within 2**-53 of its figure, relative). The float gap and allowance are within a few units
    of 1e-16 of the exact ones (relative to the figures), the Decimal ones within 1e-27 at a
    context precision of 28: FLOAT_SLACK above both proves the comparison. False only says
    "compare exactly": zero allowances, NaN and infinities are never proven."""
    if policy.tolerance_abs < 0 or policy.tolerance_bps < 0 or getcontext().prec < 28:
        return np.zeros(len(x), dtype=np.bool_)
    allowed = np.maximum(float(policy.tolerance_abs), np.abs(y) * float(policy.tolerance_bps) / 1e4)
    gap = np.abs(x - y)
    proven: npt.NDArray[np.bool_] = gap + FLOAT_SLACK * (np.abs(x) + np.abs(y) + allowed) < allowed
    return proven


def midpoints_exact(texts: Sequence[str], largest: float) -> bool:
    """Whether the median of any two of the figures written `texts` (plain decimal strings,
    none beyond `largest` in magnitude) and the distance of each to it are exact in the
    current decimal context, so that the two are equally far from it. They are multiples of
    10**-p (p places, at most the longest text's length but two: "0." at least), so their sum,
    its half and the differences are multiples of 10**-(p + 1) below 2 * largest: digits the
    context holds when largest < 10**(prec - 2 - p), with a tenth of margin for the float."""
    if not texts:
        return True
    if not _PLAIN.fullmatch("".join(texts)):  # exponents, NaN, infinities
        return False
    places = max(0, max(map(len, texts)) - 2)
    return largest * 10 < 10.0 ** (getcontext().prec - 2 - places)


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
