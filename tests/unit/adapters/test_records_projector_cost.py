"""port.records: the per-point records built column by column, in C, as their classes build them
one by one; a column left out (a default) is refused rather than making a shorter tuple."""

from __future__ import annotations

from itertools import count, repeat

import pytest
from qis_adapters.readstore.port import OPEN_END, ChangeFeedEntry, OfficialVersion, records


def test_projector_cost_records_equal_those_their_class_builds() -> None:
    snaps, values = [10, 20], [b"a", b"b"]
    built = records(
        OfficialVersion, repeat("S"), snaps, [1, 2], values, [1.0, 0.5], repeat(7), repeat(3),
        ["", "fix"], repeat("u"), repeat("c"), [("a",), ("b",)], ["median", "manual"],
        [(), ("jump",)], repeat(OPEN_END), repeat(OPEN_END),
    )  # fmt: skip
    assert built == [
        OfficialVersion("S", 10, 1, b"a", 1.0, 7, 3, "", "u", "c", ("a",), "median"),
        OfficialVersion("S", 20, 2, b"b", 0.5, 7, 3, "fix", "u", "c", ("b",), "manual", ("jump",)),
    ]
    assert all(type(record) is OfficialVersion for record in built)
    assert built[1].flags == ("jump",)
    assert built[0].position_to == OPEN_END


def test_projector_cost_records_refuse_a_missing_column() -> None:
    columns = [repeat(1), count(), repeat("S"), [10], [1], [b"a"], [1.0], repeat(7), [""]]
    with pytest.raises(TypeError, match="ChangeFeedEntry takes 13 columns, not 12"):
        records(ChangeFeedEntry, *columns, repeat("u"), [("a",)], ["median"])
