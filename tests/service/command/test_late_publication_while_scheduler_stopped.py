"""Publication lateness judged after a scheduler outage, through the command application: a
point first published after its deadline while the scheduler is stopped raises one
late_publication when the scheduler comes back from its checkpoint (evidence: the deadline and
when it was published), a point published by its deadline none, a backfill older than the
service level none, and further restarts add nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_command.application.commands import EvolveSeries, IngestPoints
from qis_command.application.scheduler import Scheduler
from qis_domain.definitions import Update
from qis_domain.service_levels import Deadline, ServiceLevel
from qis_domain.values import Price

from tests.service.command.command_support import close
from tests.service.command.test_late_arrival_while_scheduler_stopped import send
from tests.service.command.test_lateness_scheduler import (
    CLOSE_S,
    Clocked,
    at,
    late,
    sessions,
    with_level,
)

BY_20 = ServiceLevel(first_snap_s=CLOSE_S, publication=Deadline(local_time_s=20 * 3600))


async def catch_up(store: InMemoryEventStore, scheduler: Scheduler) -> None:
    """What the scheduler's subscription delivers after the position it resumes from."""
    head = await store.head_position()
    if head <= scheduler.position:
        return
    async for record in store.subscribe(scheduler.position or None, None):
        scheduler.observe_record(record)
        if record.position >= head:
            break


async def restart(clocked: Clocked) -> Scheduler:
    scheduler = clocked.scheduler()
    await scheduler.load_checkpoint()
    await catch_up(clocked.store, scheduler)
    await scheduler.fire_due()
    await scheduler.save_checkpoint()
    return scheduler


async def test_a_point_published_late_while_the_scheduler_is_stopped_is_late() -> None:
    monday, tuesday, wednesday, thursday = (date(2024, 6, d) for d in (3, 4, 5, 6))
    clocked = Clocked(at(date(2024, 5, 31), 9))
    await clocked.define(with_level(None))
    clocked.now[0] = at(monday, 9)
    evolve = EvolveSeries("SPX", Update(values={"service_level": BY_20}), "SLA signed")
    await clocked.app.handlers.evolve_series(evolve, clocked.ctx("level"))
    # The scheduler runs until Monday noon, before any deadline, checkpoints and stops.
    clocked.now[0] = at(monday, 12)
    await restart(clocked)
    # a backfill of May, published long after its deadlines but older than the level
    clocked.now[0] = at(monday, 13)
    await send(clocked, "a", sessions(date(2024, 5, 1), date(2024, 5, 31)), "backfill")
    clocked.now[0] = at(monday, 19)  # on time
    await send(clocked, "a", [monday], "mon")
    clocked.now[0] = at(wednesday, 10)  # Tuesday's point, 14 hours after its deadline
    await send(clocked, "a", [tuesday], "tue")
    clocked.now[0] = at(wednesday, 20)  # at its deadline: on time
    await send(clocked, "a", [wednesday], "wed")
    # Monday's point restated on Wednesday: a restatement is no publication
    correction = IngestPoints("SPX", "a", [(close(monday), Price(Decimal(101), ""))])
    assert (await clocked.app.handlers.ingest(correction, clocked.ctx("mon-2"))).outcome.published
    clocked.now[0] = at(thursday, 19)  # before Thursday's deadline
    await send(clocked, "a", [thursday], "thu")
    assert late(await clocked.issues(), "late_publication") == []
    # The scheduler comes back on Friday noon, from its checkpoint.
    clocked.now[0] = at(date(2024, 6, 7), 12)
    await restart(clocked)
    found = [i for i in await clocked.issues() if i.rule == "late_publication"]
    assert late(found, "late_publication") == [tuesday]
    assert found[0].evidence == {
        "source_id": "",
        "deadline_us": at(tuesday, 20),
        "published_at_us": at(wednesday, 10),
    }
    before = await clocked.issues()
    for _ in range(2):  # restarts add nothing, from the checkpoint or from the start
        await restart(clocked)
        scheduler = clocked.scheduler()
        await clocked.observe(scheduler)
        await scheduler.fire_due()
    assert await clocked.issues() == before


async def test_a_point_missing_at_the_deadline_then_published_is_late_once() -> None:
    monday, tuesday = date(2024, 6, 3), date(2024, 6, 4)
    clocked = Clocked(at(monday, 9))
    await clocked.define(with_level(BY_20))
    scheduler = clocked.scheduler()
    await clocked.observe(scheduler)
    clocked.now[0] = at(monday, 21)  # the scheduler checks after the deadline: missing
    await scheduler.fire_due()
    clocked.now[0] = at(tuesday, 10)  # published late, then checked again after a restart
    await send(clocked, "a", [monday], "mon")
    restarted = clocked.scheduler()
    await clocked.observe(restarted)
    await restarted.fire_due()
    found = [i for i in await clocked.issues() if i.rule == "late_publication"]
    assert [i.evidence for i in found] == [
        {"source_id": "", "deadline_us": at(monday, 20), "checked_at_us": at(monday, 21)}
    ]
