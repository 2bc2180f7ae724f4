"""Cheaper ways to the same results on the rules path: issue ids made from their digest, the
rows of the look-back screen's windows read from a view when they are consecutive, the check
of floats that stand for their figures done in one pass when all of them do, the values a
batch's look-back rules check found from its NaN floats, and the received figures of a batch
mostly of pairs made from the pairs' column."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from qis_domain.decisions import _ISSUES_NAMESPACE, Timeline, issue_id
from qis_domain.definitions import ValidationRules
from qis_domain.rules import Received, _windows, approx, check_history, text_floats
from qis_domain.series_bucket import _check_history


@given(st.text(), st.integers(-(2**63), 2**63 - 1), st.text(), st.text())
def test_issue_ids_are_the_uuid5_of_their_name(
    command_id: str, snap_us: int, source_id: str, rule: str
) -> None:
    """The ids stored with every issue: made as `uuid.uuid5` makes them, character for
    character (an id changed would raise a second issue on a command's retry)."""
    name = f"{command_id}|{snap_us}|{source_id}|{rule}"
    expected = f"{snap_us}-{uuid.uuid5(_ISSUES_NAMESPACE, name)}"
    assert issue_id(command_id, snap_us, source_id, rule) == expected


@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.integers(1, n),
            st.lists(st.integers(0, n - 1), min_size=1, max_size=30),
            st.booleans(),
        )
    )
)
def test_window_rows_are_the_slices_they_start(case: tuple[int, int, list[int], bool]) -> None:
    """Consecutive starts (read from a view) and others (gathered) alike."""
    n, k, starts, consecutive = case
    starts = [s for s in starts if s <= n - k] or [0]
    if consecutive:
        starts = list(range(starts[0], min(starts[0] + len(starts), n - k + 1)))
    a = np.arange(n, dtype=np.float64) * 1.5
    rows = _windows(a, k, np.array(sorted(starts), dtype=np.int64))
    expected = np.array([a[s : s + k] for s in sorted(starts)])
    np.testing.assert_array_equal(rows, expected)


special = st.sampled_from(
    ["0", "-0", "0E-8", "1E+400", "-1E+400", "1E-400", "2.5E-320", "5E-324", "2E-308", "-7"]
)


@given(
    st.lists(
        st.decimals(allow_nan=False, allow_infinity=False).map(str) | special,
        min_size=0,
        max_size=80,
    )
)
def test_text_floats_are_each_figures_approx(column: list[str]) -> None:
    """Against `approx`, one figure at a time: whether the whole column is proven faithful at
    once or some floats are not (NaN where a float does not stand for its figure)."""
    expected = np.array([approx(Decimal(t)) for t in column], dtype=np.float64)
    np.testing.assert_array_equal(text_floats(column), expected)


@given(
    st.lists(
        st.none() | st.decimals(min_value=1, max_value=200, places=2),
        min_size=1,
        max_size=30,
    )
)
def test_history_checks_skip_values_without_a_figure_and_keep_their_indices(
    figures: list[Decimal | None],
) -> None:
    """A batch where some values have no figure (NaN floats): the others are checked against
    the figures before them, each failure reported at its own index, as one by one."""
    rules = ValidationRules(max_jump_percent=Decimal(10))
    snaps = [1_000_000 * (i + 1) for i in range(len(figures))]
    timeline = Timeline()
    timeline.put_all(
        [
            Received(s, f, ("a",), approx(f))
            for s, f in zip(snaps, figures, strict=True)
            if f is not None
        ]
    )
    floats = np.array([math.nan if f is None else approx(f) for f in figures])
    found = _check_history(timeline, 1, 0, snaps, figures, floats, rules, None)
    expected = {}
    for i, figure in enumerate(figures):
        if figure is not None:
            previous = timeline.before(snaps[i], 1, 0)
            if failures := check_history(figure, previous, rules):
                expected[i] = failures
    assert {i: h.failures for i, h in found.items()} == expected
