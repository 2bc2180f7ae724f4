"""Which authorisation a process enforces, from QIS_AUTHZ, QIS_ADMINS and QIS_SERVICE_PRINCIPALS
(docs/security.md), and what both services do alike when they enforce it: decide (with a cache
of decisions per version of the policies), and describe a refusal (its AccessDenied record, the
PERMISSION_DENIED the caller gets).

Authentication (qis_runtime.auth) says who the caller is; this says whether the access policies
(qis_domain.access) decide what it may do, and who holds `admin` regardless of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from qis_domain.access import (
    ACCESS_DENIED,
    ANYONE,
    AccessContext,
    Caller,
    Decision,
    PolicySet,
    principal_problem,
)
from qis_domain.definitions import Permission
from qis_domain.errors import PermissionDenied
from qis_domain.events import AccessDenied, PolicyRefusal

from qis_runtime.auth import ConfigurationError, modes_of
from qis_runtime.identity import Identity
from qis_runtime.settings import CommonSettings

OPEN = "open"
POLICIES = "policies"
MAX_MESSAGE_CHARS = 1_024
"""A refusal's message travels in trailing metadata (8 KiB by default): the record has it all."""


@dataclass(frozen=True, slots=True)
class Authorization:
    enforced: bool
    """The policies decide (deny by default); else every authenticated caller may do
    everything."""
    admins: tuple[str, ...]
    """Principals holding `admin` on everything, whatever the policies say."""
    services: tuple[str, ...] = ()
    """Principals of the services that may record their own denials through the command service
    (QIS_SERVICE_PRINCIPALS: the query service's identity)."""

    @property
    def summary(self) -> str:
        """One line for the start-up log."""
        if not self.enforced:
            return "open (access policies not enforced: every caller may do everything)"
        admins = ", ".join(self.admins) or "none"
        return f"access policies enforced (deny by default); QIS_ADMINS: {admins}"


def authorization(settings: CommonSettings) -> Authorization:
    """The authorisation the settings describe, or a ConfigurationError naming the variable."""
    mode = settings.authz.strip().lower()
    if not mode:
        # Policies over identities anyone can claim would only look like protection.
        mode = OPEN if modes_of(settings.auth) == {"dev"} else POLICIES
    if mode not in (OPEN, POLICIES):
        raise ConfigurationError(f"QIS_AUTHZ={settings.authz!r}: {OPEN} or {POLICIES}")
    return Authorization(
        mode == POLICIES,
        principals_of(settings.admins, "QIS_ADMINS"),
        principals_of(settings.service_principals, "QIS_SERVICE_PRINCIPALS"),
    )


def principals_of(setting: str, variable: str) -> tuple[str, ...]:
    """The principals a comma-separated setting names; a bare name is a user."""
    principals = []
    for item in (part.strip() for part in setting.split(",")):
        if not item:
            continue
        if item == ANYONE:
            # That would grant every caller what the setting grants: QIS_AUTHZ=open says so
            # plainly.
            raise ConfigurationError(f"{variable}: '*' would name every caller")
        principal = item if item.startswith(("user:", "role:")) else f"user:{item}"
        if (problem := principal_problem(principal)) is not None:
            raise ConfigurationError(f"{variable}: {problem}")
        principals.append(principal)
    return tuple(principals)


def caller_of(identity: Identity) -> Caller:
    return Caller(identity.user_id, frozenset(identity.roles))


def names(principals: Sequence[str], caller: Caller) -> bool:
    """Whether one of `principals` ("user:NAME", "role:NAME") is `caller`."""
    return f"user:{caller.user_id}" in principals or any(
        f"role:{role}" in principals for role in caller.roles
    )


class Decisions:
    """Decisions of one process, kept while the policies' version stays (least recently used
    first out). A decision that depended on the time (a time window) holds for its `now` only
    and is not kept."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[object, ...], Decision] = OrderedDict()
        self.evaluations = 0
        """Observable: what the cache saves, in tests and metrics."""

    def decide(
        self,
        policies: PolicySet,
        caller: Caller,
        permission: Permission,
        resource: str,
        context: AccessContext,
    ) -> Decision:
        key = (
            policies.version,
            caller,
            permission,
            resource,
            context.classification,
            context.source_id,
        )
        if (kept := self._kept.get(key)) is not None:
            self._kept.move_to_end(key)
            return kept
        self.evaluations += 1
        decision = policies.evaluate(caller, permission, resource, context)
        if not decision.timed:
            self._kept[key] = decision
            if len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return decision

    def clear(self) -> None:
        """For a new version of the policies: what was decided on the old one no longer
        holds."""
        self._kept.clear()


@dataclass(frozen=True, slots=True)
class Refused:
    """What was refused: `permission` on `resource` in `context`, to `caller`, by `decision`
    at `policy_version`, in a call of `method` from `peer`."""

    caller: Caller
    method: str
    peer: str
    permission: Permission
    resource: str
    context: AccessContext
    decision: Decision
    policy_version: int

    def record(self) -> AccessDenied:
        """The denial's record: an AccessDenied event."""
        level = self.context.classification
        return AccessDenied(
            user_id=self.caller.user_id,
            roles=sorted(self.caller.roles),
            method=self.method,
            permission=self.permission.value,
            resource=self.resource,
            source_id=self.context.source_id or "",
            classification="" if level is None else level.value,
            refusals=[
                PolicyRefusal(policy_id=r.policy_id, reason=r.reason)
                for r in self.decision.refusals
            ],
            policy_version=self.policy_version,
            peer=self.peer,
            denied_us=self.context.now_us,
        )

    def error(self, denial_id: str) -> PermissionDenied:
        """The refusal the caller gets: PERMISSION_DENIED (ACCESS_DENIED) naming the
        permission, the resource, why each policy that names the caller did not allow it, and
        the denial's id (to quote to an administrator)."""
        why = "; ".join(f"policy {r.policy_id!r} {r.reason}" for r in self.decision.refusals)
        message = (
            f"{self.caller.user_id!r} may not {self.permission} {self.resource}"
            f" (denial {denial_id}): {why or 'no access policy grants it'}"
        )
        return PermissionDenied(message[:MAX_MESSAGE_CHARS], ACCESS_DENIED)
