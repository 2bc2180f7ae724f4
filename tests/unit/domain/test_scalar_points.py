"""ScalarPoints: prices or volumes kept in the columns they came in. Whatever reads them as a
sequence must read the very list of (Snap, value) pairs the per-point form makes of the same
points (items, slices, equality, repr), and a command holding them must hash as one holding
that list, in both fingerprint schemes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis_command.application.commands import IngestPoints
from qis_domain.command_log import (
    _columns,
    _scalar_columns,
    canonical,
    fingerprint,
    legacy_fingerprint,
)
from qis_domain.events import QualityIssueDetected
from qis_domain.scalar_points import ScalarPoints, ScalarValues
from qis_domain.snaps import Snap
from qis_domain.values import DataType, Price, Volume

from tests.unit.domain.test_domain_series_bucket import SNAP, Harness, series

figures = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d) < Decimal("1e18")
)


# Decimals as clients write them: plain, up to 18 places (their texts mostly their own).
plain_figures = st.integers(0, 18).flatmap(
    lambda places: st.decimals(-(10**17), 10**17, places=places)
)


@st.composite
def batches(
    draw: st.DrawFn, drawn: st.SearchStrategy[Decimal] = figures
) -> tuple[ScalarPoints, list[tuple[Snap, Price | Volume]]]:
    """Columns (snaps in any order, unique) and the pairs the per-point form makes of them."""
    kinds: list[type[Price] | type[Volume]] = [Price, Volume]
    kind = draw(st.sampled_from(kinds))
    utc_us = draw(st.lists(st.integers(-(2**62), 2**62), min_size=0, max_size=25, unique=True))
    if draw(st.booleans()):
        utc_us.sort()
    n = len(utc_us)
    offsets = draw(st.lists(st.integers(-86_340, 86_340), min_size=n, max_size=n))
    numbers = draw(st.lists(drawn, min_size=n, max_size=n))
    texts = list(map(str, numbers)) if draw(st.booleans()) else None
    points = ScalarPoints(kind, utc_us, offsets, numbers, texts)
    pairs = [
        (Snap(us, off), kind(number, ""))
        for us, off, number in zip(utc_us, offsets, numbers, strict=True)
    ]
    return points, pairs


@given(batches(), st.integers(-30, 30), st.integers(-30, 30), st.sampled_from([None, 1, 2, -1]))
def test_columns_read_as_the_pairs_of_the_per_point_form(
    batch: tuple[ScalarPoints, list[tuple[Snap, Price | Volume]]],
    start: int,
    stop: int,
    step: int | None,
) -> None:
    points, pairs = batch
    assert len(points) == len(pairs)
    assert list(points) == pairs
    assert [points[i] for i in range(-len(pairs), len(pairs))] == pairs + pairs
    assert points == pairs
    assert pairs == points  # the list's side too
    assert points != tuple(pairs)  # it stands for a list, as the fingerprint reads it
    assert repr(points) == repr(pairs)
    assert points.ascending == (sorted(points.utc_us) == points.utc_us)
    part = points[start:stop:step]
    assert isinstance(part, ScalarPoints)
    assert part == pairs[start:stop:step]
    assert part.texts == (None if points.texts is None else points.texts[start:stop:step])
    assert part.array.tolist() == part.utc_us


def test_values_are_made_once_and_slices_share_them() -> None:
    points = ScalarPoints(Price, [1, 2, 3], [0, 0, 0], [Decimal("1"), Decimal("2.5"), Decimal(3)])
    values = points.values
    assert points.values is values
    assert points[1:][0][1] is values[1]
    assert points.data_type is DataType.PRICE
    assert ScalarPoints(Volume, [1], [0], [Decimal(1)]).data_type is DataType.VOLUME


def test_columns_are_not_changed_and_not_hashed() -> None:
    points = ScalarPoints(Price, [1, 2], [0, 0], [Decimal(1), Decimal(2)])
    with pytest.raises(ValueError, match="read-only"):
        points.array[0] = 5
    with pytest.raises(TypeError):
        hash(points)
    assert not hasattr(points, "append")


@pytest.mark.parametrize(
    "columns",
    [
        ([1, 2], [0], [Decimal(1), Decimal(2)], None),
        ([1, 2], [0, 0], [Decimal(1)], None),
        ([1, 2], [0, 0], [Decimal(1), Decimal(2)], ["1"]),
    ],
)
def test_columns_of_other_lengths_are_refused(columns: tuple[list, list, list, list]) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match="a row per point"):
        ScalarPoints(Price, *columns)


@pytest.mark.parametrize("utc_us", [[5, 3, 5], [2, 2]])
def test_a_snap_given_twice_is_refused(utc_us: list[int]) -> None:
    with pytest.raises(ValueError, match="unique"):
        ScalarPoints(Price, utc_us, [0] * len(utc_us), [Decimal(1)] * len(utc_us))


@given(batches())
def test_a_command_of_columns_hashes_as_the_command_of_its_pairs(
    batch: tuple[ScalarPoints, list[tuple[Snap, Price | Volume]]],
) -> None:
    points, pairs = batch
    as_columns = IngestPoints("SPX", "bbg", points)
    as_pairs = IngestPoints("SPX", "bbg", pairs)
    assert as_columns == as_pairs
    assert canonical(as_columns) == canonical(as_pairs)
    assert legacy_fingerprint(as_columns) == legacy_fingerprint(as_pairs)
    assert fingerprint(as_columns) == fingerprint(as_pairs)
    if points:  # made from the columns, the very bytes of the pairs
        assert _scalar_columns(points) == _columns(pairs)


def test_values_read_as_a_list_of_the_values() -> None:
    points = ScalarPoints(Volume, [3, 1], [0, 60], [Decimal("2.50"), Decimal(-1)])
    values = ScalarValues(points)
    assert values.kind is Volume
    assert len(values) == 2
    assert list(values) == [Volume(Decimal("2.50"), ""), Volume(Decimal(-1), "")]
    assert values[1] == Volume(Decimal(-1), "")
    assert values[::-1] == list(values)[::-1]


@given(
    batches(plain_figures),
    st.integers(-30, 30),
    st.integers(-30, 30),
    st.sampled_from([None, 1, 2, -1]),
)
def test_points_of_own_texts_are_the_points_of_their_figures(
    batch: tuple[ScalarPoints, list[tuple[Snap, Price | Volume]]],
    start: int,
    stop: int,
    step: int | None,
) -> None:
    """Made of texts each its Decimal's own (no figure made until one is read): the same
    points, pairs, fingerprints and slices as made of the figures."""
    points, pairs = batch
    texts = [str(value.number) for _, value in pairs]
    made = ScalarPoints.of_own_texts(points.kind, points.utc_us, points.offsets_s, texts)
    if made is None:
        # no points, or a figure written with an exponent: left to the figures
        assert not texts or any("E" in t for t in texts)
        return
    part = made[start:stop:step]
    assert made._figures is None
    assert part._figures is None  # slices stay so
    assert part == pairs[start:stop:step]
    assert made.own_texts() is texts  # proved own when made
    command = IngestPoints("s", "a", made)
    assert fingerprint(command) == fingerprint(IngestPoints("s", "a", pairs))
    assert made.figures == [value.number for _, value in pairs]
    assert all(type(f) is Decimal for f in made.figures)


@pytest.mark.parametrize(
    "text",
    ["+1", "1e3", "1.", ".5", "01", "0.0000001", "9" * 19, "1." + "0" * 19, "1,5", "", " 1"],
)
def test_points_are_not_made_of_texts_that_are_not_their_figures_own(text: str) -> None:
    """Valid or not, such a column is left to the checks of every text (proto/columns.py)."""
    texts = ["1.5", text, "2"]
    assert ScalarPoints.of_own_texts(Price, [1, 2, 3], [0, 0, 0], texts) is None


def clean_day(texts: list[str], of_texts: bool = False) -> ScalarPoints:
    """Prices at the first minutes of one day's bucket, as the columnar form brings them
    (`of_texts`: made of the texts, their figures not made yet)."""
    utc_us = [SNAP.utc_us + i * 60_000_000 for i in range(len(texts))]
    offsets = [SNAP.offset_s] * len(texts)
    if of_texts:
        points = ScalarPoints.of_own_texts(Price, utc_us, offsets, texts)
        assert points is not None
        return points
    return ScalarPoints(Price, utc_us, offsets, list(map(Decimal, texts)), texts)


@pytest.mark.parametrize("of_texts", [False, True], ids=["of figures", "of texts"])
@pytest.mark.parametrize("require_positive", [False, True])
def test_a_batch_settled_in_columns_makes_no_value(require_positive: bool, of_texts: bool) -> None:
    """New clean points of one source, the bulk-load case: decided from figures and texts;
    from texts alone under the default rules (positivity reads the figures)."""
    run = Harness(series(require_positive=require_positive))
    points = clean_day(["1.5", "2", "2.25"], of_texts)
    events = run.ingest("a", points)
    assert points._values is None  # what is under test
    if of_texts:
        assert (points._figures is not None) is require_positive
    assert [type(e).__name__ for e in events] == ["DataIngested", "DataReconciled", "DataPublished"]
    # the same events as the same points in pairs
    again = Harness(series(require_positive=require_positive))
    assert again.ingest("a", list(clean_day(["1.5", "2", "2.25"]))) == events


def test_a_point_that_fails_a_rule_reads_the_values() -> None:
    run = Harness(series(require_positive=True))
    points = clean_day(["1.5", "-2", "2.25"])
    events = run.ingest("a", points)
    assert points._values is not None
    issues = [e for e in events if isinstance(e, QualityIssueDetected)]
    assert [(i.snap_us, i.rule) for i in issues[0].issues] == [(points.utc_us[1], "positive")]
    again = Harness(series(require_positive=True))
    assert again.ingest("a", list(clean_day(["1.5", "-2", "2.25"]))) == events
