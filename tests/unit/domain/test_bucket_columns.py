"""A bucket keeps its points in columns (series_bucket._Points, _Observations): what it answers
must be what a map per snap answers, whatever the order of the events, and a copy taken before
an event must not see it.

The reference here is the plain map the state was before it went into columns: each event sets
the values of its snaps, later events win, a withdrawn candidate goes, an official version keeps
the time its first version was decided."""

from __future__ import annotations

import random

import numpy as np
from qis_domain.decisions import Candidate, Observed
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    Issue,
    QualityIssueDetected,
    RawValue,
)
from qis_domain.quality import PointStatus
from qis_domain.series_bucket import Official, Recorded, SeriesBucket
from qis_domain.values import DataType

SERIES = "S"
SOURCES = ("a", "b", "c")


def _snaps(rng: random.Random) -> list[int]:
    """Unique snaps: sometimes a run after everything so far, sometimes anywhere."""
    n = rng.randint(1, 12)
    if rng.random() < 0.5:
        start = rng.randint(0, 60)
        return list(range(start, start + n))
    snaps = rng.sample(range(80), n)
    return sorted(snaps) if rng.random() < 0.5 else snaps


class _Run:
    def __init__(self) -> None:
        self.bucket = SeriesBucket(SERIES, 0)
        self.stream_version = -1

    def apply(self, event: object, user: str = "u") -> None:
        self.stream_version += 1
        meta = Recorded(f"c{self.stream_version}", user, self.stream_version, self.stream_version)
        self.bucket.apply(event, meta)  # type: ignore[arg-type]

    def ingest(
        self, snaps: list[int], values: list[RawValue], source: str = "a", user: str = "u"
    ) -> None:
        """A source's prices at `snaps`, applied as their DataIngested event."""
        self.apply(
            DataIngested(
                series_id=SERIES,
                source_id=source,
                data_type=DataType.PRICE,
                unit="USD",
                snaps=snaps,
                offsets=[0] * len(snaps),
                values=values,
            ),
            user,
        )


def test_observed_values_are_those_of_a_map_per_snap_and_source() -> None:
    rng = random.Random(7)
    for _ in range(30):
        run = _Run()
        want: dict[int, dict[str, Observed]] = {}
        copies: list[tuple[SeriesBucket, dict[int, dict[str, Observed]]]] = []
        for step in range(25):
            snaps = _snaps(rng)
            source, user = rng.choice(SOURCES), rng.choice(("ann", "bob"))
            values: list[RawValue] = [f"{rng.randint(1, 999)}.{step}" for _ in snaps]
            run.ingest(snaps, values, source, user)
            for snap_us, value in zip(snaps, values, strict=True):
                want[snap_us] = {**want.get(snap_us, {}), source: Observed(value, user)}
            if rng.random() < 0.3:
                copies.append((run.bucket.clone(), {k: dict(v) for k, v in want.items()}))
            assert len(run.bucket.observed) == len(want)
            assert {k: list(v.items()) for k, v in run.bucket.observed.items()} == {
                k: list(v.items()) for k, v in want.items()
            }
        for copy, then in copies:
            assert dict(copy.observed.items()) == then


def test_a_flagged_value_keeps_its_failure_beside_clean_values_in_columns() -> None:
    run = _Run()
    snaps = list(range(10))
    run.ingest(snaps, [str(s) for s in snaps])
    before = run.bucket.clone()
    run.apply(
        QualityIssueDetected(
            series_id=SERIES,
            issues=[
                Issue(
                    issue_id="i1",
                    snap_us=4,
                    source_id="a",
                    rule="positive",
                    severity="error",
                    blocking=True,
                    evidence={},
                )
            ],
        )
    )
    observed = run.bucket.observed
    assert observed[4]["a"].issue_ids == ("i1",)
    assert observed[4]["a"].blocking
    assert all(not observed[s]["a"].failures for s in snaps if s != 4)
    assert sorted(observed) == snaps
    assert not before.observed[4]["a"].failures  # the copy taken before does not see it


def test_candidates_and_officials_are_those_of_a_map_per_snap() -> None:
    rng = random.Random(11)
    statuses = [s.value for s in PointStatus]
    for _ in range(30):
        run = _Run()
        candidates: dict[int, Candidate] = {}
        officials: dict[int, Official] = {}
        for step in range(25):
            snaps = _snaps(rng)
            n = len(snaps)
            values: list[RawValue] = [f"{rng.randint(1, 999)}.{step}" for _ in snaps]
            if rng.random() < 0.5:
                chosen = [rng.choice(statuses) for _ in snaps]
                contributions = [{s: "1" for s in rng.sample(SOURCES, 2)} for _ in snaps]
                run.apply(
                    DataReconciled(
                        series_id=SERIES,
                        data_type=DataType.PRICE,
                        unit="USD",
                        snaps=snaps,
                        values=values,
                        methods=["median"] * n,
                        contributions=contributions,
                        excluded=[[] for _ in snaps],
                        quality_scores=["1"] * n,
                        statuses=chosen,
                    )
                )
                for snap_us, value, c, status in zip(
                    snaps, values, contributions, chosen, strict=True
                ):
                    if status == PointStatus.WITHDRAWN.value:
                        candidates.pop(snap_us, None)
                    else:
                        candidates[snap_us] = Candidate(
                            value, "median", tuple(c), "1", PointStatus(status)
                        )
            else:
                kind = DataPublished if rng.random() < 0.5 else DataRestated
                methods = [rng.choice(("median", "manual")) for _ in snaps]
                versions = [rng.randint(1, 5) for _ in snaps]
                user = rng.choice(("ann", "bob"))
                extra = {"mode": "automatic"} if kind is DataPublished else {}
                run.apply(
                    kind(
                        series_id=SERIES,
                        data_type=DataType.PRICE,
                        unit="USD",
                        snaps=snaps,
                        versions=versions,
                        values=values,
                        quality_scores=["1"] * n,
                        sources=[["a"]] * n,
                        methods=methods,
                        flags=[[] for _ in snaps],
                        reasons=[""] * n,
                        causes=[""] * n,
                        decided_at_us=1000 + step,
                        **extra,
                    ),
                    user,
                )
                for snap_us, version, value, method in zip(
                    snaps, versions, values, methods, strict=True
                ):
                    first = officials[snap_us].published_at_us if snap_us in officials else None
                    officials[snap_us] = Official(
                        version,
                        value,
                        method == "manual",
                        1000 + step if first is None else first,
                        user,
                    )
            assert dict(run.bucket.candidates.items()) == candidates
            assert dict(run.bucket.officials.items()) == officials
            assert list(run.bucket.candidates) == sorted(candidates)  # ascending, as read
            assert [run.bucket.officials.get(s) for s in range(80)] == [
                officials.get(s) for s in range(80)
            ]


def test_a_copy_shares_no_state_that_a_later_event_changes() -> None:
    run = _Run()
    run.apply(
        DataReconciled(
            series_id=SERIES,
            data_type=DataType.PRICE,
            unit="USD",
            snaps=[1, 2, 3],
            values=["1", "2", "3"],
            methods=["priority"] * 3,
            contributions=[{"a": "1"}, {"a": "2"}, {"a": "3"}],
            excluded=[[], [], []],
            quality_scores=["1"] * 3,
            statuses=["pending"] * 3,
        )
    )
    copy = run.bucket.clone()
    run.apply(
        DataReconciled(
            series_id=SERIES,
            data_type=DataType.PRICE,
            unit="USD",
            snaps=[2, 3],
            values=["20", ""],
            methods=["priority", "none"],
            contributions=[{"a": "20"}, {}],
            excluded=[[], []],
            quality_scores=["1", "0"],
            statuses=["published", "withdrawn"],
        )
    )
    assert [c.raw for c in copy.candidates.values()] == ["1", "2", "3"]
    assert [c.raw for c in run.bucket.candidates.values()] == ["1", "20"]


def test_a_snap_listed_twice_in_one_event_takes_its_last_value_as_a_map_would() -> None:
    run = _Run()
    for snaps, values in (([5, 9], ["5", "9"]), ([9, 1, 1, 9], ["a", "b", "x", "c"])):
        run.ingest(snaps, list[RawValue](values))
    assert {s: o["a"].raw for s, o in run.bucket.observed.items()} == {1: "x", 5: "5", 9: "c"}
    assert len(run.bucket.observed) == 3


def test_a_snap_from_a_numpy_column_is_found_like_an_int() -> None:
    run = _Run()
    run.ingest([3, 7], ["3", "7"])
    column = np.array([3, 4, 7], dtype=np.int64)
    assert [s in run.bucket.observed.plain for s in column] == [True, False, True]
    assert [s in run.bucket.observed for s in column] == [True, False, True]
    assert 3.0 not in run.bucket.observed.plain  # a float is no snap
