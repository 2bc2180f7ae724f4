"""Whether a series exists is told only to callers who may read it (docs/security.md): a reader
whose policy limits classifications is told the same for a series classified above his limit
and for a series that does not exist. Before, the query side decided a series the catalogue does
not know as unrestricted (its classification unknown), so the missing series answered NOT_FOUND
and the forbidden one PERMISSION_DENIED: the difference said the series exists. Through the real
services built by their composition roots, with bearer JWTs and the policies enforced.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import grpc
import grpc.aio
from qis.data.v1 import access_pb2, series_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import query_service_pb2 as q

from tests.integration.test_authz_command_matrix import (
    ROOT,
    SESSION_EXP,
    _at,
    _bearer,
    _series,
)
from tests.integration.test_authz_query_matrix import Cluster, cluster
from tests.unit.security.security_support import hmac_token

CARL = _bearer(hmac_token(sub="carl", roles=[], exp=SESSION_EXP))
"""Reads every series up to CONFIDENTIAL (the policy `capped`)."""


async def _capped_reader_and_a_restricted_series(c: Cluster) -> int:
    """Carl's policy, and the series SECRET classified RESTRICTED; the position they are at."""
    capped = access_pb2.AccessPolicy(
        name="accessPolicies/capped",
        principals=["user:carl"],
        resources=["series/*"],
        permissions=[access_pb2.PERMISSION_READ],
        conditions=[
            access_pb2.AccessCondition(
                data_classification=access_pb2.ClassificationLimit(
                    max_classification=series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL
                )
            )
        ],
    )
    await c.command.SetAccessPolicy(
        pb.SetAccessPolicyRequest(command_id="set-capped", policy=capped, reason="a capped reader"),
        metadata=ROOT,
    )
    secret = _series("feed")
    secret.classification = series_pb2.DATA_CLASSIFICATION_RESTRICTED
    done = await c.command.DefineSeries(
        pb.DefineSeriesRequest(command_id="def-SECRET", series_id="SECRET", series=secret),
        metadata=ROOT,
    )
    return done.commit_position


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_capped_reader_cannot_tell_a_series_above_its_cap_from_a_missing_one(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        at = await _capped_reader_and_a_restricted_series(c)
        stub = c.ports.stub
        # Carl's policy works: PX (INTERNAL) is his to read.
        px = q.GetSeriesRequest(name="series/PX", min_position=at)
        assert (await _code(stub.GetSeries(px, metadata=CARL))) == grpc.StatusCode.OK
        answers: dict[str, tuple[grpc.StatusCode, grpc.StatusCode]] = {}
        for name in ("SECRET", "NOSUCH"):
            got = q.GetSeriesRequest(name=f"series/{name}", min_position=at)
            values = q.GetValuesRequest(
                series=f"series/{name}", snap_times=[_at(1)], min_position=at
            )
            answers[name] = (
                (await _code(stub.GetSeries(got, metadata=CARL))),
                (await _code(stub.GetValues(values, metadata=CARL))),
            )
        # Neither is Carl's to read, so the answers must not say which one exists.
        assert answers["SECRET"] == answers["NOSUCH"], answers
