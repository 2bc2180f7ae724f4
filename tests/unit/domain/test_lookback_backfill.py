"""A source's own backfill or correction and the look-back rules of its later values (docs/
data-quality.md, "Jump, spike and z-score: which previous value?"): the issues a source's values
raise depend only on the figures it has sent, not on the order they came in. A backfill into a
gap, or a correction, judges again the later figures whose look-back reaches it: what now fails
is raised, an open issue that no longer holds is retracted by the system, and those points are
decided again (a held one may publish). A backfilled value is itself judged against the source's
figures before it; nothing a later figure changes unpublishes or restates a published point;
and an issue a person resolved stays resolved. tests/property/test_property_backfill_rejudges.py
is the property, over long histories; these are one rule at a time, within a bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest
from qis_domain.decisions import Decider, SeriesView, Timeline
from qis_domain.definitions import ValidationRules
from qis_domain.events import (
    DataRestated,
    DomainEvent,
    QualityApproved,
    QualityIssueDetected,
    QualityRetracted,
)
from qis_domain.quality import PointStatus
from qis_domain.series_bucket import AGAIN, REPLACED, SeriesBucket
from qis_domain.snaps import BUCKET_SPAN_US, Frequency, Snap
from qis_domain.values import Price

from tests.unit.domain.test_domain_series_bucket import Harness, usd
from tests.unit.domain.test_lookback_per_source import DAY_US, day, with_rules

Figures = Sequence[tuple[int, str]]  # (day, close) of source "a"


def send(h: Harness, figures: Figures) -> None:
    h.ingest("a", [(day(i), usd(text)) for i, text in figures])


def open_issues(h: Harness) -> set[tuple[int, str]]:
    """(day, rule) of the issues of source "a" no resolution has closed."""
    raised = {
        i.issue_id: (i.snap_us, i.rule)
        for event, _ in h.log
        if isinstance(event, QualityIssueDetected)
        for i in event.issues
        if i.source_id == "a"
    }
    closed = {iid for event, _ in h.log for iid in getattr(event, "issue_ids", ())}
    first = day(0).utc_us
    return {
        ((snap - first) // (day(1).utc_us - first), rule)
        for iid, (snap, rule) in raised.items()
        if iid not in closed
    }


def issue_ids_at(h: Harness, snap: Snap) -> list[str]:
    """The ids of every issue raised about `snap`, in the order raised."""
    return [
        i.issue_id
        for event, _ in h.log
        if isinstance(event, QualityIssueDetected)
        for i in event.issues
        if i.snap_us == snap.utc_us
    ]


def in_snap_order(rules: ValidationRules, figures: Figures) -> Harness:
    h = with_rules(rules)
    send(h, sorted(figures))
    return h


# (rules, what the source sent, in order, and the issues its figures raise in snap order)
CASES = {
    # 104 on day 2 is +4 % over day 0's 100 until day 1's 150 comes: then −30.7 %.
    "jump raised": (
        ValidationRules(max_jump_percent=Decimal(5)),
        [[(0, "100"), (2, "104")], [(1, "150")]],
        {(1, "jump"), (2, "jump")},
    ),
    # +4 % rises beyond the 2.5 % band until day 1's 110 comes: then a 5.5 % fall, within 12 %.
    "band retracted": (
        ValidationRules(max_rise_percent=Decimal("2.5"), max_fall_percent=Decimal(12)),
        [[(0, "100"), (2, "104")], [(1, "110")]],
        {(1, "jump")},
    ),
    # 100, 100, (110), 100: out and back around day 2, seen when day 3 is judged again.
    "spike raised": (
        ValidationRules(max_spike_percent=Decimal(5)),
        [[(0, "100"), (1, "100"), (3, "100")], [(2, "110")]],
        {(2, "spike")},
    ),
    # The newest chunk first: day 5's +30 % had no window of moves until days 0-2 came.
    "z-score raised": (
        ValidationRules(max_zscore=Decimal(3), zscore_window=4),
        [[(3, "101"), (4, "100"), (5, "130")], [(0, "100"), (1, "101"), (2, "100")]],
        {(5, "spike_zscore")},
    ),
    # Three identical closes in a row until day 2's 53 breaks the run.
    "stale retracted": (
        ValidationRules(stale_after_snaps=3),
        [[(0, "52.10"), (1, "52.10"), (3, "52.10")], [(2, "53")]],
        set(),
    ),
}


@pytest.mark.parametrize(("rules", "sent", "after"), CASES.values(), ids=CASES.keys())
def test_a_backfill_is_judged_against_the_sources_figures_before_it(
    rules: ValidationRules, sent: list[Figures], after: set[tuple[int, str]]
) -> None:
    """The backfilled figure's own rules see every figure the source sent before it, as in
    snap order (a spike about it is the next figure's to raise)."""
    h = with_rules(rules)
    for chunk in sent:
        send(h, chunk)
    whole = in_snap_order(rules, [f for chunk in sent for f in chunk])
    own = {i for i, _ in sent[-1]}
    assert {k for k in open_issues(h) if k[0] in own and k[1] != "spike"} == {
        k for k in open_issues(whole) if k[0] in own and k[1] != "spike"
    }


@pytest.mark.parametrize(("rules", "sent", "after"), CASES.values(), ids=CASES.keys())
def test_a_backfill_judges_the_later_figures_again(
    rules: ValidationRules, sent: list[Figures], after: set[tuple[int, str]]
) -> None:
    """Sent out of snap order, the figures leave open what they raise in snap order."""
    h = with_rules(rules)
    for chunk in sent:
        send(h, chunk)
    assert open_issues(in_snap_order(rules, [f for chunk in sent for f in chunk])) == after
    assert open_issues(h) == after


def test_a_backfill_never_unpublishes_or_restates_a_published_point() -> None:
    """Day 2's 104 is published clean before day 1's 150 arrives: whatever the backfill finds
    about it, its official version stays."""
    h = with_rules(ValidationRules(max_jump_percent=Decimal(5)))
    send(h, [(0, "100"), (2, "104")])
    assert h.official(day(2)) == (1, usd("104"))
    events = h.ingest("a", [(day(1), usd("150"))])
    assert not any(isinstance(e, DataRestated) for e in events)
    assert h.official(day(2)) == (1, usd("104"))


def test_a_correction_closes_the_issues_it_made_wrong_and_publishes_the_point() -> None:
    """Today's 104 is held by a jump from yesterday's wrong 150; the source corrects yesterday
    to 101: both jumps are retracted by the system, each with its reason (yesterday's was
    about the value replaced), and today publishes (+3 %, within 5 %)."""
    h = with_rules(ValidationRules(max_jump_percent=Decimal(5)))
    send(h, [(0, "100"), (1, "150"), (2, "104")])
    assert open_issues(h) == {(1, "jump"), (2, "jump")}
    assert h.status(day(2)) is PointStatus.HELD
    before = len(h.log)
    send(h, [(1, "101")])
    assert open_issues(h) == set()
    reasons = {
        (e.reason, s) for e, _ in h.log[before:] if isinstance(e, QualityRetracted) for s in e.snaps
    }
    assert reasons == {(REPLACED, day(1).utc_us), (AGAIN, day(2).utc_us)}
    assert h.status(day(2)) is PointStatus.PUBLISHED
    assert h.official(day(2)) == (1, usd("104"))


def test_a_persons_approval_stays_whatever_a_correction_changes() -> None:
    """Day 2's jump from the wrong 150 is approved by a person before the source corrects day
    1: the approval is never undone, and day 2's official value stays."""
    h = with_rules(ValidationRules(max_jump_percent=Decimal(5)))
    send(h, [(0, "100"), (1, "150"), (2, "104")])
    [approved] = issue_ids_at(h, day(2))
    c = h.ctx("ops")
    h.commit(h.bucket.resolve(h.definition, [("issue_ids[0]", approved)], "approve", "ok", c), c)
    assert h.official(day(2)) == (1, usd("104"))
    before = len(h.log)
    send(h, [(1, "101")])
    touched = {iid for event, _ in h.log[before:] for iid in getattr(event, "issue_ids", ())}
    assert approved not in touched
    assert any(
        isinstance(event, QualityApproved) and approved in event.issue_ids for event, _ in h.log
    )
    assert h.official(day(2)) == (1, usd("104"))


def across_a_boundary(rules: ValidationRules) -> tuple[Harness, Harness, list[Snap]]:
    """A bucket and the next one (each its own harness), and three days: the last two of the
    first bucket and the first of the next."""
    end, start = with_rules(rules), with_rules(rules)
    first_us = end.bucket.bucket_us + BUCKET_SPAN_US[Frequency.DAILY]
    start.bucket = SeriesBucket("SPX", first_us)
    return end, start, [Snap(first_us + k * DAY_US, 0) for k in (-2, -1, 0)]


def decide(h: Harness, points: list[tuple[Snap, Price]], view: SeriesView) -> list[DomainEvent]:
    """An ingest of source "a" with the command's `view`, as the application makes it."""
    c = h.ctx()
    return h.commit(h.bucket.ingest(h.definition, "a", points, c, view), c)


def received(h: Harness) -> Timeline:
    """A command's timeline after the look-back read of `h`'s bucket."""
    timeline = Timeline()
    timeline.add(h.bucket.bucket_us, h.bucket.received(Decider.reading(h.definition), "a"))
    return timeline


def rejudge(h: Harness, view: SeriesView) -> list[DomainEvent]:
    c = h.ctx()
    return h.commit(h.bucket.rejudge(h.definition, "a", c, view), c)


def detected(events: list[DomainEvent]) -> set[tuple[int, str]]:
    return {
        (i.snap_us, i.rule) for e in events if isinstance(e, QualityIssueDetected) for i in e.issues
    }


def test_a_backfill_at_a_buckets_end_judges_the_next_buckets_first_figures_again() -> None:
    """Across a bucket boundary, as the application does it: the backfill's bucket decides
    with the command's timeline, then the next bucket judges its first figures again against
    it. The next bucket's first close, 104, rose 4 % from 100 two days before; after the
    backfill of the day between, 150, it falls 30.7 %: a jump, raised in its own bucket,
    which stays published. And 100, 150, 104 is out and back beyond 5 % each way: the spike
    about the backfill, a point of the earlier bucket, is raised by the rejudging one (the
    application routes it to its bucket)."""
    rules = ValidationRules(max_jump_percent=Decimal(5), max_spike_percent=Decimal(5))
    end, start, days = across_a_boundary(rules)
    decide(end, [(days[0], usd("100"))], SeriesView(Timeline()))
    assert not detected(decide(start, [(days[2], usd("104"))], SeriesView(received(end))))
    view = SeriesView(Timeline())
    decide(end, [(days[1], usd("150"))], view)
    assert detected(rejudge(start, view)) == {
        (days[1].utc_us, "spike"),  # the earlier bucket's point: routed there
        (days[2].utc_us, "jump"),
    }
    assert start.official(days[2]) == (1, usd("104"))  # flagged, still published


def test_a_correction_retracts_a_spike_its_next_bucket_no_longer_sees() -> None:
    """100, 110 at the end of a bucket, 100 first in the next: a spike about the 110, raised
    by the next bucket and routed to its own. The source corrects the 100 to 110: judged
    again, the next bucket's 100 sees 110, 110, 100 (no spike), and the bucket holding the
    110 retracts its spike (`unflag`), as the application has it do."""
    end, start, days = across_a_boundary(ValidationRules(max_spike_percent=Decimal(5)))
    decide(end, [(days[0], usd("100")), (days[1], usd("110"))], SeriesView(Timeline()))
    events = decide(start, [(days[2], usd("100"))], SeriesView(received(end)))
    [spike] = [i for e in events if isinstance(e, QualityIssueDetected) for i in e.issues]
    assert (spike.snap_us, spike.rule) == (days[1].utc_us, "spike")
    c = end.ctx()
    end.commit(list(end.bucket.flag([spike])), c)
    view = SeriesView(Timeline())
    decide(end, [(days[0], usd("110"))], view)
    assert not detected(rejudge(start, view))
    assert view.timeline is not None
    assert view.timeline.unspiked == [days[1].utc_us]
    [retraction] = end.bucket.unflag("a", view.timeline.unspiked)
    assert (retraction.issue_ids, retraction.reason) == ([spike.issue_id], AGAIN)
