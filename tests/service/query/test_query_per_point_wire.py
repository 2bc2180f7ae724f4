"""The per-point view of a range written from its rows' columns (mapping.official_rows_wire)
against protobuf's own encoder: for generated pages of every kind of value, at the bounds of
the domain's instants and positions, with lineage, flags, restatements and superseded
versions, the bytes are those protobuf serialises for the messages the records make
(add_official_values), or the page is left to the records, and then only for what the fast
encoder does not cover: values of another kind than a price, a volume or an OHLC bar (options
chains, corporate actions), values stored in another layout than protobuf's own, a negative
commit position."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pytest
from google.type.date_pb2 import Date
from hypothesis import event, given, settings
from hypothesis import strategies as st
from qis.data.v1 import query_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import OPEN_END, OfficialVersion
from qis_domain.bounds import MAX_INSTANT_US, MAX_POSITION, MIN_INSTANT_US
from qis_domain.definitions import ReconciliationMethod
from qis_domain.rules import RULE_NAMES
from qis_domain.series_bucket import MANUAL
from qis_query.entrypoints import mapping

SERIES = "WIRE.PX"
NAME = f"series/{SERIES}"
VALUES = 0x0A  # QueryRangeResponse.values: field 1, length-delimited
METHODS = [*(m.value for m in ReconciliationMethod), MANUAL]

decimals = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?", fullmatch=True),
    st.sampled_from(["0", "-0.000", "1E+3", "999999999999999999.999999999999999999", ""]),
    st.just("9" * 130),  # a length prefix of two bytes
)
units = st.sampled_from(["USD", "", "€", "日本円", "x" * 32])
dates = st.builds(Date, year=st.integers(1, 9999), month=st.integers(1, 12), day=st.integers(1, 28))


def prices() -> st.SearchStrategy[values_pb2.DataValue]:
    return st.builds(
        lambda v, c: values_pb2.DataValue(price=values_pb2.Price(value=v, currency=c)),
        decimals,
        units,
    )


def volumes() -> st.SearchStrategy[values_pb2.DataValue]:
    return st.builds(
        lambda q, u: values_pb2.DataValue(volume=values_pb2.Volume(quantity=q, unit=u)),
        decimals,
        units,
    )


def bars() -> st.SearchStrategy[values_pb2.DataValue]:
    return st.builds(
        lambda o, h, low, c, v: values_pb2.DataValue(
            bar=values_pb2.OhlcBar(open=o, high=h, low=low, close=c, volume=v)
        ),
        decimals,
        decimals,
        decimals,
        decimals,
        decimals,
    )


def chains() -> st.SearchStrategy[values_pb2.DataValue]:
    quote = st.builds(
        values_pb2.OptionQuote,
        expiry=dates,
        strike=decimals,
        right=st.sampled_from([values_pb2.OPTION_RIGHT_CALL, values_pb2.OPTION_RIGHT_PUT]),
    )
    return st.builds(
        lambda u, q: values_pb2.DataValue(
            options_chain=values_pb2.OptionsChain(underlying_price=u, quotes=q)
        ),
        decimals,
        st.lists(quote, max_size=2),
    )


def actions() -> st.SearchStrategy[values_pb2.DataValue]:
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


KINDS = {"price": prices(), "volume": volumes(), "bar": bars()}
"""The kinds of value the fast encoder covers..."""
OTHER_KINDS = {"options_chain": chains(), "corporate_action": actions()}
"""...and those it leaves to the records."""


def field(tag: int, payload: bytes) -> bytes:
    assert len(payload) < 0x80
    return bytes((tag, len(payload))) + payload


ODD_LAYOUTS = [
    field(0x0A, field(0x12, b"USD") + field(0x0A, b"1.5")),  # fields out of order
    field(0x0A, field(0x0A, b"1") + field(0x0A, b"1.5")),  # a field twice (the last wins)
    field(0x0A, field(0x0A, b"1.5") + b"\x18\x05"),  # a field protobuf does not know
    field(0x0A, field(0x0A, b"1.5")) + field(0x0A, field(0x12, b"USD")),  # two messages, merged
    field(0x0A, field(0x0A, b"")),  # a default written out
]
"""Price values laid out otherwise than protobuf writes them: parsed and serialised again by
the records' path, so not taken as they are."""

instants = st.one_of(
    st.sampled_from([MIN_INSTANT_US, MAX_INSTANT_US, 0, -1, 1, -1_000_000, 999_999]),
    st.integers(MIN_INSTANT_US, MAX_INSTANT_US),
)
positions = st.one_of(st.sampled_from([0, 1, 127, 128, MAX_POSITION]), st.integers(0, MAX_POSITION))
scores = st.sampled_from([1.0, 0.0, -0.0, 0.5, 5e-324, float("nan"), float("inf")])
texts = st.one_of(st.sampled_from(["", "fix", "é" * 70]), st.text(max_size=8))
source_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,20}", fullmatch=True)


@st.composite
def versions(draw: st.DrawFn, values: st.SearchStrategy[values_pb2.DataValue]) -> OfficialVersion:
    method = draw(st.sampled_from(METHODS))
    superseded = draw(st.booleans())
    return OfficialVersion(
        series_id=SERIES,
        snap_us=draw(instants),
        version=draw(
            st.one_of(st.sampled_from([1, 2, 127, 128, 2**31 - 1]), st.integers(1, 2**31 - 1))
        ),
        value=draw(values).SerializeToString(),
        quality_score=draw(scores),
        recorded_from_us=draw(instants),
        position_from=draw(positions),
        reason=draw(texts),
        user_id=draw(texts),
        command_id="c",
        sources=(MANUAL,) if method == MANUAL else tuple(draw(st.lists(source_ids, max_size=3))),
        method=method,
        flags=tuple(draw(st.lists(st.sampled_from(sorted(RULE_NAMES)), max_size=3, unique=True))),
        recorded_to_us=draw(instants) if superseded else OPEN_END,
        position_to=draw(positions) if superseded else OPEN_END,
    )


@dataclass(frozen=True)
class Page:
    rows: pa.Table
    covered: bool  # what the fast encoder must take


@st.composite
def pages(draw: st.DrawFn) -> Page:
    """Rows of one kind of value, sometimes with a value of another kind or layout among them,
    as a range reads them: slices of several segments' tables."""
    every = {**KINDS, **OTHER_KINDS}
    kind = draw(st.sampled_from(sorted(every)))
    # Mostly one lineage for the whole page, as a feed publishes it; sometimes one per value.
    shared = draw(st.booleans())
    first = draw(versions(every[kind]))
    chosen = draw(st.lists(versions(every[kind]), min_size=1, max_size=12))
    if shared:
        chosen = [
            v._replace(
                sources=first.sources,
                method=first.method,
                flags=first.flags,
                reason=first.reason,
                user_id=first.user_id,
            )
            for v in chosen
        ]
    if draw(st.integers(0, 9)) == 0:  # a stranger among them
        odd = draw(st.sampled_from(ODD_LAYOUTS)) if kind == "price" else b""
        other = (
            odd
            or draw(st.sampled_from(sorted(every)).flatmap(lambda k: every[k])).SerializeToString()
        )
        stranger = chosen[0]._replace(value=other)
        chosen.insert(draw(st.integers(0, len(chosen))), stranger)
    rows = segments.rows_from_versions(chosen)
    cut = draw(st.integers(0, rows.num_rows))
    start = draw(st.integers(0, rows.num_rows))
    rows = pa.concat_tables([rows.slice(0, cut), rows.slice(cut)]).slice(start)
    kinds = {
        values_pb2.DataValue.FromString(v).WhichOneof("kind") for v in rows["value"].to_pylist()
    }
    laid_out = not any(v in ODD_LAYOUTS for v in rows["value"].to_pylist())
    return Page(rows, not rows.num_rows or (len(kinds) == 1 and kinds <= KINDS.keys() and laid_out))


def through_records(rows: pa.Table) -> pb.QueryRangeResponse:
    """The answer the records' path makes (the per-point view before the rows' encoder)."""
    reply = pb.QueryRangeResponse(next_page_token="t", read_position=7)
    mapping.add_official_values(reply.values, NAME, segments.versions_from_rows(SERIES, rows))
    return reply


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(page=pages())
def test_the_rows_encoder_writes_what_protobuf_writes(page: Page) -> None:
    expected = through_records(page.rows)
    encoded = mapping.official_values_wire(VALUES, NAME, page.rows)
    assert (encoded is not None) == page.covered
    event("encoded from the columns" if encoded is not None else "left to the records")
    if encoded is not None:
        assert bytes(encoded) == pb.QueryRangeResponse(values=expected.values).SerializeToString()
    reply = pb.QueryRangeResponse(next_page_token="t", read_position=7)
    add_rows(reply, page.rows)
    assert reply.SerializeToString() == expected.SerializeToString()


def add_rows(reply: pb.QueryRangeResponse, rows: pa.Table) -> None:
    """`rows` appended to reply.values as the service sends them."""
    reply.MergeFromString(mapping.official_rows_wire(VALUES, NAME, SERIES, rows))


def page_of(values: list[bytes]) -> pa.Table:
    base = OfficialVersion(
        SERIES, 1_700_000_000_000_000, 1, b"", 1.0, 1_700_000_000_000_007, 12, "", "feed", "c",
        ("bbg",), "median",
    )  # fmt: skip
    return segments.rows_from_versions(
        [base._replace(snap_us=base.snap_us + i, value=v) for i, v in enumerate(values)]
    )


def test_the_pages_left_to_the_records_are_those_of_other_kinds_and_layouts() -> None:
    """Counts the pages each kind of value sends to the records' path: none of prices,
    volumes and bars as protobuf writes them; every one of the others."""
    examples = {
        "price": values_pb2.DataValue(price=values_pb2.Price(value="1.5", currency="USD")),
        "volume": values_pb2.DataValue(volume=values_pb2.Volume(quantity="10", unit="shares")),
        "bar": values_pb2.DataValue(
            bar=values_pb2.OhlcBar(open="1", high="2", low="0.5", close="1")
        ),
        "options_chain": values_pb2.DataValue(
            options_chain=values_pb2.OptionsChain(underlying_price="100")
        ),
        "corporate_action": values_pb2.DataValue(
            corporate_action=values_pb2.CorporateAction(amount="0.25", currency="USD")
        ),
    }
    pages = {kind: page_of([v.SerializeToString()] * 3) for kind, v in examples.items()}
    pages |= {f"odd layout {i}": page_of([layout]) for i, layout in enumerate(ODD_LAYOUTS)}
    pages["price and volume"] = page_of(
        [examples["price"].SerializeToString(), examples["volume"].SerializeToString()]
    )
    left = sorted(
        k for k, rows in pages.items() if mapping.official_values_wire(VALUES, NAME, rows) is None
    )
    assert left == sorted(
        ["options_chain", "corporate_action", "price and volume"]
        + [f"odd layout {i}" for i in range(len(ODD_LAYOUTS))]
    )
    for rows in pages.values():  # either way, the same answer
        reply = pb.QueryRangeResponse()
        add_rows(reply, rows)
        assert reply.values == through_records(rows).values


def test_a_negative_position_is_refused_as_the_records_refuse_it() -> None:
    rows = page_of([values_pb2.DataValue(price=values_pb2.Price(value="1")).SerializeToString()])
    rows = rows.set_column(
        rows.schema.get_field_index("position_from"),
        "position_from",
        pa.array([-1], pa.int64()),
    )
    assert mapping.official_values_wire(VALUES, NAME, rows) is None
    with pytest.raises(ValueError, match="out of range"):
        through_records(rows)
    with pytest.raises(ValueError, match="out of range"):
        mapping.official_rows_wire(VALUES, NAME, SERIES, rows)


def test_an_empty_page_adds_nothing() -> None:
    reply = pb.QueryRangeResponse(next_page_token="t")
    add_rows(reply, segments.EMPTY)
    assert reply == pb.QueryRangeResponse(next_page_token="t")
