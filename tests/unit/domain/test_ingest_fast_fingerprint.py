"""The command fingerprint of a bulk load's batches (thousands of scalar points of one kind,
offset and currency). The legacy fingerprint, which records written before the scheme "2:"
hold, hashes the batch's repr, so a retry of a command recorded by any version is recognised;
the fingerprint writes the batch as columns, and its canonical form reads back into the text
the legacy one hashed, so two commands that text tells apart are told apart too. Both are
checked where a faster writer could slip: fields that compare equal but read otherwise."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis_command.application.commands import IngestPoints, PublishPoints
from qis_domain.bounds import MAX_BATCH, MAX_INSTANT_US, MAX_UTC_OFFSET_SECONDS, MIN_INSTANT_US
from qis_domain.command_log import (
    SCHEME,
    _columns,
    _scalar_columns,
    _sequence_repr,
    canonical,
    fingerprint,
    legacy_fingerprint,
)
from qis_domain.scalar_points import ScalarPoints
from qis_domain.snaps import Snap
from qis_domain.values import OhlcBar, Price, Volume

decimals = st.decimals() | st.sampled_from(
    [Decimal("-0"), Decimal("1E+2"), Decimal("0E-7"), Decimal("1.000"), Decimal("sNaN")]
)
units = st.sampled_from(["", "USD", "it's", 'say "x"', "é", "\x1f", "\ud800", ","])
snaps = st.builds(Snap, st.integers(-(2**70), 2**70), st.integers(-86_400, 86_400))
prices = st.lists(st.tuples(snaps, st.builds(Price, decimals, units)), min_size=1, max_size=30)
volumes = st.lists(st.tuples(snaps, st.builds(Volume, decimals, units)), min_size=1, max_size=30)


@st.composite
def uniform(draw: st.DrawFn) -> list[tuple[Snap, Price | Volume]]:
    """A bulk load's chunk: one kind, one offset, one currency or unit."""
    volume = draw(st.booleans())
    offset = draw(st.sampled_from([0, 1, -18_000]) | st.integers(-86_400, 86_400))
    unit = draw(units)
    utc_us = draw(st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=50))
    numbers = draw(st.lists(decimals, min_size=len(utc_us), max_size=len(utc_us)))
    return [
        (Snap(us, offset), Volume(x, unit) if volume else Price(x, unit))
        for us, x in zip(utc_us, numbers, strict=True)
    ]


def repr_text(command: object) -> str:
    """The text the fingerprint first hashed: the repr of every field of a command (with no
    pydantic field)."""
    fields = (repr(getattr(command, f.name)) for f in dataclasses.fields(command))  # type: ignore[arg-type]
    return "\x1f".join([type(command).__name__, *fields])


def repr_fingerprint(command: IngestPoints) -> str:
    return hashlib.sha256(repr_text(command).encode()).hexdigest()


@given(uniform() | prices | volumes)
def test_a_batch_of_one_scalar_kind_hashes_as_its_repr(
    batch: list[tuple[Snap, Price | Volume]],
) -> None:
    assert _sequence_repr(batch) == repr(batch)
    assert _sequence_repr(tuple(batch)) == repr(tuple(batch))
    command = IngestPoints("SPX", "bbg", batch)
    assert legacy_fingerprint(command) == repr_fingerprint(command)


def test_a_bulk_chunk_hashes_as_its_repr() -> None:
    start = 1_700_000_000 * 1_000_000
    batch = [
        (Snap(start + i * 1_000_000, -18_000), Price(Decimal(f"{100 + i % 97 / 100:.4f}"), ""))
        for i in range(10_000)
    ]
    command = IngestPoints("BENCH.PX", "vendor", batch)
    assert legacy_fingerprint(command) == repr_fingerprint(command)
    assert _columns(batch) is not None
    assert read_back(canonical(command)) == repr_text(command)


class OtherSnap(NamedTuple):
    utc_us: int
    offset_s: int = 0


class Pair(tuple[Snap, object]):
    """A point whose type is not a plain tuple's."""


class Unit(str):
    """A currency that reads otherwise than the same text as a str."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Unit({str(self)!r})"


@given(uniform() | prices, st.data())
def test_a_batch_with_one_point_of_another_shape_is_written_as_its_repr(
    batch: list[tuple[object, ...]], data: st.DataObject
) -> None:
    """One point differs from a uniform batch in its shape or in a type that reads otherwise
    while comparing equal (an offset of False for 0, a currency of a str subclass): the legacy
    text is its repr, and the canonical form reads back into it."""
    i = data.draw(st.integers(0, len(batch) - 1))
    snap, value = batch[i]
    assert isinstance(snap, Snap)
    assert isinstance(value, Price | Volume)
    number = value.value if isinstance(value, Price) else value.quantity
    unit = value.currency if isinstance(value, Price) else value.unit
    other = Volume(number, unit) if isinstance(value, Price) else Price(number, unit)
    batch[i] = data.draw(
        st.sampled_from(
            [
                (OtherSnap(*snap), value),
                (snap, Price(str(number), unit)),  # type: ignore[arg-type]
                (snap, other),
                (snap, value, value),
                Pair((snap, value)),
                snap,
                (Snap(snap.utc_us, bool(snap.offset_s)), value),  # equal to an offset 0 or 1
                (snap, type(value)(number, Unit(unit))),
                (Snap(float(snap.utc_us), snap.offset_s), value),  # type: ignore[arg-type]
            ]
        )
    )
    assert _sequence_repr(batch) == repr(batch)
    command = IngestPoints("SPX", "bbg", batch)  # type: ignore[arg-type]
    assert read_back(canonical(command)) == repr_text(command)


@pytest.mark.parametrize("at", [0, 1, 2])
@pytest.mark.parametrize(
    "odd",
    [
        (Snap(1, False), Price(Decimal(1), "")),
        (Snap(1, True), Price(Decimal(1), "")),
        (Snap(1, 0), Price(Decimal(1), Unit(""))),
        (Snap(1, 0), Price(Decimal("1.0"), "")),
    ],
)
def test_equal_fields_that_read_otherwise_are_written_as_their_repr(
    odd: tuple[Snap, Price], at: int
) -> None:
    batch = [(Snap(us, 0 if odd[0].offset_s == 0 else 1), Price(Decimal(2), "")) for us in range(3)]
    plain = list(batch)
    batch[at] = odd
    plain[at] = (Snap(1, int(odd[0].offset_s)), Price(Decimal(1), ""))
    assert batch == plain
    assert _sequence_repr(batch) == repr(batch)
    command, equal = IngestPoints("SPX", "bbg", batch), IngestPoints("SPX", "bbg", plain)
    assert fingerprint(command) != fingerprint(equal)


# --- scheme 2: the batch as columns ---


def read_part(data: bytes, at: int) -> tuple[bytes, bytes, int]:
    """The part of a canonical form at `at`: its tag, its content and where the next starts."""
    size = int.from_bytes(data[at + 1 : at + 9], "little")
    end = at + 9 + size
    assert end <= len(data)
    return data[at : at + 1], data[at + 9 : end], end


def read_columns(data: bytes) -> list[tuple[Snap, Price | Volume]] | tuple[object, ...]:
    """The batch `_columns` wrote as `data`."""
    assert data[:1] in (b"P", b"V")
    kind: type[Price] | type[Volume] = Price if data[:1] == b"P" else Volume
    n = int.from_bytes(data[2:10], "little")
    tag, unit, at = read_part(data, 10)
    assert tag == b"U"
    ints = struct.unpack(f"<{2 * n}q", data[at : at + 16 * n])
    texts = data[at + 16 * n :].decode("ascii").split(",")
    points = [
        (Snap(us, offset), kind(Decimal(text), unit.decode("utf-8", "surrogatepass")))
        for us, offset, text in zip(ints[:n], ints[n:], texts, strict=True)
    ]
    assert data[1:2] in (b"[", b"(")
    return points if data[1:2] == b"[" else tuple(points)


def read_back(data: bytes) -> str:
    """The text the legacy fingerprint hashes, rebuilt from nothing but a canonical form: so no
    two commands that text tells apart share a canonical form."""
    texts = []
    at = 0
    while at < len(data):
        tag, content, at = read_part(data, at)
        if tag == b"C":
            texts.append(repr(read_columns(content)))
        else:
            assert tag in (b"T", b"R")  # J: a pydantic field, which IngestPoints has not
            texts.append(content.decode("utf-8", "surrogatepass"))
    return "\x1f".join(texts)


ids = st.sampled_from(["SPX", "", "S\x1fX", "b'g'"])
batches = uniform() | uniform().map(tuple) | prices | volumes | prices.map(tuple)


@given(st.builds(IngestPoints, ids, ids, batches))
def test_the_canonical_form_reads_back_into_the_text_the_legacy_fingerprint_hashed(
    command: IngestPoints,
) -> None:
    assert read_back(canonical(command)) == repr_text(command)


@given(uniform() | uniform().map(tuple))
def test_a_batch_of_one_kind_and_unit_is_written_as_columns(
    batch: list[tuple[Snap, Price | Volume]],
) -> None:
    """Unless an instant is beyond int64, which no instant the bounds take is."""
    beyond = any(not -(2**63) <= snap.utc_us < 2**63 for snap, _ in batch)
    assert (_columns(batch) is None) == beyond


S, P = Snap(1), Price(Decimal(1), "")


@pytest.mark.parametrize(
    "odd",
    [
        (S, P, P),
        (S,),
        [S, P],
        Pair((S, P)),
        (OtherSnap(1), P),
        (P, S),
        (S, OhlcBar(*[P.value] * 4)),
    ],
    ids=["three fields", "one field", "a list", "a tuple subclass", "no Snap", "swapped", "bar"],
)
def test_a_point_of_another_shape_among_scalar_points_is_written_by_its_repr(odd: object) -> None:
    batch = [(Snap(0), P), odd, (Snap(2), P)]
    assert _columns(batch) is None
    command = IngestPoints("SPX", "bbg", batch)  # type: ignore[arg-type]
    assert read_back(canonical(command)) == repr_text(command)


T = 1_700_000_000_000_000
A = (T, 3600, "1.5", "USD")
B = (T + 60_000_000, 3600, "2", "USD")


def points(
    *rows: tuple[int, int, str, str], kind: type[Price] | type[Volume] = Price
) -> list[tuple[Snap, Price | Volume]]:
    return [(Snap(us, offset), kind(Decimal(text), unit)) for us, offset, text, unit in rows]


CHANGED = {
    "series": IngestPoints("NDX", "bbg", points(A, B)),
    "source": IngestPoints("SPX", "ref", points(A, B)),
    "utc_us": IngestPoints("SPX", "bbg", points((T + 1, 3600, "1.5", "USD"), B)),
    "offset": IngestPoints("SPX", "bbg", points((T, 0, "1.5", "USD"), B)),
    "scale": IngestPoints("SPX", "bbg", points((T, 3600, "1.50", "USD"), B)),
    "value": IngestPoints("SPX", "bbg", points((T, 3600, "1.6", "USD"), B)),
    "every currency": IngestPoints("SPX", "bbg", points((T, 3600, "1.5", "EUR"), (*B[:3], "EUR"))),
    "one currency": IngestPoints("SPX", "bbg", points((T, 3600, "1.5", "EUR"), B)),
    "order": IngestPoints("SPX", "bbg", points(B, A)),
    "one point more": IngestPoints("SPX", "bbg", points(A, B, (T + 120_000_000, 3600, "3", "USD"))),
    "one point fewer": IngestPoints("SPX", "bbg", points(A)),
    "kind": IngestPoints("SPX", "bbg", points(A, B, kind=Volume)),
    "tuple": IngestPoints("SPX", "bbg", tuple(points(A, B))),
}


@pytest.mark.parametrize("change", sorted(CHANGED))
def test_a_change_of_one_field_is_another_fingerprint(change: str) -> None:
    sent = IngestPoints("SPX", "bbg", points(A, B))
    assert fingerprint(CHANGED[change]) != fingerprint(sent)


def test_an_equal_command_has_the_same_fingerprint_in_scheme_2() -> None:
    first, again = (IngestPoints("SPX", "bbg", points(A, B)) for _ in range(2))
    assert first.points[0][1] is not again.points[0][1]
    assert fingerprint(again) == fingerprint(first)
    assert fingerprint(first).startswith(SCHEME)
    assert len(fingerprint(first)) == len(SCHEME) + 64


def test_other_commands_are_written_by_their_repr() -> None:
    command = PublishPoints("SPX", [Snap(T), Snap(T + 1, -3600)], "ok")
    assert read_back(canonical(command)) == repr_text(command)


# At the edges of what the bounds take: such a batch is still written as columns (no boundary
# value drops it to the repr) and reads back into the legacy text.
EDGES = [
    Decimal("-999999999999999999.999999999999999999"),
    Decimal("0E-18"),
    Decimal("-0"),
    Decimal("1E+17"),
    Decimal("0.000000000000000001"),
]

BATCHES: dict[str, Sequence[tuple[Snap, Price | Volume]]] = {
    "earliest instant, most negative offset": [
        (Snap(MIN_INSTANT_US, -MAX_UTC_OFFSET_SECONDS), Price(Decimal("1"), "USD"))
    ],
    "latest instant, largest offset": [
        (Snap(MAX_INSTANT_US, MAX_UTC_OFFSET_SECONDS), Volume(Decimal("1"), "shares"))
    ],
    "one point in a tuple": ((Snap(0), Price(Decimal("2.50"), "")),),
    "extreme decimals, a unicode unit": [(Snap(i), Price(x, "€ ₿")) for i, x in enumerate(EDGES)],
    "a batch of the largest size": [
        (Snap(i, -18_000), Price(Decimal(i), "")) for i in range(MAX_BATCH)
    ],
}


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_a_batch_at_the_bounds_is_written_as_columns_and_reads_back(name: str) -> None:
    batch = BATCHES[name]
    command = IngestPoints("SPX", "bbg", batch)
    assert _columns(batch) is not None
    assert read_back(canonical(command)) == repr_text(command)


def test_the_last_point_of_a_largest_batch_counts() -> None:
    batch = BATCHES["a batch of the largest size"]
    last_changed = [*batch[:-1], (batch[-1][0], Price(Decimal(MAX_BATCH), ""))]
    assert fingerprint(IngestPoints("SPX", "bbg", batch)) != fingerprint(
        IngestPoints("SPX", "bbg", last_changed)
    )


# --- points kept in columns (ScalarPoints): their bytes made from the columns ---

# Texts the Decimal constructor takes that are not its own ("+1", "01", ".5", "1.", too many
# zeros after "0."), their own neighbours, and own texts with an exponent.
ODD_TEXTS = [
    *("+1", "01", "-01", "00", "00.5", ".5", "-.5", "1.", "-1.", "0.0000000", "-0.0000000"),
    *("0.0000001", "-0.0000001", "0.00000012", "1_000", " 1", "1E+3", "0E-7", "1e3", "Infinity"),
    *("0", "-0", "0.000000", "-0.000000", "0.0000012", "-0.000001", "0.5", "1.50", "-0.05"),
]
literals = st.sampled_from(ODD_TEXTS) | st.builds(
    lambda sign, whole, point, zeros, digits: f"{sign}{whole}{point}{'0' * zeros}{digits}",
    st.sampled_from(["", "-", "+"]),
    st.sampled_from(["", "0", "00", "1", "012"]),
    st.sampled_from(["", "."]),
    st.integers(0, 8),
    st.sampled_from(["", "1", "25", "0"]),
).filter(lambda t: t.strip("+-") and t.strip("+-") != ".")


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_each_odd_text_among_own_ones_is_reused_only_if_it_is_its_decimals_own(text: str) -> None:
    check_columns(["1", text, "-2.50"], Price)


@given(
    st.lists(st.sampled_from(["1", "2.50", "-3.125", "100"]) | literals, min_size=1, max_size=8),
    st.sampled_from([Price, Volume]),
)
def test_points_in_columns_are_the_bytes_of_their_pairs(
    texts: list[str], kind: type[Price] | type[Volume]
) -> None:
    check_columns(texts, kind)


def check_columns(texts: list[str], kind: type[Price] | type[Volume]) -> None:
    utc_us = [us * 1_000_000 - 5 for us in range(len(texts))]
    figures = list(map(Decimal, texts))
    columns = ScalarPoints(kind, utc_us, [-18_000] * len(texts), figures, texts)
    points = [(Snap(us, -18_000), kind(x, "")) for us, x in zip(utc_us, figures, strict=True)]
    assert _scalar_columns(columns) == _columns(points)
    # The texts sent are reused only when each is its Decimal's own ("1E+3", "Infinity" are
    # not reused: their figures write them again, as they would any text).
    own = all(str(Decimal(t)) == t and set(t) <= set("-.0123456789") for t in texts)
    assert (columns.own_texts() is texts) == own
    assert columns.own_texts() == [str(x) for x in figures]
