"""The feeds' BulkIngest sender (qis_feeds.adapters.bulk_ingest) against a command service whose
request size limit (QIS_COMMAND_MAX_REQUEST_BYTES) is below the size of some of its chunks: a
chunk refused as too large goes again in halves until they fit, never round and round."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from pathlib import Path

import pytest
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, SenderSettings, SendStopped
from qis_feeds.application.batching import Chunk, make_chunk
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import Point, ValueKind

from tests.integration.command_service_support import command_service
from tests.unit.adapters.test_edge_command_service import USER

LIMIT = 20_000
FIRST_SNAP_US = 1_262_379_600 * 1_000_000  # 2010-01-01T21:00:00Z: series PX is daily
# Two failures at most: a sender going round and round fails fast instead of hanging.
QUICK = SenderSettings(backoff_first_s=0.01, backoff_cap_s=0.05, max_stream_failures=2)


def prices(first_day: int, values: Iterable[str]) -> Chunk:
    points = tuple(
        Point(
            "PX", "bbg", ValueKind.PRICE, FIRST_SNAP_US + (first_day + d) * 86_400_000_000, 0, (v,)
        )
        for d, v in enumerate(values)
    )
    return make_chunk("PX", "bbg", ValueKind.PRICE, points)


def days(first_day: int, count: int) -> Chunk:
    return prices(first_day, (f"{100 + d % 50}.125" for d in range(count)))


async def send(sender: BulkIngestSender, chunks: list[Chunk]) -> None:
    queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
    for item in [*chunks, None]:
        queue.put_nowait(item)
    await asyncio.wait_for(sender.send_all(queue), 20)


async def test_a_chunk_over_the_limit_is_sent_again_in_halves_and_lands_once(
    tmp_path: Path,
) -> None:
    """Before, the stream failed on the same chunk over and over (backing off), and a
    long-running feed (no failure limit) never got past it."""
    chunks = [days(0, 10), days(10, 1_500), days(1_510, 10)]  # the middle one: 25 kB
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store, command_max_request_bytes=LIMIT) as served:
        first = FeedCounters()
        await send(BulkIngestSender(served.stub, USER, first, QUICK), chunks)
        assert (first.accepted, first.rejected, first.duplicates) == (1_520, 0, 0)
        again = FeedCounters()  # a re-run halves alike: every point answered a duplicate
        await send(BulkIngestSender(served.stub, USER, again, QUICK), chunks)
        assert (again.accepted, again.duplicates) == (0, 1_520)


@pytest.mark.parametrize("stop_on_refusal", [False, True], ids=["feed", "one-off-load"])
async def test_a_single_point_over_the_limit_is_refused_for_good(
    tmp_path: Path, stop_on_refusal: bool
) -> None:
    huge = prices(10, ["1" * (LIMIT + 100)])
    settings = dataclasses.replace(QUICK, stop_on_refusal=stop_on_refusal)
    store = await SqliteEventStore.open(tmp_path / "events.db")
    async with command_service(store, command_max_request_bytes=LIMIT) as served:
        counters = FeedCounters()
        sender = BulkIngestSender(served.stub, USER, counters, settings)
        if stop_on_refusal:
            with pytest.raises(SendStopped, match="QIS_COMMAND_MAX_REQUEST_BYTES"):
                await send(sender, [days(0, 10), huge, days(11, 10)])
            assert counters.accepted == 10
        else:
            await send(sender, [days(0, 10), huge, days(11, 10)])
            assert (counters.accepted, counters.rejected) == (20, 1)
        assert "QIS_COMMAND_MAX_REQUEST_BYTES" in counters.last_error
