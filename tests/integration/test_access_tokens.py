"""The query service's tokens through the real services (as
tests/integration/test_access_oracles.py): each paged RPC's page token resumes only the request
and the caller it was issued for, refused otherwise as INVALID_ARGUMENT with a field violation on
page_token; and a subscription to every series sends a capped reader resume tokens that tell
nothing of the changes it held back.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2
from qis_query.application.paging import EVENT_INDEX_LIMIT

from tests.integration.test_access_existence_paths import CARL, _define, _set_policy
from tests.integration.test_authz_command_matrix import CALLERS, _at, _points
from tests.integration.test_authz_query_matrix import Cluster, cluster


async def _violations(call: Awaitable[object]) -> list[str]:
    """The fields of the BadRequest violations of a call refused as INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    raw = dict(refused.value.trailing_metadata() or ())["grpc-status-details-bin"]
    fields = []
    for detail in status_pb2.Status.FromString(raw).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


Paged = Callable[[str], Awaitable[Any]]
"""One paged RPC of the reader rita, called with a page token, at page_size 1."""


def _paged(c: Cluster, at: int, metadata: Any) -> dict[str, Paged]:
    stub = c.ports.stub

    async def query_range(token: str) -> Any:
        request = q.QueryRangeRequest(
            series="series/PX", page_size=1, page_token=token, min_position=at
        )
        return await anext(aiter(stub.QueryRange(request, metadata=metadata)))

    return {
        "QueryRange": query_range,
        "GetPointHistory": lambda token: stub.GetPointHistory(
            q.GetPointHistoryRequest(
                series="series/PX",
                snap_time=_at(1),
                page_size=1,
                page_token=token,
                min_position=at,
            ),
            metadata=metadata,
        ),
        "ListAuditEntries": lambda token: stub.ListAuditEntries(
            q.ListAuditEntriesRequest(
                parent="series/PX", page_size=1, page_token=token, min_position=at
            ),
            metadata=metadata,
        ),
        "ListDataSources": lambda token: stub.ListDataSources(
            q.ListDataSourcesRequest(page_size=1, page_token=token, min_position=at),
            metadata=metadata,
        ),
    }


async def test_every_paged_token_is_refused_to_another_caller_and_another_rpc(
    tmp_path: Path,
) -> None:
    """rita's token of each paged RPC resumes her listing, and is INVALID_ARGUMENT on page_token
    when sent by Carl (who may read it all) or with another RPC."""
    async with cluster(tmp_path) as c:
        await _set_policy(c, "uncapped", ["series/*", "sources/*"], None)
        at = await c.events.head_position()
        ritas, carls = _paged(c, at, CALLERS["reader"]()), _paged(c, at, CARL)
        issued = {}
        for rpc, call in ritas.items():
            token = (await call("")).next_page_token
            assert token, rpc
            await call(token)  # resumes for rita
            issued[rpc] = token
        for rpc, token in issued.items():
            assert await _violations(carls[rpc](token)) == ["page_token"], rpc
            await carls[rpc]("")  # the request itself is Carl's to make
            for other, call in ritas.items():
                if other != rpc:
                    assert await _violations(call(token)) == ["page_token"], (rpc, other)


def _resumes_after(token: str) -> tuple[int, int]:
    content = json.loads(base64.urlsafe_b64decode(token))
    return content["position"], content["index"]


async def test_a_resume_token_tells_nothing_of_the_changes_it_held_back(tmp_path: Path) -> None:
    """Carl, capped at CONFIDENTIAL, subscribes to every series; PX changes, then the RESTRICTED
    SECRET (five points), read in one batch: Carl is sent PX's change with a token resuming after
    the last change read, SECRET's fifth. Its index told him that a series he may not read had
    five points published at that position (what changed, not only that the log moved: the
    threat model of docs/security.md). Fails today; resuming after the whole position, or after
    the last change sent, tells nothing more than a read position does."""
    async with cluster(tmp_path) as c:
        await _set_policy(c, "capped", ["series/*"], series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
        await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        days = [(d, "10") for d in range(1, 6)]
        fed = await c.command.IngestPoints(
            _points("SECRET", "feed", "secret-in", *days), metadata=CALLERS["writer"]()
        )
        publisher = CALLERS["publisher"]()
        await c.command.PublishPoints(
            pb.PublishPointsRequest(command_id="pub-px", series="series/PX", snap_times=[_at(3)]),
            metadata=publisher,
        )
        hidden = await c.command.PublishPoints(
            pb.PublishPointsRequest(
                command_id="pub-secret",
                series="series/SECRET",
                snap_times=[_at(d) for d, _ in days],
            ),
            metadata=publisher,
        )
        at = hidden.commit_position
        px = await _first(c, ["series/PX"], fed.commit_position, at, CALLERS["reader"]())
        first = await _first(c, [], fed.commit_position, at, CARL)
        assert {v.series for v in first.values} == {"series/PX"}
        sent = _resumes_after(px.resume_token)
        position, index = _resumes_after(first.resume_token)
        # After the last change sent, or after every change of the position read up to: a
        # position, which a read position tells too; not SECRET's fifth change.
        assert (position, index) == sent or (
            position > sent[0] and index == EVENT_INDEX_LIMIT - 1
        ), (
            sent,
            (position, index),
        )


async def _first(
    c: Cluster, series: list[str], after: int, at: int, metadata: Any
) -> q.SubscribeResponse:
    """The first batch of a subscription to `series` (every series when empty) after `after`."""
    subscription = c.ports.stub.Subscribe(
        q.SubscribeRequest(series=series, after_position=after, min_position=at),
        metadata=metadata,
    )
    try:
        first = await asyncio.wait_for(subscription.read(), 10)
    finally:
        subscription.cancel()
    assert isinstance(first, q.SubscribeResponse)
    return first


async def test_the_exception_queue_of_every_series_holds_back_a_series_above_the_cap(
    tmp_path: Path,
) -> None:
    """Carl, capped at CONFIDENTIAL, lists the quality issues of `series/-` a page of one at a
    time: PX's, never the RESTRICTED SECRET's jump, whose queue rita reads."""
    async with cluster(tmp_path) as c:
        await _set_policy(c, "capped", ["series/*"], series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
        await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        fed = await c.command.IngestPoints(
            _points("SECRET", "feed", "secret-in", (1, "10"), (2, "100")),
            metadata=CALLERS["writer"](),
        )
        at = fed.commit_position

        async def listed(metadata: Any) -> list[str]:
            parents, token = [], ""
            while True:
                page = await c.ports.stub.ListQualityIssues(
                    q.ListQualityIssuesRequest(
                        parent="series/-", page_size=1, page_token=token, min_position=at
                    ),
                    metadata=metadata,
                )
                parents += [i.series for i in page.issues]
                token = page.next_page_token
                if not token:
                    return parents

        assert "series/SECRET" in await listed(CALLERS["reader"]())
        carls = await listed(CARL)
        assert carls
        assert set(carls) == {"series/PX"}
