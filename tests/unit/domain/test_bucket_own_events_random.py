"""The per-command shortcuts of an ingest (`series_bucket._Snaps`, `_Contributions`,
`_EventColumns`, buffers grown without copying unwritten rows): a bucket that applies the very
events its decisions make must hold what one that applies them read back from the store (in
their stored, compact form) holds, beyond test_bucket_command_snaps' cases: a decision's DataReconciled that withdraws
some points and reconciles others (its `_Contributions` then no longer matches its rows once
the withdrawn ones are dropped), sources whose priority is not their alphabetical order, three
sources (points held as dicts), value documents, rounding to the series' precision, cut-offs,
manual publications, rejections of several points at once, and decisions made on copies of
older states (buffers shared by copies)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from qis_domain.commands import CommandContext
from qis_domain.decisions import Decider
from qis_domain.definitions import (
    PublicationMode,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.errors import DomainError
from qis_domain.events import DataReconciled, DomainEvent
from qis_domain.quality import IssueStatus, PointStatus
from qis_domain.series_bucket import Recorded, SeriesBucket, _Contributions
from qis_domain.snaps import Frequency, Snap
from qis_domain.values import DataType, DataValue, OhlcBar, Price

START_US = 1_700_000_000 // 3600 * 3600 * 1_000_000  # a bucket's first snap
S_US = 1_000_000


def _stored(event: DomainEvent) -> DomainEvent:
    """`event` as the store gives it back: its payload decoded (plain lists)."""
    payload = getattr(event, "json_payload", event.model_dump_json)()
    return type(event).model_validate_json(payload)


def _state(bucket: SeriesBucket) -> tuple[object, ...]:
    snaps = sorted(bucket.observed)
    return (
        dict(zip(snaps, bucket.observed.rows(snaps), strict=True)),
        {s: bucket.candidates[s] for s in bucket.candidates},
        {s: bucket.officials[s] for s in bucket.officials},
        dict(bucket.issues),
        dict(bucket.scheduled),
        bucket.version,
    )


class _Twins:
    """Copies of a bucket's states, each as the repository keeps it (the decision's own events
    applied to the copy that made them) and as a rebuild from the store holds it."""

    def __init__(self) -> None:
        self.own = [SeriesBucket("S", START_US)]
        self.stored = [SeriesBucket("S", START_US)]
        self.commands = 0

    def decide(self, at: int, decision: Any) -> list[DomainEvent]:
        """`decision(bucket)` on a copy of state `at`; its events applied to that copy, which
        becomes a new state (the one at `at` is left as it was)."""
        self.commands += 1
        own, stored = self.own[at].clone(), self.stored[at].clone()
        events: list[DomainEvent] = decision(own)
        first = 0 if own.version is None else own.version + 1
        for offset, event in enumerate(events):
            meta = Recorded(f"c{self.commands}", "feed", self.commands, first + offset)
            own.apply(event, meta)
            stored.apply(_stored(event), meta)
        self.own.append(own)
        self.stored.append(stored)
        return events


def _definition(**changes: Any) -> SeriesDefinition:
    fields: dict[str, Any] = {
        "data_type": DataType.PRICE,
        "frequency": Frequency.SECOND,
        "unit": "USD",
        "sources": (SeriesSource(source_id="a", priority=1),),
        "validation": ValidationRules(require_positive=True),
    }
    return SeriesDefinition(**(fields | changes))


def _ctx(n: int, user: str = "feed") -> CommandContext:
    return CommandContext(f"c{n}", user, START_US + n * S_US)


def test_a_reconciliation_that_withdraws_some_points_keeps_the_sources_of_the_others() -> None:
    """Rejecting the values of two points at once: one has no value left (withdrawn), the other
    another source's (reconciled from it). The candidate left must be made of that source, in
    the bucket that applied the decision's event as in its rebuild."""
    definition = _definition(
        sources=(SeriesSource(source_id="a", priority=1), SeriesSource(source_id="b", priority=2))
    )
    twins = _Twins()
    one, two = START_US + S_US, START_US + 2 * S_US
    negative = Price(Decimal("-1"), "USD")
    twins.decide(
        0,
        lambda b: b.ingest(
            definition, "a", [(Snap(one), negative), (Snap(two), negative)], _ctx(1)
        ),
    )
    twins.decide(
        1, lambda b: b.ingest(definition, "b", [(Snap(two), Price(Decimal(5), "USD"))], _ctx(2))
    )
    held = twins.own[2]
    issues = [(f"i{k}", iid) for k, iid in enumerate(held.issues) if held.issues[iid].source_id]
    assert {held.issues[iid].snap_us for _, iid in issues} == {one, two}

    events = twins.decide(
        2, lambda b: b.resolve(definition, issues, "reject", "bad print", _ctx(3, "ops"))
    )

    (reconciled,) = [e for e in events if isinstance(e, DataReconciled)]
    assert reconciled.snaps == [one, two]
    assert reconciled.statuses[0] == PointStatus.WITHDRAWN.value
    assert isinstance(reconciled.contributions, _Contributions)  # as the decision made it
    own, stored = twins.own[3], twins.stored[3]
    assert one not in own.candidates
    assert own.candidates[two].sources == ("b",)
    assert own.candidates[two].raw == "5"
    assert _state(own) == _state(stored)


def _value(data_type: DataType, cents: int) -> DataValue:
    figure = Decimal(10_000 + cents) / 100
    if data_type is DataType.PRICE:
        return Price(figure, "USD")
    return OhlcBar(figure, figure + 1, figure - 1, figure)


def _random_definition(rng: random.Random) -> SeriesDefinition:
    # Priorities not in the order of the names: c first, then a, then b.
    sources = tuple(
        SeriesSource(source_id=s, priority=p)
        for s, p in rng.sample([("c", 1), ("a", 2), ("b", 3)], rng.choice([2, 3]))
    )
    return _definition(
        data_type=rng.choice([DataType.PRICE, DataType.PRICE, DataType.OHLC_BAR]),
        precision=rng.choice([0, 1]),
        sources=sources,
        validation=rng.choice(
            [
                ValidationRules(),
                ValidationRules(require_positive=True, max_jump_percent=Decimal(5)),
                ValidationRules(max_spike_percent=Decimal(3), stale_after_snaps=3),
            ]
        ),
        reconciliation=ReconciliationPolicy(
            method=rng.choice(list(ReconciliationMethod)),
            tolerance_bps=Decimal(rng.choice([0, 30, 500])),
        ),
        publication=PublicationPolicy(
            mode=rng.choice(list(PublicationMode)),
            min_sources=rng.choice([1, 1, 2]),
            cutoff_seconds=rng.choice([0, 60]),
        ),
    )


def _command(rng: random.Random, definition: SeriesDefinition, bucket: SeriesBucket, n: int) -> Any:
    """A random command on `bucket` (None: nothing to do)."""
    kind = rng.random()
    if kind < 0.7:
        source = rng.choice([s.source_id for s in definition.sources])
        low = rng.randint(0, 150)
        seconds = sorted(rng.sample(range(low, low + 150), rng.randint(1, rng.choice([3, 60]))))
        if rng.random() < 0.3:
            rng.shuffle(seconds)
        points = [
            (
                Snap(START_US + s * S_US, rng.choice([0, 3600])),
                _value(definition.data_type, rng.choice([0, 1, 2, 7, 13, -20_000, 900])),
            )
            for s in seconds
        ]
        return lambda b: b.ingest(definition, source, points, _ctx(n))
    if kind < 0.8:
        snaps = list(bucket.candidates)
        if not snaps:
            return None
        chosen = rng.sample(snaps, min(len(snaps), rng.randint(1, 5)))
        return lambda b: b.publish(definition, [("p", s) for s in chosen], "ok", _ctx(n, "ops"))
    if kind < 0.9:
        held = [i for i, s in bucket.issues.items() if s.status is IssueStatus.OPEN]
        if not held:
            return None
        resolved = rng.sample(held, min(len(held), rng.randint(1, 4)))
        action = rng.choice(["approve", "reject"])
        return lambda b: b.resolve(
            definition, [("i", i) for i in resolved], action, "why", _ctx(n, "ops")
        )
    late = CommandContext(f"c{n}", "scheduler", START_US + 10**9)
    return lambda b: b.publish_due(definition, late)


def test_buckets_applying_their_own_events_hold_what_a_rebuild_holds_across_policies() -> None:
    """Random histories over every policy the shortcuts meet, each command decided on a copy of
    a random earlier state (as concurrent commands and retries decide on copies that share
    buffers): after each, the copy that applied the decision's events holds what the one that
    applied them as stored holds, and gives the look-back the same received figures."""
    for seed in range(25):
        rng = random.Random(seed)
        definition = _random_definition(rng)
        twins = _Twins()
        for n in range(1, 30):
            at = rng.randrange(len(twins.own))
            command = _command(rng, definition, twins.own[at], n)
            if command is None:
                continue
            try:
                twins.decide(at, command)
            except DomainError:
                continue  # refused (four eyes, a rejected break...): no state made
            decider = Decider(definition, _ctx(n))
            own, stored = twins.own[-1], twins.stored[-1]
            assert _state(own) == _state(stored), (seed, n)
            for source in (s.source_id for s in definition.sources):
                for last in (None, 1, 3):
                    theirs = stored.received(decider, source, last)
                    assert own.received(decider, source, last) == theirs, (seed, n, source)
        # States left behind by later copies are still what they were.
        for own, stored in zip(twins.own, twins.stored, strict=True):
            assert _state(own) == _state(stored), seed
