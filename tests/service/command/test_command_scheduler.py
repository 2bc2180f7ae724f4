"""The scheduler (time-driven process manager) through the command application on the
in-memory store, with an injected clock: cut-offs publish once, however many schedulers fire."""

from __future__ import annotations

from datetime import date

from qis_adapters.eventstore.codec import EventCodec
from qis_command.application.scheduler import Scheduler
from qis_domain.definitions import PublicationPolicy, ValidationRules

from tests.service.command.command_support import (
    App,
    close,
    daily_series,
    new_app,
    official_versions,
)

DAY = date(2024, 3, 1)
CUTOFF_S = 3600


async def observed_by(scheduler: Scheduler, app: App) -> None:
    """What the scheduler would have seen of the log so far."""
    codec = EventCodec()
    head = await app.store.head_position()
    async for record in app.store.subscribe(None, None):
        scheduler.observe(codec.decode(record).event)
        if record.position >= head:
            break


async def test_a_cutoff_publishes_with_what_arrived_once_whatever_fires_it() -> None:
    app = new_app()
    definition = daily_series("a", "b", rules=ValidationRules()).model_copy(
        update={"publication": PublicationPolicy(min_sources=2, cutoff_seconds=CUTOFF_S)}
    )
    await app.define(definition)
    await app.ingest("a", [(DAY, "100")])  # one of two sources: waits for the cut-off
    snap_us = close(DAY).utc_us
    assert snap_us not in official_versions(await app.events([DAY]))
    now = [snap_us + 60 * 1_000_000]
    # two command processes: two schedulers, each with its own handlers and aggregate cache
    schedulers = [
        Scheduler(app.store, App.on(app.store).handlers, lambda: now[0]) for _ in range(2)
    ]
    for scheduler in schedulers:
        await observed_by(scheduler, app)
    await schedulers[0].fire_due()  # before the cut-off: nothing
    assert snap_us not in official_versions(await app.events([DAY]))
    now[0] = snap_us + CUTOFF_S * 1_000_000
    await schedulers[0].fire_due()
    head = await app.store.head_position()
    await schedulers[1].fire_due()  # the same due work, the same command id
    assert await app.store.head_position() == head  # nothing twice
    [(version, value, _)] = official_versions(await app.events([DAY]))[snap_us]
    assert (version, value) == (1, "100")
    assert schedulers[0].fired == schedulers[1].fired == 1
