"""Evidence figures rounded for display (a percent to 4 decimals, a variance to 12) are
rounded in a context wide enough for any value the bounds let in: the default context (28
digits) refused a move of 1e24 percent or more, which failed the whole command on every retry.
The day_over_day rule's own figures are in tests/unit/domain/test_checks_day_over_day.py."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from qis_domain.definitions import ValidationRules
from qis_domain.rules import Received, check_history, check_spike
from qis_domain.structure_checks import check_structure, check_structure_jump
from qis_domain.structures import StructureChecks, StructureSchema

from tests.unit.domain.test_domain_curves_and_surfaces import MONEYNESS, curve, grid

D = Decimal


def test_a_node_jump_of_1e24_percent_or_more_is_evidence_in_plain_figures() -> None:
    schema = StructureSchema(checks=StructureChecks(max_node_jump_percent=D(5)))
    before = curve("1e-10", "1", "1", "1", "1", "1")
    failure = check_structure_jump(curve("1e15", "1", "1", "1", "1", "1"), before, schema)
    assert failure is not None
    [node] = failure.evidence["nodes"]
    # (1e15 - 1e-10) / 1e-10 * 100, to four decimals
    assert node["jump_percent"] == "999999999999999999999999900.0000"


def test_a_spike_of_1e24_percent_or_more_is_evidence_in_plain_figures() -> None:
    schema = StructureSchema(checks=StructureChecks(max_node_spike_percent=D(5)))
    [failure] = check_structure(curve("1e-10", "1e15", "1e-10", "1", "1", "1"), schema)
    spike = failure.evidence["nodes"][0]
    assert spike["move_in_percent"] == "999999999999999999999999900.0000"
    assert spike["move_out_percent"] == "100.0000"


def test_a_total_variance_of_1e16_or_more_is_evidence_in_plain_figures() -> None:
    schema = StructureSchema(
        coordinate_axis=MONEYNESS, checks=StructureChecks(calendar_arbitrage=True)
    )
    # sigma^2 T: 1e9^2 x 3/12 at P3M, then 1 x 1 at P1Y: falls
    vols = {("P3M", "0.9"): "1000000000", ("P1Y", "0.9"): "1"}
    [failure] = check_structure(grid(vols), schema)
    [node] = [n for n in failure.evidence["nodes"] if n["node"] == "P1Y 0.9"]
    assert node["previous_total_variance"] == "250000000000000000.000000000000"
    assert node["total_variance"] == "1.000000000000"


def test_a_scalar_jump_and_spike_of_1e24_percent_or_more_are_evidence_in_plain_figures() -> None:
    rules = ValidationRules(max_jump_percent=D(5), max_spike_percent=D(5))
    [jump] = check_history(D("1e15"), [Received(0, D("1e-10"), ("a",))], rules)
    assert jump.evidence["jump_percent"] == "999999999999999999999999900.0000"
    previous = [Received(0, D("1e-10"), ("a",)), Received(1, D("1e15"), ("a",))]
    spike = check_spike(D("1e-10"), 2, previous, rules)
    assert spike is not None
    assert spike.evidence["move_in_percent"] == "999999999999999999999999900.0000"
    assert spike.evidence["move_out_percent"] == "100.0000"


# Every figure the domain's bounds let in: |x| < 1e18, at most 18 places.
figures = st.decimals(
    min_value=Decimal("-999999999999999999.999999999999999999"),
    max_value=Decimal("999999999999999999.999999999999999999"),
    places=18,
    allow_nan=False,
    allow_infinity=False,
).filter(lambda x: x != 0)


@given(st.lists(figures, min_size=3, max_size=6))
def test_the_history_checks_decide_every_figure_the_bounds_let_in(history: list[Decimal]) -> None:
    rules = ValidationRules(max_jump_percent=D(5), max_spike_percent=D(5), max_zscore=D(1))
    *before, figure = history
    previous = [Received(i, x, ("a",)) for i, x in enumerate(before)]
    for failure in check_history(figure, previous, rules):
        rounded = [v for k, v in failure.evidence.items() if k in ("jump_percent", "zscore")]
        assert all("E" not in v for v in rounded)
    check_spike(figure, len(before), previous, rules)
