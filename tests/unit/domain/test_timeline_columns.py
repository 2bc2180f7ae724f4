"""`decisions.Timeline` kept in columns: whatever sequence of `add`, `put_all`, `put_columns` and
`put` (loads after the last point, the very snaps of a run of known ones, others merged), `before`
and `points` answer what a map snap -> Received, sorted, answers."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from qis_domain.decisions import Timeline
from qis_domain.rules import Received

snaps = st.integers(0, 40)
batches = st.lists(snaps, min_size=0, max_size=8, unique=True).map(sorted)
ops = st.lists(
    st.tuples(st.sampled_from(["add", "put_all", "put_columns", "put", "run"]), batches, snaps),
    max_size=25,
)


def _points(at: list[int], tag: int) -> list[Received]:
    return [Received(s, Decimal(s * 100 + tag), (f"s{tag % 3}",), float(s * 100 + tag)) for s in at]


@given(ops, snaps, st.integers(0, 6), snaps)
def test_a_timeline_answers_as_a_map_of_its_points(
    steps: list[tuple[str, list[int], int]], at: int, n: int, floor: int
) -> None:
    timeline = Timeline()
    model: dict[int, Received] = {}
    for tag, (op, batch, bucket) in enumerate(steps):
        if op == "run":  # the very snaps of a run of known ones, as another source sends
            known = sorted(model)
            batch = known[bucket % (len(known) or 1) :][: len(batch)]
        points = _points(batch, tag)
        if op == "add":
            timeline.add(bucket, points)
            assert bucket in timeline.covered
        elif op == "put_columns":
            timeline.put_columns(
                [p.snap_us for p in points],
                [p.figure for p in points],
                [p.sources for p in points],
                [p.approx for p in points],
            )
        elif op == "put":
            for p in points:
                timeline.put(p)
        else:
            timeline.put_all(points)
        model.update((p.snap_us, p) for p in points)
    ordered = [model[s] for s in sorted(model)]
    assert timeline.points == ordered
    assert timeline.snaps == sorted(model)
    assert all(math.isclose(a, p.approx) for a, p in zip(timeline.approx, ordered, strict=True))
    earlier = [p for p in ordered if floor <= p.snap_us < at]
    assert timeline.before(at, n, floor) == (earlier[-n:] if n else [])
