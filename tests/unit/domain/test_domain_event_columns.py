"""Columnar events in the store: a column whose entries are all equal is written once,
{"all": entry}, and read back as the full list; payloads written before (full lists) read as
they always did."""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError, create_model
from qis_adapters.eventstore.codec import columns_length, peek_columns
from qis_domain.events import (
    ALL_EVENT_TYPES,
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DomainEvent,
    EventRegistry,
    default_registry,
)
from qis_domain.events.points import RawValue, _Columns
from qis_domain.values import DataType

REGISTRY = default_registry()
COLUMNAR: tuple[type[_Columns], ...] = tuple(
    cls for cls in ALL_EVENT_TYPES if issubclass(cls, _Columns)
)
S = 1_709_328_600_000_000
D = 86_400_000_000

# Bytes the encoder wrote before columns were written once (qis-data f800af8), with the events
# they hold.
STORED_BEFORE: list[tuple[bytes, DomainEvent]] = [
    (
        b'{"snaps":[1709328600000000,1709415000000000,1709501400000000],"series_id":"SPX",'
        b'"source_id":"bbg","data_type":"price","unit":"USD","offsets":[0,0,0],'
        b'"values":["5123.41","5130.00","5130.00"]}',
        DataIngested(
            series_id="SPX",
            source_id="bbg",
            data_type=DataType.PRICE,
            unit="USD",
            snaps=[S, S + D, S + 2 * D],
            offsets=[0, 0, 0],
            values=["5123.41", "5130.00", "5130.00"],
        ),
    ),
    (
        b'{"snaps":[1709328600000000,1709415000000000],"series_id":"SPX","data_type":"price",'
        b'"unit":"USD","values":["5123.41","5130.00"],"methods":["priority","priority"],'
        b'"contributions":[{"bbg":"5123.41"},{"bbg":"5130.00"}],"excluded":[[],[]],'
        b'"quality_scores":["1","1"],"statuses":["published","published"]}',
        DataReconciled(
            series_id="SPX",
            data_type=DataType.PRICE,
            unit="USD",
            snaps=[S, S + D],
            values=["5123.41", "5130.00"],
            methods=["priority"] * 2,
            contributions=[{"bbg": "5123.41"}, {"bbg": "5130.00"}],
            excluded=[[], []],
            quality_scores=["1", "1"],
            statuses=["published"] * 2,
        ),
    ),
    (
        b'{"snaps":[1709328600000000,1709415000000000],"series_id":"SPX","data_type":"price",'
        b'"unit":"USD","versions":[1,1],"values":["5123.41","5130.00"],'
        b'"quality_scores":["1","1"],"sources":[["bbg"],["bbg"]],'
        b'"methods":["priority","priority"],"flags":[[],[]],"reasons":["",""],'
        b'"causes":["",""],"decided_at_us":1709332200000000,"mode":"automatic"}',
        DataPublished(
            series_id="SPX",
            data_type=DataType.PRICE,
            unit="USD",
            mode="automatic",
            snaps=[S, S + D],
            versions=[1, 1],
            values=["5123.41", "5130.00"],
            quality_scores=["1", "1"],
            sources=[["bbg"], ["bbg"]],
            methods=["priority"] * 2,
            flags=[[], []],
            reasons=["", ""],
            causes=["", ""],
            decided_at_us=S + 3_600_000_000,
        ),
    ),
]


def test_every_list_but_the_snaps_is_a_column_that_can_be_written_once() -> None:
    assert {DataIngested, DataReconciled, DataPublished} <= set(COLUMNAR)
    for cls in COLUMNAR:
        assert list(cls.model_fields)[:2] == ["snaps", "series_id"]  # what peek_columns reads
        lists = {n for n, f in cls.model_fields.items() if get_origin(f.annotation) is list}
        assert cls._columns == lists - {"snaps"}, cls
        # No other field is an object: a compact column is told apart by its type alone.
        for name, field in cls.model_fields.items():
            assert name in lists or get_origin(field.annotation) is not dict, (cls, name)


# --- the stored form ---


def test_the_stored_bytes_of_a_small_publication() -> None:
    _, published = STORED_BEFORE[2]
    assert REGISTRY.encode(published) == (
        b'{"snaps":[1709328600000000,1709415000000000],"series_id":"SPX","data_type":"price",'
        b'"unit":"USD","versions":{"all":1},"values":["5123.41","5130.00"],'
        b'"quality_scores":{"all":"1"},"sources":{"all":["bbg"]},"methods":{"all":"priority"},'
        b'"flags":{"all":[]},"reasons":{"all":""},"causes":{"all":""},'
        b'"decided_at_us":1709332200000000,"mode":"automatic"}'
    )


@pytest.mark.parametrize(
    ("data", "event"), STORED_BEFORE, ids=[type(e).event_type for _, e in STORED_BEFORE]
)
def test_payloads_stored_before_read_as_they_did(data: bytes, event: DomainEvent) -> None:
    cls = type(event)
    decoded = REGISTRY.decode(cls.event_type, data, cls.event_version)
    assert decoded == event
    assert decoded.model_dump_json() == event.model_dump_json()  # types too (1 is not 1.0)
    # written again with its equal columns once, and read the same
    again = REGISTRY.encode(decoded)
    assert b'{"all":' in again
    assert REGISTRY.decode(cls.event_type, again, cls.event_version) == event


def test_one_point_events_and_unequal_columns_are_written_as_before() -> None:
    for data, event in STORED_BEFORE:
        payload = json.loads(data)
        assert isinstance(event, _Columns)
        one = REGISTRY.decode(
            event.event_type,
            json.dumps({k: v[:1] if isinstance(v, list) else v for k, v in payload.items()})
            .replace(" ", "")
            .encode(),
            type(event).event_version,
        )
        assert REGISTRY.encode(one) == one.model_dump_json().encode()
    ingested = STORED_BEFORE[0][1]
    assert json.loads(REGISTRY.encode(ingested))["values"] == ["5123.41", "5130.00", "5130.00"]


def test_documents_are_written_once_only_as_one_object() -> None:
    """1 == 1.0 == True in Python, not in JSON: documents equal in Python need not be."""
    doc = {"bar": {"open": "1", "close": "2"}}
    # as the domain makes its events (validation would copy each row's document)
    same = DataReconciled.model_construct(**{**dict(_reconciled([doc] * 3)), "values": [doc] * 3})
    equal = _reconciled([{"x": 1}, {"x": 1.0}, {"x": True}])
    assert equal.values[0] == equal.values[1] == equal.values[2]
    assert json.loads(REGISTRY.encode(same))["values"] == {"all": doc}
    assert json.loads(REGISTRY.encode(equal))["values"] == [{"x": 1}, {"x": 1.0}, {"x": True}]
    read = REGISTRY.decode("DataReconciled", REGISTRY.encode(equal), 1)
    assert isinstance(read, DataReconciled)
    assert [type(v["x"]) for v in read.values if isinstance(v, dict)] == [int, float, bool]


def _reconciled(values: list[RawValue]) -> DataReconciled:
    n = len(values)
    return DataReconciled(
        series_id="OPT",
        data_type=DataType.OHLC_BAR,
        unit="",
        snaps=[S + i * D for i in range(n)],
        values=values,
        methods=["priority"] * n,
        contributions=[{"bbg": "1"}] * n,
        excluded=[[]] * n,
        quality_scores=["1"] * n,
        statuses=["published"] * n,
    )


def test_the_head_of_a_compact_payload_is_read_without_decoding_it() -> None:
    for _, event in STORED_BEFORE:
        assert isinstance(event, _Columns)
        data = REGISTRY.encode(event)
        assert b'{"all":' in data
        head = peek_columns(data)
        assert head is not None
        assert (head.series_id, head.snaps.tolist()) == (event.series_id, event.snaps)
        assert columns_length(data) == len(event.snaps)


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_the_snaps_of_a_payload_are_counted_in_its_head(n: int) -> None:
    # Commas and brackets in the columns after the snaps count for nothing.
    event = _official(DataPublished, n, values=["1,5"] * n, sources=[["a]", "b"]] * n)
    assert columns_length(REGISTRY.encode(event)) == n


def test_a_payload_that_is_not_columnar_has_no_snaps_to_count() -> None:
    assert columns_length(b'{"command_id":"c","snaps":[1,2]}') is None
    assert columns_length(b'{"snaps":[1,2') is None


# --- malformed payloads ---


@pytest.mark.parametrize(
    ("column", "match"),
    [
        ({"all": 1, "n": 2}, "Extra inputs are not permitted"),
        ({"every": 1}, "Field required"),
        ({}, "Field required"),
        ({"all": "one"}, "valid integer"),
        ({"all": [1]}, "valid integer"),
        ([1], "column versions has 1 entries for 2 snaps"),
    ],
)
def test_a_malformed_column_is_refused(column: Any, match: str) -> None:
    payload = json.loads(STORED_BEFORE[2][0])
    payload["versions"] = column
    with pytest.raises(ValidationError, match=match):
        REGISTRY.decode("DataPublished", json.dumps(payload).encode(), 2)


@pytest.mark.parametrize("snaps", [[], [S]])
def test_a_column_is_written_once_only_for_two_snaps_or_more(snaps: list[int]) -> None:
    payload = json.loads(STORED_BEFORE[0][0])
    payload |= {"snaps": snaps, "values": ["1"] * len(snaps), "offsets": {"all": 0}}
    with pytest.raises(ValidationError, match=f"column offsets is written once for {len(snaps)}"):
        REGISTRY.decode("DataIngested", json.dumps(payload).encode(), 1)


def test_the_snaps_are_never_written_once() -> None:
    payload = json.loads(STORED_BEFORE[0][0])
    payload["snaps"] = {"all": S}
    with pytest.raises(ValidationError, match="valid array"):
        REGISTRY.decode("DataIngested", json.dumps(payload).encode(), 1)


# --- versions: readers of another version ---


def test_a_reader_of_before_refuses_a_compact_payload_rather_than_misreading_it() -> None:
    """Why the compact form is no new schema version: the code of before, whatever version
    it is told, validates the payload as its lists, and an object is no list."""
    before = create_model(  # DataPublished as it was: the same fields, lists only
        "DataPublishedBefore",
        __base__=DomainEvent,
        **{
            name: (field.annotation, ... if field.is_required() else field.default)
            for name, field in DataPublished.model_fields.items()
        },  # type: ignore[call-overload]
    )
    data, event = STORED_BEFORE[2]
    with pytest.raises(ValidationError, match="valid array"):
        before.model_validate_json(REGISTRY.encode(event))
    assert before.model_validate_json(data).model_dump() == event.model_dump()


def test_a_version_newer_than_the_code_is_refused() -> None:
    data, _ = STORED_BEFORE[0]
    with pytest.raises(ValueError, match="DataIngested v2 is newer than this code reads"):
        REGISTRY.decode("DataIngested", data, 2)


def test_upcasters_read_columns_written_out() -> None:
    class DataIngestedV2(DataIngested):
        event_version = 2
        sent_offsets: list[bool]

    seen: list[dict[str, Any]] = []

    def upcast(payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {**payload, "sent_offsets": [o != 0 for o in payload["offsets"]]}

    registry = EventRegistry([DataIngestedV2])
    registry.register_upcaster("DataIngested", 1, upcast)
    _, event = STORED_BEFORE[0]
    decoded = registry.decode("DataIngested", REGISTRY.encode(event), 1)
    assert seen[0]["offsets"] == [0, 0, 0]
    assert isinstance(decoded, DataIngestedV2)
    assert decoded.sent_offsets == [False] * 3
    assert decoded.offsets == [0, 0, 0]


# --- any columnar event ---

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)
_ITEMS: dict[Any, st.SearchStrategy[Any]] = {
    int: st.integers(-(2**63), 2**63 - 1),
    str: st.text(max_size=4),
    list[str]: st.lists(st.text(max_size=3), max_size=3),
    dict[str, str]: st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    RawValue: st.text(max_size=4) | st.dictionaries(st.text(max_size=3), _JSON, max_size=2),
}
_SCALARS: dict[Any, st.SearchStrategy[Any]] = {
    str: st.text(max_size=4),
    int: st.integers(0, 2**62),
    DataType: st.sampled_from(DataType),
}


@st.composite
def columnar_events(draw: st.DrawFn) -> _Columns:
    """Any columnar event; each column's entries free, one value in every row (one shared
    object, as the domain makes its events: validation would copy each row's document), or
    equal copies of one value."""
    cls = draw(st.sampled_from(COLUMNAR))
    n = draw(st.sampled_from([0, 1, 2, 3, 50]))
    fields: dict[str, Any] = {
        "snaps": draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n))
    }
    for name, field in cls.model_fields.items():
        if name == "snaps":
            continue
        if name not in cls._columns:
            fields[name] = draw(_SCALARS[field.annotation])
            continue
        (item_type,) = get_args(field.annotation)
        items = _ITEMS[item_type]
        form = draw(st.sampled_from(["free", "shared", "copies"]))
        if form == "free":
            fields[name] = draw(st.lists(items, min_size=n, max_size=n))
        else:
            value = draw(items)
            fields[name] = (
                [value] * n
                if form == "shared"
                else [json.loads(json.dumps(value)) for _ in range(n)]
            )
    cls.model_validate(fields)  # well-formed
    return cls.model_construct(**fields)


@settings(max_examples=300)
@given(columnar_events())
def test_any_columnar_event_reads_back_as_it_was_written(event: _Columns) -> None:
    cls = type(event)
    data = REGISTRY.encode(event)
    decoded = REGISTRY.decode(cls.event_type, data, cls.event_version)
    assert decoded == event
    assert decoded.model_dump_json() == event.model_dump_json()  # types too (1 is not 1.0)
    assert REGISTRY.encode(decoded) == data
    # written as before, it reads the same
    assert (
        REGISTRY.decode(cls.event_type, event.model_dump_json().encode(), cls.event_version)
        == event
    )
    head = peek_columns(data)
    if head is not None:  # None: a series id the JSON escapes
        assert (head.series_id, head.snaps.tolist()) == (event.series_id, event.snaps)


@settings(max_examples=300)
@given(columnar_events())
def test_only_columns_of_equal_entries_are_written_once(event: _Columns) -> None:
    payload = json.loads(REGISTRY.encode(event))
    before = json.loads(event.model_dump_json())
    n = len(event.snaps)
    for name, column in before.items():
        value = getattr(event, name)
        once = (
            name in type(event)._columns
            and n >= 2
            and (
                all(v is value[0] for v in value)
                if isinstance(value[0], dict)
                else value.count(value[0]) == n
            )
        )
        assert payload[name] == ({"all": column[0]} if once else column), name
    assert list(payload) == list(before)  # each field at its place
    if payload == before:  # nothing written once: the bytes of before
        assert REGISTRY.encode(event) == event.model_dump_json().encode()


def _to_json_alone() -> Any:
    """Within: the payloads written by pydantic-core's to_json alone, as before orjson (which
    then refuses everything)."""

    def refused(_: object) -> bytes:
        raise orjson.JSONEncodeError("refused")

    return mock.patch.object(orjson, "dumps", refused)


@settings(max_examples=500)
@given(columnar_events())
def test_any_columnar_event_is_written_in_the_bytes_pydantic_core_wrote(event: _Columns) -> None:
    """orjson writes what to_json wrote, byte for byte (any text, 64-bit integers, finite
    floats and nested documents in a value document; enums; columns written once)."""
    written = event.json_payload()
    with _to_json_alone():
        assert written == event.json_payload()


def test_an_integer_beyond_64_bits_in_a_value_document_is_written_by_pydantic_core() -> None:
    """orjson refuses it; a document read back from the store may hold one (JSON has no bound)."""
    event = _reconciled([{"x": 2**70}, {"x": -(2**64)}])
    written = event.json_payload()
    with _to_json_alone():
        assert written == event.json_payload()
    assert b'"x":1180591620717411303424' in written
    assert REGISTRY.decode("DataReconciled", written, event.event_version) == event


# --- what the domain's (unvalidated) events read back as ---

S = 1_709_328_600_000_000
D = 86_400_000_000


def _official(
    cls: type[DataPublished | DataRestated], n: int, **columns: list[Any]
) -> DataPublished | DataRestated:
    """Official versions of `n` points as the domain makes them (`model_construct`,
    unvalidated: see series_bucket._Rows), with `columns` in place of the regular ones."""
    fields: dict[str, Any] = {
        "series_id": "SPX",
        "data_type": DataType.PRICE,
        "unit": "USD",
        "decided_at_us": S,
        "snaps": [S + i * D for i in range(n)],
        "versions": [1] * n,
        "values": [str(5000 + i) for i in range(n)],
        "quality_scores": ["1"] * n,
        "sources": [["bbg"]] * n,
        "methods": ["priority"] * n,
        "flags": [[]] * n,
        "reasons": [""] * n,
        "causes": [""] * n,
    }
    fields.update(columns)
    if cls is DataPublished:
        fields["mode"] = "automatic"
    return cls.model_construct(**fields)


def _read_back(event: _Columns) -> _Columns | None:
    """The event the store gives back for `event`, None if it refuses the payload."""
    try:
        decoded = REGISTRY.decode(event.event_type, REGISTRY.encode(event), event.event_version)
    except ValueError:  # pydantic's ValidationError included
        return None
    assert isinstance(decoded, _Columns)
    return decoded


@pytest.mark.parametrize("entries", [2, 4], ids=["short", "long"])
def test_a_column_of_another_length_than_the_snaps_is_never_read_back_as_fitting(
    entries: int,
) -> None:
    """The domain's events skip validation when made; reading them back validates them in
    full, so a column of the wrong length stops the stream rather than being believed. A
    column whose entries are all equal is written once, and so comes back as long as the
    snaps whatever length it had, unless it is written in full when its length differs."""
    event = _official(DataPublished, 3, versions=[1] * entries)
    assert _read_back(event) is None, "a 3-point publication read back with versions fitted"


def test_a_column_of_another_length_written_in_full_is_refused() -> None:
    """The same event with every column in full, as written before columns were written once,
    is refused too."""
    event = _official(DataPublished, 3, versions=[1, 1])
    with pytest.raises(ValueError, match="column versions has 2 entries for 3 snaps"):
        REGISTRY.decode("DataPublished", event.model_dump_json().encode(), 2)


def test_a_first_version_stored_before_the_jump_rule_was_renamed_reads_as_now() -> None:
    """A v1 publication (flags naming the jump rule "spike") whose columns are all equal,
    stored as the code of before wrote it: upcast from full lists, written once again on the
    way back, and read the same."""
    n = 3
    payload = json.loads(_official(DataPublished, n).model_dump_json())
    payload["flags"] = [["spike"]] * n
    v1 = json.dumps(payload, separators=(",", ":")).encode()
    read = REGISTRY.decode("DataPublished", v1, 1)
    assert isinstance(read, DataPublished)
    assert read.flags == [["jump"]] * n
    again = REGISTRY.encode(read)
    assert json.loads(again)["flags"] == {"all": ["jump"]}
    assert REGISTRY.decode("DataPublished", again, 2) == read


def test_rows_read_from_a_compact_column_are_equal_to_those_of_a_full_one_one_by_one() -> None:
    """Each row of a column written once is the entry itself: rows() of the compact and full
    forms of a restatement give the same OfficialRows, with lists of their own type."""
    n = 4
    event = _official(DataRestated, n, versions=[2] * n, reasons=["fix"] * n, causes=["late"] * n)
    compact = REGISTRY.decode("DataRestated", REGISTRY.encode(event), 2)
    full = REGISTRY.decode("DataRestated", event.model_dump_json().encode(), 2)
    assert isinstance(compact, DataRestated)
    assert isinstance(full, DataRestated)
    assert b'"versions":{"all":2}' in REGISTRY.encode(event)
    assert list(compact.rows()) == list(full.rows())
    assert all(type(r.sources) is list and type(r.flags) is list for r in compact.rows())
