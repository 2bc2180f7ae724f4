"""Term structures and surfaces in every read store (SQLite, memory, MongoDB on FerretDB): a
whole curve or surface is one value of one point, kept byte for byte in the per-point records
(latest, as of a time and a position, history, observations, change feed), and in the columnar
segments as one row of kind "term_structure" or "surface" (as an options chain). The largest
surface a series may hold (2,000 nodes) fits each store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qis.data.v1.values_pb2 import CurveNode, DataValue, Surface, SurfaceNode, TermStructure
from qis_adapters.readstore.port import (
    LATEST,
    AtPosition,
    OfficialVersion,
    ProjectionBatch,
    ResumeToken,
    Segment,
    VersionClosure,
)
from qis_adapters.readstore.segments import decode, encode, rows_from_versions, versions_from_rows
from qis_domain.structures import MAX_STRUCTURE_NODES

from tests.contract.readstore.test_readstore_contract import (
    EVERYTHING,
    T0,
    change,
    observation,
    version,
)

if TYPE_CHECKING:
    from tests.contract.readstore.conftest import Adapter

DAY = 86_400_000_000


def curve(shift: int) -> bytes:
    nodes = [CurveNode(tenor=f"P{m}M", value=f"4.{shift + m:03d}") for m in (1, 3, 6, 12, 120)]
    return DataValue(term_structure=TermStructure(nodes=nodes)).SerializeToString()


def largest_surface() -> bytes:
    """40 expiries x 50 moneyness points, every value with 18 decimal places."""
    nodes = [
        SurfaceNode(tenor=f"P{e}M", coordinate=f"{50 + 2 * k}E-2", value=f"0.{e:02d}{k:016d}")
        for e in range(1, 41)
        for k in range(50)
    ]
    assert len(nodes) == MAX_STRUCTURE_NODES
    return DataValue(surface=Surface(nodes=nodes)).SerializeToString()


def carrying(v: OfficialVersion, value: bytes) -> OfficialVersion:
    return v._replace(series_id="CURVE", value=value)


FIRST = [
    carrying(version(T0, 1, "1", at=1000, position=10), curve(0)),
    carrying(version(T0 + DAY, 1, "1", at=1000, position=10), largest_surface()),
]
RESTATED = carrying(version(T0, 2, "1", at=2000, position=20, reason="node 6M corrected"), curve(5))


async def test_curves_and_surfaces_are_kept_byte_for_byte_and_restated_whole(
    store: Adapter,
) -> None:
    observed = [
        observation("CURVE", v.snap_us, "bbg", 10, i)._replace(value=v.value)
        for i, v in enumerate(FIRST)
    ]
    await store.apply(
        ProjectionBatch(
            versions=FIRST,
            changes=[change(v, i) for i, v in enumerate(FIRST)],
            observations=observed,
        ),
        10,
    )
    await store.apply(
        ProjectionBatch(
            versions=[RESTATED],
            closures=[VersionClosure("CURVE", T0, 1, 2000, 20)],
            changes=[change(RESTATED, 0)],
        ),
        20,
    )
    latest = await store.latest_range("CURVE", *EVERYTHING, 10)
    assert [(v.version, v.value) for v in latest] == [(2, curve(5)), (1, largest_surface())]
    before = await store.as_of_position_range("CURVE", *EVERYTHING, 15, 10)
    assert [v.value for v in before] == [curve(0), largest_surface()]
    known = await store.as_of_time_range("CURVE", *EVERYTHING, 1500, 10)
    assert [v.value for v in known] == [curve(0), largest_surface()]
    history = await store.history("CURVE", T0)
    assert [(v.version, v.value, v.reason) for v in history] == [
        (1, curve(0), ""),
        (2, curve(5), "node 6M corrected"),
    ]
    assert [o.value for o in await store.observations("CURVE", T0 + DAY)] == [largest_surface()]
    feed = await store.changes_after(ResumeToken(-1, -1), ["CURVE"], 10)
    assert [c.value for c in feed] == [curve(0), largest_surface(), curve(5)]


async def test_a_segment_carries_each_structure_as_one_row(store: Adapter) -> None:
    rows = rows_from_versions(FIRST)
    assert rows.column("kind").to_pylist() == ["term_structure", "surface"]
    assert rows.column("text").to_pylist() == [None, None]  # no scalar column form
    payload = encode(rows)
    segment = Segment(
        series_id="CURVE",
        bucket_us=T0,
        first_snap_us=T0,
        last_snap_us=T0 + DAY,
        rows=2,
        payload=payload,
        recorded_from_us=1000,
        position_from=10,
    )
    await store.apply(ProjectionBatch(segments=[segment]), 10)
    for as_of in (LATEST, AtPosition(10)):
        found = await store.segments("CURVE", 0, 2**62, as_of, 10)
        assert found is not None
        assert [s.payload for s in found] == [payload]
        assert versions_from_rows("CURVE", decode(found[0].payload)) == FIRST
