"""Segment rows built from events' columns (segments.NewRows, event_value_columns) are the
rows built from the same versions' records (rows_from_versions), byte for byte once encoded."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_adapters.proto.values import raw_to_proto_bytes
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import OPEN_END, OfficialVersion
from qis_domain.events import RawValue
from qis_domain.values import DataType

TEXTS = st.sampled_from(["1.5", "100.25", "0.000001", "7", "-3", "1E+3", "12345678901234567890.5"])
BAR = {"open": "1", "high": "2", "low": "0.5", "close": "1.5", "volume": None}


@st.composite
def events(draw: st.DrawFn) -> tuple[DataType, str, list[RawValue]]:
    """One event's data type, unit and raw values."""
    data_type = draw(st.sampled_from([DataType.PRICE, DataType.VOLUME, DataType.OHLC_BAR]))
    unit = draw(st.sampled_from(["", "USD", "shares"]))
    size = draw(st.integers(0, 6))
    if data_type is DataType.OHLC_BAR:
        return data_type, unit, [{"bar": dict(BAR, close=draw(TEXTS))} for _ in range(size)]
    return data_type, unit, draw(st.lists(TEXTS, min_size=size, max_size=size))


@settings(max_examples=80, deadline=None)
@given(events())
def test_segment_build_event_value_columns_are_those_parsed_from_the_values(
    event: tuple[DataType, str, list[RawValue]],
) -> None:
    data_type, unit, raws = event
    values = list(map(raw_to_proto_bytes(data_type, unit), raws))
    each, same = segments.event_value_columns(data_type, unit, raws, values)
    each.update({name: [value] * len(raws) for name, value in same.items()})
    assert each == segments.value_columns(values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(events(), st.integers(0, 2), st.booleans()), min_size=1, max_size=5))
def test_segment_build_new_rows_added_an_event_at_a_time_are_the_versions_rows(
    log: list[tuple[tuple[DataType, str, list[RawValue]], int, bool]],
) -> None:
    new, versions, snap = segments.NewRows(), [], 0
    for position, ((data_type, unit, raws), who, restated) in enumerate(log, start=1):
        values = list(map(raw_to_proto_bytes(data_type, unit), raws))
        value_each, value_same = segments.event_value_columns(data_type, unit, raws, values)
        each: dict[str, list[Any]] = {
            "snap_us": list(range(snap, snap + len(raws))),
            "version": [2 if restated else 1] * len(raws),
            "value": values,
            "quality_score": [0.5 + i / 10 for i in range(len(raws))],
            "reason": ["corrected" if restated else ""] * len(raws),
            "sources": [("a", "b")[: 1 + i % 2] for i in range(len(raws))],
            "method": ["median"] * len(raws),
            "flags": [("jump",) if i % 3 == 0 else () for i in range(len(raws))],
            **value_each,
        }
        same = {
            **value_same,
            "recorded_from_us": 1_000 + position,
            "position_from": position,
            "user_id": f"u{who}",
            "command_id": f"c{position}",
            "recorded_to_us": OPEN_END,
            "position_to": OPEN_END,
        }
        new.add(len(raws), each, same)
        for i in range(len(raws)):
            fields = {name: column[i] for name, column in each.items()}
            fields.update(same)
            versions.append(
                OfficialVersion("S", **{f: fields[f] for f in OfficialVersion._fields[1:]})
            )
        snap += len(raws)
    rows = new.rows()
    assert rows.equals(segments.rows_from_versions(versions))
    assert segments.encode(rows) == segments.encode(segments.rows_from_versions(versions))
