"""Access policies as data (qis_domain.access): patterns, principals, conditions, the decision
and its reasons, the checks a policy must pass, and the AccessPolicies aggregate."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import RecordedEvent
from qis_domain.access import (
    REVISION_MISMATCH,
    AccessContext,
    AccessPolicies,
    Caller,
    PolicySet,
    evaluate,
    issues_name,
    policy_violations,
    within,
)
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    AccessPolicy,
    Classification,
    ClassificationLimit,
    Permission,
    SourceRestriction,
    TimeWindow,
)
from qis_domain.errors import Aborted, InvalidArgument, NotFound
from qis_domain.events import (
    AccessDenied,
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    DomainEvent,
    PolicyRefusal,
)
from qis_domain.series_bucket import Recorded

W, P, R, A = Permission.WRITE, Permission.PUBLISH, Permission.READ, Permission.ADMIN
ALICE = Caller("alice", frozenset({"quants"}))
LONDON = ZoneInfo("Europe/London")
NOW = AccessContext(now_us=0)


def us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def grant(
    *permissions: Permission, resources: tuple[str, ...] = ("series/*",), **kw: object
) -> AccessPolicy:
    return AccessPolicy.model_validate(
        {"principals": ("role:quants",), "resources": resources, "permissions": permissions, **kw}
    )


@pytest.mark.parametrize(
    ("pattern", "resource", "covered"),
    [
        ("series/*", "series/SPX", True),
        ("series/*", "series/SPX/issues", True),  # a series covers its exception queue
        ("series/*/issues", "series/SPX/issues", True),
        ("series/*/issues", "series/SPX", False),  # the queue alone, not the series
        ("series/EQ.*", "series/EQ.AAPL", True),
        ("series/EQ.*", "series/EQXAAPL", False),  # '.' is no wildcard
        ("series/SP?", "series/SPX", True),
        ("series/SP?", "series/SPXX", False),
        ("series/*", "sources/SPX", False),
        ("sources/bbg*", "sources/bbg-eu", True),
        ("sources/bbg*", "series/bbg", False),
        ("accessPolicies", "accessPolicies", True),
        ("series/*", "accessPolicies", False),
        ("*", "accessPolicies", True),
        ("*", "series/SPX/issues", True),
    ],
)
def test_resource_patterns(pattern: str, resource: str, covered: bool) -> None:
    decision = evaluate({"p": grant(R, resources=(pattern,))}, ALICE, R, resource, NOW)
    assert decision.allowed is covered


@pytest.mark.parametrize(
    ("principal", "caller", "named"),
    [
        ("user:alice", Caller("alice"), True),
        ("user:alice", Caller("alicia"), False),
        ("user:alice", Caller("bob", frozenset({"alice"})), False),  # a role is not a user
        ("role:ops", Caller("bob", frozenset({"ops", "x"})), True),
        ("role:ops", Caller("ops"), False),  # nor a user a role
        ("*", Caller("anyone"), True),
    ],
)
def test_principals(principal: str, caller: Caller, named: bool) -> None:
    policy = AccessPolicy(principals=(principal,), resources=("*",), permissions=(R,))
    assert evaluate({"p": policy}, caller, R, "series/X", NOW).allowed is named


def test_deny_by_default_and_the_reasons_of_a_refusal() -> None:
    assert evaluate({}, ALICE, R, "series/SPX", NOW).refusals == ()
    policies = {
        "readers": grant(R),
        "eu-hours": grant(P, conditions=(TimeWindow(start_s=0, end_s=1, time_zone="UTC"),)),
        "elsewhere": grant(P, resources=("series/EQ.*",)),  # not the resource: not considered
    }
    decision = evaluate(policies, ALICE, P, "series/SPX", AccessContext(now_us=3_600_000_000))
    assert not decision.allowed
    assert decision.timed
    assert [(r.policy_id, r.reason) for r in decision.refusals] == [
        ("eu-hours", "allows it only every day 00:00-00:00:01 UTC"),
        ("readers", "grants read, not publish"),
    ]


def test_the_policy_that_allows_is_named_and_order_of_writing_does_not_matter() -> None:
    policies = {"b": grant(R), "a": grant(R, W)}
    assert evaluate(policies, ALICE, R, "series/X", NOW).policy_id == "a"
    assert evaluate(dict(reversed(policies.items())), ALICE, R, "series/X", NOW).policy_id == "a"


@pytest.mark.parametrize(
    ("level", "allowed"),
    [
        (Classification.PUBLIC, True),
        (Classification.CONFIDENTIAL, True),
        (Classification.RESTRICTED, False),
        (None, True),  # no series (yet): nothing to restrict
    ],
)
def test_classification_limit(level: Classification | None, allowed: bool) -> None:
    limited = grant(W, conditions=(ClassificationLimit(max_level=Classification.CONFIDENTIAL),))
    context = AccessContext(now_us=0, classification=level)
    decision = evaluate({"p": limited}, ALICE, W, "series/X", context)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.refusals[0].reason == "allows series classified up to confidential only"
    assert PolicySet({"p": limited}).uses_classification
    assert not PolicySet({"p": grant(W)}).uses_classification


@pytest.mark.parametrize(
    ("source", "allowed"),
    [("bbg", True), ("bbg-eu", True), ("refinitiv", False), (None, True)],
)
def test_source_restriction(source: str | None, allowed: bool) -> None:
    writer = grant(W, conditions=(SourceRestriction(sources=("sources/bbg*",)),))
    context = AccessContext(now_us=0, source_id=source)
    assert evaluate({"p": writer}, ALICE, W, "series/X", context).allowed is allowed


WEEKDAYS_9_TO_5 = TimeWindow(
    days=(1, 2, 3, 4, 5), start_s=9 * 3600, end_s=17 * 3600, time_zone="Europe/London"
)
NIGHTS = TimeWindow(days=(5,), start_s=22 * 3600, end_s=6 * 3600, time_zone="Europe/London")


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        (WEEKDAYS_9_TO_5, datetime(2026, 3, 27, 9, 0, tzinfo=LONDON), True),  # Friday, GMT
        (WEEKDAYS_9_TO_5, datetime(2026, 3, 27, 8, 59, 59, tzinfo=LONDON), False),
        (WEEKDAYS_9_TO_5, datetime(2026, 3, 27, 17, 0, tzinfo=LONDON), False),  # end excluded
        (WEEKDAYS_9_TO_5, datetime(2026, 3, 28, 12, 0, tzinfo=LONDON), False),  # Saturday
        # After the clocks go forward (BST, UTC+1): 09:00 local is 08:00 UTC.
        (WEEKDAYS_9_TO_5, datetime(2026, 3, 30, 9, 0, tzinfo=LONDON), True),
        (NIGHTS, datetime(2026, 3, 27, 23, 0, tzinfo=LONDON), True),  # Friday night
        (NIGHTS, datetime(2026, 3, 28, 5, 59, tzinfo=LONDON), True),  # ...into Saturday
        (NIGHTS, datetime(2026, 3, 28, 6, 0, tzinfo=LONDON), False),
        (NIGHTS, datetime(2026, 3, 28, 23, 0, tzinfo=LONDON), False),  # Saturday night
        (NIGHTS, datetime(2026, 3, 27, 5, 0, tzinfo=LONDON), False),  # Friday morning: Thursday's
    ],
)
def test_time_windows_follow_the_local_wall_clock(
    window: TimeWindow, moment: datetime, inside: bool
) -> None:
    assert within(window, us(moment)) is inside


def test_a_window_from_a_time_to_itself_is_whole_days() -> None:
    mondays = TimeWindow(days=(1,), start_s=0, end_s=0, time_zone="UTC")
    assert within(mondays, us(datetime(2026, 3, 30, 23, 59, tzinfo=ZoneInfo("UTC"))))
    assert not within(mondays, us(datetime(2026, 3, 31, 0, 0, tzinfo=ZoneInfo("UTC"))))


def test_policy_violations_name_every_field() -> None:
    policy = AccessPolicy(
        principals=("alice", "user:", "role:a b", "*"),
        resources=("series/a/b", "sources/x/issues", "series/é", "accessPolicies"),
        permissions=(),
        conditions=(
            TimeWindow(days=(0, 1, 1), start_s=86_400, end_s=90_000, time_zone="Mars/Olympus"),
            SourceRestriction(sources=("series/x",)),
            SourceRestriction(sources=()),
        ),
        description="x" * 2000,
    )
    paths = [v.field for v in policy_violations(policy)]
    assert paths == [
        "policy.principals[0]",
        "policy.principals[1]",
        "policy.principals[2]",
        "policy.resources[0]",
        "policy.resources[1]",
        "policy.resources[2]",
        "policy.permissions",
        "policy.conditions[0].time_window.days",
        "policy.conditions[0].time_window.start_time_of_day",
        "policy.conditions[0].time_window.end_time_of_day",
        "policy.conditions[0].time_window.time_zone",
        "policy.conditions[1].source_restriction.sources[0]",
        "policy.conditions[2].source_restriction.sources",
        "policy.description",
    ]
    assert policy_violations(grant(R)) == []


def test_the_exception_queue_of_a_series() -> None:
    assert issues_name("SPX") == "series/SPX/issues"


# --- the aggregate --------------------------------------------------------------------------


def applied(policies: AccessPolicies, events: list[DomainEvent]) -> AccessPolicies:
    for event in events:
        version = 0 if policies.version is None else policies.version + 1
        policies.apply(event, Recorded(f"c{version}", "root", version + 1, version))
    return policies


def test_revisions_go_on_across_a_removal() -> None:
    policies = AccessPolicies()
    [added] = policies.set_policy("ops", grant(R), "first")
    assert added == AccessPolicyAdded(policy_id="ops", policy=grant(R), revision=1, reason="first")
    applied(policies, [added])
    assert policies.set_policy("ops", grant(R), "again") == []  # nothing changes
    [changed] = policies.set_policy("ops", grant(R, W), "more", expected_revision=1)
    assert isinstance(changed, AccessPolicyChanged)
    applied(policies, [changed])
    [removed] = policies.remove_policy("ops", "gone", expected_revision=2)
    assert removed == AccessPolicyRemoved(policy_id="ops", revision=2, reason="gone")
    applied(policies, [removed])
    assert policies.policies == {}
    with pytest.raises(Aborted) as stale:  # the client read revision 1, of the removed policy
        policies.set_policy("ops", grant(R), "back", expected_revision=1)
    assert stale.value.reason == REVISION_MISMATCH
    [back] = policies.set_policy("ops", grant(R), "back")
    assert (type(back), back.revision) == (AccessPolicyAdded, 3)  # type: ignore[attr-defined]


def test_a_stale_revision_a_missing_policy_and_a_bad_one_are_refused() -> None:
    policies = applied(AccessPolicies(), AccessPolicies().set_policy("ops", grant(R), "first"))
    with pytest.raises(Aborted, match="at revision 1, not at revision 2"):
        policies.set_policy("ops", grant(W), "x", expected_revision=2)
    with pytest.raises(NotFound) as missing:
        policies.remove_policy("nope", "x")
    assert missing.value.reason == "ACCESS_POLICY_NOT_FOUND"
    with pytest.raises(InvalidArgument) as bad:
        policies.set_policy("ops", grant(), " ")
    assert [v.field for v in bad.value.violations] == ["policy.permissions", "reason"]


def test_a_clone_does_not_see_what_the_original_applies_later() -> None:
    policies = AccessPolicies()
    twin = policies.clone()
    applied(policies, policies.set_policy("ops", grant(R), "first"))
    assert twin.policies == {}
    assert twin.version is None


def test_the_events_round_trip_through_the_codec() -> None:
    codec = EventCodec()
    ctx = CommandContext("c-1", "root", 0)
    window = TimeWindow(days=(1, 5), start_s=3600, end_s=7200, time_zone="Asia/Tokyo")
    policy = grant(
        P,
        W,
        conditions=(
            window,
            ClassificationLimit(max_level=Classification.INTERNAL),
            SourceRestriction(sources=("sources/a",)),
        ),
        description="desk",
    )
    events: list[DomainEvent] = [
        AccessPolicyAdded(policy_id="desk", policy=policy, revision=1, reason="r"),
        AccessPolicyChanged(policy_id="desk", policy=grant(R), revision=2, reason="r"),
        AccessPolicyRemoved(policy_id="desk", revision=2, reason="r"),
        AccessDenied(
            user_id="alice",
            roles=["quants"],
            method="PublishPoints",
            permission="publish",
            resource="series/SPX",
            refusals=[PolicyRefusal(policy_id="readers", reason="grants read, not publish")],
            policy_version=4,
            peer="ipv4:10.0.0.1:5000",
            denied_us=1,
        ),
    ]
    for new in codec.encode("access/policies", events, ctx):
        record = RecordedEvent(
            "access/policies", 0, 1, new.event_id, new.type, new.data, new.metadata, 0
        )
        assert codec.decode(record).event in events
