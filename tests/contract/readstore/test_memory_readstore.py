"""In-memory-only guarantees: what a store that serialises its records gives for free."""

from __future__ import annotations

import pytest
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import AuditScope, IssueFilter, ProjectionBatch, ResumeToken

from tests.contract.readstore.test_readstore_contract import BATCH_1, T0, audit, issue, series


async def test_documents_are_copied_in_and_out_as_json() -> None:
    store = InMemoryReadStore(generation="g1")
    await store.set_active_generation("g1")
    entry, raised, entry_series = audit(10, 0, "S1", T0), issue("I1", 10), series("S1", 1, 10)
    entry.details["tuple"] = (1, 2)
    await store.apply(ProjectionBatch(audit=[entry], issues=[raised], series=[entry_series]), 10)

    # A caller changing its documents after the write, or the ones it read, changes nothing.
    entry.details["later"] = True
    raised.evidence.clear()
    (stored_entry,) = await store.audit_trail(AuditScope(series_id="S1"), None, 10)
    (stored_issue,) = await store.list_issues(IssueFilter(), "", 10)
    stored_series = await store.get_series("S1")
    assert stored_series is not None
    stored_entry.details.clear()
    stored_issue.evidence["more"] = 1
    stored_series.definition.clear()

    (entry_again,) = await store.audit_trail(AuditScope(series_id="S1"), None, 10)
    assert "later" not in entry_again.details
    assert entry_again.details["tuple"] == [1, 2]  # JSON has arrays, not tuples
    assert (await store.list_issues(IssueFilter(), "", 10))[0].evidence == issue("I1", 10).evidence
    assert await store.get_series("S1") == series("S1", 1, 10)


async def test_stores_share_only_their_database() -> None:
    writer = InMemoryReadStore(generation="g1")
    await writer.apply(BATCH_1, 10)
    await writer.set_active_generation("g1")

    same = InMemoryReadStore(writer.database)
    other = InMemoryReadStore(InMemoryReadDatabase())
    assert await same.changes_after(ResumeToken(-1, -1), [], 100) == BATCH_1.changes
    assert await other.active_generation() is None
    assert await other.changes_after(ResumeToken(-1, -1), [], 100) == []


async def test_a_dropped_generation_or_a_closed_store_refuses_to_work() -> None:
    database = InMemoryReadDatabase()
    old, new = InMemoryReadStore(database, "g1"), InMemoryReadStore(database, "g2")
    await new.set_active_generation("g2")
    await new.drop_generation("g1")
    with pytest.raises(RuntimeError, match="dropped"):
        await old.apply(BATCH_1, 10)

    await new.close()
    with pytest.raises(RuntimeError, match="closed"):
        await new.checkpoint()
    assert await InMemoryReadStore(database).active_generation() == "g2"  # the data stays
