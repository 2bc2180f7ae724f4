"""The "zero_value" rule (`forbid_zero`: a figure of exactly 0, a warning or an error) and the
"manual_value" review (`review_manual_values`: every value set by hand raises a warning on its
point): what they catch and leave alone, their evidence and effect, how the queue resolves
them, and that definitions without them keep their stored bytes and events."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from qis_domain.definitions import SeriesDefinition, ValidationRules, ZeroSeverity
from qis_domain.errors import PermissionDenied
from qis_domain.events import (
    DataPublished,
    DataReconciled,
    DataRestated,
    ManualOverrideSet,
    QualityApproved,
    QualityIssueDetected,
    QualityOverridden,
    SeriesDefined,
)
from qis_domain.rules import check_value, check_values
from qis_domain.values import (
    OhlcBar,
    OptionQuote,
    OptionRight,
    OptionsChain,
    Price,
    Volume,
)

from tests.unit.domain.test_domain_quality_workflow import (
    NOW,
    SNAP,
    T0,
    Desk,
    close,
    issues,
    series,
    statuses,
    the_issue,
    usd,
)
from tests.unit.domain.test_domain_series_bucket import official_point as row_of
from tests.unit.domain.test_domain_series_bucket import one, types

D = Decimal


def zero_rules(severity: ZeroSeverity | None, require_positive: bool = False) -> ValidationRules:
    return ValidationRules(require_positive=require_positive, forbid_zero=severity)


def zero_evidence(value: Any, rules: ValidationRules) -> list[dict[str, Any]]:
    return [f.evidence for f in check_value(value, rules) if f.rule == "zero_value"]


def with_rules(definition: SeriesDefinition, **rules: Any) -> SeriesDefinition:
    validation = definition.validation.model_copy(update=rules)
    return definition.model_copy(update={"validation": validation})


# --- zero_value ---


@pytest.mark.parametrize("text", ["0", "0.00", "-0", "0E+3"])
def test_a_price_of_exactly_zero_in_any_notation_is_caught(text: str) -> None:
    [failure] = check_value(Price(D(text), "USD"), zero_rules("error"))
    assert (failure.rule, failure.blocking, failure.evidence) == (
        "zero_value",
        True,
        {"fields": ["value"]},
    )
    [warning] = check_value(Volume(D(text), "shares"), zero_rules("warning"))
    assert (warning.severity, warning.blocking, warning.evidence) == (
        "warning",
        False,
        {"fields": ["quantity"]},
    )


@pytest.mark.parametrize("text", ["0.0001", "-0.0001", "-3", "1e-18"])
def test_a_figure_near_zero_or_negative_is_not_zero(text: str) -> None:
    # A rate or a spread may be negative or tiny: only exactly 0 is the default a feed fills in.
    assert check_value(Price(D(text), "USD"), zero_rules("error")) == []


def test_without_forbid_zero_a_zero_is_only_what_positivity_says() -> None:
    assert check_value(Price(D(0), "USD"), zero_rules(None)) == []
    rules = zero_rules(None, require_positive=True)
    assert [f.rule for f in check_value(Price(D(0), "USD"), rules)] == ["positive"]
    both = zero_rules("warning", require_positive=True)
    assert [f.rule for f in check_value(Price(D(0), "USD"), both)] == ["positive", "zero_value"]


def test_the_evidence_names_each_zero_field_of_a_bar_but_not_its_volume() -> None:
    bar = OhlcBar(D(0), D(10), D(0), D(5), volume=D(0))
    assert zero_evidence(bar, zero_rules("error")) == [{"fields": ["open", "low"]}]
    quiet = OhlcBar(D(5), D(5), D(5), D(5), volume=D(0))  # nothing traded: a real bar
    assert zero_evidence(quiet, zero_rules("error")) == []


def test_an_options_chain_names_the_quote_and_field_but_a_zero_bid_is_real() -> None:
    expiry = date(2024, 6, 21)
    chain = OptionsChain(
        (
            OptionQuote(expiry, D(100), OptionRight.CALL, bid=D(0), ask=D("0.05")),
            OptionQuote(expiry, D(0), OptionRight.PUT, ask=D(0), implied_volatility=D(0)),
        ),
        underlying_price=D(0),
    )
    assert zero_evidence(chain, zero_rules("warning")) == [
        {
            "fields": [
                "underlying_price",
                "quotes[1].strike",
                "quotes[1].ask",
                "quotes[1].implied_volatility",
            ]
        }
    ]


def test_the_batch_shortcut_decides_as_each_value_alone() -> None:
    values = [Price(D(t), "USD") for t in ("1", "0", "-2", "0.000", "3")]
    for rules in (zero_rules("warning"), zero_rules("error", True), zero_rules(None, True)):
        expected = {i: f for i, v in enumerate(values) if (f := check_value(v, rules))}
        assert check_values(values, rules) == expected
    assert set(check_values(values, zero_rules("warning"))) == {1, 3}


def test_an_error_holds_the_zero_and_a_warning_publishes_it_flagged() -> None:
    # The worked example of docs/data-quality.md: a spread, which may be negative.
    days = [close(date(2024, 2, d)) for d in (26, 27, 28)]
    batch = [(d, usd(p)) for d, p in zip(days, ("1.25", "0", "-0.40"), strict=True)]
    desk = Desk(with_rules(series("a", require_positive=False), forbid_zero="error"))
    events = desk.ingest("a", batch)
    issue = the_issue(events, "zero_value")
    assert (issue.snap_us, issue.source_id, issue.severity, issue.blocking) == (
        days[1].utc_us,
        "a",
        "error",
        True,
    )
    assert issue.evidence == {"fields": ["value"]}
    assert issues(events) == [issue]  # the negative spread passes
    assert statuses(events) == {
        days[0].utc_us: "published",
        days[1].utc_us: "held",
        days[2].utc_us: "published",
    }
    # Approved (a real zero, e.g. a rate fixed at 0 %), it publishes.
    events = desk.resolve("ops", [issue.issue_id], "approve", reason="SNB rate at 0 %")
    assert types(events)[:2] == [QualityApproved, DataReconciled]
    assert row_of(events, DataPublished).flags == ["zero_value"]

    desk = Desk(with_rules(series("a", require_positive=False), forbid_zero="warning"))
    events = desk.ingest("a", batch)
    assert statuses(events)[days[1].utc_us] == "published"
    flagged = {row.snap_us: row.flags for row in one(events, DataPublished).rows()}
    assert flagged[days[1].utc_us] == ["zero_value"]


# --- manual_value ---


def restate(desk: Desk, user: str, figure: str, reason: str, code: str = "") -> list[Any]:
    c = desk.ctx(user, NOW)
    return desk.commit(desk.bucket.restate(desk.definition, T0, usd(figure), reason, c, code), c)


def test_a_restatement_by_hand_is_raised_for_review_with_who_and_why() -> None:
    desk = Desk(with_rules(series("a"), review_manual_values=True))
    desk.ingest1("a", usd("100"))
    events = restate(desk, "alice", "100.70", "busted trade", "busted")
    assert types(events) == [QualityIssueDetected, DataRestated, ManualOverrideSet]
    issue = the_issue(events, "manual_value")
    assert (issue.snap_us, issue.source_id, issue.severity, issue.blocking) == (
        T0,
        "",
        "warning",
        False,
    )
    assert issue.evidence == {
        "by": "alice",
        "reason": "busted trade",
        "reason_code": "busted",
        "version": 2,
    }
    # Flagged, not held: the manual value is official at once.
    point = row_of(events, DataRestated)
    assert (point.version, point.value, point.flags) == (2, "100.70", ["manual_value"])
    assert desk.official() == (2, usd("100.70"))


def test_its_author_cannot_approve_the_review_and_another_person_can() -> None:
    desk = Desk(with_rules(series("a"), review_manual_values=True))
    desk.ingest1("a", usd("100"))
    issue = the_issue(restate(desk, "alice", "100.70", "busted trade"), "manual_value")
    assert "reason_code" not in issue.evidence
    with pytest.raises(PermissionDenied):
        desk.resolve("alice", [issue.issue_id], "approve", reason="I checked it myself")
    events = desk.resolve("bob", [issue.issue_id], "approve", reason="confirmed with the desk")
    assert one(events, QualityApproved).issue_ids == [issue.issue_id]
    assert desk.bucket.issues[issue.issue_id].status == "approved"
    assert not [e for e in events if isinstance(e, DataPublished | DataRestated)]
    assert desk.official() == (2, usd("100.70"))  # the reviewed value stays


def test_an_override_from_the_queue_is_a_manual_value_too() -> None:
    desk = Desk(with_rules(series("a"), review_manual_values=True, max_jump_percent=D(5)))
    desk.ingest1("a", usd("100"), snap=close(date(2024, 2, 29)))
    jump = the_issue(desk.ingest1("a", usd("130")), "jump")
    events = desk.resolve("ops", [jump.issue_id], "override", value=usd("101"), reason="fat")
    assert types(events)[:2] == [QualityOverridden, QualityIssueDetected]
    review = the_issue(events, "manual_value")
    assert (review.snap_us, review.evidence["by"], review.evidence["version"]) == (T0, "ops", 1)
    assert issues(events) == [review]


def test_without_review_a_manual_value_raises_nothing_and_is_not_flagged() -> None:
    desk = Desk(series("a"))
    desk.ingest1("a", usd("100"))
    events = restate(desk, "alice", "100.70", "busted trade")
    assert types(events) == [DataRestated, ManualOverrideSet]
    assert row_of(events, DataRestated).flags == []


def test_review_is_per_manual_value_each_with_its_own_issue() -> None:
    desk = Desk(with_rules(series("a"), review_manual_values=True))
    desk.ingest1("a", usd("100"), snap=SNAP)
    first = the_issue(restate(desk, "alice", "100.70", "busted trade"), "manual_value")
    second = the_issue(restate(desk, "carol", "100.60", "exchange file"), "manual_value")
    assert first.issue_id != second.issue_id
    assert (second.evidence["by"], second.evidence["version"]) == ("carol", 3)


# --- stored definitions ---


def test_definitions_without_the_new_rules_are_stored_as_before() -> None:
    before = (
        '{"require_positive":true,"max_jump_percent":"8","max_spike_percent":null,'
        '"max_zscore":null,"zscore_window":20,"stale_after_snaps":0,"check_calendar":false}'
    )
    rules = ValidationRules(require_positive=True, max_jump_percent=D(8))
    assert rules.model_dump_json() == before
    assert ValidationRules.model_validate_json(before) == rules


def test_the_new_rules_travel_through_the_definition_event() -> None:
    definition = with_rules(series("a"), forbid_zero="warning", review_manual_values=True)
    data = SeriesDefined(series_id="SPX", definition=definition).model_dump_json()
    assert '"forbid_zero":"warning","review_manual_values":true' in data
    back = SeriesDefined.model_validate_json(data).definition
    assert isinstance(back, SeriesDefinition)
    assert (back.validation.forbid_zero, back.validation.review_manual_values) == (
        "warning",
        True,
    )
