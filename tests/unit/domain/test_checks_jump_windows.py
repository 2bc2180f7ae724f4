"""Jump limits scoped by time of day (`jump_windows`): a snap's local time of day picks its
window, the window's multiplier scales both sides of the band, the screen stays sound, and
definitions without windows keep their stored bytes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError
from qis_domain.definitions import JumpWindow, ValidationRules
from qis_domain.rules import Received, check_history, figure_floats, history_suspects
from qis_domain.snaps import parse_snap
from qis_domain.values import Price

from tests.unit.domain.test_domain_quality_workflow import Desk, issues, series, statuses

D = Decimal
OPEN = 9 * 3600 + 30 * 60  # 09:30


def after_open(multiplier: str = "3", jump: str = "1") -> ValidationRules:
    window = JumpWindow(start_s=OPEN, end_s=OPEN + 1800, multiplier=D(multiplier))
    return ValidationRules(max_jump_percent=D(jump), jump_windows=(window,))


def test_a_time_of_day_has_at_most_one_window() -> None:
    rules = after_open()
    assert rules.jump_window(OPEN - 1) is None
    assert rules.jump_window(OPEN) == rules.jump_windows[0]
    assert rules.jump_window(OPEN + 1799) == rules.jump_windows[0]
    assert rules.jump_window(OPEN + 1800) is None  # the end is excluded


@pytest.mark.parametrize(
    "windows",
    [
        [(OPEN, OPEN + 1800), (OPEN + 1799, OPEN + 3600)],  # overlapping
        [(OPEN, OPEN)],  # empty
        [(OPEN, OPEN - 1)],  # across midnight: two windows instead
        [(0, 86_401)],  # beyond the day
        [(h * 3600, h * 3600 + 60) for h in range(25)],  # more than 24
    ],
)
def test_windows_that_do_not_say_one_multiplier_per_time_are_refused(
    windows: list[tuple[int, int]],
) -> None:
    with pytest.raises(ValidationError):
        ValidationRules(
            jump_windows=tuple(JumpWindow(start_s=a, end_s=b, multiplier=D(2)) for a, b in windows)
        )


def test_the_window_scales_the_limit_and_says_so() -> None:
    rules, window = after_open(), after_open().jump_windows[0]
    previous = [Received(0, D(100), ("a",))]
    assert check_history(D("102.5"), previous, rules, window) == []  # 2.5 % within 3 x 1 %
    [outside] = check_history(D("102.5"), previous, rules)
    assert set(outside.evidence) == {
        "previous_snap",
        "previous",
        "value",
        "jump_percent",
        "limit_percent",
    }
    [inside] = check_history(D("96.5"), previous, rules, window)
    assert (inside.rule, inside.blocking) == ("jump", True)
    assert (inside.evidence["limit_percent"], inside.evidence["multiplier"]) == ("3", "3")
    assert inside.evidence["window"] == "09:30:00-10:00:00"


def test_the_window_scales_each_side_of_a_band() -> None:
    rules = ValidationRules(
        max_rise_percent=D("0.35"),
        max_fall_percent=D("0.25"),
        jump_windows=(JumpWindow(start_s=0, end_s=86_400, multiplier=D(2)),),
    )
    window, previous = rules.jump_windows[0], [Received(0, D(100), ("a",))]
    assert check_history(D("100.7"), previous, rules, window) == []
    assert check_history(D("99.5"), previous, rules, window) == []
    [fall] = check_history(D("99.49"), previous, rules, window)
    assert (fall.evidence["direction"], fall.evidence["limit_percent"]) == ("fall", "0.50")


def test_an_intraday_series_gets_the_wider_band_only_after_the_open() -> None:
    """New York minute bars (EST): the 09:31 print may move 2.5 %, the 10:31 one may not."""
    desk = Desk(series("a").model_copy(update={"validation": after_open()}))
    snaps = [parse_snap(f"2024-02-26T{t}:00-05:00") for t in ("09:30", "09:31", "10:30", "10:31")]
    values = ("100", "102.5", "102.5", "105.06")  # +2.5 %, 0, +2.5 %
    events = desk.ingest("a", [(s, Price(D(v), "USD")) for s, v in zip(snaps, values, strict=True)])
    [jump] = issues(events)
    assert (jump.rule, jump.snap_us) == ("jump", snaps[3].utc_us)
    assert "window" not in jump.evidence
    assert statuses(events)[snaps[1].utc_us] == "published"
    assert statuses(events)[snaps[3].utc_us] == "held"


def test_a_definition_without_windows_is_stored_as_before() -> None:
    data = ValidationRules(max_jump_percent=D(8)).model_dump_json()
    assert "jump_windows" not in data
    with_window = after_open()
    assert ValidationRules.model_validate_json(with_window.model_dump_json()) == with_window


# --- the float screen with scaled limits ---

figures = st.decimals(min_value=D("-1e6"), max_value=D("1e6"), places=4, allow_nan=False)
multipliers = st.sampled_from([D(1), D("1.5"), D(3), D("0.1"), D("1e-12"), D("1e17")])


@given(
    st.lists(st.tuples(figures, multipliers), min_size=1, max_size=40),
    st.sampled_from(["0.25", "1", "8"]),
)
@example([(D(100), D(1)), (D("104.0000000000000001"), D(2))], "2")  # a hair beyond 2 x 2 %
@example([(D(100), D(1)), (D(104), D(2))], "2")  # exactly at it
def test_what_the_screen_clears_the_scaled_rule_passes(
    rows: list[tuple[Decimal, Decimal]], jump: str
) -> None:
    values = [v for v, _ in rows]
    rules = ValidationRules(max_jump_percent=D(jump))
    factors = [m for _, m in rows]
    suspects = history_suspects(
        figure_floats(values), figure_floats(values), list(range(len(values))), 1, rules, factors
    )
    received = [Received(s, f, ("a",)) for s, f in enumerate(values)]
    for i, suspect in enumerate(suspects.tolist()):
        window = JumpWindow(start_s=0, end_s=60, multiplier=factors[i])
        flagged = check_history(values[i], received[max(0, i - 1) : i], rules, window)
        assert suspect or not flagged, i
