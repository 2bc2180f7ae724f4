"""Properties of policy evaluation (hypothesis): more policies never take a permission away, a
condition never widens its policy, the policy credited with an allowance allows on its own, a
decision that did not look at the time holds at any time (what the decision cache relies on),
and a time window and its reverse split the day between them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_domain.access import AccessContext, Caller, evaluate, within
from qis_domain.definitions import (
    AccessCondition,
    AccessPolicy,
    Classification,
    ClassificationLimit,
    Permission,
    SourceRestriction,
    TimeWindow,
)

START_2020_US = 1_577_836_800_000_000
TEN_YEARS_US = 10 * 365 * 86_400_000_000
ZONES = ["UTC", "Europe/London", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"]

instants = st.integers(START_2020_US, START_2020_US + TEN_YEARS_US)
seconds_of_day = st.one_of(st.sampled_from([0, 3600, 9 * 3600, 86_399]), st.integers(0, 86_399))
windows = st.builds(
    TimeWindow,
    days=st.sets(st.integers(1, 7)).map(lambda d: tuple(sorted(d))),
    start_s=seconds_of_day,
    end_s=st.one_of(seconds_of_day, st.just(86_400)),
    time_zone=st.sampled_from(ZONES),
)
levels = st.sampled_from(list(Classification))
conditions: st.SearchStrategy[AccessCondition] = st.one_of(
    windows,
    st.builds(ClassificationLimit, max_level=levels),
    st.builds(
        SourceRestriction,
        sources=st.lists(
            st.sampled_from(["sources/bbg*", "sources/feed", "sources/?lt"]), min_size=1, max_size=2
        ).map(tuple),
    ),
)
permissions = st.sets(st.sampled_from(list(Permission)), min_size=1).map(lambda p: tuple(sorted(p)))
policies = st.builds(
    AccessPolicy,
    principals=st.lists(
        st.sampled_from(["user:alice", "user:bob", "role:ops", "role:quants", "*"]),
        min_size=1,
        max_size=3,
    ).map(tuple),
    resources=st.lists(
        st.sampled_from(
            [
                "series/*",
                "series/EQ.*",
                "series/SPX",
                "series/SP?",
                "series/*/issues",
                "sources/*",
                "sources/bbg",
                "accessPolicies",
                "*",
            ]
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    permissions=permissions,
    conditions=st.lists(conditions, max_size=3).map(tuple),
)
policy_sets = st.dictionaries(st.sampled_from([f"p{i}" for i in range(6)]), policies, max_size=5)
callers = st.builds(
    Caller,
    user_id=st.sampled_from(["alice", "bob", "carol"]),
    roles=st.frozensets(st.sampled_from(["ops", "quants", "audit"])),
)
resources = st.sampled_from(
    [
        "series/SPX",
        "series/EQ.AAPL",
        "series/SPX/issues",
        "sources/bbg",
        "sources/feed",
        "accessPolicies",
    ]
)
contexts = st.builds(
    AccessContext,
    now_us=instants,
    classification=st.none() | levels,
    source_id=st.none() | st.sampled_from(["bbg", "bbg-eu", "feed", "alt"]),
)
requests = st.tuples(callers, st.sampled_from(list(Permission)), resources, contexts)
Request = tuple[Caller, Permission, str, AccessContext]


def allowed(policy_set: dict[str, AccessPolicy], request: Request) -> bool:
    return evaluate(policy_set, *request).allowed


@settings(max_examples=400)
@given(policy_sets, policies, requests)
def test_adding_a_policy_never_removes_a_permission(
    existing: dict[str, AccessPolicy], added: AccessPolicy, request: Request
) -> None:
    if allowed(existing, request):
        assert allowed({**existing, "new": added}, request)


@settings(max_examples=400)
@given(policy_sets, policies, conditions, requests)
def test_a_condition_never_widens_its_policy(
    others: dict[str, AccessPolicy],
    policy: AccessPolicy,
    condition: AccessCondition,
    request: Request,
) -> None:
    narrowed = policy.model_copy(update={"conditions": (*policy.conditions, condition)})
    if allowed({**others, "it": narrowed}, request):
        assert allowed({**others, "it": policy}, request)


@settings(max_examples=400)
@given(policy_sets, policies, requests)
def test_granting_less_never_widens(
    others: dict[str, AccessPolicy], policy: AccessPolicy, request: Request
) -> None:
    fewer = policy.model_copy(update={"permissions": policy.permissions[:1]})
    if allowed({**others, "it": fewer}, request):
        assert allowed({**others, "it": policy}, request)


@settings(max_examples=400)
@given(policy_sets, requests)
def test_the_credited_policy_allows_on_its_own_and_none_allows_without_policies(
    policy_set: dict[str, AccessPolicy], request: Request
) -> None:
    assert not allowed({}, request)
    decision = evaluate(policy_set, *request)
    if decision.allowed:
        assert decision.policy_id is not None
        assert allowed({decision.policy_id: policy_set[decision.policy_id]}, request)
    else:
        assert {r.policy_id for r in decision.refusals} <= set(policy_set)


@settings(max_examples=400)
@given(policy_sets, requests, instants)
def test_a_decision_that_did_not_look_at_the_time_holds_at_any_time(
    policy_set: dict[str, AccessPolicy], request: Request, other_now_us: int
) -> None:
    decision = evaluate(policy_set, *request)
    if not decision.timed:
        caller, permission, resource, context = request
        later = AccessContext(other_now_us, context.classification, context.source_id)
        assert evaluate(policy_set, caller, permission, resource, later) == decision


@settings(max_examples=400)
@given(seconds_of_day, seconds_of_day, st.sampled_from(ZONES), instants)
def test_a_window_and_its_reverse_split_every_day(
    start: int, end: int, zone: str, now_us: int
) -> None:
    if start == end:
        return  # a window from a time to itself is the whole day
    window = TimeWindow(start_s=start, end_s=end, time_zone=zone)
    reverse = TimeWindow(start_s=end, end_s=start, time_zone=zone)
    assert within(window, now_us) != within(reverse, now_us)
