"""Curves and surfaces against references computed here, independently of the domain's code:
tenor order on integers (days x 12 over a 365-day year), runs, pairs and out-and-back moves by
plain loops on Fractions, total variance on Fractions, and the butterfly condition on Black
prices in floats (compared where it is clear of their rounding), where the domain decides on a
60-digit Decimal series."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_domain.errors import FieldViolation
from qis_domain.structure_checks import check_structure, check_structures
from qis_domain.structures import (
    CoordinateAxis,
    CoordinateUnit,
    Monotonicity,
    StructureChecks,
    StructureSchema,
    structure_violations,
)
from qis_domain.values import CurveNode, Surface, SurfaceNode, TermStructure

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

Parts = tuple[int, int, int, int]  # years, months, weeks, days


def label(parts: Parts) -> str:
    text = "".join(f"{n}{d}" for n, d in zip(parts, "YMWD", strict=True) if n)
    return f"P{text}"


def length(parts: Parts) -> int:
    """In 1/4380 of a year (4380 = 12 x 365): exact, and computed without the domain."""
    y, m, w, d = parts
    return y * 4380 + m * 365 + (7 * w + d) * 12


tenor_parts = st.tuples(
    st.integers(0, 30), st.integers(0, 24), st.integers(0, 8), st.integers(0, 400)
).filter(any)
figures = st.integers(-50, 50).map(lambda n: Decimal(n) / 10)


@SETTINGS
@given(st.lists(st.tuples(tenor_parts, figures), min_size=1, max_size=40))
def test_a_curve_is_accepted_exactly_when_its_tenors_strictly_increase(
    nodes: list[tuple[Parts, Decimal]],
) -> None:
    value = TermStructure(tuple(CurveNode(label(p), v) for p, v in nodes))
    violations: list[FieldViolation] = []
    structure_violations(value, None, "v", violations)
    lengths = [length(p) for p, _ in nodes]
    bad = {i for i in range(1, len(lengths)) if lengths[i] <= lengths[i - 1]}
    assert {int(v.field.split("[")[1].rstrip("]")) for v in violations} == bad
    for v in violations:
        i = int(v.field.split("[")[1].rstrip("]"))
        equal = lengths[i] == lengths[i - 1]
        assert v.description.startswith("the same tenor" if equal else "nodes are by increasing")


def sorted_curve(draw: st.DrawFn, size: int) -> TermStructure:
    months = sorted(draw(st.sets(st.integers(1, 600), min_size=size, max_size=size)))
    values = draw(st.lists(figures, min_size=size, max_size=size))
    return TermStructure(tuple(CurveNode(f"P{m}M", v) for m, v in zip(months, values, strict=True)))


@st.composite
def curves(draw: st.DrawFn) -> TermStructure:
    return sorted_curve(draw, draw(st.integers(1, 30)))


@SETTINGS
@given(curves(), st.integers(3, 5), st.sampled_from(list(Monotonicity)), st.integers(1, 80))
def test_curve_checks_flag_exactly_the_nodes_a_direct_computation_finds(
    curve: TermStructure, run: int, monotonicity: Monotonicity, spike: int
) -> None:
    schema = StructureSchema(
        monotonicity=monotonicity,
        checks=StructureChecks(max_node_spike_percent=Decimal(spike), flat_spot_nodes=run),
    )
    found = {f.rule: f.evidence for f in check_structure(curve, schema)}
    values = [Fraction(n.value) for n in curve.nodes]
    tenors = [n.tenor for n in curve.nodes]

    runs = []
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            if i - start >= run:
                runs.append((tenors[start], tenors[i - 1]))
            start = i
    flat = found.get("curve_flat_spot", {"nodes": [], "count": 0})
    assert flat["count"] == len(runs)
    assert [(n["from_node"], n["to_node"]) for n in flat["nodes"]] == runs[:20]

    rising = monotonicity is Monotonicity.NON_DECREASING
    against = [
        tenors[i]
        for i in range(1, len(values))
        if (values[i] < values[i - 1]) == rising and values[i] != values[i - 1]
    ]
    monotone = found.get("curve_monotonicity", {"nodes": [], "count": 0})
    assert monotone["count"] == len(against)
    assert [n["node"] for n in monotone["nodes"]] == against[:20]

    spikes = []
    for i in range(1, len(values) - 1):
        a, b, c = values[i - 1], values[i], values[i + 1]
        if 0 in (a, b) or (b - a) * (c - b) >= 0:
            continue
        if abs(b - a) * 100 > spike * abs(a) and abs(c - b) * 100 > spike * abs(b):
            spikes.append(tenors[i])
    spiked = found.get("curve_node_spike", {"nodes": [], "count": 0})
    assert spiked["count"] == len(spikes)
    assert [n["node"] for n in spiked["nodes"]] == spikes[:20]


EXPIRIES = ("P1M", "P2M", "P3M", "P6M", "P9M", "P1Y", "P18M", "P2Y")
YEARS = {t: Fraction(int(t[1:-1]), 12 if t.endswith("M") else 1) for t in EXPIRIES}


@st.composite
def surfaces(draw: st.DrawFn) -> Surface:
    expiries = sorted(
        draw(st.sets(st.sampled_from(EXPIRIES), min_size=1, max_size=5)), key=YEARS.__getitem__
    )
    strikes = sorted(draw(st.sets(st.integers(50, 150), min_size=1, max_size=8)))
    base = draw(st.integers(10, 60))
    # Mostly smooth smiles (no arbitrage), some nodes bumped (often some).
    nodes = []
    for t in expiries:
        for k in strikes:
            bump = draw(st.sampled_from((0, 0, 0, 0, 1, -1, 5, -5)))
            vol = Decimal(base + abs(k - 100) // 5 + bump) / 100
            nodes.append(SurfaceNode(t, Decimal(k) / 100, max(vol, Decimal("0.01"))))
    return Surface(tuple(nodes))


def black(k: float, w: float) -> float:
    root = math.sqrt(w)
    d1 = -math.log(k) / root + root / 2
    return cdf(d1) - k * cdf(d1 - root)


def cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


@SETTINGS
@given(surfaces())
def test_surface_arbitrage_checks_agree_with_a_reference(surface: Surface) -> None:
    schema = StructureSchema(
        coordinate_axis=CoordinateAxis(unit=CoordinateUnit.MONEYNESS),
        full_grid=True,
        checks=StructureChecks(calendar_arbitrage=True, butterfly_arbitrage=True),
    )
    violations: list[FieldViolation] = []
    structure_violations(surface, schema, "v", violations)
    assert violations == []
    found = {f.rule: f.evidence for f in check_structure(surface, schema)}
    flagged = {rule: {n["node"] for n in evidence["nodes"]} for rule, evidence in found.items()}
    by_strike = itertools.groupby(
        sorted(surface.nodes, key=lambda n: (n.coordinate, YEARS[n.tenor])),
        key=lambda n: n.coordinate,
    )
    calendar = set()
    for _, line in by_strike:
        row = list(line)
        for a, b in itertools.pairwise(row):
            if Fraction(b.value) ** 2 * YEARS[b.tenor] < Fraction(a.value) ** 2 * YEARS[a.tenor]:
                calendar.add(f"{b.tenor} {b.coordinate}")
    assert flagged.get("surface_calendar_arbitrage", set()) == calendar

    butterfly_clear, butterfly_broken = set(), set()
    for tenor, line in itertools.groupby(surface.nodes, key=lambda n: n.tenor):
        row = list(line)
        prices = [
            black(float(n.coordinate), float(n.value) ** 2 * float(YEARS[tenor])) for n in row
        ]
        ks = [float(n.coordinate) for n in row]
        for j in range(1, len(row) - 1):
            convexity = (prices[j + 1] - prices[j]) / (ks[j + 1] - ks[j]) - (
                prices[j] - prices[j - 1]
            ) / (ks[j] - ks[j - 1])
            name = f"{tenor} {row[j].coordinate}"
            if convexity > 1e-9:
                butterfly_clear.add(name)
            elif convexity < -1e-9:
                butterfly_broken.add(name)
    butterflies = flagged.get("surface_butterfly_arbitrage", set())
    if found.get("surface_butterfly_arbitrage", {"count": 0})["count"] <= 20:
        assert butterfly_broken <= butterflies
    assert not butterflies & butterfly_clear


@SETTINGS
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=12),
    st.data(),
)
def test_checks_of_a_sequence_do_not_depend_on_how_it_is_split_into_commands(
    sizes: list[int], data: st.DataObject
) -> None:
    """Each value's jump is against the value of the snap before it: inside a command its
    predecessor, across commands what the caller passes for the first (the last received)."""
    width = data.draw(st.integers(2, 6))
    months = [m * 3 for m in range(1, width + 1)]
    values = [
        TermStructure(
            tuple(
                CurveNode(f"P{m}M", Decimal(data.draw(st.integers(95, 105))) / 100) for m in months
            )
        )
        for _ in range(data.draw(st.integers(1, 12)))
    ]
    schema = StructureSchema(
        checks=StructureChecks(max_node_jump_percent=Decimal(3), flat_spot_nodes=3)
    )
    whole = check_structures(values, schema, [None, *values[:-1]])
    split: dict[int, list[str]] = {}
    start, cut = 0, itertools.cycle(sizes)
    while start < len(values):
        end = min(len(values), start + next(cut))
        # What a caller passes: the structure received before each snap, from this command
        # or an earlier one.
        previous = [values[i - 1] if i else None for i in range(start, end)]
        for i, failures in check_structures(values[start:end], schema, previous).items():
            split[start + i] = [f.rule for f in failures]
        start = end
    assert split == {i: [f.rule for f in failures] for i, failures in whole.items()}
    # and the jumps are exactly the nodes a plain loop finds
    for i in range(1, len(values)):
        moved = [
            b.tenor
            for a, b in zip(values[i - 1].nodes, values[i].nodes, strict=True)
            if abs(b.value - a.value) * 100 > 3 * abs(a.value)
        ]
        jumps = [f for f in whole.get(i, []) if f.rule == "curve_node_jump"]
        assert [n["node"] for f in jumps for n in f.evidence["nodes"]] == moved
