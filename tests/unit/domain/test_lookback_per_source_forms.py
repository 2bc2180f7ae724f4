"""Look-back rules read each source's own earlier figures: the forms a source's values are held
in (one value, a pair, a dict of three or with a rejection), its corrections, the series'
precision, bars and a sparse source in a full bucket all give the look-back the figure that
source itself sent last; and a spike on a point two sources made can be rejected (it names its
source)."""

from __future__ import annotations

from decimal import Decimal

from qis_domain.commands import CommandContext
from qis_domain.decisions import Decider
from qis_domain.definitions import ValidationRules
from qis_domain.events import QualityIssueDetected
from qis_domain.quality import PointStatus
from qis_domain.snaps import Snap
from qis_domain.values import DataType, DataValue, OhlcBar

from tests.unit.domain.test_domain_series_bucket import Harness, series, usd
from tests.unit.domain.test_lookback_per_source import DAY_US, JUMP, day

SPIKE = ValidationRules(max_spike_percent=Decimal(5))


def harness(*sources: str, rules: ValidationRules = JUMP, **kwargs: object) -> Harness:
    definition = series(*sources, tolerance_bps="5000", **kwargs)  # type: ignore[arg-type]
    return Harness(definition.model_copy(update={"validation": rules}))


def raised(h: Harness, source: str) -> set[tuple[int, str, str]]:
    """(snap, rule, the previous figure it compared with) of `source`'s issues."""
    return {
        (i.snap_us, i.rule, str(i.evidence.get("previous", "")))
        for event, _ in h.log
        if isinstance(event, QualityIssueDetected)
        for i in event.issues
        if i.source_id == source
    }


def points(*figures: str, start: int = 0) -> list[tuple[Snap, DataValue]]:
    return [(day(start + k), usd(f)) for k, f in enumerate(figures)]


def test_a_source_is_judged_alike_whether_its_points_are_alone_paired_or_mixed() -> None:
    """b alone, b with a at every point (pairs) and b with a and c (dicts of three), each in
    either order: b raises the same issues against its own figures."""
    b = points("100", "120", "121", "100")
    others = {"a": points("200", "200", "200", "200"), "c": points("300", "300", "300", "300")}
    alone = harness("a", "b", "c")
    alone.ingest("b", b)
    expected = raised(alone, "b")
    assert expected == {
        (day(1).utc_us, "jump", "100"),
        (day(3).utc_us, "jump", "121"),
    }
    for before in ((), ("a",), ("a", "c"), ("c", "a")):
        for b_first in (True, False):
            h = harness("a", "b", "c")
            if b_first:
                h.ingest("b", b[:2])
            for source in before:
                h.ingest(source, others[source])
            h.ingest("b", b if not b_first else b[2:])
            assert raised(h, "b") == expected, (before, b_first)


def test_a_corrected_value_is_what_the_source_is_compared_with() -> None:
    """a corrects its day 1 (104 -> 100) after b made the point a pair: a's day 2 (108) jumps
    8 % from its corrected 100, not from 104 (+3.8 %)."""
    h = harness("a", "b")
    h.ingest("a", points("100", "104"))
    h.ingest("b", points("104", start=1))
    h.ingest("a", points("100", start=1))
    h.ingest("a", points("108", start=2))
    assert (day(2).utc_us, "jump", "100") in raised(h, "a")


def test_a_rejected_value_is_skipped_for_the_one_before_it() -> None:
    """a's day 1 (120) jumped and was rejected; c also sent day 1, so the point is a dict. a's
    day 2 (103) is compared with its day 0 (100), +3 %: nothing."""
    h = harness("a", "b", "c")
    h.ingest("a", points("100", "120"))
    h.ingest("c", points("120", start=1))
    (jump,) = (
        i
        for event, _ in h.log
        if isinstance(event, QualityIssueDetected)
        for i in event.issues
        if i.rule == "jump"
    )
    c = CommandContext("reject", "ops", h.ctx().now_us)
    h.commit(h.bucket.resolve(h.definition, [("i", jump.issue_id)], "reject", "bad print", c), c)
    h.ingest("a", points("103", start=2))
    assert (day(2).utc_us, "jump", "120") not in raised(h, "a")
    assert not any(snap == day(2).utc_us for snap, _, _ in raised(h, "a"))


def test_the_figure_compared_with_is_rounded_to_the_series_precision_in_any_chunking() -> None:
    """precision 1: a's 101.44 is 101.4 both as the command's own point and as a recorded one,
    so 106.5 jumps 5.03 % (beyond 5; from 101.44 it would be 4.99 %), in one command as in
    three."""
    rules = ValidationRules(max_jump_percent=Decimal(5))
    figures = ("100.44", "101.44", "106.5")
    one = harness("a", "b", precision=1, rules=rules)
    one.ingest("a", points(*figures))
    three = harness("a", "b", precision=1, rules=rules)
    for k, f in enumerate(figures):
        three.ingest("a", points(f, start=k))
    assert raised(one, "a") == {(day(2).utc_us, "jump", "101.4")}
    assert raised(three, "a") == raised(one, "a")


def bars(*closes: str, start: int = 0) -> list[tuple[Snap, DataValue]]:
    def bar(close: str) -> OhlcBar:
        c = Decimal(close)
        return OhlcBar(c, c, c, c)

    return [(day(start + k), bar(c)) for k, c in enumerate(closes)]


def test_bars_are_compared_by_their_own_close() -> None:
    """b's bar of day 2 closes 8 % above b's own day-0 close, whatever a sent for day 1."""
    h = harness("a", "b", data_type=DataType.OHLC_BAR)
    h.ingest("a", bars("100", "104"))
    h.ingest("b", bars("100"))
    h.ingest("b", bars("108", start=2))
    assert (day(2).utc_us, "jump", "100") in raised(h, "b")


def test_a_sparse_source_finds_its_last_figures_behind_many_of_another() -> None:
    """The window `received` widens over the bucket's points reaches b's one early figure
    behind 300 of a's, and gives only b's."""
    h = harness("a", "b")
    h.ingest("b", points("100"))
    h.ingest("a", [(Snap(day(0).utc_us + k * DAY_US // 1000, 0), usd("1")) for k in range(1, 301)])
    decider = Decider.reading(h.definition)
    (only,) = h.bucket.received(decider, "b", last=3)
    assert (only.snap_us, only.figure, only.sources) == (day(0).utc_us, Decimal(100), ("b",))
    assert len(h.bucket.received(decider, "a", last=3)) == 3


def spike_issue(h: Harness) -> str:
    (spike,) = (
        i.issue_id
        for event, _ in h.log
        if isinstance(event, QualityIssueDetected)
        for i in event.issues
        if i.rule == "spike"
    )
    return spike


def test_a_spike_on_a_point_two_sources_made_can_be_rejected() -> None:
    """a's day 1 spikes (100, 110, 100) where b also sent 110: the spike names a, rejecting it
    leaves b's value as the candidate, still counted with score 1."""
    h = harness("a", "b", rules=SPIKE)
    h.ingest("b", points("110", start=1))
    h.ingest("a", points("100", "110", "100"))
    c = CommandContext("reject", "ops", h.ctx().now_us)
    events = h.bucket.resolve(h.definition, [("i", spike_issue(h))], "reject", "bad", c)
    h.commit(events, c)
    assert h.bucket.candidates[day(1).utc_us].sources == ("b",)
    assert h.status(day(1)) is PointStatus.PUBLISHED


def test_an_approved_spike_leaves_score_and_flags_as_they_were() -> None:
    """Approving a spike decides its point again: neither its score nor its flags change."""
    h = harness("a", "b", rules=SPIKE)
    h.ingest("a", points("100", "110", "100"))
    before = h.bucket.candidates[day(1).utc_us]
    c = CommandContext("approve", "ops", h.ctx().now_us)
    h.commit(h.bucket.resolve(h.definition, [("i", spike_issue(h))], "approve", "ok", c), c)
    after = h.bucket.candidates[day(1).utc_us]
    assert (after.quality, after.status) == (before.quality, before.status) == ("1", before.status)
