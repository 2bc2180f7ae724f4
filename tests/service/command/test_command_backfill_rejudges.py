"""The everyday case of a source's correction, through the command handlers on the in-memory
store: today's close is held by a jump from a wrong figure for yesterday; the vendor corrects
yesterday; the jump is retracted by the system and today publishes, with no one approving it.
Whether yesterday and today are in one bucket or on either side of a bucket boundary."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import pytest
from qis_domain.definitions import ValidationRules
from qis_domain.events import DomainEvent, QualityApproved, QualityRetracted
from qis_domain.series_bucket import AGAIN, REPLACED
from qis_domain.snaps import Frequency, bucket_of

from tests.service.command.command_support import (
    App,
    close,
    daily_series,
    issues,
    new_app,
    official_versions,
)

JUMP = ValidationRules(max_jump_percent=Decimal(5))


def across_a_boundary() -> tuple[date, date, date]:
    """Three weekdays of 2025, the last two in different buckets."""
    day = date(2025, 1, 2)
    while True:
        if day.weekday() < 4 and (
            bucket_of(close(day).utc_us, Frequency.DAILY)
            != bucket_of(close(day + timedelta(days=1)).utc_us, Frequency.DAILY)
        ):
            return day - timedelta(days=1), day, day + timedelta(days=1)
        day += timedelta(days=1)


IN_ONE_BUCKET = (date(2025, 3, 4), date(2025, 3, 5), date(2025, 3, 6))


def retractions(events: list[DomainEvent]) -> dict[str, set[str]]:
    """Per reason, the rules of the issues retracted."""
    rule = {i.issue_id: i.rule for i in issues(events)}
    out: dict[str, set[str]] = {}
    for event in events:
        if isinstance(event, QualityRetracted):
            out.setdefault(event.reason, set()).update(rule[i] for i in event.issue_ids)
    return out


async def held_today(days: tuple[date, date, date]) -> App:
    before, yesterday, today = days
    app = new_app()
    await app.define(daily_series("vendor", rules=JUMP))
    await app.ingest("vendor", [(before, "100"), (yesterday, "150"), (today, "104")])
    assert close(today).utc_us not in official_versions(await app.events(days))
    return app


@pytest.mark.parametrize("days", [IN_ONE_BUCKET, across_a_boundary()], ids=["one", "boundary"])
def test_a_corrected_yesterday_publishes_today(days: tuple[date, date, date]) -> None:
    async def run() -> None:
        _, yesterday, today = days
        app = await held_today(days)
        await app.ingest("vendor", [(yesterday, "101")])
        events = await app.events(days)
        # Yesterday's own jump was about the 150 it replaced; today's no longer holds at +3 %.
        assert retractions(events) == {REPLACED: {"jump"}, AGAIN: {"jump"}}
        assert official_versions(events)[close(today).utc_us] == [(1, "104", "")]
        assert not any(isinstance(e, QualityApproved) for e in events)

    asyncio.run(run())


def test_a_backfill_of_yesterday_flags_a_published_today_without_restating_it() -> None:
    """The vendor sent today (104 after 100) before yesterday's 150: today published clean,
    and stays so (flagged in the exception queue) when yesterday's backfill makes it a jump."""

    async def run() -> None:
        before, yesterday, today = days = across_a_boundary()
        app = new_app()
        await app.define(daily_series("vendor", rules=JUMP))
        await app.ingest("vendor", [(before, "100"), (today, "104")])
        await app.ingest("vendor", [(yesterday, "150")])
        events = await app.events(days)
        raised = {(i.snap_us, i.rule) for i in issues(events)}
        assert raised == {(close(yesterday).utc_us, "jump"), (close(today).utc_us, "jump")}
        assert official_versions(events)[close(today).utc_us] == [(1, "104", "")]

    asyncio.run(run())
