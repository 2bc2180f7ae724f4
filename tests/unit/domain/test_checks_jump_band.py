"""The asymmetric jump band (`max_rise_percent` / `max_fall_percent`): each side of a move has
its own limit, the float screen stays sound with two limits, and definitions without the band
keep their stored bytes and evidence."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import example, given
from hypothesis import strategies as st
from qis_domain.definitions import SeriesDefinition, ValidationRules
from qis_domain.events import SeriesDefined
from qis_domain.rules import Received, check_history, figure_floats, history_suspects
from qis_domain.values import Price

from tests.unit.domain.test_domain_quality_workflow import (
    Desk,
    close,
    issues,
    series,
    statuses,
    the_issue,
)

D = Decimal


def band(rise: str | None, fall: str | None, jump: str | None = None) -> ValidationRules:
    return ValidationRules(
        max_jump_percent=None if jump is None else D(jump),
        max_rise_percent=None if rise is None else D(rise),
        max_fall_percent=None if fall is None else D(fall),
    )


def jumps(previous: str, figure: str, rules: ValidationRules) -> list[dict[str, object]]:
    failures = check_history(D(figure), [Received(0, D(previous), ("a",))], rules)
    assert all(f.rule == "jump" and f.blocking for f in failures)
    return [f.evidence for f in failures]


def test_each_side_of_the_band_has_its_own_limit() -> None:
    rules = band("0.35", "0.25")
    assert jumps("100", "100.35", rules) == []  # at the limit: not beyond it
    assert jumps("100", "99.75", rules) == []
    assert jumps("100", "100.30", rules) == []
    [rise] = jumps("100", "100.36", rules)
    assert (rise["direction"], rise["limit_percent"], rise["jump_percent"]) == (
        "rise",
        "0.35",
        "0.3600",
    )
    [fall] = jumps("100", "99.70", rules)  # -0.30 %: within +0.35 %, beyond -0.25 %
    assert (fall["direction"], fall["limit_percent"], fall["jump_percent"]) == (
        "fall",
        "0.25",
        "0.3000",
    )


def test_a_side_without_its_own_limit_falls_back_to_the_symmetric_one() -> None:
    rules = band(None, "2", jump="8")
    assert jumps("100", "105", rules) == []
    assert [e["limit_percent"] for e in jumps("100", "109", rules)] == ["8"]
    assert [e["limit_percent"] for e in jumps("100", "97", rules)] == ["2"]


def test_a_side_without_any_limit_is_not_checked() -> None:
    rules = band("1", None)
    assert jumps("100", "10", rules) == []  # a fall of 90 %: falls are not checked
    assert [e["direction"] for e in jumps("100", "102", rules)] == ["rise"]


def test_a_symmetric_limit_keeps_its_evidence() -> None:
    # No "direction": issues of series without a band are what they were before it existed.
    [evidence] = jumps("100", "90", band(None, None, jump="8"))
    assert set(evidence) == {"previous_snap", "previous", "value", "jump_percent", "limit_percent"}


def test_a_definition_without_the_band_is_stored_as_before() -> None:
    before = (
        '{"require_positive":true,"max_jump_percent":"8","max_spike_percent":null,'
        '"max_zscore":null,"zscore_window":20,"stale_after_snaps":0,"check_calendar":false}'
    )
    rules = ValidationRules(require_positive=True, max_jump_percent=D(8))
    assert rules.model_dump_json() == before
    assert ValidationRules.model_validate_json(before) == rules


def test_a_definition_with_the_band_travels_through_its_event() -> None:
    definition = series("a").model_copy(update={"validation": band("0.35", "0.25")})
    event = SeriesDefined(series_id="SPX", definition=definition)
    data = event.model_dump_json()
    assert '"max_rise_percent":"0.35","max_fall_percent":"0.25"' in data
    back = SeriesDefined.model_validate_json(data).definition
    assert isinstance(back, SeriesDefinition)
    assert back.validation.jump_limits() == (D("0.35"), D("0.25"))


def test_a_fall_beyond_the_band_holds_the_point_and_a_rise_within_it_publishes() -> None:
    desk = Desk(series("a").model_copy(update={"validation": band("0.35", "0.25")}))
    # The worked example of docs/data-quality.md.
    d1, d2, d3, d4 = (close(date(2024, 2, d)) for d in (26, 27, 28, 29))
    prices = ("100.00", "100.30", "100.00", "100.35")  # +0.30 %, -0.299 %, +0.35 %
    batch = [(d, Price(D(p), "USD")) for d, p in zip((d1, d2, d3, d4), prices, strict=True)]
    events = desk.ingest("a", batch, user="alice")
    jump = the_issue(events, "jump")
    assert (jump.snap_us, jump.severity, jump.blocking) == (d3.utc_us, "error", True)
    assert (jump.evidence["direction"], jump.evidence["previous"]) == ("fall", "100.30")
    assert len(issues(events)) == 1
    held = {d3.utc_us: "held"}
    assert (
        statuses(events)
        == {d1.utc_us: "published", d2.utc_us: "published", d4.utc_us: "published"} | held
    )


# --- the float screen with two limits ---

figures = st.decimals(
    min_value=D("-1e6"), max_value=D("1e6"), places=4, allow_nan=False
) | st.sampled_from([D(0), D("0.0001"), D("100"), D("100.35"), D("99.75")])
limits = st.sampled_from([None, "0.25", "0.35", "1", "8"])


def unsound(series_: list[Decimal], rules: ValidationRules) -> list[int]:
    """Values the screen proves clean although the exact rule flags them."""
    suspects = history_suspects(
        figure_floats(series_), figure_floats(series_), list(range(len(series_))), 1, rules
    )
    received = [Received(s, f, ("a",)) for s, f in enumerate(series_)]
    return [
        i
        for i, suspect in enumerate(suspects.tolist())
        if not suspect and check_history(series_[i], received[max(0, i - 1) : i], rules)
    ]


@given(st.lists(figures, min_size=1, max_size=40), limits, limits, limits)
@example([D(100), D("100.3500000000000001")], "0.35", None, None)  # closer than a float tells
@example([D(100), D("99.7499999999999999")], None, "0.25", None)
# equal as floats, a hair apart as figures: a tie is held to the tighter side
@example([D(100), D("100.00000000000000001")], "1e-30", None, None)
@example([D(100), D("99.99999999999999999")], None, "1e-30", "8")
def test_what_the_screen_clears_the_band_passes(
    series_: list[Decimal], rise: str | None, fall: str | None, jump: str | None
) -> None:
    assert unsound(series_, band(rise, fall, jump)) == []


def test_the_screen_still_clears_quiet_moves_within_the_band() -> None:
    series_ = [D(100) + D(i % 5) / 100 for i in range(200)]  # moves within +/- 0.04 %
    suspects = history_suspects(
        figure_floats(series_), figure_floats(series_), list(range(200)), 1, band("0.35", "0.25")
    )
    assert not suspects.any()
