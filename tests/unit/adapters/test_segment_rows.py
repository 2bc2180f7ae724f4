"""Segment rows (qis_adapters.readstore.segments) against a reference: the per-point records.

A history of publications and restatements is cut into batches as a projector would cut it;
each batch extends the rows of the one before. Whatever the cut, selecting the rows of any
knowledge time or commit position from the version that covers it gives exactly the versions
whose knowledge intervals contain it, computed here from the whole history point by point.
"""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import (
    LATEST,
    OPEN_END,
    AsOf,
    AtPosition,
    KnownAt,
    OfficialVersion,
)

SERIES = "S"


def _price(text: str) -> bytes:
    return values_pb2.DataValue(price=values_pb2.Price(value=text)).SerializeToString()


@st.composite
def histories(draw: st.DrawFn) -> list[list[OfficialVersion]]:
    """Events in log order, each publishing or restating some snaps, at increasing positions
    (knowledge times may repeat)."""
    snaps = draw(st.lists(st.integers(0, 20), min_size=1, max_size=8, unique=True))
    events = []
    versions: dict[int, int] = {}
    recorded = 1_000
    for position in range(1, draw(st.integers(1, 12)) + 1):
        recorded += draw(st.sampled_from([0, 0, 1, 5]))
        chosen = draw(st.lists(st.sampled_from(snaps), min_size=1, max_size=4, unique=True))
        event = []
        for snap in sorted(chosen):
            versions[snap] = versions.get(snap, 0) + 1
            event.append(
                OfficialVersion(
                    SERIES,
                    snap,
                    versions[snap],
                    _price(f"{position}.{snap}"),
                    0.5,
                    recorded,
                    position * 10,
                    "" if versions[snap] == 1 else "restated",
                    "u",
                    f"c{position}",
                    ("bbg",),
                    "priority",
                    ("jump",) if snap % 3 == 0 else (),
                )
            )
        events.append(event)
    return events


def _closed(events: list[list[OfficialVersion]]) -> list[OfficialVersion]:
    """Every version with its knowledge interval, as the per-point records hold it."""
    out: list[OfficialVersion] = []
    current: dict[int, int] = {}
    for event in events:
        for v in event:
            before = current.get(v.snap_us)
            if before is not None:
                out[before] = out[before]._replace(
                    recorded_to_us=v.recorded_from_us, position_to=v.position_from
                )
            current[v.snap_us] = len(out)
            out.append(v)
    return out


def _reference(closed: list[OfficialVersion], as_of: AsOf) -> list[tuple[int, int, bytes]]:
    def official(v: OfficialVersion) -> bool:
        match as_of:
            case AtPosition(p):
                return v.position_from <= p < v.position_to
            case KnownAt(t):
                return v.recorded_from_us <= t < v.recorded_to_us
            case _:
                return v.position_to == OPEN_END

    return sorted((v.snap_us, v.version, v.value) for v in closed if official(v))


def _answer(rows: pa.Table) -> list[tuple[int, int, bytes]]:
    return list(
        zip(
            rows["snap_us"].to_pylist(),
            rows["version"].to_pylist(),
            rows["value"].to_pylist(),
            strict=True,
        )
    )


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_any_cut_selects_what_the_per_point_records_hold(
    events: list[list[OfficialVersion]], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(events) - 1))) if len(events) > 1 else [])
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    # Each stretch: its first position and knowledge time, and its rows (via an encoded round
    # trip, as the store keeps them).
    stretches: list[tuple[int, int, pa.Table]] = []
    rows = segments.EMPTY
    for batch in batches:
        published = [v for event in batch for v in event]
        rows = segments.decode(segments.encode(segments.extend(rows, published)))
        stretches.append((published[0].position_from, published[0].recorded_from_us, rows))
    closed = _closed(events)
    last_position = events[-1][0].position_from
    for position in range(0, last_position + 11):
        covering = [r for p, _, r in stretches if p <= position]
        if not covering:
            continue
        chosen = segments.select(covering[-1], AtPosition(position), -(2**63), OPEN_END)
        assert _answer(chosen) == _reference(closed, AtPosition(position)), position
    for recorded in range(999, events[-1][0].recorded_from_us + 2):
        covering = [r for _, t, r in stretches if t <= recorded]
        if not covering:
            continue
        chosen = segments.select(covering[-1], KnownAt(recorded), -(2**63), OPEN_END)
        assert _answer(chosen) == _reference(closed, KnownAt(recorded)), recorded
    latest = segments.select(rows, LATEST, -(2**63), OPEN_END)
    assert _answer(latest) == _reference(closed, LATEST)
    # Answers about one time show nothing superseded: a later version is not part of them.
    assert set(latest["position_to"].to_pylist()) <= {OPEN_END}


def test_value_columns_are_derived_from_the_stored_values() -> None:
    bar = values_pb2.DataValue(
        bar=values_pb2.OhlcBar(open="1", high="2", low="0.5", close="1.5")
    ).SerializeToString()
    euros = values_pb2.DataValue(price=values_pb2.Price(value="7.25", currency="EUR"))
    base = OfficialVersion(SERIES, 1, 1, bar, 1.0, 5, 10, "", "u", "c", (), "manual")
    rows = segments.rows_from_versions(
        [base, base._replace(snap_us=2, value=euros.SerializeToString())]
    )
    assert rows["kind"].to_pylist() == ["bar", "price"]
    assert rows["text"].to_pylist() == [None, "7.25"]
    assert rows["unit"].to_pylist() == [None, "EUR"]
    assert rows["close"].to_pylist() == ["1.5", None]
    assert rows["bar_volume"].to_pylist() == ["", None]
    assert segments.versions_from_rows(SERIES, rows)[0] == base
