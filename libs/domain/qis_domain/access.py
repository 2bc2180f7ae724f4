"""Authorisation as data: evaluating access policies (the architecture's DataAccessPolicy, whose
value objects are in qis_domain.definitions) and the AccessPolicies aggregate that keeps them.

Deny by default: a request is allowed when one policy names the caller, covers the resource,
grants the permission, and every one of its conditions holds. So adding a policy never takes a
permission away, and a condition only ever narrows its policy. A condition restricts only what
it is about: `source_restriction` the source an ingestion writes as, `data_classification` the
classification of the series; a request without that attribute (a command on a source, a series
not defined yet) is not restricted by it. `now` is an argument: the domain reads no clock.

| resource name          | what                                   | patterns that cover it                       |
|------------------------|----------------------------------------|----------------------------------------------|
| `series/{id}`          | a series: its definition and values    | `series/{glob}`, `*`                         |
| `series/{id}/issues`   | its exception queue                    | `series/{glob}/issues`, `series/{glob}`, `*` |
| `sources/{id}`         | a data source                          | `sources/{glob}`, `*`                        |
| `topics/{name}`        | an event-routing topic                 | `topics/{glob}`, `*`                         |
| `accessPolicies`       | the access policies themselves         | `accessPolicies`, `*`                        |

A glob is an id in which `*` stands for any run of characters and `?` for one. Principals are
`user:{user id}`, `role:{name}` (a role or group the caller's credential names) and `*` (any
authenticated caller).

The policies of a deployment are one aggregate, one stream (`access/policies`), changed by admin
commands; its version is what a cached evaluation is valid for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from qis_domain.bounds import MAX_ID_LENGTH, MAX_TEXT_LENGTH, check_length, quoted
from qis_domain.commands import CommandOutcome, RemembersCommands
from qis_domain.definitions import (
    AccessCondition,
    AccessPolicy,
    Classification,
    ClassificationLimit,
    Permission,
    SourceRestriction,
    TimeWindow,
    known_time_zones,
)
from qis_domain.errors import Aborted, FieldViolation, InvalidArgument, NotFound, Resource
from qis_domain.events import (
    AccessDenied,
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    DomainEvent,
)
from qis_domain.names import series_name, source_name, validate_id
from qis_domain.series_bucket import Recorded

POLICIES_STREAM = "access/policies"
DENIALS_SCOPE = "access/denials"
"""What the denials another service records are (their command ids are unique within it)."""
DENIALS_PREFIX = f"{DENIALS_SCOPE}/"
POLICIES_RESOURCE = "accessPolicies"
"""The access policies, as a resource (the collection of every policy: a grant on one of them
would let its holder grant anything)."""
ADMINS_POLICY_ID = "QIS_ADMINS"
"""The policy QIS_ADMINS stands for. Not a valid policy id ('_'): no stored policy can take it."""
MAX_POLICY_ITEMS = 100
"""Principals, resources, conditions, or sources of a restriction, per policy."""
REVISION_MISMATCH = "POLICY_REVISION_MISMATCH"
ACCESS_DENIED = "ACCESS_DENIED"
"""The reason of a refusal by the access policies (PERMISSION_DENIED)."""
DAY_S = 86_400
ANYONE = "*"
_PRINCIPAL_KINDS = ("user:", "role:")
_GLOB = re.compile(r"[A-Za-z0-9._:\-*?]{1,128}")
_PATTERN = re.compile(r"(?P<kind>series|sources|topics)/(?P<glob>[^/]+)(?P<issues>/issues)?")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def issues_name(series_id: str) -> str:
    """The resource name of a series' exception queue."""
    return f"{series_name(series_id)}/issues"


def policy_name(policy_id: str) -> str:
    return f"{POLICIES_RESOURCE}/{policy_id}"


def policy_resource(policy_id: str) -> Resource:
    return Resource("qis.data.v1.AccessPolicy", policy_name(policy_id), "ACCESS_POLICY")


def denial_stream(denial_id: str) -> str:
    """One stream per denial: denials come from every instance at once, and would contend for
    one shared stream."""
    return f"{DENIALS_PREFIX}{denial_id}"


def admins_policy(principals: Sequence[str]) -> AccessPolicy:
    """What QIS_ADMINS grants: `admin` on everything, whatever the stored policies say, so that
    the first policy can be written (and a lock-out undone)."""
    return AccessPolicy(
        principals=tuple(principals),
        resources=(ANYONE,),
        permissions=(Permission.ADMIN,),
        description="QIS_ADMINS",
    )


# --- checking a policy ------------------------------------------------------------------------


def principal_problem(principal: str) -> str | None:
    """Why `principal` is not one, or None."""
    if principal == ANYONE:
        return None
    kind, _, name = principal.partition(":")
    if f"{kind}:" not in _PRINCIPAL_KINDS:
        return f"{quoted(principal)} is none of 'user:NAME', 'role:NAME' and '*'"
    if not 0 < len(name) <= MAX_ID_LENGTH or not name.isprintable() or _has_blank(name):
        return (
            f"{quoted(principal)}: a name of 1 to {MAX_ID_LENGTH} printable characters, no blanks"
        )
    return None


def _has_blank(text: str) -> bool:
    return any(c.isspace() for c in text)


def pattern_regex(pattern: str) -> str:
    """The regular expression of a resource pattern (see the module's table); ValueError saying
    why when it is not one."""
    if pattern in (ANYONE, POLICIES_RESOURCE):
        return ".*" if pattern == ANYONE else re.escape(pattern)
    match = _PATTERN.fullmatch(pattern)
    if match is None:
        raise ValueError(
            f"{quoted(pattern)} is none of 'series/GLOB', 'series/GLOB/issues', 'sources/GLOB',"
            f" 'topics/GLOB', '{POLICIES_RESOURCE}' and '*'"
        )
    if match["issues"] and match["kind"] != "series":
        raise ValueError(f"{quoted(pattern)}: only series have an exception queue ('/issues')")
    regex = f"{match['kind']}/{_glob(match['glob'], pattern)}"
    if match["kind"] != "series" or match["issues"]:
        return regex + (match["issues"] or "")
    return regex + "(?:/issues)?"  # a series covers its exception queue


def _glob(glob: str, pattern: str) -> str:
    if not _GLOB.fullmatch(glob):
        raise ValueError(
            f"{quoted(pattern)}: an id pattern is 1 to 128 of letters, digits, '._:-' and the"
            " wildcards '*' (any run) and '?' (one character)"
        )
    return "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in glob)


def policy_violations(policy: AccessPolicy, path: str = "policy") -> list[FieldViolation]:
    """Every reason `policy` cannot be stored, at its field path in the request."""
    v: list[FieldViolation] = []
    _items(policy.principals, f"{path}.principals", v, principal_problem)
    _items(policy.resources, f"{path}.resources", v, _pattern_problem)
    if not policy.permissions:
        v.append(FieldViolation(f"{path}.permissions", "at least one permission is required"))
    if len(policy.conditions) > MAX_POLICY_ITEMS:
        v.append(FieldViolation(f"{path}.conditions", f"at most {MAX_POLICY_ITEMS} conditions"))
    for i, condition in enumerate(policy.conditions[:MAX_POLICY_ITEMS]):
        _condition_violations(condition, f"{path}.conditions[{i}]", v)
    check_length(policy.description, MAX_TEXT_LENGTH, f"{path}.description", v)
    return v


def _items(
    items: Sequence[str],
    path: str,
    v: list[FieldViolation],
    problem: Callable[[str], str | None],
) -> None:
    if not 1 <= len(items) <= MAX_POLICY_ITEMS:
        v.append(FieldViolation(path, f"1 to {MAX_POLICY_ITEMS} are required, got {len(items)}"))
        return
    for i, item in enumerate(items):
        if (why := problem(item)) is not None:
            v.append(FieldViolation(f"{path}[{i}]", why))


def _pattern_problem(pattern: str) -> str | None:
    try:
        pattern_regex(pattern)
    except ValueError as error:
        return str(error)
    return None


def _source_pattern_problem(pattern: str) -> str | None:
    if not pattern.startswith("sources/"):
        return f"{quoted(pattern)} is not a pattern of source names, 'sources/GLOB'"
    return _pattern_problem(pattern)


def _condition_violations(condition: AccessCondition, path: str, v: list[FieldViolation]) -> None:
    if isinstance(condition, TimeWindow):
        path = f"{path}.time_window"
        if any(not 1 <= d <= 7 for d in condition.days) or len(set(condition.days)) != len(
            condition.days
        ):
            v.append(FieldViolation(f"{path}.days", "days of the week, each named once"))
        if not 0 <= condition.start_s < DAY_S:
            v.append(FieldViolation(f"{path}.start_time_of_day", "from 00:00 to 23:59:59"))
        if not 0 <= condition.end_s <= DAY_S:
            v.append(FieldViolation(f"{path}.end_time_of_day", "from 00:00 to 24:00"))
        if condition.time_zone not in known_time_zones():
            v.append(
                FieldViolation(
                    f"{path}.time_zone", f"unknown time zone {quoted(condition.time_zone)}"
                )
            )
    elif isinstance(condition, SourceRestriction):
        _items(condition.sources, f"{path}.source_restriction.sources", v, _source_pattern_problem)


# --- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the authenticated user and the roles (or groups) its credential names."""

    user_id: str
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AccessContext:
    """What conditions are evaluated against."""

    now_us: int
    classification: Classification | None = None
    """Of the series the request is about; None when there is none (yet)."""
    source_id: str | None = None
    """The source an ingestion writes as; None for every other request."""


@dataclass(frozen=True, slots=True)
class Refusal:
    policy_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy_id: str | None = None
    """The policy that allowed it."""
    refusals: tuple[Refusal, ...] = ()
    """When refused: each policy that names the caller and covers the resource, and why it did
    not allow it (none: no policy does)."""
    timed: bool = False
    """A time window took part: the same request may be decided otherwise at another time."""


class _Compiled:
    """A policy made ready for evaluation: its patterns compiled once per policy version."""

    __slots__ = (
        "anyone",
        "conditions",
        "permissions",
        "policy",
        "policy_id",
        "resources",
        "roles",
        "sources",
        "users",
    )

    def __init__(self, policy_id: str, policy: AccessPolicy) -> None:
        self.policy_id = policy_id
        self.policy = policy
        self.anyone = ANYONE in policy.principals
        self.users = frozenset(p[5:] for p in policy.principals if p.startswith("user:"))
        self.roles = frozenset(p[5:] for p in policy.principals if p.startswith("role:"))
        self.resources = _any_of(policy.resources)
        self.permissions = frozenset(policy.permissions)
        self.conditions = policy.conditions
        self.sources = {
            i: _any_of(c.sources)
            for i, c in enumerate(policy.conditions)
            if isinstance(c, SourceRestriction)
        }

    def names(self, caller: Caller) -> bool:
        return (
            self.anyone or caller.user_id in self.users or not self.roles.isdisjoint(caller.roles)
        )

    def refusal(self, index: int, condition: AccessCondition, context: AccessContext) -> str | None:
        if isinstance(condition, TimeWindow):
            if within(condition, context.now_us):
                return None
            return f"allows it only {window_text(condition)}"
        if isinstance(condition, ClassificationLimit):
            level = context.classification
            if level is None or level.rank <= condition.max_level.rank:
                return None
            # Not the series' level: told to the caller, it would say that the series exists
            # (one that does not is decided at the highest level) and how it is classified.
            # The denial's record has the level.
            return f"allows series classified up to {condition.max_level.value} only"
        source = context.source_id
        if source is None or self.sources[index].fullmatch(source_name(source)):
            return None
        allowed = ", ".join(condition.sources)
        return f"allows writing as {allowed} only, not as {source_name(source)}"


def _any_of(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{pattern_regex(p)})" for p in patterns))


def within(window: TimeWindow, now_us: int) -> bool:
    """Whether `now_us` falls in `window`, by the wall clock of its time zone."""
    local = (_EPOCH + timedelta(microseconds=now_us)).astimezone(ZoneInfo(window.time_zone))
    second = local.hour * 3600 + local.minute * 60 + local.second
    day = local.isoweekday()
    days = window.days or range(1, 8)
    if window.start_s < window.end_s:
        return day in days and window.start_s <= second < window.end_s
    # Overnight: from the start on a day it names until the end on the next day.
    return (second >= window.start_s and day in days) or (
        second < window.end_s and (day - 1 or 7) in days
    )


def window_text(window: TimeWindow) -> str:
    days = ",".join(_DAYS[d - 1] for d in sorted(window.days)) or "every day"
    return f"{days} {_clock(window.start_s)}-{_clock(window.end_s)} {window.time_zone}"


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:02}:{minutes:02}" + (f":{seconds:02}" if seconds else "")


class PolicySet:
    """Policies compiled for evaluation, at one version of their stream (-1: none stored)."""

    def __init__(self, policies: Mapping[str, AccessPolicy], version: int = -1) -> None:
        self.version = version
        # By id, so that which policy is credited with an allowance never depends on the order
        # the policies were written in.
        self._compiled = [_Compiled(i, p) for i, p in sorted(policies.items())]
        self.uses_classification = any(
            isinstance(c, ClassificationLimit) for p in policies.values() for c in p.conditions
        )
        """Whether any evaluation needs a series' classification (else it is not looked up)."""

    def evaluate(
        self, caller: Caller, permission: Permission, resource: str, context: AccessContext
    ) -> Decision:
        refusals: list[Refusal] = []
        timed = False
        for policy in self._compiled:
            if not policy.names(caller) or not policy.resources.fullmatch(resource):
                continue
            if permission not in policy.permissions:
                granted = ", ".join(sorted(policy.permissions))
                refusals.append(Refusal(policy.policy_id, f"grants {granted}, not {permission}"))
                continue
            reason = None
            for i, condition in enumerate(policy.conditions):
                timed = timed or isinstance(condition, TimeWindow)
                if (reason := policy.refusal(i, condition, context)) is not None:
                    break
            if reason is None:
                return Decision(True, policy.policy_id, timed=timed)
            refusals.append(Refusal(policy.policy_id, reason))
        return Decision(False, refusals=tuple(refusals), timed=timed)


def evaluate(
    policies: Mapping[str, AccessPolicy],
    caller: Caller,
    permission: Permission,
    resource: str,
    context: AccessContext,
) -> Decision:
    """Whether `policies` let `caller` use `permission` on `resource` in `context`."""
    return PolicySet(policies).evaluate(caller, permission, resource, context)


# --- the aggregate ----------------------------------------------------------------------------


class AccessPolicies(RemembersCommands):
    """Every access policy of the deployment, by id, with its revision (1 when added, +1 per
    change; a policy removed and added again continues after its last revision, so that a client
    holding an old revision cannot mistake the new policy for the one it read)."""

    def __init__(self) -> None:
        self.version: int | None = None
        # Replaced by apply, never changed in place: a clone may share them.
        self.policies: Mapping[str, AccessPolicy] = {}
        self.revisions: Mapping[str, int] = {}
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return POLICIES_STREAM

    @property
    def size(self) -> int:
        return super().size + len(self.policies)

    def set_policy(
        self, policy_id: str, policy: AccessPolicy, reason: str, expected_revision: int = 0
    ) -> list[DomainEvent]:
        """Adds or replaces the policy `policy_id`; `expected_revision` (0: no check) is the
        revision the change was made from."""
        validate_id(policy_id, "policy.name")
        violations = policy_violations(policy)
        check_reason(reason, violations)
        if violations:
            raise InvalidArgument(violations)
        self._check_revision(policy_id, expected_revision)
        current = self.policies.get(policy_id)
        if current == policy:
            return []
        revision = self.revisions.get(policy_id, 0) + 1
        kind = AccessPolicyAdded if current is None else AccessPolicyChanged
        return [kind(policy_id=policy_id, policy=policy, revision=revision, reason=reason)]

    def remove_policy(
        self, policy_id: str, reason: str, expected_revision: int = 0
    ) -> list[DomainEvent]:
        if policy_id not in self.policies:
            raise NotFound(policy_resource(policy_id), "name")
        violations: list[FieldViolation] = []
        check_reason(reason, violations)
        if violations:
            raise InvalidArgument(violations)
        self._check_revision(policy_id, expected_revision)
        revision = self.revisions[policy_id]
        return [AccessPolicyRemoved(policy_id=policy_id, revision=revision, reason=reason)]

    def _check_revision(self, policy_id: str, expected: int) -> None:
        current = self.revisions.get(policy_id, 0) if policy_id in self.policies else 0
        if expected not in (0, current):
            held = f"at revision {current}" if current else "not set"
            raise Aborted(
                f"{policy_name(policy_id)} is {held}, not at revision {expected}: read it again"
                " and reapply the change",
                REVISION_MISMATCH,
            )

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, AccessPolicyAdded | AccessPolicyChanged):
            self.policies = {**self.policies, event.policy_id: event.policy}
            self.revisions = {**self.revisions, event.policy_id: event.revision}
        elif isinstance(event, AccessPolicyRemoved):
            self.policies = {k: p for k, p in self.policies.items() if k != event.policy_id}
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)


def check_reason(reason: str, violations: list[FieldViolation]) -> None:
    """A change of access says why, for the audit trail."""
    if not reason.strip():
        violations.append(FieldViolation("reason", "a change of access needs a reason"))
    check_length(reason, MAX_TEXT_LENGTH, "reason", violations)


class DenialRecord(RemembersCommands):
    """The record of one denial recorded on another service's behalf (the query service's):
    a stream of its own, `access/denials/{id}`, written once."""

    def __init__(self, denial_id: str) -> None:
        self.denial_id = denial_id
        self.version: int | None = None
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return denial_stream(self.denial_id)

    def record(self, denial: AccessDenied) -> list[DomainEvent]:
        """The denial, unless its stream holds one already (written by the refusing side under
        the same id)."""
        return [] if self.version is not None else [denial]

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)
