"""The checks on the nodes of a term structure or surface (a StructureSchema's `checks` and
`monotonicity`). Each rule raises at most one failure per value, whose evidence names the
offending nodes (the first MAX_EVIDENCE_NODES of them, and how many there are): issue ids are
one per (point, source, rule).

Decisions are exact (Decimal and Fraction); only the butterfly check needs a transcendental
function (the normal distribution), screened with floats and decided with 60-digit Decimals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

from qis_domain.rules import RuleFailure, Severity, fixed
from qis_domain.structures import (
    Monotonicity,
    StructureSchema,
    lines,
    node_name,
    tenor_years,
)
from qis_domain.values import DataValue, Structure, StructureNode, Surface, TermStructure

MAX_EVIDENCE_NODES = 20

BUTTERFLY_SLACK = Decimal("1e-20")
"""How far below 0 the butterfly condition may compute before it fails: far beyond the error of
the 60-digit computation and of treating the normal distribution as 0 or 1 beyond 12 standard
deviations (below 2e-33), far below any real arbitrage (a butterfly priced below 0 by a
fraction of a basis point of the forward is still 1e-5)."""

_PRECISE = Context(prec=60)
_SCREEN = 1e-9  # far above a float computation's error on prices of at most 1 (1e-15)
_TAIL = Decimal(12)  # |x| beyond which N(x) is taken as 0 or 1
_SQRT_2PI = Decimal(
    "2.506628274631000502415765284811045253006986740609938316629923"
)  # sqrt(2 pi) to 60 digits


def check_structure(value: Structure, schema: StructureSchema) -> list[RuleFailure]:
    """The checks of one value on its own: spikes against neighbours, flat spots,
    monotonicity, and for volatility surfaces calendar and butterfly arbitrage."""
    failures: list[RuleFailure] = []
    checks = schema.checks
    if checks.max_node_spike_percent is not None:
        found = _spikes(value, checks.max_node_spike_percent)
        _add(
            failures,
            "curve_node_spike",
            Severity.WARNING,
            found,
            limit_percent=str(checks.max_node_spike_percent),
        )
    if checks.flat_spot_nodes:
        found = _flat_spots(value, checks.flat_spot_nodes)
        _add(failures, "curve_flat_spot", Severity.WARNING, found, min_nodes=checks.flat_spot_nodes)
    if schema.monotonicity is not None:
        found = _against_monotonicity(value, schema.monotonicity)
        _add(
            failures,
            "curve_monotonicity",
            Severity.ERROR,
            found,
            expected=schema.monotonicity.value,
        )
    if isinstance(value, Surface) and checks.calendar_arbitrage:
        _add(failures, "surface_calendar_arbitrage", Severity.ERROR, _calendar(value))
    if isinstance(value, Surface) and checks.butterfly_arbitrage:
        _add(failures, "surface_butterfly_arbitrage", Severity.ERROR, _butterflies(value))
    return failures


def check_structure_jump(
    value: Structure, previous: Structure, schema: StructureSchema
) -> RuleFailure | None:
    """Nodes that moved beyond max_node_jump_percent from the same node (same tenor, same
    coordinate) of `previous`, the structure of the snap before; a node new in `value` or at 0
    in `previous` has no move. Which previous structure it is (received or official) is the
    caller's, as for the jump rule of single values: the same whatever the chunking."""
    limit = schema.checks.max_node_jump_percent
    if limit is None:
        return None
    earlier: Sequence[StructureNode] = previous.nodes
    nodes: Sequence[StructureNode] = value.nodes
    before = {_key(previous, i): node.value for i, node in enumerate(earlier)}
    found: list[dict[str, Any]] = []
    for i, node in enumerate(nodes):
        last = before.get(_key(value, i))
        if last is None or last == 0:
            continue
        move = _percent(node.value - last, last)
        if move > limit:
            found.append(
                {
                    "node": node_name(value, i),
                    "previous": str(last),
                    "value": str(node.value),
                    "jump_percent": fixed(move, 4),
                }
            )
    failures: list[RuleFailure] = []
    _add(failures, "curve_node_jump", Severity.ERROR, found, limit_percent=str(limit))
    return failures[0] if failures else None


def check_structures(
    values: Sequence[DataValue],
    schema: StructureSchema,
    previous: Sequence[DataValue | None],
) -> dict[int, list[RuleFailure]]:
    """The checks of a command's values, by index, for those that fail: each on its own, and
    each against `previous[i]`, the received structure of the snap before it (None: none).
    Which one that is, the caller's: the latest received before the snap, whichever command
    brought it, so that the outcome does not depend on how values were split into commands."""
    out: dict[int, list[RuleFailure]] = {}
    for i, (value, before) in enumerate(zip(values, previous, strict=True)):
        if not isinstance(value, TermStructure | Surface):
            continue
        failures = check_structure(value, schema)
        if isinstance(before, TermStructure | Surface) and (
            jump := check_structure_jump(value, before, schema)
        ):
            failures.append(jump)
        if failures:
            out[i] = failures
    return out


def differing_nodes(
    a: Structure, b: Structure, close: Callable[[Decimal, Decimal], bool]
) -> list[str] | None:
    """The nodes where two structures of one snap differ beyond `close` (reconciliation's
    tolerance, node by node), by name; None when they do not have the same nodes (then they
    are different values whatever the figures, as a corrected strike of a chain is)."""
    if type(a) is not type(b) or len(a.nodes) != len(b.nodes):
        return None
    if any(_key(a, i) != _key(b, i) for i in range(len(a.nodes))):
        return None
    mine: Sequence[StructureNode] = a.nodes
    theirs: Sequence[StructureNode] = b.nodes
    return [
        node_name(a, i) for i, node in enumerate(mine) if not close(node.value, theirs[i].value)
    ]


def _key(value: Structure, i: int) -> tuple[Fraction | None, Decimal]:
    node = value.nodes[i]
    return tenor_years(node.tenor), getattr(node, "coordinate", Decimal(0))


def _add(
    failures: list[RuleFailure],
    rule: str,
    severity: Severity,
    found: Sequence[dict[str, Any]],
    **parameters: Any,
) -> None:
    if found:
        evidence = {"nodes": list(found[:MAX_EVIDENCE_NODES]), "count": len(found), **parameters}
        failures.append(RuleFailure(rule, severity, evidence))


def _percent(move: Decimal, base: Decimal) -> Decimal:
    return abs(move) / abs(base) * 100


def _spikes(value: Structure, limit: Decimal) -> list[dict[str, Any]]:
    """Out and back along an axis, as the spike rule of a series in time: the node moves away
    from the one before and the one after moves back, both beyond the limit. A steep but
    monotone stretch (the short end of a curve) moves one way and is never a spike."""
    found = []
    nodes = value.nodes
    for axis, indices in lines(value):
        for a, b, c in zip(indices, indices[1:], indices[2:], strict=False):
            before, node, after = nodes[a].value, nodes[b].value, nodes[c].value
            move_in, move_out = node - before, after - node
            if before == 0 or node == 0 or move_in == 0 or move_out == 0:
                continue
            if (move_in > 0) == (move_out > 0):
                continue
            in_percent, out_percent = _percent(move_in, before), _percent(move_out, node)
            if in_percent > limit and out_percent > limit:
                found.append(
                    {
                        "node": node_name(value, b),
                        "axis": axis,
                        "previous_node": node_name(value, a),
                        "previous": str(before),
                        "value": str(node),
                        "next_node": node_name(value, c),
                        "next": str(after),
                        "move_in_percent": fixed(in_percent, 4),
                        "move_out_percent": fixed(out_percent, 4),
                    }
                )
    return found


def _flat_spots(value: Structure, min_nodes: int) -> list[dict[str, Any]]:
    """Runs of at least `min_nodes` neighbouring nodes with equal values along an axis: a
    stretch copied or filled forward instead of quoted."""
    found = []
    for axis, indices in lines(value):
        for figure, run in itertools.groupby(indices, key=lambda i: value.nodes[i].value):
            run_indices = list(run)
            if len(run_indices) >= min_nodes:
                found.append(
                    {
                        "from_node": node_name(value, run_indices[0]),
                        "to_node": node_name(value, run_indices[-1]),
                        "axis": axis,
                        "nodes": len(run_indices),
                        "value": str(figure),
                    }
                )
    return found


def _against_monotonicity(value: Structure, expected: Monotonicity) -> list[dict[str, Any]]:
    found = []
    rising = expected is Monotonicity.NON_DECREASING
    for axis, indices in lines(value):
        if axis != "tenor":
            continue
        for a, b in itertools.pairwise(indices):
            before, after = value.nodes[a].value, value.nodes[b].value
            if (after < before) if rising else (after > before):
                found.append(
                    {
                        "node": node_name(value, b),
                        "value": str(after),
                        "previous_node": node_name(value, a),
                        "previous": str(before),
                    }
                )
    return found


def _calendar(surface: Surface) -> list[dict[str, Any]]:
    """Calendar-spread arbitrage (Gatheral, The Volatility Surface, 2006, ch. 3; Gatheral and
    Jacquier, Arbitrage-free SVI volatility surfaces, 2014, lemma 2.1): with no arbitrage the
    total implied variance w = sigma^2 T does not decrease with the expiry T at a fixed forward
    moneyness. The exact condition at fixed moneyness; at a fixed strike it is the same when
    the forward does not drift between the expiries (no carry). Exact: Fractions of the
    decimals and of the tenors' lengths."""
    found = []
    nodes = surface.nodes
    for axis, indices in lines(surface):
        if axis != "tenor":
            continue
        for a, b in itertools.pairwise(indices):
            w_a = Fraction(nodes[a].value) ** 2 * _years(nodes[a].tenor)
            w_b = Fraction(nodes[b].value) ** 2 * _years(nodes[b].tenor)
            if w_b < w_a:
                found.append(
                    {
                        "node": node_name(surface, b),
                        "total_variance": _text(w_b),
                        "previous_node": node_name(surface, a),
                        "previous_total_variance": _text(w_a),
                    }
                )
    return found


def _years(tenor: str) -> Fraction:
    years = tenor_years(tenor)
    assert years is not None  # a well-formed value
    return years


def _text(f: Fraction) -> str:
    return fixed(_PRECISE.divide(Decimal(f.numerator), Decimal(f.denominator)), 12)


def _butterflies(surface: Surface) -> list[dict[str, Any]]:
    """Butterfly arbitrage (Carr and Madan, A note on sufficient conditions for no arbitrage,
    2005: a butterfly spread costs at least 0): along one expiry, undiscounted call prices are
    convex in the strike. Over forward moneyness k = K/F, the call price per unit of forward is
    Black's c(k) = N(d1) - k N(d2), d1 = -ln(k)/sqrt(w) + sqrt(w)/2, d2 = d1 - sqrt(w), w =
    sigma^2 T; for strikes k1 < k2 < k3 the slopes of c between neighbours do not decrease:
    (c3 - c2)/(k3 - k2) - (c2 - c1)/(k2 - k1) >= 0 (within BUTTERFLY_SLACK)."""
    found = []
    nodes = surface.nodes
    for axis, indices in lines(surface):
        if axis != "coordinate" or len(indices) < 3:
            continue
        years = _years(nodes[indices[0]].tenor)
        ks = [nodes[i].coordinate for i in indices]
        sigmas = [nodes[i].value for i in indices]
        rough = [
            _call_float(float(k), float(s) ** 2 * float(years))
            for k, s in zip(ks, sigmas, strict=True)
        ]
        exact: dict[int, Decimal] = {}
        for j in range(1, len(indices) - 1):
            k1, k2, k3 = ks[j - 1], ks[j], ks[j + 1]
            f1, f2, f3 = float(k1), float(k2), float(k3)
            convexity = (rough[j + 1] - rough[j]) / (f3 - f2) - (rough[j] - rough[j - 1]) / (
                f2 - f1
            )
            if convexity > _SCREEN * (1 + 1 / (f3 - f2) + 1 / (f2 - f1)):
                continue
            for n in (j - 1, j, j + 1):
                if n not in exact:
                    exact[n] = _call(ks[n], sigmas[n], years)
            c1, c2, c3 = exact[j - 1], exact[j], exact[j + 1]
            left = _PRECISE.divide(c2 - c1, k2 - k1)
            right = _PRECISE.divide(c3 - c2, k3 - k2)
            butterfly = _PRECISE.subtract(right, left)
            if butterfly < -BUTTERFLY_SLACK:
                found.append(
                    {
                        "node": node_name(surface, indices[j]),
                        "previous_node": node_name(surface, indices[j - 1]),
                        "next_node": node_name(surface, indices[j + 1]),
                        "convexity": fixed(butterfly, 12),
                    }
                )
    return found


def _call_float(k: float, w: float) -> float:
    if w <= 0:
        return max(1.0 - k, 0.0)
    root = math.sqrt(w)
    d1 = -math.log(k) / root + root / 2
    return _n_float(d1) - k * _n_float(d1 - root)


def _n_float(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _call(k: Decimal, sigma: Decimal, years: Fraction) -> Decimal:
    """Black's undiscounted call price per unit of forward at forward moneyness `k`."""
    c = _PRECISE
    w = c.divide(
        c.multiply(c.multiply(sigma, sigma), Decimal(years.numerator)), Decimal(years.denominator)
    )
    if w == 0:
        return max(c.subtract(Decimal(1), k), Decimal(0))
    root = w.sqrt(c)
    d1 = c.add(c.divide(-k.ln(c), root), c.divide(root, 2))
    return c.subtract(_normal(d1), c.multiply(k, _normal(c.subtract(d1, root))))


def _normal(x: Decimal) -> Decimal:
    """The standard normal distribution function to about 55 digits: Marsaglia's series
    N(x) = 1/2 + phi(x) (x + x^3/3 + x^5/(3*5) + ...), whose terms are all of one sign (no
    cancellation within the sum); beyond |x| > 12, 0 or 1 (off by less than 2e-33)."""
    c = _PRECISE
    if x > _TAIL:
        return Decimal(1)
    if x < -_TAIL:
        return Decimal(0)
    square = c.multiply(x, x)
    term, total, n = x, x, 1
    smallest = Decimal("1e-65")
    while abs(term) > smallest:
        term = c.divide(c.multiply(term, square), 2 * n + 1)
        total = c.add(total, term)
        n += 1
    density = c.divide(c.exp(c.divide(-square, 2)), _SQRT_2PI)
    return c.add(Decimal("0.5"), c.multiply(density, total))
