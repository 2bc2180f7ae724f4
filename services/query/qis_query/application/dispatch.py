"""The delivery of one consumer group's entries to its connected consumers (docs/routing.md),
as pure state: no I/O, no clock of its own (`now` is passed in), so that a property test can
drive it through any interleaving of reads, deliveries, acks, nacks, timeouts, joins and leaves.

Work is shared by series: a series is served by one consumer, chosen by rendezvous hashing of
the series over the connected consumers (a consumer leaving moves only its own series, one
joining takes only the series it now wins), and the next entry of a series is not delivered
before the previous one is settled (acked, or parked), so that each series is delivered in log
order, one entry in flight, across redeliveries and consumer changes. A delivery not settled by
its deadline, or nacked, is delivered again (to the series' consumer then); after
`max_attempts` deliveries it is parked and the series moves on. A parked entry counts as
settled for the checkpoint only once its parking is recorded (`parked`).

Memory is bounded: at most `read_ahead` entries of the log are held (in flight, waiting, or
being parked), and a consumer has at most its window of deliveries in flight. The checkpoint is
the last entry before the first one not settled: a series stuck on a slow consumer holds the
checkpoint back (a restart delivers again what was settled after it, at least once) and, once
`read_ahead` entries are held, the reading of the log.

Replayed entries (parked entries an operator moved back to delivery) are older than the
checkpoint: they are delivered before the waiting entries of their series, and reported settled
(`replays_settled`) instead of moving the checkpoint.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

Key = tuple[int, int]
"""An entry of the topic's log: (commit position, index)."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: Key
    series_id: str
    payload: bytes  # the serialised TopicMessage
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    consumer: str
    entry: Entry
    attempt: int  # from 1
    deadline: float


@dataclass(frozen=True, slots=True)
class Parking:
    """An entry to park: record it, then call `GroupDispatch.parked`."""

    entry: Entry
    attempts: int
    last_error: str


@dataclass(slots=True)
class _Consumer:
    window: int
    in_flight: set[str] = field(default_factory=set)  # delivery ids


def _weight(series_id: str, consumer: str) -> bytes:
    return hashlib.blake2b(f"{series_id}\0{consumer}".encode(), digest_size=8).digest()


class GroupDispatch:
    def __init__(
        self,
        checkpoint: Key,
        *,
        max_attempts: int,
        ack_timeout_s: float,
        read_ahead: int = 1_000,
    ) -> None:
        """`checkpoint`: every entry up to it is settled ((0, -1): none)."""
        self.max_attempts = max_attempts
        self.ack_timeout_s = ack_timeout_s
        self.read_ahead = read_ahead
        self.checkpoint: Key = checkpoint
        self.last_read: Key = checkpoint
        self._order: deque[Key] = deque()  # live entries held, in log order
        self._settled: set[Key] = set()  # of _order
        self._waiting: dict[str, deque[Entry]] = {}  # per series, next first
        self._in_flight: dict[str, Delivery] = {}  # per series: at most one
        self._deliveries: dict[str, Delivery] = {}  # by delivery id
        self._attempts: dict[Key, int] = {}
        self._errors: dict[Key, str] = {}
        self._parking: dict[Key, Parking] = {}  # to record
        self._recording: dict[Key, Parking] = {}  # taken by the recorder
        self._replays: set[Key] = set()  # replayed entries held
        self._replays_settled: list[Key] = []
        self._consumers: dict[str, _Consumer] = {}
        self._ids = itertools.count(1)

    # --- what the reader and the recorder see ----------------------------------------------

    @property
    def room(self) -> int:
        """Entries of the log the reader may add now."""
        return max(0, self.read_ahead - len(self._order) - len(self._replays))

    @property
    def held(self) -> int:
        return len(self._order) + len(self._replays)

    def holds_replay(self, key: Key) -> bool:
        return key in self._replays

    def take_parkings(self) -> list[Parking]:
        """The entries to park now (each once, unless its recording fails)."""
        parkings = list(self._parking.values())
        self._recording.update((p.entry.key, p) for p in parkings)
        self._parking.clear()
        return parkings

    def take_replays_settled(self) -> list[Key]:
        settled, self._replays_settled = self._replays_settled, []
        return settled

    def parking_failed(self, parking: Parking) -> None:
        """Recording `parking` failed: offered again by the next take_parkings."""
        if self._recording.pop(parking.entry.key, None) is not None:
            self._parking[parking.entry.key] = parking

    # --- events -----------------------------------------------------------------------------

    def add(self, entries: Iterable[Entry]) -> None:
        """Entries of the log after `last_read`, in log order (at most `room`)."""
        for entry in entries:
            if entry.key <= self.last_read:
                raise ValueError(f"entry {entry.key} is not after {self.last_read}")
            self.last_read = entry.key
            self._order.append(entry.key)
            self._waiting.setdefault(entry.series_id, deque()).append(entry)

    def add_replayed(self, entry: Entry) -> None:
        """A replayed entry, before the waiting entries of its series."""
        if entry.key in self._replays:
            return
        self._replays.add(entry.key)
        replay = Entry(entry.key, entry.series_id, entry.payload, replayed=True)
        queue = self._waiting.setdefault(entry.series_id, deque())
        # After the replays already waiting, in key order among them.
        at = 0
        while at < len(queue) and queue[at].replayed and queue[at].key < entry.key:
            at += 1
        queue.insert(at, replay)

    def join(self, consumer: str, window: int) -> None:
        if consumer in self._consumers:
            raise ValueError(f"consumer {consumer!r} is connected already")
        self._consumers[consumer] = _Consumer(window)

    def leave(self, consumer: str) -> None:
        """Its deliveries in flight go back to their series, first."""
        gone = self._consumers.pop(consumer, None)
        if gone is None:
            return
        for delivery_id in list(gone.in_flight):
            self._retry(self._deliveries[delivery_id], "")

    def ack(self, consumer: str, delivery_id: str) -> bool:
        """False for a delivery not in flight to `consumer` (settled, timed out, unknown)."""
        delivery = self._take(consumer, delivery_id)
        if delivery is None:
            return False
        self._settle(delivery.entry)
        return True

    def nack(self, consumer: str, delivery_id: str, reason: str) -> bool:
        delivery = self._take(consumer, delivery_id)
        if delivery is None:
            return False
        self._again(delivery, reason)
        return True

    def expire(self, now: float) -> None:
        for delivery in [d for d in self._deliveries.values() if d.deadline <= now]:
            owner = self._consumers.get(delivery.consumer)
            if owner is not None:
                owner.in_flight.discard(delivery.delivery_id)
            del self._deliveries[delivery.delivery_id]
            del self._in_flight[delivery.entry.series_id]
            self._again(delivery, "")

    def parked(self, key: Key) -> None:
        """The parking of `key` is recorded: settled for the checkpoint (a replayed entry
        parked again is parked, not settled)."""
        parking = self._recording.pop(key, None)
        if parking is None:
            return
        if parking.entry.replayed:
            self._replays.discard(key)
        else:
            self._settle(parking.entry)

    def deliver(self, now: float) -> list[Delivery]:
        """Every delivery that can be made now: the next entry of each series with none in
        flight, to the series' consumer while its window has room."""
        out: list[Delivery] = []
        if not self._consumers:
            return out
        for series_id, queue in list(self._waiting.items()):
            if series_id in self._in_flight:
                continue
            consumer = self.owner(series_id)
            owner = self._consumers[consumer]
            if len(owner.in_flight) >= owner.window:
                continue
            entry = queue.popleft()
            if not queue:
                del self._waiting[series_id]
            attempt = self._attempts.get(entry.key, 0) + 1
            self._attempts[entry.key] = attempt
            delivery = Delivery(
                str(next(self._ids)), consumer, entry, attempt, now + self.ack_timeout_s
            )
            self._in_flight[series_id] = delivery
            self._deliveries[delivery.delivery_id] = delivery
            owner.in_flight.add(delivery.delivery_id)
            out.append(delivery)
        return out

    def next_deadline(self) -> float | None:
        return min((d.deadline for d in self._deliveries.values()), default=None)

    def owner(self, series_id: str) -> str:
        """The consumer serving `series_id` (rendezvous hashing); there must be one."""
        return max(self._consumers, key=lambda c: _weight(series_id, c))

    @property
    def consumers(self) -> list[str]:
        return list(self._consumers)

    # --- plumbing ---------------------------------------------------------------------------

    def _take(self, consumer: str, delivery_id: str) -> Delivery | None:
        delivery = self._deliveries.get(delivery_id)
        if delivery is None or delivery.consumer != consumer:
            return None
        del self._deliveries[delivery_id]
        del self._in_flight[delivery.entry.series_id]
        self._consumers[consumer].in_flight.discard(delivery_id)
        return delivery

    def _retry(self, delivery: Delivery, reason: str) -> None:
        """A delivery in flight to a consumer that left: its series gets it back."""
        del self._deliveries[delivery.delivery_id]
        del self._in_flight[delivery.entry.series_id]
        self._again(delivery, reason)

    def _again(self, delivery: Delivery, reason: str) -> None:
        entry = delivery.entry
        if reason:
            self._errors[entry.key] = reason
        if self._attempts[entry.key] >= self.max_attempts:
            last_error = self._errors.get(entry.key, "")
            self._parking[entry.key] = Parking(entry, self._attempts[entry.key], last_error)
            # The series moves on while the parking is recorded.
            self._forget(entry.key)
            return
        self._waiting.setdefault(entry.series_id, deque()).appendleft(entry)

    def _settle(self, entry: Entry) -> None:
        self._forget(entry.key)
        if entry.replayed:
            self._replays.discard(entry.key)
            self._replays_settled.append(entry.key)
            return
        self._settled.add(entry.key)
        while self._order and self._order[0] in self._settled:
            key = self._order.popleft()
            self._settled.discard(key)
            self.checkpoint = key

    def _forget(self, key: Key) -> None:
        self._attempts.pop(key, None)
        self._errors.pop(key, None)
