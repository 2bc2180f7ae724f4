"""Events of access control: changes of the AccessPolicies aggregate (one stream,
`access/policies`) and the record of every refused command (one stream per denial, under
`access/denials/`). Audit entries are these events."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from qis_domain.definitions import AccessPolicy
from qis_domain.events.base import DomainEvent


class AccessPolicyAdded(DomainEvent):
    event_type: ClassVar[str] = "AccessPolicyAdded"
    policy_id: str
    policy: AccessPolicy
    revision: int  # 1, or the revision after the one a removed policy of that id had
    reason: str


class AccessPolicyChanged(DomainEvent):
    event_type: ClassVar[str] = "AccessPolicyChanged"
    policy_id: str
    policy: AccessPolicy
    revision: int
    reason: str


class AccessPolicyRemoved(DomainEvent):
    event_type: ClassVar[str] = "AccessPolicyRemoved"
    policy_id: str
    revision: int  # the revision removed; a policy added again with that id continues after it
    reason: str


class PolicyRefusal(BaseModel):
    """A policy that names the caller and the resource, and why it did not allow the command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_id: str
    reason: str


class AccessDenied(DomainEvent):
    """A command refused by the access policies: nothing of it was stored but this. The
    metadata carry the command id and the caller, as for any event."""

    event_type: ClassVar[str] = "AccessDenied"
    user_id: str
    roles: list[str]
    method: str  # the RPC, e.g. "PublishPoints"
    permission: str
    resource: str  # e.g. "series/SPX", "series/SPX/issues", "sources/bbg", "accessPolicies"
    source_id: str = ""  # the source an ingestion wrote as
    classification: str = ""  # the series' classification, when a policy asked for it
    refusals: list[PolicyRefusal]  # empty: no policy names the caller and the resource
    policy_version: int  # of the access/policies stream decided on; -1: no policy yet
    peer: str  # the caller's address as gRPC saw it
    denied_us: int  # the service's clock when it refused
