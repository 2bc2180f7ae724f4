"""The query service's application layer on an in-memory read store, without gRPC: a projector's
writer and the query side's reader share one InMemoryReadDatabase, as the two processes share
one SQLite file."""

from __future__ import annotations

import pytest
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.paging import PageTokens
from qis_query.application.subscription import FeedSettings

from tests.service.query.readmodel import write_scenario
from tests.support.segmenting import SegmentingStore

MAX_WAIT_S = 0.3
FEED = FeedSettings(poll_s=0.005, stall_timeout_s=0.3, batch=2)  # small batches: several per test


def token_clock_us() -> int:
    """The clock these tests' tokens are issued on: one instant, so that two answers alike
    carry one token (a token holds its issue time)."""
    return 1_700_000_000_000_000


TOKENS = PageTokens.random(clock_us=token_clock_us)
"""The `queries` fixture's: a test may seal a token of its own."""


@pytest.fixture
async def writer() -> InMemoryReadStore:
    """The projector's side: generation g1, active, holding the scenario."""
    store = SegmentingStore(InMemoryReadDatabase(), "g1")
    await store.set_active_generation("g1")
    await write_scenario(store)
    return store


@pytest.fixture
def queries(writer: InMemoryReadStore) -> QueryHandlers:
    reader = InMemoryReadStore(writer.database)
    return QueryHandlers(reader, ReadPosition(reader, MAX_WAIT_S), FEED, tokens=TOKENS)
