"""Quality issues are projected per series: an issue id is unique within its series only, so two
series raising the same id keep one issue each, and a resolution (whose event names its series)
settles the issue of that series alone; a retraction by the system is a resolution of its own
status."""

from __future__ import annotations

import asyncio

from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import IssueFilter
from qis_domain.decisions import issue_id
from qis_domain.events import (
    QualityApproved,
    QualityIssueDetected,
    QualityRejected,
    QualityRetracted,
)
from qis_domain.events.points import Issue
from qis_domain.series_bucket import AGAIN
from qis_projector.application.projector import Projector

from tests.service.projector.projector_support import BASE_US, append

SNAP = BASE_US
# Command ids are unique per series only: the same one in two series gives the same issue id.
SAME = issue_id("cmd-1", SNAP, "bbg", "jump")


def detected(series_id: str) -> QualityIssueDetected:
    issue = Issue(
        issue_id=SAME,
        snap_us=SNAP,
        source_id="bbg",
        rule="jump",
        severity="warning",
        blocking=True,
        evidence={"series": series_id},
    )
    return QualityIssueDetected(series_id=series_id, issues=[issue])


async def test_the_same_issue_id_in_two_series_is_two_issues_resolved_apart() -> None:
    events = InMemoryEventStore()
    await append(events, "series/S1/points/0", detected("S1"))
    await append(events, "series/S2/points/0", detected("S2"))
    rejected = await append(
        events,
        "series/S2/points/0",
        QualityRejected(series_id="S2", issue_ids=[SAME], snaps=[SNAP], reason="bad print"),
    )
    writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await asyncio.wait_for(Projector(events, writer).run(until_position=rejected), 10)

    async def listed(issue_filter: IssueFilter) -> list[tuple[str, str, str]]:
        found = await writer.list_issues(issue_filter, "", 10)
        return [(i.series_id, i.status, i.evidence["series"]) for i in found]

    assert await listed(IssueFilter()) == [("S1", "open", "S1"), ("S2", "rejected", "S2")]
    assert await listed(IssueFilter(status="open")) == [("S1", "open", "S1")]
    assert await listed(IssueFilter(series_id="S2")) == [("S2", "rejected", "S2")]

    approved = await append(
        events,
        "series/S1/points/0",
        QualityApproved(series_id="S1", issue_ids=[SAME], snaps=[SNAP], reason="checked"),
    )
    await asyncio.wait_for(Projector(events, writer).run(until_position=approved), 10)
    assert await listed(IssueFilter()) == [("S1", "approved", "S1"), ("S2", "rejected", "S2")]
    (s1,) = await writer.list_issues(IssueFilter(series_id="S1"), "", 10)
    assert (s1.resolution_reason, s1.position) == ("checked", approved)


async def test_a_retraction_projects_as_the_systems_resolution() -> None:
    """QualityRetracted (the system closing an issue that no longer holds for its source's
    figures) projects with the status `retracted` and the reason it gives."""
    events = InMemoryEventStore()
    await append(events, "series/S1/points/0", detected("S1"))
    retracted = await append(
        events,
        "series/S1/points/0",
        QualityRetracted(series_id="S1", issue_ids=[SAME], snaps=[SNAP], reason=AGAIN),
    )
    writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await asyncio.wait_for(Projector(events, writer).run(until_position=retracted), 10)
    (issue,) = await writer.list_issues(IssueFilter(series_id="S1"), "", 10)
    assert (issue.status, issue.resolution_reason) == ("retracted", AGAIN)
