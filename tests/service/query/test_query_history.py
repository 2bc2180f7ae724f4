"""GetPointHistory in pages: a point's versions and observations together in commit order, up to
page_size of them a page, against a reference built here from the records written. Paging at
every page size must give back the whole lineage in commit order, neither losing nor repeating
an item; a token resumes only the point it was issued for."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import query_service_pb2_grpc as pb_grpc
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import Observation, OfficialVersion, ProjectionBatch
from qis_domain.errors import InvalidArgument
from qis_query.application.access import EVERY_SERIES
from qis_query.application.handlers import QueryHandlers
from qis_query.settings import QuerySettings

from tests.contract.readstore.test_readstore_contract import SNAPS, observation
from tests.service.query.readmodel import HEAD, SERIES
from tests.support.servers import query_service

POINT = SNAPS[2]  # versions 1, 2 and 3 at positions 10, 20 and 30, an observation at (10, 2)
LATER = [  # more observations of the point, around and between its versions
    observation(SERIES, POINT, "lseg", 5, 1),
    observation(SERIES, POINT, "bbg", 15, 0),
    observation(SERIES, POINT, "lseg", 15, 4),
    observation(SERIES, POINT, "bbg", 25, 2),
    observation(SERIES, POINT, "lseg", HEAD, 0),
]


@pytest.fixture
async def lineage(writer: InMemoryReadStore) -> list[OfficialVersion | Observation]:
    """The point's whole lineage in commit order: by position, a version before an observation
    at the same position (the read model's order: the version is what the event made)."""
    await writer.apply(ProjectionBatch(observations=LATER), HEAD)
    versions = await writer.history(SERIES, POINT)
    observations = await writer.observations(SERIES, POINT)
    assert [v.version for v in versions] == [1, 2, 3]
    assert len(observations) == 6

    def order(item: OfficialVersion | Observation) -> tuple[int, int, int]:
        if isinstance(item, OfficialVersion):
            return (item.position_from, 0, item.version)
        return (item.position, 1, item.index)

    return sorted([*versions, *observations], key=order)


async def pages_of(queries: QueryHandlers, size: int) -> list[list[OfficialVersion | Observation]]:
    pages: list[list[OfficialVersion | Observation]] = []
    token = ""
    for _ in range(100):
        read = await queries.point_history(SERIES, POINT, size, token, 0)
        page = read.value
        assert [v.version for v in page.versions] == sorted(v.version for v in page.versions)
        keys = [(o.position, o.index) for o in page.observations]
        assert keys == sorted(keys)
        pages.append([*page.versions, *page.observations])
        token = page.next_page_token
        if not token:
            return pages
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 9, 10, 0])
async def test_paging_gives_back_the_lineage_in_commit_order(
    queries: QueryHandlers, lineage: list[OfficialVersion | Observation], size: int
) -> None:
    pages = await pages_of(queries, size)
    limit = size or 100
    assert all(len(page) == limit for page in pages[:-1])
    assert 0 < len(pages[-1]) <= limit  # the last page is known to be the last: never empty
    # Each page is the next run of the lineage in commit order.
    at = 0
    for page in pages:
        run = lineage[at : at + len(page)]
        assert sorted(page, key=id) == sorted(run, key=id)
        at += len(page)
    assert at == len(lineage)


async def test_a_token_resumes_only_the_point_it_was_issued_for(
    queries: QueryHandlers, lineage: list[OfficialVersion | Observation]
) -> None:
    token = (await queries.point_history(SERIES, POINT, 2, "", 0)).value.next_page_token
    assert token
    # Page size and min_position may change.
    resumed = await queries.point_history(SERIES, POINT, 100, token, HEAD)
    assert len(resumed.value.versions) + len(resumed.value.observations) == len(lineage) - 2
    for series_id, snap_us, other in (
        (SERIES, SNAPS[1], token),
        ("S2", POINT, token),
        (SERIES, POINT, "not-a-token"),
        (
            SERIES,
            POINT,
            (await queries.list_series(1, "", 0, readable=EVERY_SERIES)).next_page_token,
        ),
    ):
        with pytest.raises(InvalidArgument) as refused:
            await queries.point_history(series_id, snap_us, 2, other, 0)
        assert [v.field for v in refused.value.violations] == ["page_token"]
    with pytest.raises(InvalidArgument) as refused:
        await queries.point_history(SERIES, POINT, -1, "", 0)
    assert [v.field for v in refused.value.violations] == ["page_size"]


@pytest.fixture
async def stub(
    writer: InMemoryReadStore, lineage: list[OfficialVersion | Observation]
) -> AsyncIterator[pb_grpc.QueryServiceAsyncStub]:
    settings = QuerySettings(auth="dev", query_address="127.0.0.1:0")
    async with query_service(InMemoryReadStore(writer.database), settings) as stub:
        yield stub


async def test_over_grpc_pages_carry_their_token_and_the_renamed_fields(
    stub: pb_grpc.QueryServiceAsyncStub, lineage: list[OfficialVersion | Observation]
) -> None:
    metadata = (("x-qis-user", "reader"),)
    request = pb.GetPointHistoryRequest(
        series=f"series/{SERIES}", snap_time=timestamp(POINT), page_size=3
    )
    first = await stub.GetPointHistory(request, metadata=metadata)
    # Commit order: an observation at 5, version 1 at 10, then the observation at (10, 2).
    assert [o.record_position for o in first.observations] == [5, 10]
    assert [(v.version, v.record_position, v.supersede_position) for v in first.versions] == [
        (1, 10, 20)
    ]
    assert first.versions[0].supersede_time == timestamp(2000)
    assert first.observations[0].utc_offset.seconds == -18_000
    assert first.next_page_token
    request.page_token = first.next_page_token
    request.page_size = 0
    rest = await stub.GetPointHistory(request, metadata=metadata)
    assert len(rest.versions) + len(rest.observations) == len(lineage) - 3
    assert rest.next_page_token == ""

    request.snap_time.CopyFrom(timestamp(SNAPS[1]))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetPointHistory(request, metadata=metadata)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    no_snap = pb.GetPointHistoryRequest(series=f"series/{SERIES}")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetPointHistory(no_snap, metadata=metadata)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "snap_time" in (error.value.details() or "")
