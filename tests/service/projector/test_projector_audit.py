"""Audit entries name the resource they are about: a data source's registration and
configuration are entries of that source (no series), adding a source to a series is an entry
of the series, so that ListAuditEntries can list a source's or a series' entries."""

from __future__ import annotations

import asyncio

from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import AuditEntry, AuditScope
from qis_domain.data_source import source_stream
from qis_domain.definitions import DataSourceConfig
from qis_domain.events.series import SourceAdded
from qis_domain.events.sources import DataSourceConfigured, DataSourceRegistered
from qis_domain.reference_data import definition_stream
from qis_projector.application.projector import Projector

from tests.service.projector.projector_support import append


async def test_entries_about_a_source_name_it_and_no_series() -> None:
    events = InMemoryEventStore()
    registered = await append(
        events,
        source_stream("bbg"),
        DataSourceRegistered(source_id="bbg", config=DataSourceConfig(provider="bloomberg")),
    )
    added = await append(
        events, definition_stream("SPX"), SourceAdded(series_id="SPX", source_id="bbg", priority=1)
    )
    configured = await append(
        events,
        source_stream("lseg"),
        DataSourceConfigured(source_id="lseg", config=DataSourceConfig(provider="refinitiv")),
    )
    writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await asyncio.wait_for(Projector(events, writer).run(until_position=configured), 10)

    def about(entries: list[AuditEntry]) -> list[tuple[int, str, str, str]]:
        return [(e.position, e.action, e.series_id, e.source_id) for e in entries]

    assert about(await writer.audit_trail(AuditScope(), None, 10)) == [
        (registered, "DataSourceRegistered", "", "bbg"),
        (added, "SourceAdded", "SPX", ""),
        (configured, "DataSourceConfigured", "", "lseg"),
    ]
    assert about(await writer.audit_trail(AuditScope(source_id="bbg"), None, 10)) == [
        (registered, "DataSourceRegistered", "", "bbg")
    ]
    assert about(await writer.audit_trail(AuditScope(series_id="SPX"), None, 10)) == [
        (added, "SourceAdded", "SPX", "")
    ]
