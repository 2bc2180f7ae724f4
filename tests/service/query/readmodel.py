"""A read model for the query service's tests, written through the read-store port only.

It is the restatement scenario of the read-store contract suite (five snaps of S1 published at
position 10, snap 2 restated at 20 and at 30), with the catalogue and an issue queue added.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from google.protobuf import json_format
from qis.data.v1 import query_service_pb2_grpc as q_grpc
from qis.data.v1 import series_pb2
from qis_adapters.readstore.port import ProjectionBatch, ReadModelWriter, SeriesEntry
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.names import series_name
from qis_query.settings import QuerySettings

from tests.contract.readstore.test_readstore_contract import BATCH_1, BATCH_2, BATCH_3, issue
from tests.support.segmenting import Segmenting
from tests.support.servers import query_service

SERIES = "S1"  # the restated series
OTHER = "S2"  # defined, without values
DEFINED_AT = 5  # position of the catalogue entries and the issues
HEAD = 30  # the read model's checkpoint once the scenario is written
SCENARIO_CHANGES = 7  # change-feed entries: five publications and two restatements


def catalogue_entry(series_id: str, position: int = DEFINED_AT) -> SeriesEntry:
    """An entry whose definition GetSeries can answer (the proto-JSON form of a Series)."""
    definition = series_pb2.Series(name=series_name(series_id), unit="USD", schema_version=1)
    return SeriesEntry(
        series_id, 1, json_format.MessageToDict(definition), position * 1000, position
    )


async def write_scenario(store: ReadModelWriter) -> None:
    catalogue = [catalogue_entry(SERIES), catalogue_entry(OTHER)]
    issues = [issue("I1", DEFINED_AT), issue("I2", DEFINED_AT), issue("I3", DEFINED_AT)]
    await store.apply(ProjectionBatch(series=catalogue, issues=issues), DEFINED_AT)
    for batch, checkpoint in ((BATCH_1, 10), (BATCH_2, 20), (BATCH_3, HEAD)):
        await store.apply(batch, checkpoint)


@contextlib.asynccontextmanager
async def scenario_service(
    path: Path, settings: QuerySettings
) -> AsyncIterator[q_grpc.QueryServiceAsyncStub]:
    """The query service (`settings`) over the scenario, written with its segments into a fresh
    SQLite read store at `path` (generation g1, active)."""
    store = await SqliteReadStore.open(path, "g1")
    try:
        await store.set_active_generation("g1")
        await write_scenario(Segmenting(store))
        async with query_service(store, settings) as stub:
            yield stub
    finally:
        await store.close()
