"""A flat spot is the `stale` rule under another name: the worked example of
docs/data-quality.md, where a holiday neither extends nor breaks the run."""

from __future__ import annotations

from datetime import date

from qis_domain.rules import RULE_NAMES
from qis_domain.snaps import format_snap

from tests.unit.domain.test_domain_quality_workflow import (
    Desk,
    close,
    issues,
    series,
    statuses,
    usd,
)


def test_the_third_identical_close_is_a_flat_spot_and_a_holiday_is_no_snap() -> None:
    # Thanksgiving 2023 (Thursday 23 November) is not a session: nothing is sent for it.
    days = [close(date(2023, 11, d)) for d in (20, 21, 22, 24)]
    desk = Desk(series("a", stale_after_snaps=3), first=days[0])
    events = desk.ingest("a", [(d, usd("52.10")) for d in days])
    flagged = {i.snap_us: i for i in issues(events, "stale")}
    assert sorted(flagged) == [days[2].utc_us, days[3].utc_us]
    assert flagged[days[2].utc_us].evidence["since_snap"] == format_snap(days[0].utc_us)
    assert flagged[days[3].utc_us].evidence["since_snap"] == format_snap(days[1].utc_us)
    assert not flagged[days[2].utc_us].blocking
    assert set(statuses(events).values()) == {"published"}


def test_there_is_one_rule_for_both_names() -> None:
    assert "stale" in RULE_NAMES
    assert not {"flat_spot", "days_unchanged", "zero_move"} & RULE_NAMES
