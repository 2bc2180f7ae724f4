"""port.records: the per-point records built column by column, in C, as their classes build them
one by one, each column named as its field; a column left out (a default) or unknown is refused
rather than making a shorter or shifted tuple."""

from __future__ import annotations

from itertools import count, repeat

import pytest
from qis_adapters.readstore.port import OPEN_END, ChangeFeedEntry, OfficialVersion, records


def test_projector_cost_records_equal_those_their_class_builds() -> None:
    built = records(
        OfficialVersion,
        # not in the fields' order: placed by name
        position_to=repeat(OPEN_END),
        series_id=repeat("S"),
        snap_us=[10, 20],
        version=[1, 2],
        value=[b"a", b"b"],
        quality_score=[1.0, 0.5],
        recorded_from_us=repeat(7),
        position_from=repeat(3),
        reason=["", "fix"],
        user_id=repeat("u"),
        command_id=repeat("c"),
        sources=[("a",), ("b",)],
        method=["median", "manual"],
        flags=[(), ("jump",)],
        recorded_to_us=repeat(OPEN_END),
    )
    assert built == [
        OfficialVersion("S", 10, 1, b"a", 1.0, 7, 3, "", "u", "c", ("a",), "median"),
        OfficialVersion("S", 20, 2, b"b", 0.5, 7, 3, "fix", "u", "c", ("b",), "manual", ("jump",)),
    ]
    assert all(type(record) is OfficialVersion for record in built)
    assert built[1].flags == ("jump",)
    assert built[0].position_to == OPEN_END


def test_projector_cost_records_refuse_a_missing_or_unknown_column() -> None:
    columns = {
        "position": repeat(1),
        "index": count(),
        "series_id": repeat("S"),
        "snap_us": [10],
        "version": [1],
        "value": [b"a"],
        "quality_score": [1.0],
        "recorded_at_us": repeat(7),
        "reason": [""],
        "user_id": repeat("u"),
        "sources": [("a",)],
        "method": ["median"],
    }
    with pytest.raises(TypeError, match=r"ChangeFeedEntry: no column \['flags'\], unknown \[\]"):
        records(ChangeFeedEntry, **columns)
    with pytest.raises(TypeError, match=r"no column \[\], unknown \['flag'\]"):
        records(ChangeFeedEntry, **columns, flags=[()], flag=[()])
