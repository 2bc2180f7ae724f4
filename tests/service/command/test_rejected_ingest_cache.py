"""A rejected ingest leaves the aggregate cache as it found it: the buckets its points fall in
are read together with the series (once the series' bucket span is known) before the command
is checked, and a rejection must not leave them cached."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import pytest
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import RecordedEvent
from qis_command.application.commands import IngestPoints
from qis_domain.errors import InvalidArgument
from qis_domain.reference_data import definition_stream
from qis_domain.series_bucket import SeriesBucket, bucket_stream
from qis_domain.snaps import Snap
from qis_domain.values import Price, Volume

from tests.service.command.test_aggregate_cache_memory import START_US, Feed

LATER_US = START_US + 10 * 3600 * 1_000_000  # a bucket no accepted command touched


def points(value: Price | Volume, n: int = 3) -> list[tuple[Snap, Price | Volume]]:
    return [(Snap(LATER_US + s * 1_000_000), value) for s in range(n)]


@pytest.mark.parametrize(
    ("source", "rows"),
    [
        ("b", points(Price(Decimal(1), ""))),  # a source the series does not take
        ("a", points(Volume(Decimal(1), ""))),  # values of another type
        ("a", points(Price(Decimal(1), "")) * 2),  # the same snaps twice
    ],
    ids=["unconfigured source", "wrong type", "repeated snaps"],
)
async def test_a_rejected_ingest_leaves_the_cache_as_it_found_it(
    source: str, rows: list[tuple[Snap, Price | Volume]]
) -> None:
    feed = Feed(InMemoryEventStore(), 200_000)
    await feed.define()
    await feed.ingest(0, 10)  # the series' bucket span is known: later reads are joint
    held = feed.repository.held
    with pytest.raises(InvalidArgument):
        await feed.handlers.ingest(IngestPoints("PX", source, rows), feed.ctx())
    assert not feed.repository.holds(bucket_stream("PX", LATER_US))
    assert feed.repository.holds(bucket_stream("PX", START_US))
    assert feed.repository.held == held


async def test_an_ingest_failing_in_its_decision_leaves_the_cache_as_it_found_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checks made after the source and values (calendar, sessions, the decision itself) reject
    or fail too: the buckets read for the decision are not left cached either."""
    feed = Feed(InMemoryEventStore(), 200_000)
    await feed.define()
    await feed.ingest(0, 10)
    held = feed.repository.held

    def refuse(*_: object) -> None:
        raise InvalidArgument.single("points", "refused by the decision")

    monkeypatch.setattr(SeriesBucket, "ingest", refuse)
    with pytest.raises(InvalidArgument, match="refused by the decision"):
        await feed.handlers.ingest(
            IngestPoints("PX", "a", points(Price(Decimal(1), ""))), feed.ctx()
        )
    assert not feed.repository.holds(bucket_stream("PX", LATER_US))
    assert feed.repository.held == held


async def test_a_rejected_decision_forgets_the_earlier_buckets_it_read_to_look_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rules look back past the command's own bucket: the buckets before it are read during
    the decision, and a rejection there forgets them too (what was cached before stays)."""
    feed = Feed(InMemoryEventStore(), 200_000)
    await feed.define(rules=True)
    await feed.ingest(0, 10)
    earlier = bucket_stream("PX", START_US)
    feed.repository.forget(earlier)  # as after an eviction: the look-back reads it again
    next_us = START_US + 3600 * 1_000_000  # the next bucket: its points look back to `earlier`
    # The first ingest read it, with the other buckets within the rules' reach after its own,
    # for their figures to judge again (none): forgotten too, as after an eviction.
    feed.repository.forget(bucket_stream("PX", next_us))
    held = feed.repository.held
    read: list[int] = []
    decide = SeriesBucket.ingest

    def refuse(bucket: SeriesBucket, *args: object) -> None:
        read.extend(b for b in (START_US, next_us) if feed.repository.holds(bucket_stream("PX", b)))
        raise InvalidArgument.single("points", "refused by the decision")

    monkeypatch.setattr(SeriesBucket, "ingest", refuse)
    rows = [(Snap(next_us + s * 1_000_000), Price(Decimal(1), "")) for s in range(3)]
    with pytest.raises(InvalidArgument, match="refused by the decision"):
        await feed.handlers.ingest(IngestPoints("PX", "a", rows), feed.ctx())
    assert read == [START_US, next_us]  # both were cached when the decision refused
    assert not feed.repository.holds(earlier)
    assert not feed.repository.holds(bucket_stream("PX", next_us))
    assert feed.repository.holds(definition_stream("PX"))
    assert feed.repository.held == held
    monkeypatch.setattr(SeriesBucket, "ingest", decide)
    await feed.handlers.ingest(IngestPoints("PX", "a", rows), feed.ctx())  # and then taken
    assert feed.repository.holds(earlier)


HOUR_US = 3600 * 1_000_000


class GatedStore(InMemoryEventStore):
    """Holds a read that includes `gated` until `gate` is set: a command suspended mid-read."""

    def __init__(self) -> None:
        super().__init__()
        self.gated = ""
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def read_many(self, reads: Sequence[tuple[str, int]]) -> list[list[RecordedEvent]]:
        if any(stream == self.gated for stream, _ in reads):
            self.waiting.set()
            await self.gate.wait()
        return await super().read_many(reads)


def rows(bucket_us: int) -> list[tuple[Snap, Price]]:
    return [(Snap(bucket_us + s * 1_000_000), Price(Decimal(1), "")) for s in range(3)]


async def test_a_rejected_ingest_keeps_what_another_command_cached_meanwhile() -> None:
    """An accepted command's bucket, loaded and saved while a rejected one of another source was
    reading, stays cached: only what the rejected command read is forgotten (forgetting the
    other would make its next command replay its whole bucket: rejections from one client
    would empty the cache of the others)."""
    store = GatedStore()
    feed = Feed(store, 200_000)
    await feed.define()
    await feed.ingest(0, 10)  # the bucket span is known: an ingest's buckets are preloaded
    rejected_us, accepted_us = START_US + 2 * HOUR_US, START_US + 3 * HOUR_US
    store.gated = bucket_stream("PX", rejected_us)
    rejected = asyncio.create_task(
        feed.handlers.ingest(IngestPoints("PX", "b", rows(rejected_us)), feed.ctx())
    )
    await store.waiting.wait()  # the rejected command has begun (and read nothing yet)
    await feed.handlers.ingest(IngestPoints("PX", "a", rows(accepted_us)), feed.ctx())
    assert feed.repository.holds(bucket_stream("PX", accepted_us))
    store.gate.set()
    with pytest.raises(InvalidArgument):
        await rejected
    assert not feed.repository.holds(bucket_stream("PX", rejected_us))
    assert feed.repository.holds(bucket_stream("PX", accepted_us))
