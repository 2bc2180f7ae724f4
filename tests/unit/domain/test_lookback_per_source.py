"""Look-back rules compare a source's value with that source's own earlier figures (docs/
data-quality.md, "Jump, spike and z-score: which previous value?"): never with another source's,
so what a source raises does not depend on what the others sent or on which came first. And a
spike, raised about a point after it was decided, counts in neither its score nor its flags,
whether or not another source decides the point again later."""

from __future__ import annotations

from decimal import Decimal
from itertools import permutations

from qis_domain.definitions import ValidationRules
from qis_domain.events import DataReconciled, QualityIssueDetected
from qis_domain.snaps import Snap

from tests.unit.domain.test_domain_series_bucket import SNAP, Harness, series, usd

DAY_US = 86_400_000_000
JUMP = ValidationRules(max_jump_percent=Decimal(5))


def day(i: int) -> Snap:
    return Snap(SNAP.utc_us + i * DAY_US, SNAP.offset_s)


def with_rules(rules: ValidationRules) -> Harness:
    definition = series("a", "b", tolerance_bps="1000")
    return Harness(definition.model_copy(update={"validation": rules}))


def issues(h: Harness) -> set[tuple[int, str, str, str]]:
    """(snap, source, rule, the previous figure it compared with) of every issue raised."""
    return {
        (i.snap_us, i.source_id, i.rule, str(i.evidence.get("previous", "")))
        for event, _ in h.log
        if isinstance(event, QualityIssueDetected)
        for i in event.issues
    }


def last_scores(h: Harness) -> dict[int, str]:
    out: dict[int, str] = {}
    for event, _ in h.log:
        if isinstance(event, DataReconciled):
            out.update(zip(event.snaps, event.quality_scores, strict=True))
    return out


DELIVERIES = {
    # b skipped day 1: its day 2 is 8 % above its own day 0, 3.8 % above a's day 1.
    "a": [(day(0), usd("100")), (day(1), usd("104")), (day(2), usd("105"))],
    "b": [(day(0), usd("100")), (day(2), usd("108"))],
}


def test_a_source_that_skipped_a_day_is_compared_with_its_own_figure_before_the_gap() -> None:
    """b's day-2 jump is from its own 100 of day 0, whether a's day 1 came before it or not
    (before, b compared with a's 104 when a came first, and raised nothing)."""
    raised = []
    for order in permutations(DELIVERIES):
        h = with_rules(JUMP)
        for source in order:
            h.ingest(source, DELIVERIES[source])
        raised.append(issues(h))
    assert raised[0] == raised[1]
    assert (day(2).utc_us, "b", "jump", "100") in raised[0]
    assert not any(source == "a" for _, source, _, _ in raised[0])


def test_point_by_point_turns_raise_what_each_source_alone_raises() -> None:
    """Sources taking turns a point at a time raise, per source, what each raises sent alone."""
    h = with_rules(JUMP)
    for snap, source in sorted((s.utc_us, src) for src, pts in DELIVERIES.items() for s, _ in pts):
        h.ingest(source, [p for p in DELIVERIES[source] if p[0].utc_us == snap])
    alone = set()
    for source, points in DELIVERIES.items():
        one = with_rules(JUMP)
        one.ingest(source, points)
        alone |= issues(one)
    assert issues(h) == alone


def test_a_spike_counts_in_no_score_whether_or_not_the_point_is_decided_again() -> None:
    """a's day 1 spikes (100, 110, 100): the spike is raised when day 2 comes. b's day-1 value,
    arriving after that and deciding the point again, leaves its score at 1, as when b came
    first."""
    a = [(day(0), usd("100")), (day(1), usd("110")), (day(2), usd("100"))]
    b = [(day(1), usd("110"))]
    scores = []
    for first, second in (("a", "b"), ("b", "a")):
        h = with_rules(ValidationRules(max_spike_percent=Decimal(5)))
        for source in (first, second):
            h.ingest(source, {"a": a, "b": b}[source])
        assert (day(1).utc_us, "a", "spike", "100") in issues(h)
        scores.append(last_scores(h)[day(1).utc_us])
    assert scores == ["1", "1"]
