"""Lateness judged when a value arrives, through the command application with the scheduler
stopped: a value that comes after its deadline raises late_arrival, one on time does not, a
backfill of history older than the service level does not, and a scheduler started afterwards
adds nothing for the values that came (only for those still missing)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from qis_command.application.commands import EvolveSeries, IngestPoints
from qis_domain.definitions import Update
from qis_domain.values import Price

from tests.service.command.command_support import App, close
from tests.service.command.test_lateness_scheduler import (
    LEVEL,
    Clocked,
    at,
    late,
    sessions,
    with_level,
)


async def send(clocked: Clocked, source: str, days: list[date], key: str) -> None:
    points = [(close(d), Price(Decimal(100), "")) for d in days]
    await clocked.app.handlers.ingest(IngestPoints("SPX", source, points), clocked.ctx(key))


async def test_values_are_judged_on_arrival_while_the_scheduler_is_stopped() -> None:
    monday, tuesday, wednesday, thursday = (date(2024, 6, d) for d in (3, 4, 5, 6))
    clocked = Clocked(at(date(2024, 5, 31), 9))
    await clocked.define(with_level(None))
    # The level is set on Monday 09:00 (a: by 18:00 New York, b: 3 hours after the close)
    clocked.now[0] = at(monday, 9)
    evolve = EvolveSeries("SPX", Update(values={"service_level": LEVEL}), "SLA signed")
    await clocked.app.handlers.evolve_series(evolve, clocked.ctx("level"))
    # a backfill of May, sent long after its deadlines but older than the level: not late
    clocked.now[0] = at(monday, 10)
    may = sessions(date(2024, 5, 1), date(2024, 5, 31))
    await send(clocked, "a", may, "backfill-a")
    await send(clocked, "b", may, "backfill-b")
    clocked.now[0] = at(monday, 17)  # on time, both
    await send(clocked, "a", [monday], "a-mon")
    await send(clocked, "b", [monday], "b-mon")
    clocked.now[0] = at(tuesday, 19)  # a missed 18:00; b is on time, at its deadline
    await send(clocked, "a", [tuesday], "a-tue")
    await send(clocked, "b", [tuesday], "b-tue")
    # Wednesday comes on Thursday at 10:00, both late; a command after a restart of the command
    # process (another repository) judges the same: the level's start is in the log
    clocked.now[0] = at(thursday, 10)
    await send(clocked, "a", [wednesday], "a-wed")
    clocked.app = App.on(clocked.store)
    await send(clocked, "b", [wednesday], "b-wed")
    found = await clocked.issues()
    assert late(found, "late_arrival", "a") == [tuesday, wednesday]
    assert late(found, "late_arrival", "b") == [wednesday]
    assert {i.evidence["arrived_at_us"] for i in found} == {at(tuesday, 19), at(thursday, 10)}
    # The scheduler starts on Friday noon: Thursday is missing (both sources); published late
    # (20:00) are Wednesday, official on Thursday at 10:00, and Thursday, not official yet.
    clocked.now[0] = at(date(2024, 6, 7), 12)
    scheduler = clocked.scheduler()
    await clocked.observe(scheduler)
    await scheduler.fire_due()
    found = await clocked.issues()
    assert late(found, "late_arrival", "a") == [tuesday, wednesday, thursday]
    assert late(found, "late_arrival", "b") == [wednesday, thursday]
    assert late(found, "late_publication") == [wednesday, thursday]
    head = await clocked.store.head_position()
    restarted = clocked.scheduler()
    await clocked.observe(restarted)
    await restarted.fire_due()
    assert await clocked.store.head_position() == head
