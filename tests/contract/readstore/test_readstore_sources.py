"""The data sources' read models (SourceEntry, SourceHealthEntry) on every read-store adapter:
keyed upserts that a replay of older batches never undoes, listings in id order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qis_adapters.readstore.port import (
    AuditEntry,
    AuditScope,
    ProjectionBatch,
    SourceEntry,
    SourceHealthEntry,
)

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Adapter

DAY = 86_400_000_000
D0 = 19_700 * DAY


def source(source_id: str, position: int, *, provider: str = "coingecko") -> SourceEntry:
    config = {
        "provider": provider,
        "description": 'é and a "quote"',
        "rate_limit_per_minute": 30,
        "cost_per_request": "0.0025",
        "settings": {"base_url": "https://api.example", "coin.id": "bitcoin"},
        "enabled": True,
    }
    return SourceEntry(source_id, config, position * 1000, position)


def health(source_id: str, day_us: int, position: int, requests: int) -> SourceHealthEntry:
    document = {
        "report": {"status": "degraded", "start_us": day_us, "end_us": day_us + 1, "requests": 2},
        "cost": "0.005",
        "status_since_us": day_us,
        "day_usage": {"reports": position, "requests": requests, "cost": "1.25"},
    }
    return SourceHealthEntry(source_id, day_us, document, position * 1000, position)


async def test_sources_keep_their_latest_configuration(store: Adapter) -> None:
    first, desk = source("cg", 11), source("desk", 12, provider="file")
    configured = source("cg", 13, provider="coingecko-pro")
    # Two changes of one source in a batch: the later wins, whatever order a store applies.
    await store.apply(ProjectionBatch(sources=[first, desk, configured]), 13)
    assert await store.list_sources("", 10) == [configured, desk]
    assert await store.get_source("cg") == configured
    assert await store.get_source("absent") is None
    # A replay of an older batch does not bring the old configuration back.
    await store.apply(ProjectionBatch(sources=[first]), 13)
    assert await store.get_source("cg") == configured
    assert (await store.dump_all())["sources"] == [configured, desk]


async def test_sources_page_in_id_order(store: Adapter) -> None:
    entries = [source(f"s{i:02d}", 10 + i) for i in range(5)]
    await store.apply(ProjectionBatch(sources=entries[::-1]), 20)
    assert await store.list_sources("", 2) == entries[:2]
    assert await store.list_sources("s01", 2) == entries[2:4]
    assert await store.list_sources("s03", 10) == entries[4:]
    assert await store.list_sources("s04", 10) == []
    assert await store.list_sources("", 0) == []


async def test_a_source_keeps_its_latest_report_per_day(store: Adapter) -> None:
    morning, evening = health("cg", D0, 11, 5), health("cg", D0, 14, 9)
    next_day = health("cg", D0 + DAY, 15, 1)
    other = health("cg2", D0, 12, 7)  # a source whose id extends the first one's
    await store.apply(ProjectionBatch(source_health=[next_day, morning, other, evening]), 15)
    assert await store.source_health("cg") == [evening, next_day]  # by day
    assert await store.source_health("cg2") == [other]
    assert await store.source_health("absent") == []
    # A replay of the morning's report leaves the evening's in place.
    await store.apply(ProjectionBatch(source_health=[morning]), 15)
    assert await store.source_health("cg") == [evening, next_day]
    assert (await store.dump_all())["source_health"] == [evening, next_day, other]


async def test_an_empty_store_has_no_sources(store: Adapter) -> None:
    assert await store.list_sources("", 10) == []
    assert await store.get_source("cg") is None
    assert await store.source_health("cg") == []


async def test_an_audit_entry_keeps_setting_names_with_dots_and_dollars(store: Adapter) -> None:
    """A source's registration is an audit entry holding its settings, whose names are the
    provider's ("coin.id", "$top"): FerretDB, like MongoDB before 5.0, refuses such field
    names in documents, and the projector would halt on the first one."""
    details = {"source": "cg", "settings": {"coin.id": "bitcoin", "$top": "1"}}
    entry = AuditEntry(1, 0, 1_000, "", None, "DataSourceRegistered", "u", "c", details, "cg")
    await store.apply(ProjectionBatch(audit=[entry]), 1)
    assert await store.audit_trail(AuditScope(source_id="cg"), None, 10) == [entry]
