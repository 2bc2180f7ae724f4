"""The handler reads ScalarPoints (_utc_us, _by_bucket's slices, _conform's
fast path): a command whose points the edge kept in columns stores the very events the same
command with a list of pairs stores, across buckets and in any order; a retry in the other
form is a duplicate, and another command under the same id is refused."""

from __future__ import annotations

import asyncio

import pytest
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_command.application.commands import IngestPoints
from qis_domain.command_log import COMMAND_REUSED
from qis_domain.commands import CommandContext
from qis_domain.errors import AlreadyExists, InvalidArgument
from qis_domain.scalar_points import ScalarPoints

from tests.service.command.test_command_columns import (
    NOW_US,
    SOURCE,
    T0,
    US,
    Side,
    _request,
    command_of,
)

DAY = 86_400 * US
# Spanning three daily buckets, sent out of order and in order; texts own and not.
SNAPS = [T0 + 2 * DAY + 5, T0, T0 + DAY + 7, T0 + 1, T0 + 2 * DAY]
TEXTS = ["1.50", "-0", "1E+3", "0.0000001", "101"]


def _columnar(
    command_id: str, snaps: list[int], texts: list[str], kind: str = "prices"
) -> pb.IngestPointsRequest:
    request = _request(command_id, kind.upper())
    request.columns.snap_time_micros.extend(snaps)
    request.columns.utc_offset_minutes.extend([-300])
    getattr(request.columns, kind).CopyFrom(values_pb2.DecimalColumn(texts=texts))
    return request


async def _stored(
    kind: str, command: IngestPoints
) -> list[tuple[str, int, int, str, bytes, bytes]]:
    side = await Side.with_series(kind)
    result = await side.handlers.ingest(command, CommandContext("c-1", "loader", NOW_US))
    assert not result.duplicate
    return await side.log()


@pytest.mark.parametrize("kind", ["prices", "volumes"])
@pytest.mark.parametrize("snaps", [SNAPS, sorted(SNAPS)])
@pytest.mark.parametrize("texts", [TEXTS, ["1.50", "-0", "2", "0.000001", "101"]])
def test_columns_across_buckets_store_what_their_pairs_store(
    kind: str, snaps: list[int], texts: list[str]
) -> None:
    columnar = command_of(_columnar("c-1", snaps, texts, kind))
    assert isinstance(columnar.points, ScalarPoints)
    pairs = IngestPoints(columnar.series_id, columnar.source_id, list(columnar.points))

    async def run() -> None:
        assert await _stored(kind, columnar) == await _stored(kind, pairs)

    asyncio.run(run())


def test_a_retry_in_either_form_is_a_duplicate_and_other_points_are_refused() -> None:
    columnar = command_of(_columnar("c-1", SNAPS, TEXTS))
    pairs = IngestPoints(columnar.series_id, columnar.source_id, list(columnar.points))
    ctx = CommandContext("c-1", "loader", NOW_US)

    async def run() -> None:
        for first, again in ((columnar, pairs), (pairs, columnar)):
            side = await Side.with_series("prices")
            assert not (await side.handlers.ingest(first, ctx)).duplicate
            before = await side.log()
            assert (await side.handlers.ingest(again, ctx)).duplicate
            assert await side.log() == before
            # one figure written otherwise ("1.5" is not "1.50"), one snap a µs later: other
            # commands under the same id
            later = [SNAPS[0] + 1, *SNAPS[1:]]
            for other in (
                command_of(_columnar("c-1", SNAPS, ["1.5", *TEXTS[1:]])),
                command_of(_columnar("c-1", later, TEXTS)),
            ):
                renamed = IngestPoints(columnar.series_id, SOURCE, other.points)
                with pytest.raises(AlreadyExists) as refused:
                    await side.handlers.ingest(renamed, ctx)
                assert refused.value.reason == COMMAND_REUSED
            assert await side.log() == before

    asyncio.run(run())


def test_columns_of_the_other_kind_are_refused_by_their_column() -> None:
    """_conform's fast path is for a batch of the series' kind only: volumes sent to a price
    series are refused once, named by their column, as the list of them is."""
    volumes = command_of(_columnar("c-1", SNAPS, TEXTS, "volumes"))
    assert isinstance(volumes.points, ScalarPoints)
    command = IngestPoints("PRICES", SOURCE, volumes.points)
    pairs = IngestPoints("PRICES", SOURCE, list(volumes.points))

    async def run() -> None:
        side = await Side.with_series("prices")
        ctx = CommandContext("c-1", "loader", NOW_US)
        with pytest.raises(InvalidArgument) as columns:
            await side.handlers.ingest(command, ctx, columns="columns.volumes")
        with pytest.raises(InvalidArgument) as listed:
            await side.handlers.ingest(pairs, ctx, columns="columns.volumes")
        assert columns.value.violations == listed.value.violations
        assert [v.field for v in columns.value.violations] == ["columns.volumes"]

    asyncio.run(run())
