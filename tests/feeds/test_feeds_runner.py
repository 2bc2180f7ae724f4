"""The feed runner and its BulkIngest sender against command services served for real: every
point lands once whatever breaks, a re-run is answered with duplicates, and a slow service slows
the provider instead of filling memory."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, SenderSettings, SendStopped
from qis_feeds.adapters.synthetic import SyntheticProvider, Walk
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest
from qis_feeds.application.runner import Feed, FeedRunner, ProviderFailed, RunnerSettings

from tests.feeds.feeds_support import (
    FEEDER,
    ListProvider,
    ScriptedCommands,
    command_service,
    define_series,
    scripted,
)

START = datetime(2024, 6, 1, tzinfo=UTC)
QUICK = SenderSettings(backoff_first_s=0.01, backoff_cap_s=0.05, max_stream_failures=5)


def synthetic(series: str = "SYN.A", seed: int = 7) -> SyntheticProvider:
    return SyntheticProvider([Walk(series)], random.Random(seed), step=timedelta(seconds=1))


def history(points: int, series: str = "SYN.A") -> HistoricalRequest:
    return HistoricalRequest((series,), START, START + timedelta(seconds=points))


def runner(stub: object, settings: SenderSettings = QUICK, batch: int = 1000) -> FeedRunner:
    counters = FeedCounters()
    sender = BulkIngestSender(stub, FEEDER, counters, settings)  # type: ignore[arg-type]
    return FeedRunner(sender, RunnerSettings(batch_points=batch), counters)


async def test_a_history_load_lands_once_and_a_rerun_is_all_duplicates() -> None:
    async with command_service() as served:
        await define_series(served.stub, "SYN.A", "syn")
        feed = Feed("demo", synthetic(), "syn")
        first = await runner(served.stub).load_history(feed, history(2_500))
        assert (first.received, first.sent, first.accepted, first.chunks) == (2_500,) * 3 + (3,)
        assert first.duplicates == first.dropped == first.retried == 0
        again = await runner(served.stub).load_history(
            Feed("demo", synthetic(), "syn"), history(2_500)
        )
        assert (again.sent, again.duplicates, again.accepted) == (2_500, 2_500, 0)
        assert again.last_position == first.last_position


async def test_rows_the_service_refuses_are_dropped_and_the_others_sent_again() -> None:
    huge = "1" + "0" * 20  # beyond the 18 digits before the point a decimal may have
    values = [
        RawValue("SYN.B", i * 1_000_000, huge if i in (3, 7) else f"{100 + i}") for i in range(10)
    ]
    async with command_service() as served:
        await define_series(served.stub, "SYN.B", "syn")
        feed = Feed("list", ListProvider({"SYN.B": ValueKind.PRICE}, values), "syn")
        counters = await runner(served.stub).load_history(feed, history(10, "SYN.B"))
    assert (counters.rejected, counters.sent, counters.accepted) == (2, 8, 8)
    assert "SYN.B" in counters.last_error


async def test_a_provider_failing_half_way_still_sends_what_it_gave() -> None:
    values = [RawValue("SYN.C", i * 1_000_000, f"{100 + i}") for i in range(2_500)]
    async with command_service() as served:
        await define_series(served.stub, "SYN.C", "syn")
        kinds = {"SYN.C": ValueKind.PRICE}
        failing = Feed("list", ListProvider(kinds, values, fail_after=1_500), "syn")
        feed_runner = runner(served.stub)
        with pytest.raises(ProviderFailed, match="the vendor went away"):
            await feed_runner.load_history(failing, history(2_500, "SYN.C"))
        # The full chunk went out; the half one waits for the re-run, where it is whole.
        assert (feed_runner.counters.accepted, feed_runner.counters.held_back) == (1_000, 500)
        whole = Feed("list", ListProvider(kinds, values), "syn")
        again = await runner(served.stub).load_history(whole, history(2_500, "SYN.C"))
    # Every point stored once across both runs: 1,000 + 1,500.
    assert (again.duplicates, again.accepted) == (1_000, 1_500)


async def test_a_chunk_refused_for_good_stops_a_one_off_load() -> None:
    async with command_service() as served:  # no series defined: every chunk would be refused
        feed = Feed("demo", synthetic("NOPE"), "syn")
        with pytest.raises(SendStopped, match="NOT_FOUND"):
            await runner(served.stub, SenderSettings(stop_on_refusal=True)).load_history(
                feed, history(10, "NOPE")
            )


async def test_broken_streams_and_retry_requests_lose_nothing_and_store_nothing_twice() -> None:
    service = ScriptedCommands(break_after=[2, 0, 3], retry_once={6})
    async with scripted(service) as stub:
        counters = await runner(stub, batch=100).load_history(
            Feed("demo", synthetic(), "syn"), history(1_500)
        )
    assert service.streams >= 4
    assert sum(service.seen.values()) == 1_500  # every point committed in exactly one chunk
    assert counters.sent == 1_500 + counters.duplicates
    assert counters.retried >= 2
    assert counters.accepted == 1_500


async def test_a_slow_service_slows_the_provider_and_memory_stays_bounded() -> None:
    service = ScriptedCommands(delay_s=0.01)
    provider = SyntheticProvider(
        [Walk("SYN.A")], random.Random(1), step=timedelta(milliseconds=1), pace_s=0
    )
    settings = RunnerSettings(batch_points=100, batch_delay_s=0.1, queue_points=1_000)
    window = 2
    # Points received and not yet answered: at most the queue, the chunk queue, the window, one
    # open chunk, and the one a pump holds while it waits to put it.
    bound = settings.queue_points + (settings.chunk_queue + window + 1) * 100 + 1
    async with scripted(service) as stub:
        counters = FeedCounters()
        sender = BulkIngestSender(stub, FEEDER, counters, SenderSettings(window=window))
        feed_runner = FeedRunner(sender, settings, counters)
        stop = asyncio.Event()
        task = asyncio.create_task(feed_runner.run_live([Feed("fast", provider, "syn")], stop))
        outstanding = []
        for _ in range(30):
            await asyncio.sleep(0.05)
            outstanding.append(counters.received - counters.sent - counters.skipped)
        stop.set()
        await task
    assert max(outstanding) <= bound
    # The provider could make a million points a second: the service's pace (100 points per
    # 10 ms at best) is what it went at.
    assert counters.received < 1.5 * 100 * 150 + bound
    assert counters.sent == counters.received - counters.skipped  # the rest was sent at stop


async def test_a_live_feed_sends_within_the_batch_delay() -> None:
    service = ScriptedCommands()
    provider = SyntheticProvider(
        [Walk("SYN.A")], random.Random(1), step=timedelta(milliseconds=20), pace_s=0.02
    )
    async with scripted(service) as stub:
        counters = FeedCounters()
        sender = BulkIngestSender(stub, FEEDER, counters)
        feed_runner = FeedRunner(sender, RunnerSettings(batch_delay_s=0.1), counters)
        stop = asyncio.Event()
        task = asyncio.create_task(feed_runner.run_live([Feed("slow", provider, "syn")], stop))
        await asyncio.sleep(0.55)
        sent_while_running = counters.sent
        stop.set()
        await task
    # About 5 points per 100 ms chunk: far from the 1,000 that would close one on size.
    assert counters.chunks >= 4
    assert sent_while_running >= counters.received - 10


async def test_an_idle_stream_is_closed_and_opened_again_with_the_next_chunk() -> None:
    service = ScriptedCommands()
    provider = SyntheticProvider(
        [Walk("SYN.A")], random.Random(1), step=timedelta(seconds=1), pace_s=0.3
    )
    async with scripted(service) as stub:
        counters = FeedCounters()
        sender = BulkIngestSender(stub, FEEDER, counters, SenderSettings(idle_close_s=0.1))
        feed_runner = FeedRunner(sender, RunnerSettings(batch_delay_s=0.02), counters)
        stop = asyncio.Event()
        task = asyncio.create_task(feed_runner.run_live([Feed("sparse", provider, "syn")], stop))
        await asyncio.sleep(1.0)
        stop.set()
        await task
    # A stream per tick or so: each idled out before the next (the service would end an idle
    # stream itself, with DEADLINE_EXCEEDED, after QIS_BULK_IDLE_TIMEOUT_S).
    assert 3 <= service.streams <= counters.chunks  # and none opened with nothing to send
    assert counters.sent == counters.received >= 3
    assert counters.retried == 0
