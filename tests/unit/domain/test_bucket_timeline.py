"""Timeline.put_all, the bulk form of put a decision uses for its own received figures: the same
timeline as putting the points one by one, whether they follow the known ones (a load), replace
a run of them (another source) or fall in between (a gap filled)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from qis_domain.decisions import Timeline
from qis_domain.rules import Received

snaps = st.lists(st.integers(0, 60), unique=True).map(sorted)


def points(snaps_us: list[int], source: str) -> list[Received]:
    return [Received(s, Decimal(s) / 7, (source,)) for s in snaps_us]


def timeline_of(known: list[Received]) -> Timeline:
    timeline = Timeline()
    timeline.add(0, known)
    return timeline


@given(snaps, snaps)
def test_put_all_is_put_of_each(known: list[int], new: list[int]) -> None:
    one_by_one, at_once = timeline_of(points(known, "a")), timeline_of(points(known, "a"))
    for point in points(new, "b"):
        one_by_one.put(point)
    at_once.put_all(points(new, "b"))
    assert (at_once.snaps, at_once.points) == (one_by_one.snaps, one_by_one.points)


@given(snaps, st.integers(0, 10), st.integers(0, 10))
def test_a_run_of_known_snaps_is_replaced_in_place(known: list[int], lo: int, n: int) -> None:
    timeline = timeline_of(points(known, "a"))
    run = known[lo : lo + n]
    timeline.put_all(points(run, "b"))
    assert timeline.snaps == known
    assert [p.sources for p in timeline.points] == [("b",) if s in run else ("a",) for s in known]
