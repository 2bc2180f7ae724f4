"""Subscribe without gRPC: catch-up then live, strictly increasing resume tokens, resuming
without a gap, the slow-consumer cut, and unknown series. The scenario's change feed holds seven
changes of S1 (five at position 10, one at 20, one at 30); batches hold two (conftest.FEED)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import NamedTuple

import pytest
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import ProjectionBatch, ResumeToken
from qis_domain.errors import NotFound
from qis_query.application import paging
from qis_query.application.access import admit_all
from qis_query.application.consistency import ReadModelBehind
from qis_query.application.handlers import QueryHandlers
from qis_query.application.subscription import FeedBatch, SubscriberStalled

from tests.contract.readstore.test_readstore_contract import SNAPS, change, version
from tests.service.query.conftest import FEED
from tests.service.query.readmodel import HEAD, OTHER, SCENARIO_CHANGES, SERIES, catalogue_entry

WITHIN_S = 2.0
SCENARIO = [(10, i) for i in range(5)] + [(20, 0), (30, 0)]  # (position, index) of each change


class Feed(NamedTuple):
    batches: asyncio.Queue[FeedBatch]
    task: asyncio.Task[None]

    async def take(self, changes: int) -> list[FeedBatch]:
        """Batches until they hold `changes` changes."""
        taken: list[FeedBatch] = []
        while sum(len(b.changes) for b in taken) < changes:
            taken.append(await asyncio.wait_for(self.batches.get(), WITHIN_S))
        return taken


@asynccontextmanager
async def subscribed(
    queries: QueryHandlers,
    series_ids: Sequence[str] = (SERIES,),
    resume_token: str | None = None,
    after_position: int = 0,
) -> AsyncIterator[Feed]:
    """A subscriber that accepts every batch at once, for the duration of the block."""
    batches: asyncio.Queue[FeedBatch] = asyncio.Queue()

    async def follow() -> None:
        await queries.subscribe(
            series_ids, resume_token, after_position, batches.put, admit=admit_all
        )

    task = asyncio.create_task(follow())
    try:
        yield Feed(batches, task)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def keys(batches: list[FeedBatch]) -> list[tuple[int, int]]:
    return [(c.position, c.index) for b in batches for c in b.changes]


def token_of(batch: FeedBatch) -> ResumeToken:
    after = paging.resume_after(batch.resume_token, "resume_token", "feed")
    assert after is not None
    return after


async def publish(writer: InMemoryReadStore, position: int, snap_us: int) -> None:
    new = version(snap_us, 1, "1.00", at=position * 100, position=position)
    await writer.apply(ProjectionBatch(versions=[new], changes=[change(new, 0)]), position)


async def test_catch_up_then_live_with_strictly_increasing_tokens(
    queries: QueryHandlers, writer: InMemoryReadStore
) -> None:
    async with subscribed(queries) as feed:
        caught_up = await feed.take(SCENARIO_CHANGES)
        assert keys(caught_up) == SCENARIO
        assert all(len(b.changes) <= FEED.batch for b in caught_up)
        assert feed.batches.empty()

        await publish(writer, HEAD + 1, SNAPS[4] + 1)
        live = await feed.take(1)
        assert keys(live) == [(HEAD + 1, 0)]

    batches = caught_up + live
    tokens = [token_of(b) for b in batches]
    assert all(a < b for a, b in itertools.pairwise(tokens))
    # Each token stands at the last change of its batch.
    assert [(t.position, t.index) for t in tokens] == [keys([b])[-1] for b in batches]


async def test_a_resume_token_continues_right_after_its_batch(queries: QueryHandlers) -> None:
    async with subscribed(queries) as first:
        head = await first.take(3)  # two batches: four changes
    async with subscribed(queries, resume_token=head[-1].resume_token) as second:
        rest = await second.take(SCENARIO_CHANGES - 4)
    assert keys(head + rest) == SCENARIO  # no gap, no repeat


async def test_after_position_starts_after_every_change_of_that_position(
    queries: QueryHandlers,
) -> None:
    async with subscribed(queries, after_position=10) as feed:
        assert keys(await feed.take(2)) == [(20, 0), (30, 0)]


async def test_a_stalled_subscriber_is_cut_off(queries: QueryHandlers) -> None:
    never_accepted = asyncio.Event()

    async def stalled(_: FeedBatch) -> None:
        await never_accepted.wait()

    with pytest.raises(SubscriberStalled, match="resume from your last resume_token"):
        await asyncio.wait_for(
            queries.subscribe([SERIES], None, 0, stalled, admit=admit_all), WITHIN_S
        )


async def test_a_slow_subscriber_that_keeps_accepting_is_not_cut_off(
    queries: QueryHandlers,
) -> None:
    """The stall timeout bounds each batch, not the whole catch-up: four batches of half the
    timeout each take twice as long as the timeout."""
    received: list[FeedBatch] = []
    caught_up = asyncio.Event()

    async def slow(batch: FeedBatch) -> None:
        await asyncio.sleep(FEED.stall_timeout_s / 2)
        received.append(batch)
        if len(keys(received)) == SCENARIO_CHANGES:
            caught_up.set()

    following = asyncio.create_task(queries.subscribe([SERIES], None, 0, slow, admit=admit_all))
    try:
        await asyncio.wait_for(caught_up.wait(), WITHIN_S)
        assert not following.done()
    finally:
        following.cancel()
    assert keys(received) == SCENARIO


async def test_a_subscription_cancelled_as_a_batch_is_accepted_stops(
    queries: QueryHandlers,
) -> None:
    """The subscriber goes away (grpc.aio cancels the call's task) just as its transport accepts
    a batch: the loop must end, not poll on for nobody."""

    async def accept_then_go_away(_: FeedBatch) -> None:
        following.cancel()

    following = asyncio.create_task(
        queries.subscribe([SERIES], None, 0, accept_then_go_away, admit=admit_all)
    )
    done, _ = await asyncio.wait([following], timeout=WITHIN_S)
    following.cancel()
    assert following in done
    assert following.cancelled()


async def test_subscribing_to_an_unknown_series_is_not_found(queries: QueryHandlers) -> None:
    with pytest.raises(NotFound) as missing:
        await queries.subscribe([SERIES, "NOPE"], None, HEAD, _never, admit=admit_all)
    assert (missing.value.resource.name, missing.value.field) == ("series/NOPE", "series[1]")


async def test_a_series_defined_up_to_the_start_position_is_waited_for(
    queries: QueryHandlers, writer: InMemoryReadStore
) -> None:
    """A client that defines a series and subscribes after that command's position is not told
    the series does not exist because the projector is a little behind."""
    async with subscribed(queries, ["S3", OTHER], after_position=HEAD + 1) as feed:
        await asyncio.sleep(0.05)
        assert not feed.task.done()
        await writer.apply(ProjectionBatch(series=[catalogue_entry("S3", HEAD + 1)]), HEAD + 1)
        new = version(SNAPS[0], 1, "1.00", at=9000, position=HEAD + 2, series_id="S3")
        await writer.apply(ProjectionBatch(versions=[new], changes=[change(new, 0)]), HEAD + 2)
        assert keys(await feed.take(1)) == [(HEAD + 2, 0)]


async def test_a_series_defined_up_to_min_position_is_waited_for_from_the_beginning(
    queries: QueryHandlers, writer: InMemoryReadStore
) -> None:
    """Subscribing from the beginning right after defining a series: the definition's position
    travels as min_position, so the series is waited for rather than NOT_FOUND."""
    got: asyncio.Queue[FeedBatch] = asyncio.Queue()
    following = asyncio.create_task(
        queries.subscribe(["S4"], None, 0, got.put, admit=admit_all, min_position=HEAD + 1)
    )
    await asyncio.sleep(0.05)
    assert not following.done()
    await writer.apply(ProjectionBatch(series=[catalogue_entry("S4", HEAD + 1)]), HEAD + 1)
    new = version(SNAPS[0], 1, "1.00", at=9000, position=HEAD + 2, series_id="S4")
    await writer.apply(ProjectionBatch(versions=[new], changes=[change(new, 0)]), HEAD + 2)
    assert keys([await asyncio.wait_for(got.get(), WITHIN_S)]) == [(HEAD + 2, 0)]
    following.cancel()
    with pytest.raises(asyncio.CancelledError):
        await following


async def test_an_unknown_series_while_the_read_model_is_behind_is_unavailable(
    queries: QueryHandlers,
) -> None:
    """Not NOT_FOUND: it may yet be projected (the client retries)."""
    with pytest.raises(ReadModelBehind):
        await queries.subscribe(["S3"], None, HEAD + 1, _never, admit=admit_all)


async def _never(_: FeedBatch) -> None:
    raise AssertionError("nothing may be sent")
