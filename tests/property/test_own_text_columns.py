"""A column of prices or volumes taken whole by its texts
(ScalarPoints.of_own_texts) is the column the per-text path (unchanged, `_decimals`) makes of
the same request: the same figures (value and exponent), texts, stored texts, fingerprint
bytes and violations, for any texts, snaps and offsets; slices read alone make the same
figures."""

from __future__ import annotations

from decimal import Decimal
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.proto.columns import points_from_columns
from qis_domain.command_log import _scalar_columns
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import ScalarPoints
from qis_domain.values import Price

T0_US = 1_709_326_800_000_000

noise = st.text(alphabet="0123456789.-+,e \u0660\u0661\uff11", min_size=0, max_size=12)
literals = st.builds(
    lambda sign, whole, point, zeros, digits: f"{sign}{whole}{point}{'0' * zeros}{digits}",
    st.sampled_from(["", "-", "+"]),
    st.sampled_from(["", "0", "00", "1", "9" * 17, "9" * 18, "1" + "0" * 17, "1" + "0" * 18]),
    st.sampled_from(["", "."]),
    st.integers(0, 19),
    st.sampled_from(["", "0", "1", "5", "1" * 12, "1" * 17, "1" * 18, "1" * 19]),
)
texts = st.lists(st.one_of(literals, noise), min_size=1, max_size=6)


def _run(
    case: str, sent: list[str], offsets: list[int], dup: bool, old: bool
) -> tuple[list[object], list[FieldViolation]]:
    n = len(sent)
    snaps = [T0_US + i * 60_000_000 for i in range(n)]
    if dup and n > 1:
        snaps[-1] = snaps[0]
    columns = values_pb2.PointColumns(snap_time_micros=snaps, utc_offset_minutes=offsets)
    getattr(columns, case).texts.extend(sent)
    violations: list[FieldViolation] = []
    if old:
        with mock.patch.object(ScalarPoints, "of_own_texts", return_value=None):
            points = points_from_columns(columns, violations)
    else:
        points = points_from_columns(columns, violations)
    return list(_described(points)), violations


def _described(points: object) -> list[object]:
    if not isinstance(points, ScalarPoints):
        return [points]
    pairs = [(snap, value.number.as_tuple()) for snap, value in points.pairs()]  # type: ignore[union-attr]
    return [
        [f.as_tuple() for f in points.figures],
        points.texts,
        points.own_texts(),
        _scalar_columns(points),
        pairs,
    ]


@settings(max_examples=1500, deadline=None)
@given(
    case=st.sampled_from(["prices", "volumes"]),
    sent=texts,
    offsets=st.sampled_from([[], [60], [24 * 60], [0, 0, 0, 0, 0, 0, 0]]),
    dup=st.booleans(),
)
@example(case="prices", sent=["-0"], offsets=[], dup=False)
@example(case="prices", sent=["0.000000", "0.0000000"], offsets=[], dup=False)
@example(case="prices", sent=["1,5"], offsets=[], dup=False)
@example(case="prices", sent=["1", ""], offsets=[], dup=False)
@example(case="volumes", sent=["\u0661"], offsets=[], dup=False)
@example(case="prices", sent=["9" * 18 + "." + "9" * 18], offsets=[], dup=False)
@example(case="prices", sent=["1" + "0" * 18], offsets=[24 * 60], dup=True)
def test_columns_taken_whole_are_the_per_text_paths(
    case: str, sent: list[str], offsets: list[int], dup: bool
) -> None:
    if len(offsets) > 1:
        offsets = offsets[: len(sent)] if len(sent) > 1 else offsets[:2]
    new = _run(case, sent, offsets, dup, old=False)
    old = _run(case, sent, offsets, dup, old=True)
    assert new == old


@settings(max_examples=300, deadline=None)
@given(sent=st.lists(literals, min_size=2, max_size=8), cut=st.integers(0, 8))
def test_a_slice_read_alone_has_the_figures_of_the_whole(sent: list[str], cut: int) -> None:
    n = len(sent)
    snaps = [T0_US + i for i in range(n)]
    whole = ScalarPoints.of_own_texts(Price, snaps, [0] * n, sent)
    if whole is None:
        return
    part = whole[cut:]
    part_figures = [f.as_tuple() for f in part.figures]  # read before the whole's
    assert part_figures == [Decimal(t).as_tuple() for t in sent[cut:]]
    assert [f.as_tuple() for f in whole.figures][cut:] == part_figures
    assert part.own_texts() == sent[cut:]
