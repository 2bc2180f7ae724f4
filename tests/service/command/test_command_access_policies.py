"""The admin commands on access policies through the command handlers: event-sourced in one
stream with revisions, idempotent by command id, optimistic on the expected revision, and safe
against a writer that slips in between a load and an append."""

from __future__ import annotations

import pytest
from qis_adapters.eventstore.codec import EventCodec
from qis_command.application.commands import DeleteAccessPolicy, SetAccessPolicy
from qis_domain.access import POLICIES_STREAM, REVISION_MISMATCH
from qis_domain.command_log import COMMAND_REUSED
from qis_domain.definitions import AccessPolicy, Permission
from qis_domain.errors import Aborted, AlreadyExists, NotFound
from qis_domain.events import (
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    DomainEvent,
)

from tests.service.command.command_support import App, new_app
from tests.service.command.test_command_lost_update import InterleavingStore

READ = AccessPolicy(
    principals=("role:ops",), resources=("series/*",), permissions=(Permission.READ,)
)
WRITE = READ.model_copy(update={"permissions": (Permission.WRITE,)})


async def policy_events(app: App) -> list[DomainEvent]:
    codec = EventCodec()
    return [codec.decode(r).event for r in await app.store.read_stream(POLICIES_STREAM)]


async def test_set_change_and_delete_are_events_of_one_stream_with_revisions() -> None:
    app = new_app()
    await app.handlers.set_policy(SetAccessPolicy("ops", READ, "new desk"), app.ctx())
    await app.handlers.set_policy(SetAccessPolicy("ops", WRITE, "now writes", 1), app.ctx())
    unchanged = await app.handlers.set_policy(SetAccessPolicy("ops", WRITE, "again"), app.ctx())
    await app.handlers.delete_policy(DeleteAccessPolicy("ops", "desk closed", 2), app.ctx())
    assert await policy_events(app) == [
        AccessPolicyAdded(policy_id="ops", policy=READ, revision=1, reason="new desk"),
        AccessPolicyChanged(policy_id="ops", policy=WRITE, revision=2, reason="now writes"),
        AccessPolicyRemoved(policy_id="ops", revision=2, reason="desk closed"),
    ]
    assert not unchanged.duplicate  # a new command that changed nothing: recorded, no event


async def test_a_repeated_command_id_is_answered_with_its_first_outcome() -> None:
    app = new_app()
    first = await app.handlers.set_policy(SetAccessPolicy("ops", READ, "r"), app.ctx("c-1"))
    # Another instance (or this one after a restart): nothing of the policies in memory.
    cold = App.on(app.store)
    again = await cold.handlers.set_policy(SetAccessPolicy("ops", READ, "r"), cold.ctx("c-1"))
    assert again.duplicate
    assert again.outcome == first.outcome
    with pytest.raises(AlreadyExists) as reused:
        await cold.handlers.set_policy(SetAccessPolicy("ops", WRITE, "r"), cold.ctx("c-1"))
    assert reused.value.reason == COMMAND_REUSED
    # The repeat read its outcome from the policies' stream, as the policies: they still work.
    await cold.handlers.set_policy(SetAccessPolicy("ops", WRITE, "r", 1), cold.ctx("c-2"))
    assert len(await policy_events(app)) == 2


async def test_a_stale_revision_or_a_missing_policy_changes_nothing() -> None:
    app = new_app()
    await app.handlers.set_policy(SetAccessPolicy("ops", READ, "r"), app.ctx())
    await app.handlers.set_policy(SetAccessPolicy("ops", WRITE, "r"), app.ctx())
    head = await app.store.head_position()
    with pytest.raises(Aborted) as stale:
        await app.handlers.set_policy(SetAccessPolicy("ops", READ, "undo", 1), app.ctx())
    assert stale.value.reason == REVISION_MISMATCH
    with pytest.raises(Aborted):
        await app.handlers.delete_policy(DeleteAccessPolicy("ops", "gone", 1), app.ctx())
    with pytest.raises(NotFound):
        await app.handlers.delete_policy(DeleteAccessPolicy("other", "gone"), app.ctx())
    assert await app.store.head_position() == head


async def test_a_policy_set_between_the_load_and_the_append_is_kept() -> None:
    """One stream holds every policy: a change of another policy that lands in between is a
    conflict, retried on the new state, never an overwrite."""
    at = 0
    conflicts = 0
    while True:
        at += 1
        store = InterleavingStore()
        app = App.on(store)

        async def other(app: App = app) -> None:
            await app.handlers.set_policy(SetAccessPolicy("other", WRITE, "r"), app.ctx("other"))

        store.other, store.at, store.calls = other, at, 0
        await app.handlers.set_policy(SetAccessPolicy("mine", READ, "r"), app.ctx("mine"))
        if store.other is not None:
            break  # every interleaving was tried
        added = {e.policy_id for e in await policy_events(app) if isinstance(e, AccessPolicyAdded)}
        assert added == {"mine", "other"}, at
        conflicts += app.handlers.conflicts_retried
    assert conflicts > 0
