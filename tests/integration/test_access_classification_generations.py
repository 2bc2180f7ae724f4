"""A classification remembered by PolicyAccess is never used to decide at a checkpoint after a
change it predates (a wrong ALLOW). The checkpoint PolicyAccess holds can move back (two queries'
reads of it end out of order: `_current` takes whichever answer comes last), so "read under the
checkpoint that is current again" does not mean "nothing forgotten meanwhile" (ABA): a level is
remembered only if the classifications were not forgotten since it was about to be read (a
generation count). Before, a gate made after a raise learnt the level read before it, from the
cache, and let the series through.
"""

from __future__ import annotations

import asyncio

from qis.data.v1 import series_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase
from qis_adapters.readstore.port import ProjectionBatch

from tests.integration.test_access_classification_cache import (
    HeldCatalogue,
    _allowed,
    _capped_world,
    _classified,
)
from tests.service.query.readmodel import OTHER, SERIES
from tests.service.query.test_query_access import asking


class HeldCheckpoint(HeldCatalogue):
    """Also answers one checkpoint read, while `hold_checkpoint` is set, with the checkpoint as it
    was when asked, once `checkpoint_release` is set: a read that ends after a later one."""

    def __init__(self, database: InMemoryReadDatabase, held: str) -> None:
        super().__init__(database, held)
        self.hold_checkpoint = False
        self.checkpoint_asked = asyncio.Event()
        self.checkpoint_release = asyncio.Event()

    async def checkpoint(self) -> int | None:
        reached = await super().checkpoint()
        if self.hold_checkpoint:
            self.hold_checkpoint = False
            self.checkpoint_asked.set()
            await self.checkpoint_release.wait()
        return reached


async def test_a_level_read_before_a_raise_is_not_used_by_a_gate_after_it() -> None:
    """S1 (INTERNAL, readable under the CONFIDENTIAL cap) is raised to RESTRICTED; a gate made at
    the raise's position must refuse it, whatever the cache held across the checkpoint moving
    forward and back."""
    writer, access, held, at = await _capped_world(SERIES, HeldCheckpoint)
    assert isinstance(held, HeldCheckpoint)
    reader = held
    assert await _allowed(access, OTHER, 0)  # the checkpoint is `at`
    # 1. A query at `at` looks S1 up: INTERNAL, the answer held back.
    old = asyncio.create_task(_allowed(access, SERIES, 0))
    await reader.asked.wait()
    # 2. Another query reads the checkpoint (`at`); its answer is held back.
    reader.hold_checkpoint = True
    stale = asyncio.create_task(_allowed(access, OTHER, 0))
    await reader.checkpoint_asked.wait()
    # 3. S1 is raised, and a listing's gate is made at the raise: the checkpoint moves forward.
    raise_ = _classified(SERIES, series_pb2.DATA_CLASSIFICATION_RESTRICTED, at + 1)
    await writer.apply(ProjectionBatch(series=[raise_]), raise_.position)
    gate = await access.gate(asking(), raise_.position)
    # 4. The held checkpoint read ends: the checkpoint moves back to `at`.
    reader.checkpoint_release.set()
    assert await stale
    # 5. The lookup of step 1 ends: its checkpoint is the current one again, so it is kept.
    reader.release.set()
    assert await old  # decided at `at`, before the raise: fine
    # 6. The gate made after the raise learns S1.
    await gate.learn([SERIES])
    assert not gate.allows(f"series/{SERIES}", SERIES)
