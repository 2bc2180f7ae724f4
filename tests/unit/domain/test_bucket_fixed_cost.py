"""What the per-command shortcuts of `series_bucket._Points` must keep: `locate` finds a snap by one
clipped gather (a snap past the last, before the first or between two, and an empty bucket), and
`put` takes its snaps as a list or as an int64 array alike."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from qis_domain.series_bucket import _Points


class _Row(NamedTuple):
    a: Any


_SNAPS = st.lists(st.integers(-(2**62), 2**62), max_size=30)


@given(known=_SNAPS, asked=_SNAPS)
def test_locate_finds_exactly_the_snaps_held(known: list[int], asked: list[int]) -> None:
    held = sorted(set(known))
    points: _Points[_Row] = _Points(_Row)
    points.put(held, [str(s) for s in held])
    # Snaps next to the held ones and past both ends, besides the random ones.
    asked = asked + [s + d for s in held for d in (-1, 0, 1)]

    pos, found = points.locate(asked)

    assert found.dtype == np.bool_
    assert found.tolist() == [s in set(held) for s in asked]
    assert pos.tolist() == np.searchsorted(np.array(held, dtype=np.int64), asked).tolist()
    assert points.rows(asked) == [_Row(str(s)) if s in set(held) else None for s in asked]


@given(first=_SNAPS, second=_SNAPS, as_array=st.booleans())
def test_put_takes_snaps_as_a_list_or_an_array(
    first: list[int], second: list[int], as_array: bool
) -> None:
    points: _Points[_Row] = _Points(_Row)
    expected: dict[int, _Row] = {}
    for batch in (sorted(set(first)), second):  # an append, then a merge with repeats
        snaps: Any = np.array(batch, dtype=np.int64) if as_array else batch
        points.put(snaps, [f"v{s}" for s in batch])
        expected.update((s, _Row(f"v{s}")) for s in batch)
    assert dict(points.items()) == expected
