"""The consumer-group dispatcher alone (qis_query.application.dispatch), driven by hypothesis
through random reads, deliveries, acks, nacks, timeouts, joins, leaves and parking records
over a generated log of several series, against a reference model kept by the test: what was
delivered, in flight and settled."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis_query.application.dispatch import Delivery, Entry, GroupDispatch, Key

MAX_ATTEMPTS = 3
TIMEOUT_S = 10.0
START: Key = (0, -1)


@st.composite
def logs(draw: st.DrawFn) -> list[Entry]:
    series = draw(st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=40))
    entries: list[Entry] = []
    position = 1
    for s in series:
        parts = draw(st.integers(1, 2))  # an event of several parts, one series
        entries.extend(Entry((position, i), s, b"%d" % position) for i in range(parts))
        position += draw(st.integers(1, 3))
    return entries


@dataclass
class Model:
    """What must hold, kept without the dispatcher's own bookkeeping."""

    read: list[Key] = field(default_factory=list)
    settled: set[Key] = field(default_factory=set)
    series_of: dict[Key, str] = field(default_factory=dict)
    deliveries: dict[Key, int] = field(default_factory=dict)
    in_flight: dict[str, Delivery] = field(default_factory=dict)  # by series
    last_delivered: dict[str, Key] = field(default_factory=dict)
    expect_park: set[Key] = field(default_factory=set)
    parking: set[Key] = field(default_factory=set)  # taken, not recorded yet

    def checkpoint(self) -> Key:
        at = START
        for key in self.read:
            if key not in self.settled:
                break
            at = key
        return at

    def ended(self, delivery: Delivery) -> None:
        """A delivery nacked, timed out, or lost with its consumer."""
        del self.in_flight[delivery.entry.series_id]
        if self.deliveries[delivery.entry.key] >= MAX_ATTEMPTS:
            self.expect_park.add(delivery.entry.key)


def check_delivery(model: Model, d: Delivery, consumers: set[str]) -> None:
    series, key = d.entry.series_id, d.entry.key
    assert d.consumer in consumers
    assert series not in model.in_flight, "two entries of a series in flight"
    assert key not in model.settled
    assert key not in model.expect_park
    previous = model.last_delivered.get(series)
    if previous is not None and previous != key:
        assert previous < key, "a series out of log order"
        assert previous in model.settled or previous in model.expect_park, (
            "the next entry of a series before the previous one was settled"
        )
    earlier = [k for k in model.read if model.series_of[k] == series and k < key]
    assert all(k in model.settled or k in model.expect_park for k in earlier)
    model.deliveries[key] = model.deliveries.get(key, 0) + 1
    assert d.attempt == model.deliveries[key] <= MAX_ATTEMPTS
    model.in_flight[series] = d
    model.last_delivered[series] = key


OPS = st.sampled_from(
    ["read", "deliver", "ack", "nack", "time", "join", "leave", "park_ok", "park_fail"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=logs(), data=st.data(), read_ahead=st.integers(1, 12), window=st.integers(1, 3))
def test_dispatcher_against_a_reference_model(
    log: list[Entry], data: st.DataObject, read_ahead: int, window: int
) -> None:
    d = GroupDispatch(
        START, max_attempts=MAX_ATTEMPTS, ack_timeout_s=TIMEOUT_S, read_ahead=read_ahead
    )
    m = Model()
    now = 0.0
    names = iter(f"c{i}" for i in range(1_000))
    consumers: set[str] = set()
    owners: dict[str, str] = {}  # series -> consumer, while the consumers stay the same
    next_read = 0
    taken: list[Key] = []

    def deliver() -> None:
        for delivery in d.deliver(now):
            check_delivery(m, delivery, consumers)
            series = delivery.entry.series_id
            assert owners.setdefault(series, delivery.consumer) == delivery.consumer
            per_consumer = [x for x in m.in_flight.values() if x.consumer == delivery.consumer]
            assert len(per_consumer) <= window

    for _ in range(data.draw(st.integers(0, 120))):
        op = data.draw(OPS)
        if op == "read":
            room = d.room
            # Held: every entry read after the checkpoint, settled or not.
            assert room == max(0, read_ahead - len([k for k in m.read if k > m.checkpoint()]))
            batch = log[next_read : next_read + data.draw(st.integers(0, room))]
            next_read += len(batch)
            d.add(batch)
            for e in batch:
                m.read.append(e.key)
                m.series_of[e.key] = e.series_id
        elif op == "deliver":
            deliver()
        elif op in ("ack", "nack") and m.in_flight:
            delivery = data.draw(st.sampled_from(sorted(m.in_flight.values(), key=str)))
            if op == "ack":
                assert d.ack(delivery.consumer, delivery.delivery_id)
                m.settled.add(delivery.entry.key)
                del m.in_flight[delivery.entry.series_id]
            else:
                assert d.nack(delivery.consumer, delivery.delivery_id, "bad")
                m.ended(delivery)
            # Settled once: a second ack of the same delivery is refused.
            assert not d.ack(delivery.consumer, delivery.delivery_id)
        elif op == "time":
            now += data.draw(st.sampled_from([1.0, TIMEOUT_S / 2, TIMEOUT_S]))
            d.expire(now)
            for delivery in [x for x in m.in_flight.values() if x.deadline <= now]:
                m.ended(delivery)
        elif op == "join":
            name = next(names)
            d.join(name, window)
            consumers.add(name)
            owners.clear()
        elif op == "leave" and consumers:
            name = data.draw(st.sampled_from(sorted(consumers)))
            d.leave(name)
            consumers.discard(name)
            owners.clear()
            for delivery in [x for x in m.in_flight.values() if x.consumer == name]:
                m.ended(delivery)
        elif op in ("park_ok", "park_fail"):
            for parking in d.take_parkings():
                key = parking.entry.key
                assert key in m.expect_park
                assert parking.attempts == MAX_ATTEMPTS
                if parking.last_error:
                    assert parking.last_error == "bad"
                taken.append(key)
                if op == "park_ok":
                    d.parked(key)
                    m.settled.add(key)
                    m.expect_park.discard(key)
                else:
                    d.parking_failed(parking)
        assert d.checkpoint == m.checkpoint()
        assert all(k in m.settled for k in m.read if k <= d.checkpoint)

    # Drained: one consumer acks everything, records every parking: all settled in the end.
    if not consumers:
        d.join("last", window)
        consumers.add("last")
    for _ in range(len(log) * (MAX_ATTEMPTS + 1) + 10):
        batch = log[next_read : next_read + d.room]
        d.add(batch)
        for e in batch:
            m.read.append(e.key)
            m.series_of[e.key] = e.series_id
        next_read += len(batch)
        owners.clear()
        deliver()
        for delivery in list(m.in_flight.values()):
            assert d.ack(delivery.consumer, delivery.delivery_id)
            m.settled.add(delivery.entry.key)
            del m.in_flight[delivery.entry.series_id]
        for parking in d.take_parkings():
            d.parked(parking.entry.key)
            m.settled.add(parking.entry.key)
            m.expect_park.discard(parking.entry.key)
    assert next_read == len(log)
    assert m.settled == {e.key for e in log}
    assert d.checkpoint == (log[-1].key if log else START)
    assert d.held == 0


def test_a_replayed_entry_goes_first_in_its_series_and_is_reported_settled() -> None:
    d = GroupDispatch((10, 0), max_attempts=2, ack_timeout_s=5)
    d.add([Entry((11, 0), "A", b"x"), Entry((12, 0), "B", b"y")])
    d.add_replayed(Entry((3, 0), "A", b"old"))
    d.add_replayed(Entry((3, 0), "A", b"old"))  # twice: held once
    d.join("c", 10)
    first = {x.entry.series_id: x for x in d.deliver(0)}
    assert first["A"].entry.key == (3, 0)
    assert first["B"].entry.key == (12, 0)
    assert d.ack("c", first["A"].delivery_id)
    assert d.checkpoint == (10, 0)  # a replay never moves the checkpoint
    assert d.take_replays_settled() == [(3, 0)]
    assert [x.entry.key for x in d.deliver(1)] == [(11, 0)]


def test_a_replayed_entry_failing_again_is_parked_not_settled() -> None:
    d = GroupDispatch((10, 0), max_attempts=1, ack_timeout_s=5)
    d.add_replayed(Entry((3, 0), "A", b"old"))
    d.join("c", 1)
    (delivery,) = d.deliver(0)
    assert d.nack("c", delivery.delivery_id, "still bad")
    (parking,) = d.take_parkings()
    assert (parking.entry.key, parking.attempts, parking.last_error) == ((3, 0), 1, "still bad")
    d.parked((3, 0))
    assert d.take_replays_settled() == []
    assert d.held == 0


def test_a_leaving_consumer_moves_only_its_series() -> None:
    d = GroupDispatch((0, -1), max_attempts=5, ack_timeout_s=5)
    series = [f"S{i}" for i in range(40)]
    d.join("a", 100)
    d.join("b", 100)
    before = {s: d.owner(s) for s in series}
    assert set(before.values()) == {"a", "b"}  # shared
    d.join("c", 100)
    after = {s: d.owner(s) for s in series}
    assert all(after[s] in (before[s], "c") for s in series)  # only moves to the newcomer
    d.leave("c")
    assert {s: d.owner(s) for s in series} == before
