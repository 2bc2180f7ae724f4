"""Lateness judged on arrival over twenty years of XNYS sessions, with no scheduler running:
values come in deliveries at random times (some before the service level is set, some long
after their deadline), and the late_arrival issues are exactly those of a reference computed
here (a session's value is late when its delivery comes after 18:00 New York on that day and
the session's close is not older than the level), however each delivery is split into
commands."""

from __future__ import annotations

import random
from datetime import date, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_command.application.commands import EvolveSeries, IngestPoints
from qis_domain.definitions import Update
from qis_domain.service_levels import Deadline, ServiceLevel
from qis_domain.values import Price

from tests.service.command.command_support import NEW_YORK, close
from tests.service.command.test_lateness_scheduler import Clocked, late, sessions, with_level

DAYS = sessions(date(2005, 1, 3), date(2024, 12, 31))
LEVEL = ServiceLevel(first_snap_s=16 * 3600, arrival=Deadline(local_time_s=18 * 3600))
DELAYS_MIN = [30, 120, 121, 180, 30 * 60, 9 * 24 * 60]  # after the last close of a delivery
MINUTE_US = 60_000_000


def at(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=NEW_YORK).timestamp()) * 10**6


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, list[tuple[int, list[date]]], list[int]]:
    """The session the level is set on (at 09:00), the deliveries (when, which sessions: a
    session waits for the next one's delivery half of the time) and into how many commands
    each delivery is cut."""
    rng = random.Random(draw(st.integers(0, 2**32)))  # one draw: 5,000 sessions' worth
    deliveries: list[tuple[int, list[date]]] = []
    run: list[date] = []
    for day in DAYS:
        run.append(day)
        if rng.random() < 0.5 or day == DAYS[-1]:
            deliveries.append((close(day).utc_us + rng.choice(DELAYS_MIN) * MINUTE_US, run))
            run = []
    splits = [rng.randint(1, 3) for _ in deliveries]
    return draw(st.integers(0, len(DAYS) - 1)), deliveries, splits


async def flagged(
    level_day: int, deliveries: list[tuple[int, list[date]]], splits: list[int]
) -> list[date]:
    """The sessions flagged late when the deliveries come in time order, each in
    `splits[i]` commands at its instant, the level set at 09:00 on DAYS[level_day]."""
    clocked = Clocked(at(DAYS[0], 9) - 86_400_000_000)
    await clocked.define(with_level(None))
    level_at = at(DAYS[level_day], 9)
    happenings = sorted(
        [(level_at, -1, [])] + [(t, i, run) for i, (t, run) in enumerate(deliveries)],
        key=lambda h: (h[0], h[1]),
    )
    for moment, i, run in happenings:
        clocked.now[0] = moment
        if i < 0:
            update = Update(values={"service_level": LEVEL})
            await clocked.app.handlers.evolve_series(
                EvolveSeries("SPX", update, "SLA"), clocked.ctx("level")
            )
            continue
        n = splits[i]
        for k in range(n):
            part = run[k::n]  # interleaved: each command's snaps span the delivery
            if part:
                points = [(close(d), Price(Decimal(100), "")) for d in part]
                cmd = IngestPoints("SPX", "a", points)
                await clocked.app.handlers.ingest(cmd, clocked.ctx(f"d{i}-{k}"))
    return late(await clocked.issues(), "late_arrival", "a")


def reference(level_day: int, deliveries: list[tuple[int, list[date]]]) -> list[date]:
    since = at(DAYS[level_day], 9)
    return sorted(
        day
        for arrived, run in deliveries
        for day in run
        if close(day).utc_us >= since and arrived > at(day, 18)
    )


@settings(max_examples=3, deadline=None, derandomize=True, database=None)
@given(histories())
async def test_late_arrivals_match_a_reference_however_deliveries_are_split(
    history: tuple[int, list[tuple[int, list[date]]], list[int]],
) -> None:
    level_day, deliveries, splits = history
    expected = reference(level_day, deliveries)
    assert await flagged(level_day, deliveries, [1] * len(deliveries)) == expected
    assert await flagged(level_day, deliveries, splits) == expected
