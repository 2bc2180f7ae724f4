"""Access control in the read models: the policies as the query service evaluates them (one
entry per policy, at its latest change, a deleted one kept as such), every change of a policy
and every denial as an audit entry, and a denial as one of the series or source it was about, so
that the audit trail of a series or a source shows who was refused what on it."""

from __future__ import annotations

import asyncio

from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import AccessPolicyEntry, AuditEntry, AuditScope
from qis_domain.access import POLICIES_STREAM, denial_stream
from qis_domain.definitions import AccessPolicy, Permission
from qis_domain.events import (
    AccessDenied,
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    PolicyRefusal,
)
from qis_projector.application.projector import Projector

from tests.service.projector.projector_support import append

READERS = AccessPolicy(
    principals=("role:reader",), resources=("*",), permissions=(Permission.READ,)
)


def denied(resource: str, user: str = "tester") -> AccessDenied:
    """A denial by the command service: of the caller its metadata names (as `append` writes)."""
    return AccessDenied(
        user_id=user,
        roles=["reader"],
        method="PublishPoints",
        permission="publish",
        resource=resource,
        refusals=[PolicyRefusal(policy_id="readers", reason="grants read, not publish")],
        policy_version=0,
        peer="ipv4:127.0.0.1:5000",
        denied_us=7,
    )


async def projected(events: InMemoryEventStore, until: int) -> InMemoryReadStore:
    writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await asyncio.wait_for(Projector(events, writer).run(until_position=until), 10)
    return writer


def about(entries: list[AuditEntry]) -> list[tuple[str, str, str, str, str]]:
    return [(e.action, e.user_id, e.series_id, e.source_id, e.resource) for e in entries]


async def test_policy_changes_are_audit_entries_of_the_policy() -> None:
    events = InMemoryEventStore()
    wider = READERS.model_copy(update={"permissions": (Permission.READ, Permission.WRITE)})
    await append(
        events,
        POLICIES_STREAM,
        AccessPolicyAdded(policy_id="readers", policy=READERS, revision=1, reason="desk"),
    )
    await append(
        events,
        POLICIES_STREAM,
        AccessPolicyChanged(policy_id="readers", policy=wider, revision=2, reason="more"),
    )
    last = await append(
        events,
        POLICIES_STREAM,
        AccessPolicyRemoved(policy_id="readers", revision=2, reason="gone"),
    )
    store = await projected(events, last)
    entries = await store.audit_trail(AuditScope(), None, 10)
    name = "accessPolicies/readers"
    assert about(entries) == [
        ("AccessPolicyAdded", "tester", "", "", name),
        ("AccessPolicyChanged", "tester", "", "", name),
        ("AccessPolicyRemoved", "tester", "", "", name),
    ]
    added, changed, removed = (e.details for e in entries)
    assert added == {
        "policy_id": "readers",
        "revision": 1,
        "reason": "desk",
        "policy": READERS.model_dump(mode="json"),
    }
    assert changed["policy"]["permissions"] == ["read", "write"]
    assert removed == {"policy_id": "readers", "revision": 2, "reason": "gone"}


async def test_a_denial_is_an_entry_of_the_series_or_source_it_was_about() -> None:
    events = InMemoryEventStore()
    resources = ["series/SPX", "series/SPX/issues", "sources/bbg", "accessPolicies", "*"]
    last = 0
    for i, resource in enumerate(resources):
        last = await append(events, denial_stream(f"d{i}"), denied(resource))
    store = await projected(events, last)
    everything = await store.audit_trail(AuditScope(), None, 10)
    assert about(everything) == [
        ("AccessDenied", "tester", "SPX", "", ""),
        ("AccessDenied", "tester", "SPX", "", ""),
        ("AccessDenied", "tester", "", "bbg", ""),
        ("AccessDenied", "tester", "", "", "accessPolicies"),
        ("AccessDenied", "tester", "", "", "*"),
    ]
    assert about(await store.audit_trail(AuditScope(series_id="SPX"), None, 10)) == about(
        everything[:2]
    )
    assert about(await store.audit_trail(AuditScope(source_id="bbg"), None, 10)) == about(
        everything[2:3]
    )
    assert everything[1].details == {
        "method": "PublishPoints",
        "permission": "publish",
        "resource": "series/SPX/issues",
        "source_id": "",
        "classification": "",
        "roles": ["reader"],
        "refusals": [{"policy_id": "readers", "reason": "grants read, not publish"}],
        "policy_version": 0,
        "peer": "ipv4:127.0.0.1:5000",
        "denied_us": 7,
    }


async def test_a_denial_recorded_by_another_service_is_the_denied_callers() -> None:
    """The query service records its refusals through the command service, as itself: the
    entry is the refused caller's, and says who recorded it ("tester" wrote the events)."""
    events = InMemoryEventStore()
    last = await append(events, denial_stream("q1"), denied("series/SPX", user="mallory"))
    [entry] = await (await projected(events, last)).audit_trail(AuditScope(), None, 10)
    assert entry.user_id == "mallory"
    assert entry.details["recorded_by"] == "tester"


async def test_the_policies_read_model_follows_their_stream() -> None:
    events = InMemoryEventStore()
    ops = READERS.model_copy(update={"resources": ("series/EQ.*",)})
    changes = [
        AccessPolicyAdded(policy_id="readers", policy=READERS, revision=1, reason="desk"),
        AccessPolicyAdded(policy_id="ops", policy=ops, revision=1, reason="ops"),
        AccessPolicyRemoved(policy_id="readers", revision=1, reason="gone"),
        AccessPolicyAdded(policy_id="readers", policy=ops, revision=2, reason="back"),
        AccessPolicyRemoved(policy_id="ops", revision=1, reason="gone"),
    ]
    at = [await append(events, POLICIES_STREAM, change) for change in changes]

    def entries(found: list[AccessPolicyEntry]) -> list[tuple[object, ...]]:
        return [(e.policy_id, e.revision, e.stream_version, e.position, e.policy) for e in found]

    ops_doc = ops.model_dump(mode="json")
    store = await projected(events, at[-1])
    # A deleted policy keeps its entry (so that a replay cannot revive it); one deleted and set
    # again continues; the stream's version moves with every change.
    assert entries(await store.access_policies()) == [
        ("ops", 1, 4, at[4], None),
        ("readers", 2, 3, at[3], ops_doc),
    ]
