"""Malformed input is rejected end to end with the right status and machine-readable details,
and nothing of a rejected batch ever reaches the read model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2, values_pb2

from tests.e2e.harness import (
    DAY_US,
    US,
    Clients,
    Cluster,
    as_user,
    ingest_request,
    micros,
    price,
    price_series,
    query_all,
    setup_series,
    timestamp,
    unique,
)

pytestmark = pytest.mark.e2e

SNAPS = [1_706_821_200 * US + d * DAY_US for d in range(6)]  # 2024-02-01T21:00Z onwards
REJECTED = SNAPS[:3]  # what the rejected batch carries (point 1 is the bad one)
LATER = SNAPS[3:]  # what a later, valid command writes


@dataclass(frozen=True)
class Case:
    id: str
    points: list[values_pb2.DataPoint]
    code: grpc.StatusCode
    # BadRequest field violations, in order; each names the field or a part of it (a violation
    # on "points[1].snap_time.nanos" names "points[1].snap_time")
    fields: list[str] = field(default_factory=list)
    unknown_series: bool = False
    foreign_source: bool = False


def good(us: int, value: str = "101.5") -> values_pb2.DataPoint:
    return values_pb2.DataPoint(snap_time=timestamp(us), value=price(value))


def at(
    us: int,
    extra_nanos: int = 0,
    value: str = "101.5",
    utc_offset: duration_pb2.Duration | None = None,
) -> values_pb2.DataPoint:
    """A point at `us` plus `extra_nanos` (below the microsecond), stated with `utc_offset`."""
    snap = timestamp(us)
    snap.nanos += extra_nanos
    return values_pb2.DataPoint(snap_time=snap, utc_offset=utc_offset, value=price(value))


def names(violation: str, field_: str) -> bool:
    """Whether a violation's field path is `field_` or a part of it."""
    return violation == field_ or violation.startswith(f"{field_}.")


def point_index(path: str) -> int:
    return int(path.removeprefix("points[").split("]")[0]) if path.startswith("points[") else -1


def with_bad(point: values_pb2.DataPoint) -> list[values_pb2.DataPoint]:
    return [good(REJECTED[0]), point, good(REJECTED[2])]


def minutes(n: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(n * 60))


CASES = [
    Case(
        "nan",
        with_bad(good(REJECTED[1], "NaN")),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].value.price.value"],
    ),
    Case(
        "infinity",
        with_bad(good(REJECTED[1], "-Infinity")),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].value.price.value"],
    ),
    Case(
        "unparsable-decimal",
        with_bad(good(REJECTED[1], "1,015.25")),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].value.price.value"],
    ),
    Case(
        "snap-without-time",
        with_bad(values_pb2.DataPoint(value=price("101.5"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].snap_time"],
    ),
    Case(
        # Stored at the microsecond, it would be another point's snap or silently moved.
        "snap-below-the-microsecond",
        with_bad(at(REJECTED[1], extra_nanos=500)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].snap_time"],
    ),
    Case(
        "snap-after-9999",
        with_bad(
            values_pb2.DataPoint(
                snap_time=timestamp_pb2.Timestamp(seconds=253_402_300_800), value=price("1")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].snap_time"],
    ),
    Case(
        "snap-nanos-negative",
        with_bad(
            values_pb2.DataPoint(
                snap_time=timestamp_pb2.Timestamp(seconds=1_706_907_600, nanos=-1000),
                value=price("1"),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].snap_time"],
    ),
    Case(
        "offset-not-whole-minutes",
        with_bad(at(REJECTED[1], utc_offset=duration_pb2.Duration(seconds=-18_030))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].utc_offset"],
    ),
    Case(
        "offset-below-the-second",
        with_bad(at(REJECTED[1], utc_offset=duration_pb2.Duration(seconds=3_600, nanos=1))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].utc_offset"],
    ),
    Case(
        "offset-of-a-day",
        with_bad(at(REJECTED[1], utc_offset=minutes(24 * 60))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].utc_offset"],
    ),
    Case(
        "every-violation-reported",
        [
            good(REJECTED[0]),
            good(REJECTED[1], "nan"),
            at(REJECTED[2], extra_nanos=1, value="1.2.3", utc_offset=minutes(-24 * 60)),
        ],
        grpc.StatusCode.INVALID_ARGUMENT,
        [
            "points[1].value.price.value",
            "points[2].snap_time",
            "points[2].utc_offset",
            "points[2].value.price.value",
        ],
    ),
    Case(
        "wrong-data-type",
        with_bad(
            values_pb2.DataPoint(
                snap_time=timestamp(REJECTED[1]),
                value=values_pb2.DataValue(volume=values_pb2.Volume(quantity="10")),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].value"],
    ),
    Case(
        "wrong-currency",
        with_bad(
            values_pb2.DataPoint(
                snap_time=timestamp(REJECTED[1]),
                value=values_pb2.DataValue(price=values_pb2.Price(value="1", currency="EUR")),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].value.price.currency"],
    ),
    Case(
        "same-instant-twice",
        # The same UTC instant twice, stated with another offset the second time.
        with_bad(at(REJECTED[0], utc_offset=minutes(60))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["points[1].snap_time"],
    ),
    Case("unknown-series", with_bad(good(REJECTED[1])), grpc.StatusCode.NOT_FOUND, [], True),
    Case(
        "source-not-configured",
        with_bad(good(REJECTED[1])),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["source"],
        foreign_source=True,
    ),
]


async def rich_status(call: grpc.aio.Call) -> status_pb2.Status:
    """google.rpc.Status from the `grpc-status-details-bin` trailer."""
    status = await rpc_status.aio.from_call(call)
    assert isinstance(status, status_pb2.Status), "no grpc-status-details-bin trailer"
    return status


def violations(status: status_pb2.Status) -> list[error_details_pb2.BadRequest.FieldViolation]:
    found: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.extend(bad_request.field_violations)
    return found


async def assert_not_stored(c: Clients, series_id: str, rejected_command: str, after: int) -> None:
    """Nothing of the rejected batch in the read model, as of a later successful command."""
    name = f"series/{series_id}"
    latest = await query_all(c, series_id, min_position=after)
    assert [micros(v.snap_time) for v in latest] == LATER
    for snap in REJECTED:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await c.query.GetPointHistory(
                q.GetPointHistoryRequest(
                    series=name, snap_time=timestamp(snap), min_position=after
                ),
                metadata=as_user("reader"),
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    audit = await c.query.ListAuditEntries(
        q.ListAuditEntriesRequest(parent=name, min_position=after), metadata=as_user("reader")
    )
    assert audit.entries
    assert rejected_command not in {e.command_id for e in audit.entries}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_malformed_ingest_is_rejected_and_stores_nothing(
    cluster: Cluster, case: Case
) -> None:
    series_id, source, foreign = unique("bad"), unique("src"), unique("other")
    name = f"series/{series_id}"
    async with cluster.clients() as c:
        if not case.unknown_series:
            await setup_series(c, series_id, price_series([(source, 1)]))
        await c.command.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id=unique("reg"),
                source_id=foreign,
                source=series_pb2.DataSource(provider="file"),
            ),
            metadata=as_user("admin"),
        )
        rejected = unique("rejected")
        request = cmd.IngestPointsRequest(
            command_id=rejected,
            series=name,
            source=f"sources/{foreign if case.foreign_source else source}",
            points=case.points,
        )
        call = c.command.IngestPoints(request, metadata=as_user("loader"))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == case.code, error.value.details()
        status = await rich_status(call)
        assert status.code == case.code.value[0]
        if case.code == grpc.StatusCode.INVALID_ARGUMENT:
            found = violations(status)
            # Every violation, each field once, listed point by point.
            assert len(found) == len(case.fields), found
            for named in case.fields:
                assert sum(names(v.field, named) for v in found) == 1, (named, found)
            indices = [point_index(v.field) for v in found]
            assert indices == sorted(indices), found
            assert all(v.description for v in found)
        else:
            info = error_details_pb2.ResourceInfo()
            assert any(d.Unpack(info) for d in status.details)
            assert info.resource_name == name

        if case.unknown_series:
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await c.query.GetSeries(q.GetSeriesRequest(name=name), metadata=as_user("r"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            await setup_series(c, series_id, price_series([(source, 1)]))

        later = await c.command.IngestPoints(
            ingest_request(unique("later"), series_id, source, [(s, "99.5") for s in LATER]),
            metadata=as_user("loader"),
        )
        assert later.accepted == len(LATER)
        await assert_not_stored(c, series_id, rejected, later.commit_position)

        # The rejected command id was not remembered: sent again with valid points, it is new.
        retry = await c.command.IngestPoints(
            ingest_request(rejected, series_id, source, [(s, "100") for s in REJECTED]),
            metadata=as_user("loader"),
        )
        assert (retry.duplicate, retry.accepted) == (False, len(REJECTED))


async def test_bulk_ingest_answers_a_malformed_chunk_and_goes_on(cluster: Cluster) -> None:
    series_id, source = unique("bulkbad"), unique("src")
    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(source, 1)]))
        chunks = [
            [good(SNAPS[3]), good(SNAPS[4])],
            [good(REJECTED[0]), good(REJECTED[1], "NaN")],
            [good(SNAPS[5])],
        ]
        prefix = unique("chunk")

        async def requests() -> AsyncIterator[cmd.IngestPointsRequest]:
            for i, points in enumerate(chunks):
                yield cmd.IngestPointsRequest(
                    command_id=f"{prefix}-{i}",
                    series=f"series/{series_id}",
                    source=f"sources/{source}",
                    points=points,
                )

        acks = [a async for a in c.command.BulkIngest(requests(), metadata=as_user("loader"))]
        assert [a.command_id for a in acks] == [f"{prefix}-{i}" for i in range(3)]
        assert [a.WhichOneof("outcome") for a in acks] == ["result", "error", "result"]
        error = acks[1].error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert [v.field for v in violations(error)] == ["points[1].value.price.value"]
        assert acks[0].result.commit_position < acks[2].result.commit_position
        await assert_not_stored(c, series_id, f"{prefix}-1", acks[2].result.commit_position)
