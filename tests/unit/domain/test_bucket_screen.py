"""The float screen of the look-back rules (rules.history_suspects): a value it proves clean
is one the exact rules pass, whatever the figures, including those a hair from a limit; and a
smooth series is mostly proven clean (else the screen would save nothing)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from qis_domain.definitions import ValidationRules
from qis_domain.rules import Received, check_history, check_spike, figure_floats, history_suspects

BACK = 21  # what the richest rules below look back at (a z-score window of 20, plus one)


def rules(
    jump: str | None = "8",
    spike: str | None = "5",
    zscore: str | None = "3",
    window: int = 20,
    stale: int = 3,
) -> ValidationRules:
    return ValidationRules(
        max_jump_percent=None if jump is None else Decimal(jump),
        max_spike_percent=None if spike is None else Decimal(spike),
        max_zscore=None if zscore is None else Decimal(zscore),
        zscore_window=window,
        stale_after_snaps=stale,
    )


def exact_flags(figure: Decimal, previous: list[Decimal], r: ValidationRules) -> bool:
    received = [Received(s, f, ("a",)) for s, f in enumerate(previous)]
    return bool(check_history(figure, received, r)) or (
        check_spike(figure, len(previous), received, r) is not None
    )


def unsound(series: list[Decimal], r: ValidationRules) -> list[int]:
    """The values of `series` (each compared with the ones before it) the screen proves clean
    although the exact rules flag them."""
    suspects = history_suspects(
        figure_floats(series), figure_floats(series), list(range(len(series))), BACK, r
    )
    return [
        i
        for i, suspect in enumerate(suspects.tolist())
        if not suspect and exact_flags(series[i], series[max(0, i - BACK) : i], r)
    ]


figures = st.decimals(
    min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=4, allow_nan=False
) | st.sampled_from([Decimal(0), Decimal("0.0001"), Decimal("100"), Decimal("100.0000")])
limits = st.sampled_from([None, "0.5", "1", "5", "8"])


@given(
    st.lists(figures, min_size=1, max_size=40),
    limits,
    limits,
    st.sampled_from([None, "0.5", "1", "2", "3", "6"]),
    st.sampled_from([2, 5, 20]),
    st.sampled_from([0, 2, 3, 6]),
)
@example([Decimal(100), Decimal(108)], "8", None, None, 20, 0)  # a jump of exactly the limit
@example([Decimal(100), Decimal("108.0000001")], "8", None, None, 20, 0)
@example([Decimal(100), Decimal(105), Decimal(100)], None, "5", None, 20, 0)
# a hair beyond the limit, closer than a float can tell (16 places are within the bounds)
@example([Decimal(100), Decimal("108.0000000000000001")], "8", None, None, 20, 0)
@example([Decimal(100), Decimal("105.0000000000000001"), Decimal(99)], None, "5", None, 20, 0)
def test_what_the_screen_clears_the_rules_pass(
    series: list[Decimal],
    jump: str | None,
    spike: str | None,
    zscore: str | None,
    window: int,
    stale: int,
) -> None:
    assert unsound(series, rules(jump, spike, zscore, window, stale)) == []


@pytest.mark.parametrize("side", [-1, 1])
@pytest.mark.parametrize("gap", ["1e-6", "1e-9", "1e-12", "1e-15", "1e-16", "1e-18", "0"])
def test_a_zscore_a_hair_from_the_limit_is_left_to_the_exact_rule(side: int, gap: str) -> None:
    """A window of moves, then a value whose z-score is the limit give or take `gap` (relative):
    the screen may not clear one that the exact rule flags."""
    r = rules(jump=None, spike=None, zscore="3", window=5, stale=0)
    window = [Decimal(v) for v in ("100", "101", "100.5", "102", "101", "101.8")]
    moves = [(b - a) / a for a, b in itertools.pairwise(window)]
    mean = sum(moves, Decimal(0)) / len(moves)
    sd = (sum(((m - mean) ** 2 for m in moves), Decimal(0)) / (len(moves) - 1)).sqrt()
    z = Decimal(3) * (1 + side * Decimal(gap))
    figure = window[-1] * (1 + mean + z * sd)
    assert unsound([*window, figure], r) == []


@pytest.mark.parametrize(
    ("window", "figure"),
    [
        # found by search: a float z-score a hair below 3, an exact one a hair above
        (
            ("100", "100.53", "102.43", "102.74", "103.16", "104.53"),
            "107.6224054197698751397743767",
        ),
        (("100", "99.36", "101.04", "100.20", "101.22", "99.72"), "103.6793161377757248119017231"),
    ],
)
def test_a_zscore_floats_put_on_the_wrong_side_is_left_to_the_exact_rule(
    window: tuple[str, ...], figure: str
) -> None:
    r = rules(jump=None, spike=None, zscore="3", window=5, stale=0)
    series = [Decimal(v) for v in (*window, figure)]
    assert exact_flags(series[-1], series[:-1], r)
    assert unsound(series, r) == []


def test_a_smooth_series_is_mostly_proven_clean() -> None:
    series = [Decimal(100) + Decimal(i % 7) / 10 + Decimal(i % 3) / 100 for i in range(500)]
    r = rules()
    suspects = history_suspects(
        figure_floats(series), figure_floats(series), list(range(len(series))), BACK, r
    )
    flagged = [i for i in range(len(series)) if exact_flags(series[i], series[:i][-BACK:], r)]
    assert int(suspects.sum()) <= len(flagged) + len(series) // 50


def test_a_figure_no_float_stands_for_is_left_to_the_exact_rules() -> None:
    """1e-400 is no float: it underflows to 0, a previous figure the jump rule skips, yet the
    exact rule does not skip it. The screen leaves both values to the exact rules."""
    series = [Decimal("1e-400"), Decimal(1)]
    suspects = history_suspects(
        figure_floats(series), figure_floats(series), [0, 1], BACK, rules(jump="8", spike=None)
    )
    assert suspects.tolist() == [True, True]
