"""The Subscribe loop (docs/architecture.md §4): the change feed from a point in the log, catch-up then live,
at-least-once in commit order, each batch with a strictly increasing resume token.

Backpressure: the loop sends one batch at a time and waits for it to be accepted, so a slow
subscriber holds at most one batch in the server; one that accepts nothing for the stall timeout
is cut off (it resumes from its last token without a gap). A batch is bounded in bytes too:
the first read is small and each next one is sized from the largest value of the one before, so
that a feed of large values (options chains) is read a few at a time.

Measured (docs/observability.md): the live subscriptions, and their backlog: how far, in commit
positions, each one is behind the read model's checkpoint, summed. A subscription counts as
caught up once a read returns less than it asked for; while reads come back full, its backlog
is read again at each batch.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from opentelemetry import metrics
from qis_adapters.readstore.port import ChangeFeedEntry, ReadModelReader, ResumeToken
from qis_domain.errors import LimitExceeded

from qis_query.application import paging
from qis_query.application.access import Admit

FEED = "feed"  # the kind of the resume tokens
RESUME_TOKEN = "resume_token"


CHANGE_BYTES = 1_024
"""What a change costs in memory while its batch is sent, besides its value three times (the
read entry, the message and its serialised form): measured on price changes."""
FIRST_READ = 16
"""Changes of a subscription's first read, whose values' size is not known yet."""


@dataclass(frozen=True, slots=True)
class FeedSettings:
    poll_s: float  # how often a live subscription looks for new changes
    stall_timeout_s: float  # how long a batch may wait to be accepted
    batch: int = 250  # changes per message at most
    batch_bytes: int = 256 * 1024  # memory of a batch at most, once its values' size is known

    def next_read(self, changes: Sequence[ChangeFeedEntry]) -> int:
        """How many changes the size of the largest of `changes` fit in `batch_bytes`."""
        largest = CHANGE_BYTES + 3 * max(len(c.value) for c in changes)
        return max(1, min(self.batch, self.batch_bytes // largest))


@dataclass(frozen=True, slots=True)
class FeedBatch:
    changes: list[ChangeFeedEntry]
    resume_token: str  # resumes right after the last of `changes`


Send = Callable[[FeedBatch], Awaitable[None]]
"""Hands a batch to the subscriber; returns once the transport accepted it."""


class SubscriberStalled(LimitExceeded):
    reason = "SUBSCRIBER_STALLED"

    def __init__(self, stall_timeout_s: float) -> None:
        super().__init__(
            f"subscriber accepted nothing for {stall_timeout_s:.0f} s: disconnected;"
            " resume from your last resume_token"
        )


class _Subscriptions:
    """The live subscriptions' backlogs, observed when metrics are collected (on the exporter's
    thread: it only sums ints)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.backlogs: dict[int, int] = {}
        self.ids = itertools.count()
        meter.create_observable_gauge(
            "qis.subscribers",
            [self._count],
            unit="{subscriber}",
            description="Live Subscribe calls.",
        )
        meter.create_observable_gauge(
            "qis.subscription.backlog",
            [self._backlog],
            unit="{position}",
            description="Commit positions the live subscriptions are behind the read model.",
        )

    def _count(self, _: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(len(self.backlogs))]

    def _backlog(self, _: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(sum(self.backlogs.values()))]


@functools.cache
def _subscriptions() -> _Subscriptions:
    # At the first subscription, not at import: a process configures its telemetry first.
    return _Subscriptions(metrics.get_meter("qis.query"))


def start_after(resume_token: str | None, after_position: int) -> ResumeToken:
    """Where a subscription starts: right after a resume token, or after every change of a
    commit position (0: from the beginning, so changes at position 0 too)."""
    if resume_token is not None:
        after = paging.resume_after(resume_token, RESUME_TOKEN, FEED)
        if after is None:
            raise paging.refused_token(RESUME_TOKEN, FEED)
        return after
    if after_position == 0:
        return ResumeToken(0, -1)
    return ResumeToken(after_position, paging.EVENT_INDEX_LIMIT)


async def follow(
    reader: ReadModelReader,
    series_ids: Sequence[str],
    after: ResumeToken,
    settings: FeedSettings,
    send: Send,
    admit: Admit,
) -> NoReturn:
    """Sends the changes of `series_ids` (all series when empty) after `after` that `admit`
    lets through, forever; raises SubscriberStalled when a batch is not accepted in time, and
    what `admit` raises (a series the subscriber may no longer read). A batch `admit` empties is
    not sent, and a token resumes after the last change sent, not after the changes held back
    (a subscription resumed with it reads them again, and holds them back again)."""
    live = _subscriptions()
    subscription = next(live.ids)
    live.backlogs[subscription] = 0
    try:
        await _follow(reader, series_ids, after, settings, send, admit, live.backlogs, subscription)
    finally:
        del live.backlogs[subscription]


async def _follow(
    reader: ReadModelReader,
    series_ids: Sequence[str],
    after: ResumeToken,
    settings: FeedSettings,
    send: Send,
    admit: Admit,
    backlogs: dict[int, int],
    subscription: int,
) -> NoReturn:
    limit = min(settings.batch, FIRST_READ)
    while True:
        read = await reader.changes_after(after, series_ids, limit)
        if len(read) < limit:
            backlogs[subscription] = 0
        else:
            checkpoint = await reader.checkpoint()
            backlogs[subscription] = max(0, (checkpoint or 0) - read[-1].position)
        if not read:
            await asyncio.sleep(settings.poll_s)
            continue
        limit = settings.next_read(read)
        after = ResumeToken(read[-1].position, read[-1].index)
        changes = await admit(read)
        if not changes:
            continue
        # After the last change sent, not the last read: one held back would tell its position
        # and index (how many points of a series the subscriber may not read changed).
        sent = ResumeToken(changes[-1].position, changes[-1].index)
        batch = FeedBatch(changes, paging.resume_token(FEED, sent))
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation (the subscriber went
        # away) that arrives as the send completes, and the loop would poll on for nobody.
        try:
            async with asyncio.timeout(settings.stall_timeout_s):
                await send(batch)
        except TimeoutError:
            raise SubscriberStalled(settings.stall_timeout_s) from None
