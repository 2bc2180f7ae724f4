"""A bucket writes the rows an append adds to a column when that column is first read
(series_bucket._Points._later), into buffers its copies may share: whichever copies take
events, and whichever of their columns each reads first, in whatever order, each must hold
exactly its own history, as a map per snap would. Reads here come rarely and one column at a
time, so that rows stay unwritten across copies, appends and more batches than a bucket keeps
unwritten."""

from __future__ import annotations

import random
from typing import Any

from qis_domain.decisions import Candidate
from qis_domain.events import DataPublished, RawValue
from qis_domain.quality import PointStatus
from qis_domain.series_bucket import Official, Recorded, SeriesBucket
from qis_domain.values import DataType

from tests.unit.domain.test_bucket_clone_appends import SERIES, batch_of_a


class _Copy:
    """A bucket fed by one source and what maps per snap say it holds."""

    def __init__(self) -> None:
        self.bucket = SeriesBucket(SERIES, 0)
        self.plain: dict[int, tuple[str, RawValue, str]] = {}
        self.candidates: dict[int, Candidate] = {}
        self.officials: dict[int, Official] = {}
        self.last = -1

    def clone(self) -> _Copy:
        copy = _Copy()
        copy.bucket = self.bucket.clone()
        copy.plain, copy.candidates = dict(self.plain), dict(self.candidates)
        copy.officials, copy.last = dict(self.officials), self.last
        return copy

    def take(self, rng: random.Random, tag: str, at: int) -> None:
        """A batch of new snaps after the last (an append, written later) or over earlier
        ones (merged at once): its ingest, reconciliation and publication."""
        n = rng.randint(1, 12)
        if rng.random() < 0.85 or self.last < 0:
            snaps = list(range(self.last + 1, self.last + 1 + n))
        else:
            snaps = sorted(rng.sample(range(self.last + 5), min(n, self.last + 5)))
            n = len(snaps)
        self.last = max(self.last, snaps[-1])
        values = [f"{rng.randint(1, 999)}.{tag}" for _ in snaps]
        status = rng.choice([PointStatus.PUBLISHED, PointStatus.PENDING])
        manual = rng.random() < 0.3
        version = -1 if self.bucket.version is None else self.bucket.version
        events = [
            *batch_of_a(snaps, values, status),
            DataPublished(
                series_id=SERIES,
                data_type=DataType.PRICE,
                unit="USD",
                mode="manual" if manual else "automatic",
                snaps=snaps,
                versions=[
                    self.officials[s].version + 1 if s in self.officials else 1 for s in snaps
                ],
                values=list[RawValue](values),
                quality_scores=["1"] * n,
                sources=[["a"] for _ in snaps],
                methods=["manual" if manual else "priority"] * n,
                flags=[[] for _ in snaps],
                reasons=[""] * n,
                causes=[""] * n,
                decided_at_us=at,
            ),
        ]
        for offset, event in enumerate(events):
            self.bucket.apply(event, Recorded(tag, f"u{tag}", at, version + 1 + offset))
        for snap_us, value in zip(snaps, values, strict=True):
            self.plain[snap_us] = ("a", value, f"u{tag}")
            self.candidates[snap_us] = Candidate(value, "priority", ("a",), "1", status)
            known = self.officials.get(snap_us)
            self.officials[snap_us] = Official(
                1 if known is None else known.version + 1,
                value,
                manual,
                at if known is None else known.published_at_us,
                f"u{tag}",
            )

    def read_one(self, rng: random.Random) -> None:
        """One column of one of the bucket's columns of points, against the maps."""
        pairs: list[tuple[Any, dict[int, Any], tuple[str, ...]]] = [
            (self.bucket.candidates, self.candidates, Candidate._fields),
            (self.bucket.officials, self.officials, Official._fields),
        ]
        points, expected, names = rng.choice(pairs)
        name = rng.choice(names)
        snaps = sorted(expected)
        assert points.field(name).tolist() == [getattr(expected[s], name) for s in snaps]

    def check(self) -> None:
        assert dict(self.bucket.candidates.items()) == self.candidates
        assert dict(self.bucket.officials.items()) == self.officials
        assert {s: tuple(v) for s, v in self.bucket.observed.plain.items()} == self.plain


def test_copies_that_append_and_read_in_any_order_each_hold_their_own_points() -> None:
    rng = random.Random(11)
    for _ in range(30):
        copies = [_Copy()]
        for step in range(40):
            if rng.random() < 0.3:
                copies.append(rng.choice(copies).clone())
            rng.choice(copies).take(rng, f"t{step % 3}", step)
            if rng.random() < 0.2:
                rng.choice(copies).read_one(rng)
        for copy in copies:
            copy.check()


def test_rows_left_unwritten_by_one_copy_are_written_by_another_sharing_them() -> None:
    """A copy made after appends shares the rows they left unwritten: each copy writes them
    when it reads them, with the same values, and appends of either after that stay apart."""
    rng = random.Random(3)
    first = _Copy()
    for step in range(20):  # more batches than a bucket keeps unwritten
        first.take(rng, "a", step)
    second = first.clone()
    second.read_one(rng)
    first.take(rng, "b", 20)
    second.take(rng, "c", 21)
    for copy in (first, second):
        copy.check()
    assert first.candidates.keys() == second.candidates.keys()
    assert first.bucket.candidates.field("raw")[-1] != second.bucket.candidates.field("raw")[-1]
