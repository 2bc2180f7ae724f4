"""What orjson writes for a columnar event against what pydantic-core's to_json wrote before
(qis_domain.events.points `json_payload`), for what a value document read back from the store
may hold: floats beyond the finite ones, edge values, any series id, a lone surrogate."""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest
from pydantic_core import PydanticSerializationError
from qis_adapters.eventstore.codec import peek_columns
from qis_domain.events.points import DataReconciled

from tests.unit.domain.test_domain_event_columns import REGISTRY, _reconciled, _to_json_alone


def written_before(event: DataReconciled) -> bytes:
    with _to_json_alone():
        return event.json_payload()


def stored_with(number: bytes) -> DataReconciled:
    """A stored DataReconciled whose first value document holds `number` as JSON text."""
    data = written_before(_reconciled([{"x": "N"}, {"x": "1"}])).replace(b'"N"', number, 1)
    event = REGISTRY.decode("DataReconciled", data, DataReconciled.event_version)
    assert isinstance(event, DataReconciled)
    return event


# 1e400 is plain JSON; Infinity and NaN are what to_json wrote for such a float, and read back.
@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"Infinity", b"-Infinity", b"NaN"])
def test_a_value_beyond_a_float_read_back_is_written_again_as_before(number: bytes) -> None:
    """orjson writes an infinite or NaN float as null, without raising, so no fallback runs:
    the value a publication copies from a stored reconciliation silently becomes None."""
    event = stored_with(number)
    written = event.json_payload()
    assert written == written_before(event)
    again = REGISTRY.decode("DataReconciled", written, DataReconciled.event_version)
    assert isinstance(again, DataReconciled)
    x = again.values[0]["x"]  # type: ignore[index]
    assert isinstance(x, float)
    assert not math.isfinite(x)


@pytest.mark.parametrize(
    "values",
    [
        [{"x": "null"}, {"x": "1"}],  # a text "null": to_json too, the same bytes
        [{"x": None}, {"x": "1.5"}],
        [{"x": math.inf}, {"x": -math.inf}],
        [{"x": math.nan}, {"null": "null"}],
        [{"x": 1e400}, {"x": -0.0}],
    ],
)
def test_a_payload_with_a_null_is_written_as_before_and_reads_back(values: list[Any]) -> None:
    event = _reconciled(values)
    written = event.json_payload()
    assert written == written_before(event)
    back = REGISTRY.decode("DataReconciled", written, DataReconciled.event_version)
    assert isinstance(back, DataReconciled)
    assert repr(back.values) == repr(values)  # nan != nan: compared as written
    named = event.model_copy(update={"series_id": "null"})
    assert named.json_payload() == written_before(named)


class Side(enum.StrEnum):
    BID = "bid"


EDGES: list[Any] = [
    "".join(map(chr, range(0x20))) + '\x7f"\\/\u2028\u2029\U0001f600é',
    -0.0,
    5e-324,
    1e16,
    1.7976931348623157e308,
    0.1,
    True,
    2**64 - 1,
    -(2**63),
    2**64,  # orjson refuses it: to_json writes it
    {1: "a", False: "b", None: "c", 1.5: "d"},  # keys not str: to_json writes them
    {Side.BID: "1"},
    Side.BID,
    ("a", 1),
    [[[]], {}],
]


@pytest.mark.parametrize("edge", EDGES, ids=repr)
def test_edge_values_in_a_value_document_are_written_as_before(edge: Any) -> None:
    event = _reconciled([{"x": edge}, {"x": "1"}])
    assert event.json_payload() == written_before(event)


def test_a_series_id_of_any_character_reads_back_through_the_store_codec() -> None:
    for series_id in ("\U0001f600é\u2028", "a\x00b", 'q"uo\\te', "\x7f"):
        event = _reconciled([{"x": "1"}, {"x": "2"}]).model_copy(update={"series_id": series_id})
        written = REGISTRY.encode(event)
        assert written == written_before(event)
        assert REGISTRY.decode("DataReconciled", written, event.event_version) == event
        head = peek_columns(written)
        # An escaped series id is left to the JSON parser (None); any other reads back whole.
        if head is not None:
            assert (head.series_id, head.snaps.tolist()) == (series_id, event.snaps)
        else:
            assert b"\\" in written[: written.index(b'","data_type"')]


def test_a_lone_surrogate_is_refused_as_before_and_not_as_a_type_error() -> None:
    """orjson raises JSONEncodeError (a TypeError); the fallback then raises what to_json
    raised before (a ValueError: the command answers INTERNAL, as before)."""
    event = _reconciled([{"x": "\ud800"}, {"x": "1"}])
    with pytest.raises(PydanticSerializationError):
        event.json_payload()
