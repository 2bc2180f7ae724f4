"""The classifications PolicyAccess remembers are kept until the checkpoint moves, and a level
looked up before the checkpoint moved is not remembered after a concurrent query cleared them for
the new checkpoint (PolicyAccess.level awaits the catalogue between reading the entry and
remembering it). Before, the level outlived the change it predated for as long as the checkpoint
stayed: a series defined meanwhile stayed decided as missing (a capped reader refused it at a
position after its definition), and a series whose classification was raised above a reader's
cap stayed readable to him at a position after the raise. The catalogue's answer is held back on
an event to make the interleaving certain; with SQLite each lookup is a thread hop.
"""

from __future__ import annotations

import asyncio
import dataclasses

from google.protobuf import json_format
from qis.data.v1 import series_pb2
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import ProjectionBatch, SeriesEntry
from qis_domain.definitions import Classification, ClassificationLimit
from qis_domain.errors import PermissionDenied
from qis_query.application.access import PolicyAccess
from qis_query.application.consistency import ReadPosition

from tests.service.query.conftest import MAX_WAIT_S
from tests.service.query.readmodel import HEAD, OTHER, SERIES, catalogue_entry, write_scenario
from tests.service.query.test_query_access import Recorder, asking, grant, project
from tests.support.segmenting import SegmentingStore


class HeldCatalogue(InMemoryReadStore):
    """Answers a lookup of `held` as the catalogue was when asked, once `release` is set."""

    def __init__(self, database: InMemoryReadDatabase, held: str) -> None:
        super().__init__(database)
        self.held = held
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def get_series(self, series_id: str) -> SeriesEntry | None:
        entry = await super().get_series(series_id)
        if series_id == self.held and not self.release.is_set():
            self.asked.set()
            await self.release.wait()
        return entry


def _classified(
    series_id: str, level: series_pb2.DataClassification.ValueType, at: int
) -> SeriesEntry:
    definition = series_pb2.Series(name=f"series/{series_id}", classification=level)
    return dataclasses.replace(
        catalogue_entry(series_id, at), definition=json_format.MessageToDict(definition)
    )


async def _capped_world(
    held: str, reading: type[HeldCatalogue] = HeldCatalogue
) -> tuple[SegmentingStore, PolicyAccess, HeldCatalogue, int]:
    """A reader capped at CONFIDENTIAL over the scenario, its catalogue read by `reading` (which
    holds `held` back)."""
    writer = SegmentingStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    await write_scenario(writer)
    limit = ClassificationLimit(max_level=Classification.CONFIDENTIAL)
    at = await project(writer, grant("capped", "series/*", position=HEAD + 1, conditions=(limit,)))
    reader = reading(writer.database, held)
    access = PolicyAccess(reader, ReadPosition(reader, MAX_WAIT_S, max_age_s=0), Recorder())
    return writer, access, reader, at


async def _allowed(access: PolicyAccess, series_id: str, min_position: int) -> bool:
    try:
        await access.require(
            asking(), f"series/{series_id}", series_id=series_id, min_position=min_position
        )
    except PermissionDenied:
        return False
    return True


async def _decided_across(
    writer: SegmentingStore, access: PolicyAccess, reader: HeldCatalogue, change: SeriesEntry
) -> int:
    """A query of the held series asked before `change` is projected, answered after a query
    at the change's position has moved the checkpoint; returns that position."""
    before = asyncio.create_task(_allowed(access, reader.held, 0))
    await reader.asked.wait()
    await writer.apply(ProjectionBatch(series=[change]), change.position)
    assert await _allowed(access, OTHER, change.position)  # moves the checkpoint
    reader.release.set()
    await before
    return change.position


async def test_a_series_defined_while_it_was_looked_up_is_read_at_its_definition() -> None:
    """LATER, looked up while missing, is INTERNAL at the position of its definition."""
    writer, access, reader, at = await _capped_world("LATER")
    defined = await _decided_across(
        writer,
        access,
        reader,
        _classified("LATER", series_pb2.DATA_CLASSIFICATION_INTERNAL, at + 1),
    )
    assert await _allowed(access, "LATER", defined)


async def test_a_series_raised_above_the_cap_while_it_was_looked_up_is_refused_after() -> None:
    """S1, looked up before its raise, is RESTRICTED at the position of the raise."""
    writer, access, reader, at = await _capped_world(SERIES)
    raised = await _decided_across(
        writer,
        access,
        reader,
        _classified(SERIES, series_pb2.DATA_CLASSIFICATION_RESTRICTED, at + 1),
    )
    assert not await _allowed(access, SERIES, raised)
