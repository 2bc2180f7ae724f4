"""Existence oracles for a reader whose policy limits classifications, through the real services
on loopback (as tests/integration/test_access_existence_paths.py): the refusal's status details,
and the page tokens of a listing that holds series back (sealed: qis_query.application.paging).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import status_pb2
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

import tests.integration.test_authz_query_matrix as matrix
from tests.integration.test_access_existence_paths import (
    CARL,
    _define,
    _normalised,
    _set_policy,
)
from tests.integration.test_authz_command_matrix import CALLERS
from tests.integration.test_authz_query_matrix import cluster


async def _details(stub: Any, series_id: str, at: int) -> status_pb2.Status:
    """The google.rpc.Status of carl's GetSeries of `series_id`, its message normalised."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetSeries(
            q.GetSeriesRequest(name=f"series/{series_id}", min_position=at), metadata=CARL
        )
    raw = dict(refused.value.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    status.message = _normalised(status.message, series_id)
    return status


async def test_the_status_details_of_a_refusal_do_not_tell_a_missing_series_apart(
    tmp_path: Path,
) -> None:
    """Capped at INTERNAL: CONFIDENTIAL, RESTRICTED and missing answer the same status, details
    (ErrorInfo) included: the details hold only the reason ACCESS_DENIED."""
    async with cluster(tmp_path) as c:
        await _set_policy(c, "capped", ["series/*"], series_pb2.DATA_CLASSIFICATION_INTERNAL)
        await _define(c, "CONF", series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
        at = await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        found = [await _details(c.ports.stub, s, at) for s in ("CONF", "SECRET", "NOSUCH")]
        assert found[0] == found[1] == found[2]
        assert found[0].code == grpc.StatusCode.PERMISSION_DENIED.value[0]


async def test_a_listing_page_token_does_not_name_a_series_it_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing that holds series back ends a call after a bounded scan, with a token that
    resumes after the last record read (scanning.scan), which may be a series the caller may not
    read: Carl, capped at CONFIDENTIAL, pages ListSeries past the RESTRICTED ASECRET. The token
    is sealed (paging.PageTokens): no base64 decoding of it names ASECRET; and bound to its
    caller: replayed by another reader it is INVALID_ARGUMENT on page_token."""
    settings = matrix.query_settings

    def one_record_per_call(command_port: int, *, flight: bool):  # type: ignore[no-untyped-def]
        return settings(command_port, flight=flight).model_copy(
            update={"query_max_scanned_per_call": 1}
        )

    monkeypatch.setattr(matrix, "query_settings", one_record_per_call)
    async with cluster(tmp_path) as c:
        await _set_policy(c, "capped", ["series/*"], series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
        at = await _define(c, "ASECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        tokens, token, names = [], "", []
        while True:
            page = await c.ports.stub.ListSeries(
                q.ListSeriesRequest(page_token=token, min_position=at), metadata=CARL
            )
            names += [s.name for s in page.series]
            token = page.next_page_token
            if not token:
                break
            tokens.append(token)
        assert names == ["series/PX"]  # the listing itself holds ASECRET back
        assert tokens
        assert not any(b"ASECRET" in base64.urlsafe_b64decode(t) for t in tokens), tokens
        with pytest.raises(grpc.aio.AioRpcError) as replayed:
            await c.ports.stub.ListSeries(
                q.ListSeriesRequest(page_token=tokens[0], min_position=at),
                metadata=CALLERS["reader"](),
            )
        assert replayed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
