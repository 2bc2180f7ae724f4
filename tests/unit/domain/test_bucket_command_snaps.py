"""What the per-command shortcuts of an ingest must keep: its snaps are read once into an array
that its events carry to their apply (`series_bucket._Snaps`, shared through `_EventColumns`),
as are the sources of its reconciled rows (`_Contributions`), and a bucket that applies those
very events holds exactly what one that applies them read back from the store (plain lists)
holds; the points come in snap order with their own offsets; a column's buffers grow by more
than a batch at a time; the points held as dicts are found among many snaps as one by one."""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import pytest
from qis_domain.commands import CommandContext
from qis_domain.decisions import Observed
from qis_domain.definitions import (
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.errors import InvalidArgument
from qis_domain.events import DataIngested, DataPublished, DataReconciled, DomainEvent
from qis_domain.series_bucket import (
    _OFFICIAL,
    Recorded,
    SeriesBucket,
    _Contributions,
    _EventColumns,
    _Observations,
    _Points,
    _Snaps,
)
from qis_domain.snaps import Frequency, Snap
from qis_domain.values import DataType, Price

from tests.unit.domain.test_bucket_own_events_random import _state, _stored

START_US = 1_700_000_000 // 3600 * 3600 * 1_000_000  # a bucket's first snap (3,600 a bucket)
S_US = 1_000_000


def _definition(rules: bool) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.SECOND,
        unit="USD",
        sources=(SeriesSource(source_id="a", priority=1), SeriesSource(source_id="b", priority=2)),
        validation=ValidationRules(require_positive=True, max_jump_percent=Decimal(5))
        if rules
        else ValidationRules(),
        reconciliation=ReconciliationPolicy(
            method=ReconciliationMethod.MEDIAN, tolerance_bps=Decimal(30)
        ),
    )


def _points(seconds: Sequence[int], cents: list[int]) -> list[tuple[Snap, Price]]:
    return [
        (Snap(START_US + s * S_US, 0), Price(Decimal(100 * 100 + c) / 100, "USD"))
        for s, c in zip(seconds, cents, strict=True)
    ]


class _Bucket:
    """A bucket that applies events as the repository applies the decision's own, and its
    twin that applies the same events as read back from the store."""

    def __init__(self) -> None:
        self.own = SeriesBucket("S", START_US)
        self.stored = SeriesBucket("S", START_US)
        self.commands = 0

    def ingest(self, definition: SeriesDefinition, source: str, points: Any) -> list[DomainEvent]:
        self.commands += 1
        ctx = CommandContext(f"c{self.commands}", "feed", START_US)
        events = self.own.ingest(definition, source, points, ctx)
        first = 0 if self.own.version is None else self.own.version + 1
        for offset, event in enumerate(events):
            meta = Recorded(ctx.command_id, ctx.user_id, self.commands, first + offset)
            self.own.apply(event, meta)
            self.stored.apply(_stored(event), meta)
        return events


def test_a_clean_batch_converts_its_snaps_once_for_all_its_events() -> None:
    b = _Bucket()
    events = b.ingest(_definition(rules=False), "a", _points(list(range(50)), [0] * 50))

    ingested, reconciled, published = events
    assert isinstance(ingested, DataIngested)
    assert isinstance(reconciled, DataReconciled)
    assert isinstance(published, DataPublished)
    snaps = ingested.snaps
    assert isinstance(snaps, _Snaps)
    assert reconciled.snaps is snaps
    assert published.snaps is snaps
    assert snaps.array.tolist() == snaps == [START_US + s * S_US for s in range(50)]
    with pytest.raises(ValueError, match="read-only"):
        snaps.array[0] = 0
    assert isinstance(reconciled.contributions, _Contributions)
    assert reconciled.contributions.sources == [("a",)] * 50
    assert {b.own.candidates[s].sources for s in snaps} == {("a",)}
    # Stored, the lists are lists like any other.
    assert ingested.model_dump_json() == DataIngested(**dict(ingested)).model_dump_json()
    assert reconciled.model_dump_json() == DataReconciled(**dict(reconciled)).model_dump_json()

    # The other source's values of the same points: pairs, reconciled from both.
    ingested, reconciled = b.ingest(_definition(rules=False), "b", _points(range(50), [1] * 50))
    assert isinstance(ingested, DataIngested)
    assert isinstance(reconciled, DataReconciled)
    assert isinstance(ingested.snaps, _Snaps)
    assert reconciled.snaps is ingested.snaps
    assert isinstance(reconciled.contributions, _Contributions)
    assert reconciled.contributions.sources == [("a", "b")] * 50
    assert [list(c) for c in reconciled.contributions] == [["a", "b"]] * 50
    assert {b.own.candidates[s].sources for s in snaps} == {("a", "b")}
    assert _state(b.own) == _state(b.stored)


def random_seconds(rng: random.Random, most: int) -> list[int]:
    """1 to `most` distinct seconds within two minutes from one of the bucket's first 300:
    ascending, but shuffled three times in ten."""
    start = rng.randint(0, 300)
    seconds = sorted(rng.sample(range(start, start + 120), rng.randint(1, most)))
    if rng.random() < 0.3:
        rng.shuffle(seconds)
    return seconds


def test_a_bucket_applying_its_own_events_holds_what_their_stored_form_gives() -> None:
    """Batches of two sources, new points and restated ones, in order and not, clean and
    flagged (a negative price, a jump), paired and not: after each, the bucket that applied
    the decision's events holds what the one that applied them read back holds."""
    rng = random.Random(7)
    for rules in (False, True):
        definition = _definition(rules)
        b = _Bucket()
        for _ in range(30):
            seconds = random_seconds(rng, 60)
            cents = [rng.choice([0, 1, 2, 3, -20_000, 900]) for _ in seconds]
            b.ingest(definition, rng.choice("ab"), _points(seconds, cents))
            assert _state(b.own) == _state(b.stored)


def test_points_sent_out_of_order_are_decided_in_snap_order_with_their_own_offsets() -> None:
    b = _Bucket()
    points = [
        (Snap(START_US + s * S_US, offset), Price(Decimal(price), "USD"))
        for s, offset, price in [(3, -3600, "3"), (1, 7200, "1"), (2, 0, "2")]
    ]
    ingested = b.ingest(_definition(rules=False), "a", points)[0]

    assert isinstance(ingested, DataIngested)
    assert ingested.snaps == [START_US + s * S_US for s in (1, 2, 3)]
    assert ingested.offsets == [7200, 0, -3600]
    assert ingested.values == ["1", "2", "3"]
    assert isinstance(ingested.snaps, _Snaps)
    assert ingested.snaps.array.tolist() == ingested.snaps


@pytest.mark.parametrize("seconds", [[1, 1], [1, 2, 2], [2, 1, 2], [3, 1, 2, 1]])
def test_a_snap_sent_twice_is_refused_in_order_or_not(seconds: list[int]) -> None:
    bucket = SeriesBucket("S", START_US)
    with pytest.raises(InvalidArgument, match="unique"):
        bucket.ingest(
            _definition(rules=False),
            "a",
            _points(seconds, [0] * len(seconds)),
            CommandContext("c", "feed", START_US),
        )


def test_event_columns_keep_a_first_run_as_given_and_copy_it_before_more_rows() -> None:
    run = tuple((name, [f"{name}-{i}" for i in range(3)]) for name in _OFFICIAL)
    given = [list(column) for _, column in run]
    columns = _EventColumns(_OFFICIAL)

    columns.extend(run)
    assert all(columns.columns[name] is column for name, column in run)
    columns.add(tuple(f"{name}-row" for name in _OFFICIAL))
    columns.extend(run)

    assert [column for _, column in run] == given  # the lists given never change
    assert columns.columns == {
        name: [*column, f"{name}-row", *column]
        for name, column in zip(_OFFICIAL, given, strict=True)
    }


class _Row(NamedTuple):
    a: Any


def _buffers_made(batches: list[int]) -> tuple[int, int]:
    """Appending batches of these sizes to empty columns: how many buffers the snaps were
    copied into, and the rows to spare in the last."""
    points: _Points[_Row] = _Points(_Row)
    buffers: list[np.ndarray[Any, Any]] = []  # each kept alive: no id is reused
    n = 0
    for k in batches:
        points.put(list(range(n, n + k)), list(range(n, n + k)))
        n += k
        assert points._room is not None
        buffers.append(points._room.buffers[0])
    assert points.field("a").tolist() == list(range(n))
    return len({id(buffer) for buffer in buffers}), len(buffers[-1]) - n


def test_columns_grow_by_more_than_a_batch_at_a_time() -> None:
    assert _buffers_made([1000]) == (1, 0)  # filled at once: no room to spare
    # The first batch, then every other one (an eighth to spare: every batch), with at most a
    # batch to spare.
    made, spare = _buffers_made([1000] * 8)
    assert made == 5
    assert spare <= 1000
    # A point at a time: an eighth of the rows to spare.
    made, spare = _buffers_made([1] * 2000)
    assert made < 60
    assert spare <= 2000 // 8


def test_points_held_as_dicts_are_found_among_more_snaps_or_fewer() -> None:
    rng = random.Random(3)
    for _ in range(50):
        observed = _Observations()
        held = rng.sample(range(100), rng.randint(1, 40))
        for snap in held:
            observed.mixed[snap] = {"a": Observed("1", "u")}
        asked = rng.sample(range(120), rng.randint(1, 80))
        assert observed.has(asked).tolist() == [s in held for s in asked]
