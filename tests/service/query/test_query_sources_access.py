"""The data sources with the access policies enforced (PolicyAccess): a listing shows only the
sources the caller may read, a classification limit (which a source does not have) does not hide
them, and reading one source needs `read` on it."""

from __future__ import annotations

from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import ProjectionBatch, SourceEntry
from qis_domain.definitions import Classification, ClassificationLimit
from qis_query.application.sources import SourceFilter, SourceQueries

from tests.service.query.readmodel import HEAD
from tests.service.query.test_query_access import (  # noqa: F401  (the fixture)
    World,
    allowed,
    asking,
    grant,
    project,
    world,
)


async def listed(w: World, queries: SourceQueries) -> list[str]:
    gate = await w.access.gate(asking(method="ListDataSources"))
    page = await queries.list_sources(10, "", 0, SourceFilter(), readable=gate)
    return [v.entry.source_id for v in page.items]


async def test_only_the_sources_the_caller_may_read_are_listed(world: World) -> None:  # noqa: F811
    entries = [SourceEntry(s, {"provider": "test"}, 1, HEAD + 1) for s in ("bbg", "cg", "cg2")]
    await world.writer.apply(ProjectionBatch(sources=entries), HEAD + 1)
    reader = InMemoryReadStore(world.writer.database)
    queries = SourceQueries(reader, world.queries._read_position)
    assert await listed(world, queries) == []  # deny by default
    await project(world.writer, grant("cg", "sources/cg*", position=HEAD + 2))
    assert await listed(world, queries) == ["cg", "cg2"]
    assert await allowed(world, "sources/cg")
    assert not await allowed(world, "sources/bbg")
    # A limit on classification: sources have none, so it does not hide them.
    limited = ClassificationLimit(max_level=Classification.PUBLIC).model_dump(mode="json")
    await project(world.writer, grant("all", "sources/*", position=HEAD + 3, conditions=(limited,)))
    assert await listed(world, queries) == ["bbg", "cg", "cg2"]
    assert world.recorder.denials[0][1].resource == "sources/bbg"  # the refused read only
    assert len(world.recorder.denials) == 1
