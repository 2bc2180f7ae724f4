"""The scheduler's metrics windows of a published batch: an intraday series' UTC days, found by
integer arithmetic, are the windows the per-snap datetime computation finds (bounds included)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_command.application.scheduler import _window, _windows
from qis_domain.bounds import MAX_INSTANT_US, MIN_INSTANT_US
from qis_domain.snaps import Frequency

DAY_US = 86_400 * 1_000_000
ZONES = [ZoneInfo("UTC"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]
SNAPS = st.integers(MIN_INSTANT_US, MAX_INSTANT_US)
ENDS = [MIN_INSTANT_US, MIN_INSTANT_US + DAY_US - 1, MAX_INSTANT_US - DAY_US, MAX_INSTANT_US]


def per_snap(snaps: list[int], frequency: Frequency, zone: ZoneInfo) -> set[tuple[int, int]]:
    return {w for s in snaps if (w := _window(s, frequency, zone)) is not None}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(SNAPS | st.sampled_from(ENDS) | st.integers(-DAY_US, DAY_US), max_size=50),
    st.sampled_from(list(Frequency)),
    st.sampled_from(ZONES),
)
@example(ENDS, Frequency.TICK, ZONES[0])
@example(ENDS, Frequency.DAILY, ZONES[1])
def test_the_windows_of_a_batch_are_those_of_its_snaps(
    snaps: list[int], frequency: Frequency, zone: ZoneInfo
) -> None:
    assert _windows(snaps, frequency, zone) == per_snap(snaps, frequency, zone)


def test_the_last_day_of_the_instants_has_no_window() -> None:
    # Its end, 10000-01-01, is beyond every store: nothing measures it.
    assert _windows([MAX_INSTANT_US], Frequency.MINUTE, ZONES[0]) == set()
    assert _windows([MIN_INSTANT_US], Frequency.MINUTE, ZONES[0]) == {
        (MIN_INSTANT_US, MIN_INSTANT_US + DAY_US)
    }
