"""SeriesBucket.ingest reads ScalarPoints from their columns: a bucket fed
a batch in columns must write the very events, byte for byte, and hold the very state that the
same batch as a list of pairs gives, whatever the order of the snaps, the slice it is, whether
it carries the texts, the rules, the rounding and the sources."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.events import DomainEvent
from qis_domain.scalar_points import ScalarPoints
from qis_domain.series_bucket import Recorded, SeriesBucket
from qis_domain.snaps import Frequency
from qis_domain.values import DataType, Price, Volume

from tests.unit.domain.test_bucket_command_snaps import S_US, START_US, random_seconds
from tests.unit.domain.test_bucket_own_events_random import _state

TEXTS = ["100", "100.5", "100.50", "-0", "0", "1E+2", "99.99", "101", "0.0000001", "250", "-3"]


def _definition(kind: type[Price] | type[Volume], rules: bool, precision: int) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.PRICE if kind is Price else DataType.VOLUME,
        frequency=Frequency.SECOND,
        unit="USD" if kind is Price else "shares",
        precision=precision,
        sources=(SeriesSource(source_id="a", priority=1), SeriesSource(source_id="b", priority=2)),
        validation=ValidationRules(
            require_positive=True,
            max_jump_percent=Decimal(5),
            max_zscore=Decimal(3),
            zscore_window=5,
            stale_after_snaps=3,
        )
        if rules
        else ValidationRules(),
        reconciliation=ReconciliationPolicy(
            method=ReconciliationMethod.MEDIAN, tolerance_bps=Decimal(30)
        ),
    )


def _columns(
    kind: type[Price] | type[Volume], utc_us: list[int], offsets: list[int], texts: list[str]
) -> ScalarPoints:
    """As the edge makes them: with the texts sent."""
    return ScalarPoints(kind, utc_us, offsets, list(map(Decimal, texts)), texts)


class _Twins:
    def __init__(self) -> None:
        self.columns = SeriesBucket("S", START_US)
        self.pairs = SeriesBucket("S", START_US)
        self.n = 0

    def ingest(
        self, definition: SeriesDefinition, source: str, points: ScalarPoints
    ) -> list[DomainEvent]:
        self.n += 1
        ctx = CommandContext(f"c{self.n}", "feed", START_US)
        as_pairs = list(points)
        pair_events = self.pairs.ingest(definition, source, as_pairs, ctx)
        events = self.columns.ingest(definition, source, points, ctx)
        assert [(type(e), e.model_dump_json()) for e in events] == [
            (type(e), e.model_dump_json()) for e in pair_events
        ]
        for bucket, made in ((self.columns, events), (self.pairs, pair_events)):
            first = 0 if bucket.version is None else bucket.version + 1
            for k, event in enumerate(made):
                bucket.apply(event, Recorded(ctx.command_id, ctx.user_id, self.n, first + k))
        assert _state(self.columns) == _state(self.pairs)
        return events


@pytest.mark.parametrize("kind", [Price, Volume])
@pytest.mark.parametrize(("rules", "precision"), [(False, 0), (True, 0), (True, 1)])
def test_a_batch_in_columns_writes_what_its_pairs_write(
    kind: type[Price] | type[Volume], rules: bool, precision: int
) -> None:
    rng = random.Random(f"{kind.__name__}{rules}{precision}")
    definition = _definition(kind, rules, precision)
    twins = _Twins()
    for _ in range(40):
        seconds = random_seconds(rng, 40)
        utc_us = [START_US + s * S_US for s in seconds]
        offsets = rng.choice([[0] * len(utc_us), [-18_000] * len(utc_us)])
        texts = [rng.choice(TEXTS) for _ in utc_us]
        points = _columns(kind, utc_us, offsets, texts)
        # sometimes a slice of a larger batch, with a step, as a handler may cut one
        if rng.random() < 0.3 and len(points) > 2:
            points = points[:: rng.choice([2, -1, -2])]
        twins.ingest(definition, rng.choice("ab"), points)
