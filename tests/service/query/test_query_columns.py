"""QueryRange and GetValues in columns (VALUE_VIEW_COLUMNS) against the per-point view, through
the real servicer on a read model written through the port (in memory and SQLite).

The property: for random histories of every data type (first publications and restatements
over several commits, with lineage, methods and flags), for random ranges read latest, as known
at a time and as of a commit position, at several page sizes and per-call bounds, the columns
carry row by row what the per-point view carries, in the same pages with the same tokens; and
so does GetValues. Each view is read into rows by a converter of the tests' own (views.py),
independent of the service's code; the rows are also checked against the versions the history
says each query must answer, so that neither view can be right by being empty. A page holding
a price or volume in another currency or unit than the series' (one stored before a schema
evolution changed the unit) comes in `other`, and only such a page.

The per-point view is built from serialised parts since the columns came (mapping.py); it is
checked here against the plain construction it replaced, field by field.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from google.protobuf import json_format
from google.type.date_pb2 import Date
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import series_pb2, values_pb2
from qis_adapters.proto import enums
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore import segments
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import (
    OPEN_END,
    ChangeFeedEntry,
    OfficialVersion,
    ProjectionBatch,
    SeriesEntry,
    VersionClosure,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.definitions import ReconciliationMethod
from qis_domain.errors import InvalidArgument, NotFound
from qis_domain.names import series_name, source_name
from qis_domain.rules import RULE_NAMES
from qis_domain.series_bucket import MANUAL
from qis_projector.application.segments import SegmentBuilder, add_segments
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.limits import QueryLimits
from qis_query.application.paging import PageTokens
from qis_query.application.ranges import RangePage
from qis_query.entrypoints import columns as column_view
from qis_query.entrypoints import mapping
from qis_query.entrypoints.grpc_service import QueryService

from tests.service.query.conftest import FEED, token_clock_us
from tests.service.query.views import Row, column_rows, meaning, point_rows
from tests.support.segmenting import FREQUENCY

SERIES = "COLS"
NAME = series_name(SERIES)
DEFINED_AT = 1
FIRST_POSITION = 10
POSITION_STEP = 3
RECORDED_0 = 1_700_000_100_000_000
TIME_STEP = 1_000_007  # knowledge times a little over a second apart, not whole seconds
MINUTE = 60_000_000
METHODS = [*(m.value for m in ReconciliationMethod), MANUAL]
RULES = sorted(RULE_NAMES)


# --- histories ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A data type with the unit of its test series."""

    data_type: int
    unit: str
    case: str  # what OfficialValueColumns.values is for it


decimals = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?", fullmatch=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-1e6, max_value=1e6).map(
        str
    ),
    st.sampled_from(["1E+3", "0E-18", "-0.000", "999999999999999999.999999999999999999"]),
)
dates = st.builds(
    Date,
    year=st.integers(1, 9999),
    month=st.integers(1, 12),
    day=st.integers(1, 28),
)


def price_values(unit: str) -> st.SearchStrategy[values_pb2.DataValue]:
    # The currency is the series' (as the projector writes it), sometimes none (which means
    # the series' own), rarely another one (a series whose unit was evolved since).
    currency = st.sampled_from([unit] * 8 + ["", "GBP"])
    return st.builds(
        lambda text, cur: values_pb2.DataValue(price=values_pb2.Price(value=text, currency=cur)),
        decimals,
        currency,
    )


def volume_values(unit: str) -> st.SearchStrategy[values_pb2.DataValue]:
    unit_of = st.sampled_from([unit] * 8 + ["", "lots"])
    return st.builds(
        lambda text, u: values_pb2.DataValue(volume=values_pb2.Volume(quantity=text, unit=u)),
        decimals,
        unit_of,
    )


def bar_values() -> st.SearchStrategy[values_pb2.DataValue]:
    return st.builds(
        lambda o, h, low, c, v: values_pb2.DataValue(
            bar=values_pb2.OhlcBar(open=o, high=h, low=low, close=c, volume=v)
        ),
        decimals,
        decimals,
        decimals,
        decimals,
        st.one_of(st.just(""), decimals),
    )


def chain_values() -> st.SearchStrategy[values_pb2.DataValue]:
    quote = st.builds(
        values_pb2.OptionQuote,
        expiry=dates,
        strike=decimals,
        right=st.sampled_from([values_pb2.OPTION_RIGHT_CALL, values_pb2.OPTION_RIGHT_PUT]),
        bid=st.one_of(st.just(""), decimals),
        ask=st.one_of(st.just(""), decimals),
    )
    return st.builds(
        lambda underlying, quotes: values_pb2.DataValue(
            options_chain=values_pb2.OptionsChain(underlying_price=underlying, quotes=quotes)
        ),
        st.one_of(st.just(""), decimals),
        st.lists(quote, max_size=3),
    )


def action_values() -> st.SearchStrategy[values_pb2.DataValue]:
    return st.builds(
        lambda ex, amount: values_pb2.DataValue(
            corporate_action=values_pb2.CorporateAction(
                type=values_pb2.CORPORATE_ACTION_TYPE_CASH_DIVIDEND,
                ex_date=ex,
                amount=amount,
                currency="USD",
            )
        ),
        dates,
        decimals,
    )


KINDS = {
    "price": (Kind(values_pb2.DATA_TYPE_PRICE, "USD", "prices"), price_values("USD")),
    "volume": (Kind(values_pb2.DATA_TYPE_VOLUME, "shares", "volumes"), volume_values("shares")),
    "bar": (Kind(values_pb2.DATA_TYPE_OHLC_BAR, "EUR", "bars"), bar_values()),
    "chain": (Kind(values_pb2.DATA_TYPE_OPTIONS_CHAIN, "USD", "other"), chain_values()),
    "action": (Kind(values_pb2.DATA_TYPE_CORPORATE_ACTION, "", "other"), action_values()),
}


@dataclass(frozen=True)
class History:
    kind: Kind
    camel_case: bool  # the catalogue entry's proto-JSON names: both forms are read
    snaps: list[int]
    events: list[list[OfficialVersion]]  # what each commit published, in commit order

    def time(self, event: int) -> int:
        return RECORDED_0 + event * TIME_STEP

    @staticmethod
    def position(event: int) -> int:
        return FIRST_POSITION + event * POSITION_STEP

    def versions(self) -> list[OfficialVersion]:
        """Every version, with its knowledge interval closed by its successor's."""
        later: dict[tuple[int, int], OfficialVersion] = {}
        every = [v for event in self.events for v in event]
        for v in every:
            later[(v.snap_us, v.version - 1)] = v
        out = []
        for v in every:
            successor = later.get((v.snap_us, v.version))
            if successor is not None:
                v = v._replace(
                    recorded_to_us=successor.recorded_from_us,
                    position_to=successor.position_from,
                )
            out.append(v)
        return out

    def expected(self, as_of: str, at: int) -> dict[int, int]:
        """snap -> the version a query as of `as_of` ("latest", "time", "position") at `at`
        answers."""
        out: dict[int, int] = {}
        for v in self.versions():
            if as_of == "latest":
                keep = v.recorded_to_us == OPEN_END
            elif as_of == "time":
                keep = v.recorded_from_us <= at < v.recorded_to_us
            else:
                keep = v.position_from <= at < v.position_to
            if keep:
                out[v.snap_us] = v.version
        return out


@st.composite
def histories(draw: st.DrawFn) -> History:
    kind, values = KINDS[draw(st.sampled_from(sorted(KINDS)))]
    # Snaps a minute apart from a base that may be before 1970 and is not a whole second.
    base = draw(st.sampled_from([-86_400_000_123, 0, 1_700_000_000_000_007]))
    snaps = sorted(
        base + k * MINUTE for k in draw(st.sets(st.integers(0, 60), min_size=1, max_size=30))
    )
    events: list[list[OfficialVersion]] = []
    published: dict[int, int] = {}
    for _ in range(draw(st.integers(1, 5))):
        e = len(events)
        # The first commit publishes most snaps; each later one publishes or restates some.
        chosen = draw(st.lists(st.booleans(), min_size=len(snaps), max_size=len(snaps)))
        touched = [s for s, pick in zip(snaps, chosen, strict=True) if pick != (e == 0)]
        if not touched and e:
            continue
        touched = touched or snaps
        event = []
        for snap in touched:
            number = published.get(snap, 0) + 1
            published[snap] = number
            method = draw(st.sampled_from(METHODS))
            sources = (
                (MANUAL,)
                if method == MANUAL
                else draw(st.sampled_from([("bbg",), ("bbg", "lseg")]))
            )
            event.append(
                OfficialVersion(
                    series_id=SERIES,
                    snap_us=snap,
                    version=number,
                    value=draw(values).SerializeToString(),
                    quality_score=draw(st.sampled_from([1.0, 0.75, 0.5, 0.0])),
                    recorded_from_us=RECORDED_0 + e * TIME_STEP,
                    position_from=History.position(e),
                    reason="" if number == 1 else draw(st.sampled_from(["fix", "vendor", ""])),
                    user_id=draw(st.sampled_from(["feed", "carol"])),
                    command_id=f"cmd-{e}",
                    sources=sources,
                    method=method,
                    flags=tuple(draw(st.lists(st.sampled_from(RULES), max_size=3, unique=True))),
                )
            )
        events.append(event)
    return History(kind, draw(st.booleans()), snaps, events)


def catalogue_entry(kind: Kind, camel_case: bool) -> SeriesEntry:
    definition = series_pb2.Series(
        name=NAME, data_type=cast(Any, kind.data_type), unit=kind.unit, schema_version=1
    )
    doc = json_format.MessageToDict(definition, preserving_proto_field_name=not camel_case)
    return SeriesEntry(SERIES, 1, doc, DEFINED_AT * 1000, DEFINED_AT)


async def write_history(store: Any, history: History) -> None:
    await store.set_active_generation("g1")
    entry = catalogue_entry(history.kind, history.camel_case)
    await store.apply(ProjectionBatch(series=[entry]), DEFINED_AT)
    segments = SegmentBuilder(store)
    current: dict[int, OfficialVersion] = {}
    for e, event in enumerate(history.events):
        closures = []
        for v in event:
            before = current.get(v.snap_us)
            if before is not None:
                closures.append(
                    VersionClosure(
                        SERIES, v.snap_us, before.version, v.recorded_from_us, v.position_from
                    )
                )
            current[v.snap_us] = v
        batch = ProjectionBatch(versions=event, closures=closures)
        await store.apply(await add_segments(segments, batch, FREQUENCY), History.position(e))


def in_series_unit(history: History, versions: Sequence[Row]) -> bool:
    """Whether every row's value is in the series' own unit (then the columns are the series'
    case, not `other`)."""
    return all(row[2][-1] == history.kind.unit for row in versions)


# --- reading both views ---------------------------------------------------------------------


class Collect:
    """The grpc.aio context of a streaming call, in process: keeps what is written."""

    def __init__(self) -> None:
        self.messages: list[pb.QueryRangeResponse] = []

    async def write(self, message: pb.QueryRangeResponse) -> None:
        self.messages.append(message)


@dataclass(frozen=True)
class Query:
    as_of: str  # "latest", "time", "position"
    at: int
    start: int | None
    end: int | None
    page_size: int
    points_per_call: int
    messages_per_call: int


def range_request(q: Query, view: int, token: str = "") -> pb.QueryRangeRequest:
    request = pb.QueryRangeRequest(
        series=NAME, page_size=q.page_size, page_token=token, view=cast(Any, view)
    )
    if q.start is not None:
        request.start_time.CopyFrom(timestamp(q.start))
    if q.end is not None:
        request.end_time.CopyFrom(timestamp(q.end))
    if q.as_of == "time":
        request.as_of_time.CopyFrom(timestamp(q.at))
    elif q.as_of == "position":
        request.as_of_position = q.at
    return request


async def calls(service: QueryService, q: Query, view: int) -> list[list[pb.QueryRangeResponse]]:
    """Every call's messages, each call resuming with the previous one's last token."""
    out: list[list[pb.QueryRangeResponse]] = []
    token = ""
    for _ in range(1_000):
        context = Collect()
        await service.QueryRange(range_request(q, view, token), cast(Any, context))
        out.append(context.messages)
        token = context.messages[-1].next_page_token
        if not token:
            return out
    raise AssertionError("the range did not end")


TOKENS = PageTokens.random(clock_us=token_clock_us)
"""The page tokens of every service of these tests: two services of one store answer alike,
their tokens too."""


def service_on(store: Any, q: Query) -> QueryService:
    limits = QueryLimits(
        max_points_per_call=q.points_per_call, max_messages_per_call=q.messages_per_call
    )
    return QueryService(QueryHandlers(store, ReadPosition(store, 0.3), FEED, limits, tokens=TOKENS))


async def check_range(store: Any, history: History, q: Query) -> None:
    service = service_on(store, q)
    per_point = await calls(service, q, pb.VALUE_VIEW_POINTS)
    in_columns = await calls(service, q, pb.VALUE_VIEW_COLUMNS)
    unset = await calls(service, q, pb.VALUE_VIEW_UNSPECIFIED)
    assert unset == per_point
    # The same calls, messages and tokens; each message the same rows.
    assert [len(c) for c in in_columns] == [len(c) for c in per_point]
    every: list[Row] = []
    for points_call, columns_call in zip(per_point, in_columns, strict=True):
        for points_msg, columns_msg in zip(points_call, columns_call, strict=True):
            assert columns_msg.next_page_token == points_msg.next_page_token
            assert columns_msg.read_position == points_msg.read_position
            assert not columns_msg.values
            assert columns_msg.HasField("columns")
            assert not points_msg.HasField("columns")
            rows = point_rows(points_msg.values, NAME, history.kind.unit)
            assert column_rows(columns_msg.columns, history.kind.case) == rows
            assert columns_msg.columns.unit == history.kind.unit
            case = columns_msg.columns.WhichOneof("values")
            if history.kind.case == "other":
                assert case == "other"
            else:  # `other` only for a page with a value in another unit
                assert (case == history.kind.case) == in_series_unit(history, rows), case
            every.extend(rows)
    # What the history says the query answers: not vacuous.
    expected = history.expected(q.as_of, q.at)
    wanted = {
        snap: version
        for snap, version in expected.items()
        if (q.start is None or snap >= q.start) and (q.end is None or snap < q.end)
    }
    assert [(row[0], row[1]) for row in every] == sorted(wanted.items())


async def check_values(store: Any, history: History, snaps: list[int], q: Query) -> None:
    service = service_on(store, q)
    replies = {}
    for view in (pb.VALUE_VIEW_POINTS, pb.VALUE_VIEW_COLUMNS):
        request = pb.GetValuesRequest(
            series=NAME, snap_times=[timestamp(s) for s in snaps], view=cast(Any, view)
        )
        if q.as_of == "time":
            request.as_of_time.CopyFrom(timestamp(q.at))
        elif q.as_of == "position":
            request.as_of_position = q.at
        replies[view] = await service.GetValues(request, cast(Any, None))
    points, columns = replies[pb.VALUE_VIEW_POINTS], replies[pb.VALUE_VIEW_COLUMNS]
    assert columns.read_position == points.read_position
    assert not columns.values
    assert columns.HasField("columns")
    rows = point_rows(points.values, NAME, history.kind.unit)
    assert column_rows(columns.columns, history.kind.case) == rows
    expected = history.expected(q.as_of, q.at)
    assert [(row[0], row[1]) for row in rows] == [(s, expected[s]) for s in snaps if s in expected]


@st.composite
def queries(draw: st.DrawFn, history: History) -> Query:
    as_of = draw(st.sampled_from(["latest", "time", "position"]))
    last = len(history.events) - 1
    if as_of == "time":
        at = draw(st.integers(history.time(0) - 1, history.time(last) + 1))
    elif as_of == "position":
        at = draw(st.integers(History.position(0) - 1, History.position(last) + 1))
    else:
        at = 0
    snap = st.sampled_from(history.snaps)
    # Mostly unbounded or at a snap (inclusive start, exclusive end), at times anywhere.
    bounds = st.one_of(
        st.none(), st.none(), snap, snap.map(lambda s: s + 1), st.integers(-(2**40), 2**52)
    )
    start, end = draw(bounds), draw(bounds)
    if start is not None and end is not None and start > end:
        start, end = end, start
    return Query(
        as_of,
        at,
        start,
        end,
        page_size=draw(st.sampled_from([1, 2, 3, 7, 0, 10_000])),  # 0: the default
        points_per_call=draw(st.sampled_from([2, 5, 250_000])),
        messages_per_call=draw(st.sampled_from([3, 10_000])),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[History, list[Query], list[tuple[list[int], Query]]]:
    history = draw(histories())
    ranges = draw(st.lists(queries(history), min_size=1, max_size=4))
    snap = st.one_of(st.sampled_from(history.snaps), st.integers(-(2**40), 2**52))
    lookups = draw(
        st.lists(st.tuples(st.lists(snap, min_size=1, max_size=6), queries(history)), max_size=3)
    )
    return history, ranges, lookups


async def run_scenario(
    backend: str,
    history: History,
    ranges: list[Query],
    lookups: list[tuple[list[int], Query]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store: Any
        if backend == "sqlite":
            store = await SqliteReadStore.open(Path(directory) / "read.db", "g1")
        else:
            store = InMemoryReadStore(InMemoryReadDatabase(), "g1")
        try:
            await write_history(store, history)
            for q in ranges:
                await check_range(store, history, q)
            for snaps, q in lookups:
                await check_values(store, history, snaps, q)
        finally:
            await store.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_columns_carry_the_rows_of_the_per_point_view(
    backend: str, scenario: tuple[History, list[Query], list[tuple[list[int], Query]]]
) -> None:
    asyncio.run(run_scenario(backend, *scenario))


# --- the stored bytes: any encoding of a value reads the same -------------------------------

VERSION = OfficialVersion(
    series_id=SERIES,
    snap_us=1_700_000_000_000_000,
    version=2,
    value=values_pb2.DataValue(
        price=values_pb2.Price(value="101.25", currency="USD")
    ).SerializeToString(),
    quality_score=0.75,
    recorded_from_us=1_700_000_000_500_000,
    position_from=12,
    reason="vendor",
    user_id="carol",
    command_id="c",
    sources=("bbg", "lseg"),
    method="median",
    flags=("spike", "stale"),
)


def field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + varint(len(payload)) + payload


def varint(n: int) -> bytes:
    out = b""
    while True:
        if n < 0x80:
            return out + bytes((n,))
        out += bytes((n & 0x7F | 0x80,))
        n >>= 7


texts = st.one_of(decimals, st.text(max_size=200))
units = st.sampled_from(["USD", "", "GBP", "x" * 130])


@st.composite
def encodings(draw: st.DrawFn) -> bytes:
    """DataValue bytes of a price or volume as any writer might have laid them out: fields in
    any order, repeated (the last wins), unknown fields, long texts, another kind, or two
    messages concatenated (merged)."""
    kind_tag = draw(st.sampled_from([0x0A, 0x12, 0x1A]))  # price, volume, bar
    parts = [field(0x0A, draw(texts).encode()), field(0x12, draw(units).encode())]
    parts += draw(st.lists(st.sampled_from([field(0x0A, b"7.5"), b"\x18\x05", field(0x12, b"")])))
    parts = draw(st.permutations(parts))
    inner = b"".join(draw(st.lists(st.sampled_from(parts), max_size=len(parts))) or parts)
    encoded = field(kind_tag, inner)
    if draw(st.booleans()):
        encoded += draw(st.sampled_from([b"", field(0x0A, field(0x0A, b"1.25"))]))
    return encoded


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(stored=st.lists(encodings(), max_size=5), kind=st.sampled_from(["price", "volume"]))
def test_any_encoding_of_a_stored_value_reads_as_protobuf_reads_it(
    stored: list[bytes], kind: str
) -> None:
    """The columns take the projector's layout of a price or volume as it is stored; any
    other layout is decoded: either way each row says what protobuf reads in its bytes."""
    series_kind, _ = KINDS[kind]
    versions = [
        VERSION._replace(snap_us=VERSION.snap_us + i, value=b) for i, b in enumerate(stored)
    ]
    points = [mapping.official_value(NAME, v) for v in versions]
    columns = pb.OfficialValueColumns()
    shape = column_view.ValueLayout(column_view.Case(series_kind.case), series_kind.unit)
    columns.MergeFromString(
        column_view.Pages(shape)(RangePage(segments.rows_from_versions(versions), ""))
    )
    assert column_rows(columns, series_kind.case) == point_rows(points, NAME, series_kind.unit)
    readable = all(
        meaning(p.value, series_kind.unit)[0] == kind
        and meaning(p.value, series_kind.unit)[-1] == series_kind.unit
        for p in points
    )
    assert (columns.WhichOneof("values") == series_kind.case) == readable


# --- the per-point view, built from serialised parts, against the plain construction ---------


def plain_official_value(
    name: str, v: OfficialVersion | ChangeFeedEntry, record_us: int, record_position: int
) -> pb.OfficialValue:
    """The construction of an OfficialValue field by field (mapping.py before the columns)."""
    msg = pb.OfficialValue(
        series=name,
        snap_time=timestamp(v.snap_us),
        version=v.version,
        quality_score=v.quality_score,
        record_time=timestamp(record_us),
        record_position=record_position,
        sources=() if v.method == MANUAL else [source_name(s) for s in v.sources],
        method=enums.METHODS[v.method],
        flags=[enums.RULES[f] for f in v.flags],
        reason=v.reason,
        user=v.user_id,
    )
    msg.value.MergeFromString(v.value)
    if isinstance(v, OfficialVersion) and v.recorded_to_us != OPEN_END:
        msg.supersede_time.CopyFrom(timestamp(v.recorded_to_us))
        msg.supersede_position = v.position_to
    return msg


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(history=histories())
def test_the_per_point_view_is_the_plain_construction(history: History) -> None:
    versions = history.versions()
    expected = [
        plain_official_value(NAME, v, v.recorded_from_us, v.position_from) for v in versions
    ]
    reply = pb.QueryRangeResponse()
    mapping.add_official_values(reply.values, NAME, versions)
    assert list(reply.values) == expected
    assert reply.SerializeToString() == pb.QueryRangeResponse(values=expected).SerializeToString()
    assert [mapping.official_value(NAME, v) for v in versions] == expected
    for index, v in enumerate(versions):
        change = ChangeFeedEntry(
            v.position_from + 1,
            index,
            v.series_id,
            v.snap_us,
            v.version,
            v.value,
            v.quality_score,
            v.recorded_from_us + 1,
            v.reason,
            v.user_id,
            v.sources,
            v.method,
            v.flags,
        )
        assert mapping.changed_value(change) == plain_official_value(
            NAME, change, v.recorded_from_us + 1, v.position_from + 1
        )


# --- the view field, and the answers around the values --------------------------------------


@pytest.fixture
async def store() -> InMemoryReadStore:
    made = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    history = History(
        KINDS["bar"][0],
        False,
        [VERSION.snap_us],
        [[VERSION._replace(value=BAR.SerializeToString())]],
    )
    await write_history(made, history)
    return made


BAR = values_pb2.DataValue(bar=values_pb2.OhlcBar(open="1", high="2", low="0.5", close="1.5"))
DEFAULT_QUERY = Query("latest", 0, None, None, 0, 250_000, 10_000)


async def test_a_view_the_contract_does_not_know_is_refused_with_the_other_fields(
    store: InMemoryReadStore,
) -> None:
    service = service_on(store, DEFAULT_QUERY)
    request = range_request(DEFAULT_QUERY, 7)
    request.min_position = 2**64 - 1
    with pytest.raises(InvalidArgument) as refused:
        await service.QueryRange(request, cast(Any, Collect()))
    assert [v.field for v in refused.value.violations] == ["min_position", "view"]
    assert "VALUE_VIEW_COLUMNS" in refused.value.violations[1].description
    lookup = pb.GetValuesRequest(series=NAME, snap_times=[timestamp(0)], view=cast(Any, -1))
    with pytest.raises(InvalidArgument) as refused:
        await service.GetValues(lookup, cast(Any, None))
    assert [v.field for v in refused.value.violations] == ["view"]


async def test_an_empty_answer_in_columns_still_says_its_case_and_unit(
    store: InMemoryReadStore,
) -> None:
    service = service_on(store, DEFAULT_QUERY)
    empty = dataclasses.replace(DEFAULT_QUERY, start=0, end=1)
    (call,) = await calls(service, empty, pb.VALUE_VIEW_COLUMNS)
    (message,) = call
    assert message.columns.WhichOneof("values") == "bars"
    assert message.columns.unit == "EUR"
    bars = message.columns.bars
    assert [bars.HasField(f) for f in ("open", "high", "low", "close", "volume")] == [
        True,
        True,
        True,
        True,
        False,  # no bar has a volume
    ]
    assert message.next_page_token == ""
    lookup = pb.GetValuesRequest(series=NAME, snap_times=[timestamp(0)], view=pb.VALUE_VIEW_COLUMNS)
    answer = await service.GetValues(lookup, cast(Any, None))
    assert answer.columns.WhichOneof("values") == "bars"
    assert not answer.columns.snap_time_micros
    whole = await calls(service, DEFAULT_QUERY, pb.VALUE_VIEW_COLUMNS)
    assert list(whole[0][0].columns.bars.close.texts) == ["1.5"]


async def test_an_unknown_series_is_not_found_in_either_view(store: InMemoryReadStore) -> None:
    service = service_on(store, DEFAULT_QUERY)
    for view in (pb.VALUE_VIEW_POINTS, pb.VALUE_VIEW_COLUMNS):
        request = pb.QueryRangeRequest(series="series/NOPE", view=cast(Any, view))
        with pytest.raises(NotFound):
            await service.QueryRange(request, cast(Any, Collect()))
        lookup = pb.GetValuesRequest(
            series="series/NOPE", snap_times=[timestamp(0)], view=cast(Any, view)
        )
        with pytest.raises(NotFound):
            await service.GetValues(lookup, cast(Any, None))


def test_a_series_without_a_data_type_answers_in_other() -> None:
    entry = SeriesEntry(SERIES, 1, {"name": NAME, "unit": "USD"}, 0, 1)
    assert column_view.layout(entry) == column_view.ValueLayout(column_view.Case.OTHER, "USD")
    columns = pb.OfficialValueColumns()
    columns.MergeFromString(
        column_view.Pages(column_view.layout(entry))(
            RangePage(segments.rows_from_versions([VERSION]), "")
        )
    )
    assert [v.price.value for v in columns.other.values] == ["101.25"]
