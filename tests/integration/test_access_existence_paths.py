"""No read path tells a reader whose policy limits classifications that a series exists: not by
its status, nor by its message once the series' name and the denial's id are taken out (a series
the catalogue does not know is decided at the highest classification on the read side). Through the real services built by their composition roots, with
bearer JWTs and the policies enforced, as tests/integration/test_access_existence_oracle.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pyarrow.flight as fl
import pytest
from qis.data.v1 import access_pb2, series_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import query_service_pb2 as q

from tests.integration.test_authz_command_matrix import (
    CALLERS,
    ROOT,
    SESSION_EXP,
    _at,
    _bearer,
    _points,
    _series,
)
from tests.integration.test_authz_query_matrix import (
    Cluster,
    _do_get,
    _flight_headers,
    cluster,
    denials_after,
)
from tests.unit.security.security_support import hmac_token

CARL = _bearer(hmac_token(sub="carl", roles=[], exp=SESSION_EXP))
"""Reads series up to the classification his policy `capped` sets."""

Outcome = tuple[str, str]
"""A call's status code's name and its message, the series' name and the denial's id taken out."""


def _limit(level: series_pb2.DataClassification.ValueType) -> access_pb2.AccessCondition:
    return access_pb2.AccessCondition(
        data_classification=access_pb2.ClassificationLimit(max_classification=level)
    )


async def _set_policy(c: Cluster, name: str, resources: list[str], capped_at: Any) -> None:
    policy = access_pb2.AccessPolicy(
        name=f"accessPolicies/{name}",
        principals=["user:carl"],
        resources=resources,
        permissions=[access_pb2.PERMISSION_READ],
        conditions=[] if capped_at is None else [_limit(capped_at)],
    )
    await c.command.SetAccessPolicy(
        pb.SetAccessPolicyRequest(
            command_id=f"set-{name}", policy=policy, reason="a capped reader"
        ),
        metadata=ROOT,
    )


async def _define(c: Cluster, series_id: str, level: Any) -> int:
    series = _series("feed")
    series.classification = level
    done = await c.command.DefineSeries(
        pb.DefineSeriesRequest(command_id=f"def-{series_id}", series_id=series_id, series=series),
        metadata=ROOT,
    )
    return done.commit_position


async def _capped_and_secret(c: Cluster) -> int:
    """Carl reads `series/*` up to CONFIDENTIAL, and SECRET is RESTRICTED; the position after."""
    await _set_policy(c, "capped", ["series/*"], series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
    return await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)


def _normalised(message: str, series_id: str) -> str:
    message = re.sub(r"denial [0-9a-f]+", "denial ?", message)
    return re.sub(rf"\b{re.escape(series_id)}\b", "?", message)


async def _grpc(c: Cluster, rpc: str, series_id: str, at: int, metadata: Any) -> Outcome:
    """The outcome of a valid call of `rpc` about `series_id` (a stream read to its first
    message)."""
    name = f"series/{series_id}"
    requests: dict[str, Callable[[], Any]] = {
        "GetSeries": lambda: q.GetSeriesRequest(name=name, min_position=at),
        "GetValues": lambda: q.GetValuesRequest(series=name, snap_times=[_at(1)], min_position=at),
        "GetValues as of": lambda: q.GetValuesRequest(
            series=name, snap_times=[_at(1)], as_of_position=at, min_position=at
        ),
        "QueryRange": lambda: q.QueryRangeRequest(series=name, min_position=at),
        "QueryRange columns": lambda: q.QueryRangeRequest(
            series=name, view=q.VALUE_VIEW_COLUMNS, min_position=at
        ),
        "GetPointHistory": lambda: q.GetPointHistoryRequest(
            series=name, snap_time=_at(1), min_position=at
        ),
        "ListQualityMetrics": lambda: q.ListQualityMetricsRequest(series=name, min_position=at),
        "ListQualityIssues": lambda: q.ListQualityIssuesRequest(parent=name, min_position=at),
        "ListAuditEntries": lambda: q.ListAuditEntriesRequest(parent=name, min_position=at),
        "Subscribe": lambda: q.SubscribeRequest(series=[name], min_position=at),
        "Subscribe with PX": lambda: q.SubscribeRequest(
            series=["series/PX", name], min_position=at
        ),
    }
    method = rpc.split(" ")[0]
    try:
        answer = getattr(c.ports.stub, method)(requests[rpc](), metadata=metadata)
        if method in ("QueryRange", "Subscribe"):
            await asyncio.wait_for(anext(aiter(answer)), 10)
            answer.cancel()
        else:
            await answer
    except grpc.aio.AioRpcError as error:
        return error.code().name, _normalised(error.details() or "", series_id)
    return "OK", ""


async def _flight(c: Cluster, series_id: str, at: int, metadata: Any) -> Outcome:
    """DoGet of PX and `series_id` (as `qis export` asks for them)."""
    ticket = json.dumps({"series": ["series/PX", f"series/{series_id}"], "min_position": at})
    try:
        await asyncio.to_thread(_do_get, c.ports.flight, ticket.encode(), _flight_headers(metadata))
    except fl.FlightError as error:
        # The message carries the call's details after the status text: the first line is it.
        return type(error).__name__, _normalised(str(error).splitlines()[0], series_id)
    return "OK", ""


RPCS = (
    "GetSeries",
    "GetValues",
    "GetValues as of",
    "QueryRange",
    "QueryRange columns",
    "GetPointHistory",
    "ListQualityMetrics",
    "ListQualityIssues",
    "ListAuditEntries",
    "Subscribe",
    "Subscribe with PX",
)


async def _outcomes(c: Cluster, series_id: str, at: int, metadata: Any) -> dict[str, Outcome]:
    found = {rpc: await _grpc(c, rpc, series_id, at, metadata) for rpc in RPCS}
    found["DoGet"] = await _flight(c, series_id, at, metadata)
    return found


async def test_every_read_path_answers_a_missing_series_as_one_above_the_cap(
    tmp_path: Path,
) -> None:
    """Capped at CONFIDENTIAL: RESTRICTED, the level a missing series is decided at, is the only
    one above the cap."""
    async with cluster(tmp_path) as c:
        at = await _capped_and_secret(c)
        secret = await _outcomes(c, "SECRET", at, CARL)
        missing = await _outcomes(c, "NOSUCH", at, CARL)
        assert all(
            code in ("PERMISSION_DENIED", "FlightUnauthorizedError") for code, _ in secret.values()
        ), secret
        assert secret == missing


async def test_a_series_above_the_cap_but_not_restricted_is_told_apart_from_a_missing_one(
    tmp_path: Path,
) -> None:
    """Capped at INTERNAL: a CONFIDENTIAL series and a missing one are refused alike on every
    read path. Before, the refusal named the level the series was decided at ("..., not
    confidential" against "..., not restricted"), and no missing series is ever CONFIDENTIAL, so
    the message said that this one exists, and its classification."""
    async with cluster(tmp_path) as c:
        await _set_policy(c, "capped", ["series/*"], series_pb2.DATA_CLASSIFICATION_INTERNAL)
        at = await _define(c, "CONF", series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
        confidential = await _outcomes(c, "CONF", at, CARL)
        missing = await _outcomes(c, "NOSUCH", at, CARL)
        assert {rpc: code for rpc, (code, _) in confidential.items()} == {
            rpc: code for rpc, (code, _) in missing.items()
        }  # the status is alike already
        assert confidential == missing


async def test_a_denial_of_a_missing_series_is_recorded_as_of_one_above_the_cap(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        at = await _capped_and_secret(c)
        records = []
        for series_id in ("SECRET", "NOSUCH"):
            head = await c.events.head_position()
            await _grpc(c, "GetSeries", series_id, at, CARL)
            [denial] = await denials_after(c.events, head)
            records.append(denial)
        secret, missing = records
        assert (missing.resource, missing.user_id, missing.method) == (
            "series/NOSUCH",
            "carl",
            "GetSeries",
        )
        # The record says RESTRICTED for a series that does not exist: what the refusal was
        # decided on, indistinguishable in the audit trail from a RESTRICTED series.
        assert (missing.classification, missing.refusals) == (
            secret.classification,
            secret.refusals,
        )


@pytest.mark.parametrize("rpc", ["GetSeries", "GetValues", "QueryRange", "Subscribe"])
async def test_a_reader_without_a_limit_is_still_told_a_series_is_missing(
    tmp_path: Path, rpc: str
) -> None:
    """Rita (role reader: every series, no condition) while another policy limits
    classifications, so that the policies use them."""
    async with cluster(tmp_path) as c:
        at = await _capped_and_secret(c)
        assert (await _grpc(c, rpc, "NOSUCH", at, CALLERS["reader"]()))[0] == "NOT_FOUND"
        assert (await _grpc(c, "GetSeries", "SECRET", at, CALLERS["reader"]()))[0] == "OK"


async def test_an_uncapped_policy_on_some_series_tells_which_of_those_exist(
    tmp_path: Path,
) -> None:
    """Carl capped on series/* and uncapped on series/X*: of X* he may read anything, missing or
    not; elsewhere a missing series is refused as one above his cap."""
    async with cluster(tmp_path) as c:
        await _set_policy(c, "capped", ["series/*"], series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
        await _set_policy(c, "xs", ["series/X*"], None)
        await _define(c, "XSECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        at = await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        codes = {
            s: (await _grpc(c, "GetSeries", s, at, CARL))[0]
            for s in ("XSECRET", "XNOSUCH", "SECRET", "NOSUCH", "PX")
        }
        assert codes == {
            "XSECRET": "OK",
            "XNOSUCH": "NOT_FOUND",
            "SECRET": "PERMISSION_DENIED",
            "NOSUCH": "PERMISSION_DENIED",
            "PX": "OK",
        }


async def test_a_series_refused_while_missing_is_read_once_defined_read_your_writes(
    tmp_path: Path,
) -> None:
    """The RESTRICTED level remembered for a missing series must not outlive its definition."""
    async with cluster(tmp_path) as c:
        at = await _capped_and_secret(c)
        for rpc in ("GetSeries", "Subscribe"):
            assert (await _grpc(c, rpc, "LATER", at, CARL))[0] == "PERMISSION_DENIED"
        defined = await _define(c, "LATER", series_pb2.DATA_CLASSIFICATION_INTERNAL)
        assert (await _grpc(c, "GetSeries", "LATER", defined, CARL))[0] == "OK"
        # As it is told of after the series was defined, without waiting for its definition.
        assert (await _grpc(c, "GetSeries", "LATER", 0, CARL))[0] == "OK"


async def test_listings_and_a_subscription_to_every_series_are_unchanged_for_a_capped_reader(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        at = await _capped_and_secret(c)
        head = await c.events.head_position()
        listed = await c.ports.stub.ListSeries(q.ListSeriesRequest(min_position=at), metadata=CARL)
        assert [s.name for s in listed.series] == ["series/PX"]
        everything = c.ports.stub.Subscribe(q.SubscribeRequest(min_position=at), metadata=CARL)
        first = await asyncio.wait_for(everything.read(), 10)
        assert isinstance(first, q.SubscribeResponse)
        assert {v.series for v in first.values} == {"series/PX"}
        everything.cancel()
        assert await denials_after(c.events, head) == []  # filtered, not refused


async def _audited(c: Cluster, parent: str, at: int) -> set[str]:
    """The resources of the audit entries of `parent` carl is shown (none when refused)."""
    request = q.ListAuditEntriesRequest(parent=parent, min_position=at)
    try:
        listed = await c.ports.stub.ListAuditEntries(request, metadata=CARL)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        return set()
    return {e.resource for e in listed.entries}


@pytest.mark.parametrize(
    ("resources", "parent"), [(["*"], "-"), (["series/*", "sources/*"], "sources/feed")]
)
async def test_an_audit_trail_not_of_a_series_does_not_show_a_series_above_the_cap(
    tmp_path: Path, resources: list[str], parent: str
) -> None:
    """The audit trail of everything (`read` on "*") is decided at the highest classification,
    so a reader capped at CONFIDENTIAL is refused it; before, it was decided without one, and
    listed what happened to a RESTRICTED series: that it exists, who defined and fed it, when.
    The audit trail of a source (wendy writes as sources/feed) does not list the series."""
    async with cluster(tmp_path) as c:
        await _set_policy(c, "capped", resources, series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL)
        await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        fed = await c.command.IngestPoints(
            _points("SECRET", "feed", "secret-in", (1, "1")), metadata=CALLERS["writer"]()
        )
        assert "series/SECRET" not in await _audited(c, parent, fed.commit_position)
