"""A value is judged late by the service level in force at its snap, not by the one in force
when it arrives: a level changed between the snap and the value's arrival (here its publication
deadline) does not excuse the value, while the scheduler is stopped and after it restarts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from qis_command.application.commands import EvolveSeries, IngestPoints
from qis_domain.definitions import Update
from qis_domain.service_levels import Deadline
from qis_domain.values import Price

from tests.service.command.command_support import App, close
from tests.service.command.test_lateness_scheduler import (
    LEVEL,
    Clocked,
    at,
    late,
    with_level,
)


async def test_a_value_for_a_snap_before_a_level_change_is_judged_by_the_level_before() -> None:
    monday = date(2024, 6, 3)
    clocked = Clocked(at(monday, 9))
    await clocked.define(with_level(LEVEL))  # a: by 18:00 New York, the close at 16:00
    # T = Monday 17:00, one hour after the close, an hour before a's deadline: the level changes
    clocked.now[0] = at(monday, 17)
    changed = LEVEL.model_copy(update={"publication": Deadline(local_time_s=21 * 3600)})
    evolve = EvolveSeries("SPX", Update(values={"service_level": changed}), "later publication")
    await clocked.app.handlers.evolve_series(evolve, clocked.ctx("level"))
    # a's close arrives at T + 5 h, the scheduler stopped; another command process judges it
    clocked.now[0] = at(monday, 22)
    clocked.app = App.on(clocked.store)
    points = [(close(monday), Price(Decimal(100), ""))]
    await clocked.app.handlers.ingest(IngestPoints("SPX", "a", points), clocked.ctx("a-mon"))
    found = await clocked.issues()
    assert late(found, "late_arrival", "a") == [monday]
    [issue] = [i for i in found if i.rule == "late_arrival"]
    assert issue.evidence == {
        "source_id": "a",
        "deadline_us": at(monday, 18),
        "arrived_at_us": at(monday, 22),
    }
    # the scheduler starts the next day: b is missing, a's value came; a is late once
    clocked.now[0] = at(date(2024, 6, 4), 9)
    for _ in range(2):  # started, then restarted
        scheduler = clocked.scheduler()
        await clocked.observe(scheduler)
        await scheduler.fire_due()
        found = await clocked.issues()
        assert late(found, "late_arrival", "a") == [monday]
        assert late(found, "late_arrival", "b") == [monday]


async def test_a_level_set_by_this_process_judges_its_next_ingest() -> None:
    """The process that appended a level does not know its commit time until it reads it back:
    its next ingest, read together with the command's buckets, reads the series again."""
    monday, tuesday = date(2024, 6, 3), date(2024, 6, 4)
    clocked = Clocked(at(monday, 9))
    await clocked.define(with_level(None))
    clocked.now[0] = at(monday, 17)
    await clocked.ingest("a", monday)  # on time: no level yet; the series' span is now known
    evolve = EvolveSeries("SPX", Update(values={"service_level": LEVEL}), "a deadline")
    await clocked.app.handlers.evolve_series(evolve, clocked.ctx("level"))
    clocked.now[0] = at(tuesday, 19)  # an hour past a's 18:00 deadline, in the same process
    await clocked.ingest("a", tuesday)
    assert late(await clocked.issues(), "late_arrival", "a") == [tuesday]
