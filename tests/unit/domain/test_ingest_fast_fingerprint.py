"""The command fingerprint of a bulk load's batches (thousands of scalar points of one kind,
offset and currency) hashes the batch's repr, the text CommandAccepted records were hashed
from by every version before, so a retry of a command recorded by any version is recognised;
also where a faster writer could slip: fields that compare equal but read otherwise."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis_command.application.commands import IngestPoints
from qis_domain.command_log import _sequence_repr, fingerprint
from qis_domain.snaps import Snap
from qis_domain.values import Price, Volume

decimals = st.decimals() | st.sampled_from(
    [Decimal("-0"), Decimal("1E+2"), Decimal("0E-7"), Decimal("1.000"), Decimal("sNaN")]
)
units = st.sampled_from(["", "USD", "it's", 'say "x"', "é", "\x1f"])
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


def repr_fingerprint(command: IngestPoints) -> str:
    """The fingerprint as first written: the repr of every field of an IngestPoints."""
    parts = ["IngestPoints", repr(command.series_id), repr(command.source_id), repr(command.points)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@given(uniform() | prices | volumes)
def test_a_batch_of_one_scalar_kind_hashes_as_its_repr(
    batch: list[tuple[Snap, Price | Volume]],
) -> None:
    assert _sequence_repr(batch) == repr(batch)
    assert _sequence_repr(tuple(batch)) == repr(tuple(batch))
    command = IngestPoints("SPX", "bbg", batch)
    assert fingerprint(command) == repr_fingerprint(command)


def test_a_bulk_chunk_hashes_as_its_repr() -> None:
    start = 1_700_000_000 * 1_000_000
    batch = [
        (Snap(start + i * 1_000_000, -18_000), Price(Decimal(f"{100 + i % 97 / 100:.4f}"), ""))
        for i in range(10_000)
    ]
    command = IngestPoints("BENCH.PX", "vendor", batch)
    assert fingerprint(command) == repr_fingerprint(command)


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
    while comparing equal (an offset of False for 0, a currency of a str subclass)."""
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
            ]
        )
    )
    assert _sequence_repr(batch) == repr(batch)


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
    batch[at] = odd
    assert _sequence_repr(batch) == repr(batch)
