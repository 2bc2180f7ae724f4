"""PolicyAccess, the check every command passes before it is handled with QIS_AUTHZ=policies:
deny by default with a recorded denial, QIS_ADMINS, conditions on the series' classification
and on the time (the command's own clock), and a decision cache that a policy change, made by
any instance, invalidates at the next command."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

import pytest
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import AppendResult, EventStoreUnavailable, StreamAppend
from qis_command.application.access import Call, PolicyAccess
from qis_command.application.commands import (
    DefineSeries,
    DeleteAccessPolicy,
    EvolveSeries,
    IngestPoints,
    PublishPoints,
    SetAccessPolicy,
)
from qis_domain.access import Caller
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    AccessPolicy,
    Classification,
    ClassificationLimit,
    Permission,
    TimeWindow,
    Update,
    ValidationRules,
)
from qis_domain.errors import PermissionDenied
from qis_domain.events import AccessDenied, PolicyRefusal
from qis_domain.snaps import Snap
from qis_domain.values import Price

from tests.service.command.command_support import NOW_US, App, daily_series, new_app

WENDY = Caller("wendy", frozenset({"writer"}))
ADA = Caller("ada", frozenset({"admin"}))
ROOT = Caller("root")
CALL = Call("IngestPoints", "ipv4:10.1.2.3:4567")
INGEST = IngestPoints("SPX", "a", [(Snap(NOW_US), Price(Decimal(1), ""))])
HOUR_US = 3_600_000_000


def policy(role: str, *permissions: Permission, **kw: object) -> AccessPolicy:
    return AccessPolicy.model_validate(
        {"principals": (f"role:{role}",), "resources": ("*",), "permissions": permissions, **kw}
    )


async def allowed(
    access: PolicyAccess, command: object, caller: Caller, ctx: CommandContext
) -> bool:
    try:
        await access.check(command, caller, ctx, CALL)
    except PermissionDenied:
        return False
    return True


async def with_policies(app: App, **policies: AccessPolicy) -> None:
    for name, p in policies.items():
        await app.handlers.set_policy(SetAccessPolicy(name, p, "test"), app.ctx(user="root"))


async def test_a_denial_is_recorded_with_why_and_nothing_else_is_stored() -> None:
    app = new_app()
    await with_policies(app, readers=policy("writer", Permission.READ))
    access = PolicyAccess(app.store, new_id=lambda: "d-1")
    head = await app.store.head_position()
    with pytest.raises(PermissionDenied) as refused:
        await access.check(INGEST, WENDY, CommandContext("cmd-9", "wendy", NOW_US), CALL)
    assert refused.value.reason == "ACCESS_DENIED"
    assert str(refused.value) == (
        "'wendy' may not write series/SPX (denial d-1): policy 'readers' grants read, not write"
    )
    [record] = await app.store.read_stream("access/denials/d-1")
    assert record.position == head + 1 == await app.store.head_position()
    decoded = EventCodec().decode(record)
    assert (decoded.metadata.command_id, decoded.metadata.user_id) == ("cmd-9", "wendy")
    assert decoded.event == AccessDenied(
        user_id="wendy",
        roles=["writer"],
        method="IngestPoints",
        permission="write",
        resource="series/SPX",
        source_id="a",
        refusals=[PolicyRefusal(policy_id="readers", reason="grants read, not write")],
        policy_version=0,
        peer="ipv4:10.1.2.3:4567",
        denied_us=NOW_US,
    )


async def test_qis_admins_hold_admin_only_and_without_any_policy() -> None:
    app = new_app()
    access = PolicyAccess(app.store, admins=("user:root",))
    set_policy = SetAccessPolicy("ops", policy("ops", Permission.READ), "first")
    assert await allowed(access, set_policy, ROOT, app.ctx())
    assert not await allowed(access, INGEST, ROOT, app.ctx())
    assert not await allowed(access, set_policy, ADA, app.ctx())


async def test_a_policy_change_by_any_instance_is_in_force_at_the_next_check() -> None:
    app = new_app()  # its handlers stand for another instance of qis-command
    await with_policies(app, writers=policy("writer", Permission.WRITE))
    access = PolicyAccess(app.store)
    for _ in range(3):
        assert await allowed(access, INGEST, WENDY, app.ctx())
    assert access.evaluations == 1  # the same question at the same version: asked once
    await app.handlers.delete_policy(DeleteAccessPolicy("writers", "off"), app.ctx(user="root"))
    assert not await allowed(access, INGEST, WENDY, app.ctx())
    assert access.evaluations == 2


async def test_a_time_window_is_decided_on_the_commands_clock_and_never_cached() -> None:
    app = new_app()
    # NOW_US is 2026-01-01T00:00Z, a Thursday: 01:00-02:00 in Tokyo is 16:00-17:00 UTC the day before.
    window = TimeWindow(start_s=3600, end_s=7200, time_zone="Asia/Tokyo")
    await with_policies(app, nightly=policy("writer", Permission.WRITE, conditions=(window,)))
    access = PolicyAccess(app.store)
    at = NOW_US - 8 * HOUR_US + HOUR_US // 2  # 16:30 UTC, 01:30 in Tokyo
    assert await allowed(access, INGEST, WENDY, CommandContext("c1", "wendy", at))
    assert not await allowed(access, INGEST, WENDY, CommandContext("c2", "wendy", at + HOUR_US))
    assert await allowed(access, INGEST, WENDY, CommandContext("c3", "wendy", at))
    assert access.evaluations == 3


async def test_the_classification_of_the_series_and_the_one_a_command_gives_it() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=ValidationRules()))  # INTERNAL by default
    limit = (ClassificationLimit(max_level=Classification.CONFIDENTIAL),)
    await with_policies(
        app,
        publishers=policy("publisher", Permission.PUBLISH, conditions=limit),
        admins=policy("admin", Permission.ADMIN, conditions=limit),
    )
    ids = iter(range(100))
    access = PolicyAccess(app.store, new_id=lambda: f"d{next(ids)}")
    pat = Caller("pat", frozenset({"publisher"}))
    publish = PublishPoints("SPX", [Snap(NOW_US)], "")
    assert await allowed(access, publish, pat, app.ctx())

    def evolve(level: Classification) -> EvolveSeries:
        return EvolveSeries("SPX", Update(values={"classification": level}), "reclassified")

    # Above the admin's limit: it may not classify a series so, nor define one so.
    assert not await allowed(access, evolve(Classification.RESTRICTED), ADA, app.ctx())
    assert app.definition is not None
    restricted = app.definition.model_copy(update={"classification": Classification.RESTRICTED})
    assert not await allowed(access, DefineSeries("NEW", restricted), ADA, app.ctx())
    # ...which someone else did: the series is now beyond both policies.
    await app.handlers.evolve_series(evolve(Classification.RESTRICTED), app.ctx(user="root"))
    assert not await allowed(access, publish, pat, app.ctx())
    assert not await allowed(access, evolve(Classification.PUBLIC), ADA, app.ctx())
    [record] = await app.store.read_stream("access/denials/d2")
    denial = EventCodec().decode(record).event
    assert isinstance(denial, AccessDenied)
    assert (denial.user_id, denial.classification) == ("pat", "restricted")
    assert denial.refusals[0].reason == "allows series classified up to confidential only"


class UnavailableForDenials(InMemoryEventStore):
    async def append(self, appends: Sequence[StreamAppend]) -> AppendResult:
        if any(a.stream.startswith("access/denials/") for a in appends):
            raise EventStoreUnavailable("database is locked")
        return await super().append(appends)


async def test_a_denial_the_store_cannot_take_is_logged_and_the_refusal_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App.on(UnavailableForDenials(clock=lambda: NOW_US))
    access = PolicyAccess(app.store, new_id=lambda: "d-2")
    with caplog.at_level(logging.ERROR), pytest.raises(PermissionDenied):
        await access.check(INGEST, WENDY, app.ctx(), CALL)
    [line] = [r for r in caplog.records if "d-2" in r.getMessage()]
    assert '"resource":"series/SPX"' in line.getMessage()
