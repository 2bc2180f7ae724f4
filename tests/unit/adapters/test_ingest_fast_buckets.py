"""An ingested batch split per time bucket: a batch in snap order is cut at the buckets' ends
by bisection, and must come out exactly as the point-by-point grouping (order kept)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from qis_command.application.handlers import _by_bucket
from qis_domain.snaps import Snap
from qis_domain.values import DataValue, Price

SPAN = 3_600_000_000
Points = list[tuple[Snap, DataValue]]


def grouped(points: Points, span: int) -> dict[int, Points]:
    """The reference: each point to its bucket, one at a time."""
    out: dict[int, Points] = {}
    for point in points:
        us = point[0].utc_us
        out.setdefault(us - us % span, []).append(point)
    return out


snaps_us = st.integers(-3 * SPAN, 3 * SPAN) | st.sampled_from([-SPAN, -1, 0, SPAN - 1, SPAN])
batches = st.lists(snaps_us, min_size=1, max_size=60, unique=True)


@given(batches, st.booleans())
def test_a_batch_is_split_per_bucket_as_point_by_point(snaps: list[int], ordered: bool) -> None:
    if ordered:
        snaps.sort()
    points: Points = [(Snap(us), Price(Decimal(i), "")) for i, us in enumerate(snaps)]
    split = _by_bucket(points, SPAN)
    expected = grouped(points, SPAN)
    assert split == expected
    assert list(split) == list(expected)


def test_a_sorted_batch_over_three_buckets_is_cut_at_each_end() -> None:
    start = 1_700_000_000 * 1_000_000
    points: Points = [(Snap(start + s * 1_000_000), Price(Decimal(s), "")) for s in range(10_000)]
    split = _by_bucket(points, SPAN)
    assert [len(part) for part in split.values()] == [2_800, 3_600, 3_600]
    assert [point for part in split.values() for point in part] == points
