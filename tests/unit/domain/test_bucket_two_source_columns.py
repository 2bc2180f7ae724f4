"""The clean values of two sources of a point stay in columns (`_Observations.pairs`), as those
of one source do: what the bucket answers must be what a map per snap and source answers,
entries in arrival order, whatever comes next (a value replaced, a third source, a flagged or
rejected value), and a copy taken before an event must not see it."""

from __future__ import annotations

import random

from qis_domain.decisions import Observed
from qis_domain.events import Issue, QualityIssueDetected, QualityRejected, RawValue
from qis_domain.series_bucket import SeriesBucket

from tests.unit.domain.test_bucket_columns import _Run as _Columns

SERIES = "S"


class _Run(_Columns):
    def flag(self, snap_us: int, source: str, issue_id: str) -> None:
        issue = Issue(
            issue_id=issue_id,
            snap_us=snap_us,
            source_id=source,
            rule="jump",
            severity="error",
            blocking=True,
            evidence={},
        )
        self.apply(QualityIssueDetected(series_id=SERIES, issues=[issue]))


def _items(observed: dict[str, Observed]) -> list[tuple[str, Observed]]:
    return list(observed.items())  # the order counts: reconciliation iterates it


def test_two_clean_sources_are_held_in_columns_not_dicts() -> None:
    run = _Run()
    run.ingest([1, 2, 3], ["1", "2", "3"], "a", "ann")
    run.ingest([2, 3, 4], ["2.5", "3.5", "4.5"], "b", "bob")
    observed = run.bucket.observed
    assert not observed.mixed
    assert _items(observed[2]) == [("a", Observed("2", "ann")), ("b", Observed("2.5", "bob"))]
    assert _items(observed[4]) == [("b", Observed("4.5", "bob"))]
    assert sorted(observed) == [1, 2, 3, 4]
    # A new value of either source keeps the pair in columns and the entry in its place.
    run.ingest([2], ["2.1"], "a", "cy")
    assert not observed.mixed
    assert _items(observed[2]) == [("a", Observed("2.1", "cy")), ("b", Observed("2.5", "bob"))]


def test_a_third_source_or_a_flag_makes_a_pair_a_dict() -> None:
    run = _Run()
    run.ingest([1, 2, 3], ["1", "2", "3"], "a")
    run.ingest([1, 2, 3], ["1.1", "2.1", "3.1"], "b")
    before = run.bucket.clone()
    run.ingest([2], ["2.2"], "c")
    run.flag(3, "b", "i3")
    observed = run.bucket.observed
    assert [s for s in observed if s in observed.mixed] == [2, 3]
    assert [s for s, _ in _items(observed[2])] == ["a", "b", "c"]
    assert observed[3]["b"].issue_ids == ("i3",)
    assert observed[1]["b"] == Observed("1.1", "u")
    assert before.observed[3]["b"] == Observed("3.1", "u")  # the copy does not see it
    assert [s for s, _ in _items(before.observed[2])] == ["a", "b"]


def test_observed_values_are_those_of_a_map_whatever_the_sequence() -> None:
    rng = random.Random(3)
    for _ in range(40):
        run = _Run()
        want: dict[int, dict[str, Observed]] = {}
        copies: list[tuple[SeriesBucket, dict[int, dict[str, Observed]]]] = []
        issues = 0
        for step in range(30):
            n = rng.randint(1, 10)
            start = rng.randint(0, 40)
            snaps = list(range(start, start + n))
            if rng.random() < 0.3:
                snaps = rng.sample(range(50), n)  # out of order
            if rng.random() < 0.1:
                snaps.append(snaps[0])  # listed twice (an old event): the last one counts
            source = rng.choice(("a", "b", "b", "c") if rng.random() < 0.2 else ("a", "b"))
            user = rng.choice(("ann", "bob"))
            values: list[RawValue] = [f"{rng.randint(1, 99)}.{step}" for _ in snaps]
            run.ingest(snaps, values, source, user)
            for snap_us, value in zip(snaps, values, strict=True):
                want[snap_us] = {**want.get(snap_us, {}), source: Observed(value, user)}
            if rng.random() < 0.15:
                snap_us = rng.choice(sorted(want))
                flagged = rng.choice(sorted(want[snap_us]))
                issues += 1
                run.flag(snap_us, flagged, f"i{issues}")
                o = want[snap_us][flagged]
                want[snap_us] = {
                    **want[snap_us],
                    flagged: o._replace(
                        failures=(*o.failures, run.bucket.observed[snap_us][flagged].failures[-1]),
                        issue_ids=(*o.issue_ids, f"i{issues}"),
                    ),
                }
                if rng.random() < 0.5:
                    run.apply(
                        QualityRejected(
                            series_id=SERIES,
                            issue_ids=[f"i{issues}"],
                            snaps=[snap_us],
                            reason="bad",
                        )
                    )
                    o = want[snap_us][flagged]
                    want[snap_us] = {**want[snap_us], flagged: o._replace(rejected=True)}
            if rng.random() < 0.3:
                copies.append((run.bucket.clone(), {k: dict(v) for k, v in want.items()}))
            observed = run.bucket.observed
            assert len(observed) == len(want)
            assert {k: _items(v) for k, v in observed.items()} == {
                k: _items(v) for k, v in want.items()
            }
            asked = rng.sample(range(55), 20)
            assert observed.rows(asked) == [want.get(s) for s in asked]
            assert observed.has(asked).tolist() == [s in want for s in asked]
        for copy, then in copies:
            assert {k: _items(v) for k, v in copy.observed.items()} == {
                k: _items(v) for k, v in then.items()
            }
