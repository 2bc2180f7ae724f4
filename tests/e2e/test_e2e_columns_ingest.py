"""The columnar ingest form end to end: BulkIngest chunks of PointColumns (decimal strings,
unscaled integers, one UTC offset or one per row) through the real qis-command, projected by the
real qis-projector and read back from qis-query in the per-point view; a chunk resent per point
is a duplicate, a bad chunk is refused naming its row while the stream goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.rpc import error_details_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import series_pb2, values_pb2

from tests.e2e.harness import (
    US,
    Cluster,
    as_user,
    micros,
    point,
    point_history,
    price,
    price_series,
    query_all,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

FIRST_SNAP = 1_717_200_000 * US  # 2024-06-01T00:00:00Z
CHUNK = 1_000
CHUNKS = 4


def snaps_of(chunk: int) -> list[int]:
    return [FIRST_SNAP + (chunk * CHUNK + i) * 60 * US for i in range(CHUNK)]


def unscaled_of(chunk: int) -> list[int]:
    """Prices at scale 4: 100.0000 upwards, a cent a minute, wrapping every 97 minutes."""
    return [1_000_000 + (chunk * CHUNK + i) % 97 * 100 for i in range(CHUNK)]


def text(unscaled: int) -> str:
    return f"{unscaled // 10_000}.{unscaled % 10_000:04d}"


def columnar(prefix: str, series_id: str, source: str, chunk: int) -> cmd.IngestPointsRequest:
    """Chunk 0 as texts with no offset, 1 unscaled with one offset, the others unscaled with
    an offset per row."""
    columns = values_pb2.PointColumns(snap_time_micros=snaps_of(chunk))
    if chunk == 0:
        columns.prices.texts.extend(text(u) for u in unscaled_of(chunk))
    else:
        columns.prices.unscaled.extend(unscaled_of(chunk))
        columns.prices.scale = 4
        columns.utc_offset_minutes.extend(
            [-240] if chunk == 1 else [(i % 3) * 60 for i in range(CHUNK)]
        )
    return cmd.IngestPointsRequest(
        command_id=f"{prefix}-{chunk}",
        series=f"series/{series_id}",
        source=f"sources/{source}",
        columns=columns,
    )


def per_point(prefix: str, series_id: str, source: str, chunk: int) -> cmd.IngestPointsRequest:
    """Chunk 1 as columnar() sends it, point by point."""
    assert chunk == 1
    return cmd.IngestPointsRequest(
        command_id=f"{prefix}-{chunk}",
        series=f"series/{series_id}",
        source=f"sources/{source}",
        points=[
            point(us, price(text(u)), utc_offset_s=-240 * 60)
            for us, u in zip(snaps_of(chunk), unscaled_of(chunk), strict=True)
        ],
    )


async def test_columnar_bulk_ingest_reads_back_point_by_point(cluster: Cluster) -> None:
    series_id, source = unique("cols"), unique("feed")
    prefix = unique("bulk")
    bad = columnar(prefix, series_id, source, 2)
    bad.command_id = f"{prefix}-bad"
    bad.columns.prices.ClearField("unscaled")
    bad.columns.prices.scale = 0
    bad.columns.prices.texts.extend(["1.5"] * CHUNK)
    bad.columns.prices.texts[17] = "1.5.0"
    chunks = [columnar(prefix, series_id, source, c) for c in range(CHUNKS)]
    sent = [chunks[0], chunks[1], per_point(prefix, series_id, source, 1), bad, *chunks[2:]]

    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(source, 1)], series_pb2.FREQUENCY_MINUTE))

        async def requests() -> AsyncIterator[cmd.IngestPointsRequest]:
            for request in sent:
                yield request

        acks = [ack async for ack in c.command.BulkIngest(requests(), metadata=as_user("loader"))]
        assert [a.command_id for a in acks] == [r.command_id for r in sent]
        assert [a.WhichOneof("outcome") for a in acks] == ["result"] * 3 + ["error"] + [
            "result"
        ] * 2

        # The per-point resend of chunk 1 is the same command: a duplicate, nothing new.
        assert [a.result.duplicate for a in acks] == [False, False, True, False, False, False]
        assert acks[2].result.commit_position == acks[1].result.commit_position
        assert [a.result.accepted for a in acks] == [CHUNK] * 3 + [0] + [CHUNK] * 2
        assert [a.result.published for a in acks] == [CHUNK, CHUNK, CHUNK, 0, CHUNK, CHUNK]

        # The bad chunk names its row, and stored nothing.
        bad_request = error_details_pb2.BadRequest()
        assert any(d.Unpack(bad_request) for d in acks[3].error.details)
        assert [v.field for v in bad_request.field_violations] == ["columns.prices.texts[17]"]

        last = max(a.result.commit_position for a in acks if a.WhichOneof("outcome") == "result")
        values = await query_all(c, series_id, min_position=last)
        expected = [
            (us, 1, text(u))
            for chunk in range(CHUNKS)
            for us, u in zip(snaps_of(chunk), unscaled_of(chunk), strict=True)
        ]
        assert [(micros(v.snap_time), v.version, v.value.price.value) for v in values] == expected
        assert {v.value.price.currency for v in values} == {"USD"}  # the series' own
        assert {tuple(v.sources) for v in values} == {(f"sources/{source}",)}
        assert {v.user for v in values} == {"loader"}

        # The offsets the source stated travel as lineage, as in the per-point form.
        for chunk, row, offset_s in [(0, 5, 0), (1, 5, -14_400), (2, 4, 3_600), (3, 2, 7_200)]:
            history, _ = await point_history(c, series_id, snaps_of(chunk)[row], min_position=last)
            assert [o.utc_offset.seconds for o in history.observations] == [offset_s]
