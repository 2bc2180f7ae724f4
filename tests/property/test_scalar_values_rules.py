"""A batch in columns (ScalarPoints) hands SeriesBucket.ingest its values as
ScalarValues, made only when a decision reads one. The bucket-level twins test
(tests/unit/domain/test_scalar_points_bucket.py) covers rounding, two sources and the jump,
z-score and stale rules; the day_over_day rule (each point settled before the next, reading
`values[i]` against a prior official) and the cross-series rules (`_check_cross_series` reads
every value) were only ever run with lists of pairs. Here the same histories go in as columns
and must give the very effects."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from unittest import mock

from qis_domain.scalar_points import ScalarPoints

from tests.property import test_property_cross_series as cross
from tests.property import test_property_day_over_day as dod
from tests.property.history import Point, history, price_columns
from tests.property.service import RICH

made: list[ScalarPoints] = []


def columns_of(points: Sequence[Point]) -> ScalarPoints:
    made.append(batch := price_columns(points))
    return batch


def test_day_over_day_decides_columns_as_it_decides_pairs() -> None:
    case = dod.RICH
    for chunks in (
        [case.points],
        [case.points[: len(case.points) // 3], case.points[len(case.points) // 3 :]],
    ):
        pairs = asyncio.run(dod.run(case, chunks))
        with mock.patch.object(dod, "prices", columns_of):
            columns = asyncio.run(dod.run(case, chunks))
        assert columns == pairs
        assert made  # in columns
        assert all(b.texts is not None for b in made)
        made.clear()


def test_cross_series_rules_decide_columns_as_they_decide_pairs() -> None:
    scenario = RICH.one_source()
    bench = history(dataclasses.replace(RICH.shape, seed=7, second=0.0)).primary
    checks = cross.Checks("1", "3", 20, "0.5", "2")
    definition = cross.with_checks(scenario.definition, checks)
    pairs, appended = asyncio.run(cross.effect(scenario.history, definition, scenario.cuts, bench))
    with mock.patch.object(cross, "prices", columns_of):
        columns, appended_columns = asyncio.run(
            cross.effect(scenario.history, definition, scenario.cuts, bench)
        )
    assert made  # in columns
    assert all(b.texts is not None for b in made)
    assert cross.raised(pairs)  # the rules did fire
    assert columns == pairs
    assert appended_columns == appended == 0
