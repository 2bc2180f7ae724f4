"""curve_node_jump across bucket boundaries: the first snap of a bucket compares its nodes
with the previous bucket's last received curve, as a snap inside a bucket compares with the
one before it, so that the issues do not depend on how the curves were split into commands."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_adapters.eventstore.codec import EventCodec
from qis_command.application.commands import IngestPoints
from qis_domain.definitions import SeriesDefinition, SeriesSource, ValidationRules
from qis_domain.events import DomainEvent
from qis_domain.series_bucket import bucket_stream
from qis_domain.snaps import BUCKET_SPAN_US, Frequency, Snap, bucket_of
from qis_domain.structures import StructureChecks, StructureSchema
from qis_domain.values import CurveNode, DataType, TermStructure

from tests.service.command.command_support import App, issues, new_app

TENORS = ("P1M", "P6M", "P1Y", "P5Y")
MINUTE_US = 60_000_000
DAY_US = BUCKET_SPAN_US[Frequency.MINUTE]  # a minute series' bucket is a UTC day
FIRST_US = 20_000 * DAY_US - 5 * MINUTE_US  # 23:55 UTC: five snaps, then the next bucket
LIMIT = 3  # percent
Figures = list[int]  # tenths, per tenor
CURVE = st.lists(st.integers(90, 110), min_size=len(TENORS), max_size=len(TENORS))
HISTORY = st.lists(CURVE, min_size=7, max_size=12)


def definition() -> SeriesDefinition:
    return SeriesDefinition(
        data_type=DataType.TERM_STRUCTURE,
        frequency=Frequency.MINUTE,
        unit="USD",
        time_zone="UTC",
        sources=(SeriesSource(source_id="a", priority=1),),
        validation=ValidationRules(),
        structure=StructureSchema(checks=StructureChecks(max_node_jump_percent=Decimal(LIMIT))),
    )


def curve(figures: Figures) -> TermStructure:
    return TermStructure(
        tuple(CurveNode(t, Decimal(f) / 10) for t, f in zip(TENORS, figures, strict=True))
    )


def snap(i: int) -> int:
    return FIRST_US + i * MINUTE_US


async def bucket_events(app: App, snaps: list[int]) -> list[DomainEvent]:
    codec = EventCodec()
    records = []
    for bucket_us in sorted({bucket_of(s, Frequency.MINUTE) for s in snaps}):
        records.extend(await app.store.read_stream(bucket_stream(app.series_id, bucket_us)))
    return [codec.decode(r).event for r in sorted(records, key=lambda r: r.position)]


async def jumps(history: list[Figures], cuts: list[int]) -> dict[int, list[str]]:
    """The nodes each curve_node_jump issue names, by snap index, when `history` (one curve a
    minute) is sent in commands that start at the indices `cuts`."""
    app = new_app()
    await app.define(definition())
    bounds = [0, *sorted(set(cuts) - {0}), len(history)]
    for n, (lo, hi) in enumerate(pairwise(bounds)):
        points = [(Snap(snap(i)), curve(history[i])) for i in range(lo, hi)]
        await app.handlers.ingest(IngestPoints(app.series_id, "a", points), app.ctx(f"c{n}"))
    found = issues(await bucket_events(app, [snap(i) for i in range(len(history))]))
    return {
        (i.snap_us - FIRST_US) // MINUTE_US: [node["node"] for node in i.evidence["nodes"]]
        for i in found
        if i.rule == "curve_node_jump"
    }


def reference(history: list[Figures]) -> dict[int, list[str]]:
    """Every curve against the one a minute before, whichever bucket either is in."""
    out = {}
    for i in range(1, len(history)):
        moved = [
            tenor
            for tenor, now, before in zip(TENORS, history[i], history[i - 1], strict=True)
            if abs(Fraction(now - before, before)) * 100 > LIMIT
        ]
        if moved:
            out[i] = moved
    return out


async def test_the_first_curve_of_a_bucket_compares_with_the_last_of_the_one_before() -> None:
    calm, jumped = [100, 100, 100, 100], [100, 100, 120, 100]
    history = [calm] * 5 + [jumped]  # index 5: 00:00 UTC, the next bucket's first snap
    assert bucket_of(snap(5), Frequency.MINUTE) != bucket_of(snap(4), Frequency.MINUTE)
    assert await jumps(history, list(range(6))) == {5: ["P1Y"]}  # one command per curve
    assert await jumps(history, [0]) == {5: ["P1Y"]}  # all in one command


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(HISTORY, st.lists(st.integers(1, 11), max_size=6))
async def test_jumps_across_buckets_do_not_depend_on_the_chunking(
    history: list[Figures], cuts: list[int]
) -> None:
    expected = reference(history)
    assert await jumps(history, [0]) == expected
    assert await jumps(history, list(range(len(history)))) == expected
    assert await jumps(history, [c for c in cuts if c < len(history)]) == expected
