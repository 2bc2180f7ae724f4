"""The lazily written columns of `series_bucket._Points`: random sequences of copies, appends
(columns of every form `put` takes: lists, tuples, arrays, iterators, `_Fill`, `_Mapped`), merges,
drops and reads in random field orders, each copy checked against a dict per snap. Copies share
buffers and unwritten batches; more batches than `_LATER_BATCHES` are appended between reads."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from qis_domain.series_bucket import _LATER_BATCHES, _Fill, _Mapped, _Points


class _Row(NamedTuple):
    a: Any
    b: Any
    c: Any


def _column(form: str, values: list[Any]) -> Any:
    """`values` as a column of one of the forms `put` takes."""
    if form == "list":
        return list(values)
    if form == "tuple":
        return tuple(values)
    if form == "array":
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    if form == "iter":
        return iter(list(values))
    if form == "fill" and len(set(values)) == 1:
        return _Fill(values[0])
    # _Mapped of the values' reverse conversion
    return _Mapped(lambda text: int(text), [str(v) for v in values])


_FORMS = st.sampled_from(["list", "tuple", "array", "iter", "fill", "mapped"])
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["copy", "fork", "append", "append", "merge", "drop", "read", "read"]),
        st.integers(0, 10**6),
        st.lists(_FORMS, min_size=3, max_size=3),
    ),
    min_size=1,
    max_size=60,
)


def _read(points: _Points[Any], model: dict[int, _Row], seed: int) -> None:
    """One read, of a kind and field order chosen by `seed`, against the model."""
    snaps = sorted(model)
    kind = seed % 4
    if kind == 0:  # one field
        name = _Row._fields[seed // 4 % 3]
        assert points.field(name).tolist() == [getattr(model[s], name) for s in snaps]
    elif kind == 1 and snaps:  # one point
        snap = snaps[seed // 4 % len(snaps)]
        assert points[snap] == model[snap]
    elif kind == 2:  # some positions, every field
        pos = np.arange(len(snaps))[:: 1 + seed // 4 % 3]
        assert list(points.at(pos)) == [model[snaps[i]] for i in pos.tolist()]
    else:
        assert dict(points.items()) == model
    assert points.snaps.tolist() == snaps


def _appended(
    points: _Points[Any],
    model: dict[int, _Row],
    last: int,
    step: int,
    seed: int,
    n: int,
    batches: int,
    forms: list[str],
) -> tuple[_Points[Any], dict[int, _Row], int]:
    """`points` and its model after `batches` appends of `n` rows each."""
    for b in range(batches):
        # a gap of its own: copies appending after the same point hold other snaps
        start = last + 1 + (seed + b) % 3
        snaps = list(range(start, start + n))
        last = snaps[-1]
        rows = [_Row(step * 1000 + b, (step + s) % 2, step) for s in snaps]
        points.put(snaps, *(_column(f, [r[j] for r in rows]) for j, f in enumerate(forms)))
        model.update(zip(snaps, rows, strict=True))
    return points, model, last


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_copies_of_lazily_written_points_each_hold_their_own_history(
    ops: list[tuple[str, int, list[str]]],
) -> None:
    pool: list[tuple[_Points[Any], dict[int, _Row], int]] = [(_Points(_Row), {}, 0)]
    for step, (op, seed, forms) in enumerate(ops):
        k = seed % len(pool)
        points, model, last = pool[k]
        if op == "copy":
            pool.append((points.copy(), dict(model), last))
            continue
        if op == "read":
            _read(points, model, seed // 7)
            continue
        if op == "drop":
            gone = [s for s in model if (s + seed) % 3 == 0]
            points.drop(gone)
            for s in gone:
                del model[s]
            continue
        n = 1 + seed // 7 % 5
        if op in ("append", "fork"):
            batches = 1 + (_LATER_BATCHES + 2 if seed % 5 == 0 else 0)
            if op == "fork":  # a copy, then both append after the same last point
                copy = (points.copy(), dict(model), last)
                pool.append(_appended(*copy, step + 500, seed + 1, n, 1, forms))
            pool[k] = _appended(points, model, last, step, seed, n, batches, forms)
            continue
        # merge: earlier snaps, unsorted, one listed twice
        snaps = [(seed // (j + 1)) % (last + 3) for j in range(n)] + [seed % (last + 3)]
        rows = [_Row(-step - j, step, j % 2) for j in range(len(snaps))]
        points.put(snaps, *(_column(f, [r[j] for r in rows]) for j, f in enumerate(forms)))
        model.update(zip(snaps, rows, strict=True))
        last = max(last, *snaps)
        pool[k] = (points, model, last)
    for points, model, _ in pool:
        assert dict(points.items()) == model
