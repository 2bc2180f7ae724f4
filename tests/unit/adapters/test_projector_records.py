"""The per-point read-model records the projector builds (NamedTuples since issue 10): immutable,
replaced field by field, and described to the MongoDB store by their fields and defaults as the
dataclass records are."""

from __future__ import annotations

import dataclasses

import pytest
from qis_adapters.readstore.mongodb import _fields_of
from qis_adapters.readstore.port import (
    OPEN_END,
    ChangeFeedEntry,
    Observation,
    OfficialVersion,
    QualityIssue,
)

VERSION = OfficialVersion("S", 10, 1, b"v", 0.5, 100, 7, "", "u", "c", ("bbg",), "median")
OBSERVATION = Observation("S", 10, "bbg", b"v", 3600, 90, 6, 2, "c", "u")
CHANGE = ChangeFeedEntry(7, 0, "S", 10, 1, b"v", 0.5, 100, "", "u", ("bbg",), "median")


@pytest.mark.parametrize("record", [VERSION, OBSERVATION, CHANGE])
def test_a_per_point_record_cannot_be_changed_in_place(record: tuple[object, ...]) -> None:
    with pytest.raises(AttributeError):
        record.snap_us = 11  # type: ignore[attr-defined]


def test_replacing_a_field_makes_a_new_record_and_leaves_the_first() -> None:
    closed = VERSION._replace(recorded_to_us=200, position_to=9)
    assert (closed.recorded_to_us, closed.position_to) == (200, 9)
    assert (VERSION.recorded_to_us, VERSION.position_to) == (OPEN_END, OPEN_END)
    assert closed._replace(recorded_to_us=OPEN_END, position_to=OPEN_END) == VERSION


def test_an_observation_and_a_change_entry_name_their_index() -> None:
    # `index` shadows tuple.index: reading it must give the field, not the method.
    assert OBSERVATION.index == 2
    assert CHANGE.index == 0


def test_mongodb_reads_a_named_tuples_fields_and_defaults() -> None:
    names, defaults = _fields_of(OfficialVersion)
    assert names == OfficialVersion._fields
    assert names[:3] == ("series_id", "snap_us", "version")
    assert defaults == {"flags": (), "recorded_to_us": OPEN_END, "position_to": OPEN_END}
    assert _fields_of(Observation)[1] == {"flags": ()}


def test_mongodb_reads_a_dataclasss_fields_and_defaults_as_before() -> None:
    names, defaults = _fields_of(QualityIssue)
    fields = dataclasses.fields(QualityIssue)
    assert names == tuple(f.name for f in fields)
    assert defaults == {
        "source_id": "",
        "resolved_by": "",
        "resolution_reason": "",
        "resolved_at_us": 0,
    }
