"""Copies of a bucket share its columns, and a batch appended after the last snap is written in
place into room past the rows (series_bucket._Room): whichever copies then take events, in
whatever order, each must hold exactly its own history, as if it had been a map per snap all
along. The repository hands every command such a copy of the cached bucket and keeps the copy
that saved, so two commands' copies of one bucket must never see each other's points."""

from __future__ import annotations

import random

from qis_domain.decisions import Candidate, Observed
from qis_domain.events import DataIngested, DataReconciled, RawValue
from qis_domain.quality import PointStatus
from qis_domain.series_bucket import Recorded, SeriesBucket
from qis_domain.values import DataType

SERIES = "S"


def batch_of_a(
    snaps: list[int], values: list[str], status: PointStatus
) -> tuple[DataIngested, DataReconciled]:
    """A batch of prices of the one source "a": its ingest and reconciliation events."""
    n = len(snaps)
    return (
        DataIngested(
            series_id=SERIES,
            source_id="a",
            data_type=DataType.PRICE,
            unit="USD",
            snaps=snaps,
            offsets=[0] * n,
            values=list[RawValue](values),
        ),
        DataReconciled(
            series_id=SERIES,
            data_type=DataType.PRICE,
            unit="USD",
            snaps=snaps,
            values=list[RawValue](values),
            methods=["priority"] * n,
            contributions=[{"a": v} for v in values],
            excluded=[[] for _ in snaps],
            quality_scores=["1"] * n,
            statuses=[status.value] * n,
        ),
    )


class _Copy:
    """A bucket and what a map per snap says it holds."""

    def __init__(self, bucket: SeriesBucket, observed: dict[int, Observed], last: int) -> None:
        self.bucket = bucket
        self.observed = observed
        self.candidates: dict[int, Candidate] = {}
        self.last = last  # the last snap so far

    def clone(self) -> _Copy:
        copy = _Copy(self.bucket.clone(), dict(self.observed), self.last)
        copy.candidates = dict(self.candidates)
        return copy

    def take(self, rng: random.Random, tag: str) -> None:
        """A batch after the last snap (most often) or over earlier snaps: its ingest and
        reconciliation events."""
        n = rng.randint(1, 9)
        if rng.random() < 0.8:
            snaps = list(range(self.last + 1, self.last + 1 + n))
        else:
            snaps = sorted(rng.sample(range(self.last + 10), n))
        self.last = max(self.last, snaps[-1])
        values = [f"{rng.randint(1, 999)}.{tag}" for _ in snaps]
        version = -1 if self.bucket.version is None else self.bucket.version
        ingested, reconciled = batch_of_a(snaps, values, PointStatus.PUBLISHED)
        self.bucket.apply(ingested, Recorded(tag, tag, version + 1, version + 1))
        self.bucket.apply(reconciled, Recorded(tag, tag, version + 1, version + 2))
        for snap_us, value in zip(snaps, values, strict=True):
            self.observed[snap_us] = Observed(value, tag)
            self.candidates[snap_us] = Candidate(
                value, "priority", ("a",), "1", PointStatus.PUBLISHED
            )

    def check(self) -> None:
        assert {k: dict(v) for k, v in self.bucket.observed.items()} == {
            k: {"a": v} for k, v in self.observed.items()
        }
        assert dict(self.bucket.candidates.items()) == self.candidates
        assert list(self.bucket.candidates) == sorted(self.candidates)


def test_copies_that_append_in_any_order_each_hold_their_own_points() -> None:
    rng = random.Random(5)
    for _ in range(40):
        copies = [_Copy(SeriesBucket(SERIES, 0), {}, -1)]
        for step in range(30):
            if rng.random() < 0.35:
                copies.append(rng.choice(copies).clone())
            rng.choice(copies).take(rng, f"t{step}")
            for copy in copies:
                copy.check()


def test_a_command_copy_and_the_cached_bucket_append_past_the_same_rows() -> None:
    """Two commands' copies of one cached bucket, both appending the same next snaps: the one
    that appends second must not overwrite what the first wrote in the shared room."""
    cached = _Copy(SeriesBucket(SERIES, 0), {}, -1)
    cached.take(random.Random(1), "first")
    one, two = cached.clone(), cached.clone()
    one.take(random.Random(2), "one")
    two.take(random.Random(2), "two")  # the same snaps, other values
    cached.take(random.Random(3), "cached")
    for copy in (one, two, cached):
        copy.check()
    assert one.observed.keys() == two.observed.keys()
    assert one.bucket.observed != two.bucket.observed
