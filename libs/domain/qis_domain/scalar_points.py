"""A batch of scalar points (prices, or volumes) kept in the columns it came in.

An ingest's points are a sequence of (Snap, value) pairs, and whatever reads them generically
reads them so. A batch that came in columns stays in them: the handler cuts it into buckets
and checks it, and `SeriesBucket.ingest` decides it and writes its events, from the columns
(snaps, offsets, figures and their texts), with no pair, Snap, or text made per point again.
A column of texts each its Decimal's own (the usual) is checked whole by its texts, and even
its figures are made only if a decision reads one (`of_own_texts`): under the default rules,
none is (a Decimal is ~0.2 µs a text).
Read as pairs, it is the very list of pairs the per-point form makes of the same points, made
the first time it is read so; it compares equal to that list, and a command's fingerprint
hashes it as that list (qis_domain.command_log).
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import repeat
from operator import attrgetter
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from qis_domain.bounds import MAX_DECIMAL_DIGITS_BEFORE_POINT, MAX_DECIMAL_PLACES
from qis_domain.snaps import Snap
from qis_domain.values import DataType, DataValue, Price, Volume

_V = TypeVar("_V")

# A Decimal's own text of a plain decimal within the bounds (qis_domain.bounds: at most 18
# digits before the point and 18 places, which every figure a batch holds is): no sign but "-",
# no leading zero but the units' one, digits after a point, and (str writes an adjusted exponent
# below -6 with an exponent) at most six zeros after "0.", five before a digit. Possessive: no
# backtracking, a third of the cost.
_PLACES = MAX_DECIMAL_PLACES
_AFTER_ZEROS = "|".join(f"{'0' * z}[1-9][0-9]{{0,{_PLACES - 1 - z}}}+" for z in range(6))
_OWN_TEXT = (
    rf"-?+(?:[1-9][0-9]{{0,{MAX_DECIMAL_DIGITS_BEFORE_POINT - 1}}}+(?:\.[0-9]{{1,{_PLACES}}}+)?+"
    rf"|0(?:\.(?:{_AFTER_ZEROS}|0{{1,6}}+))?+)"
)
_OWN_TEXTS = re.compile(f"{_OWN_TEXT}(?:,{_OWN_TEXT})*+")


def _all_own(texts: list[str]) -> bool:
    """Whether each of `texts` is its Decimal's own, within the bounds (`_OWN_TEXTS` over them
    joined: a comma of their own would split one into two)."""
    joined = ",".join(texts)
    return joined.count(",") == len(texts) - 1 and _OWN_TEXTS.fullmatch(joined) is not None


class ScalarPoints(Sequence[tuple[Snap, DataValue]]):
    """Points of one kind, Price or Volume, none with a currency or unit of its own (the
    series' one), at unique snaps, in the order they were sent. Immutable: its columns are
    never changed, and a slice is a batch of its own."""

    __slots__ = (
        "_figures",
        "_own",
        "_pairs",
        "_values",
        "array",
        "ascending",
        "kind",
        "offsets_s",
        "texts",
        "utc_us",
    )

    def __init__(
        self,
        kind: type[Price] | type[Volume],
        utc_us: list[int],
        offsets_s: list[int],
        figures: list[Decimal],
        texts: list[str] | None = None,
        array: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """`texts`: the texts the figures were read from, when the caller has them: reused as
        the figures' own texts when each is (`own_texts`). `array`: `utc_us` as int64, when the
        caller has made it. Raises ValueError for columns of other lengths, or a snap given
        twice."""
        self._init(kind, utc_us, offsets_s, figures, texts, array)

    @classmethod
    def of_own_texts(
        cls,
        kind: type[Price] | type[Volume],
        utc_us: list[int],
        offsets_s: list[int],
        texts: list[str],
        array: npt.NDArray[np.int64] | None = None,
    ) -> ScalarPoints | None:
        """The points of `texts` if each is the own text of a Decimal within the bounds
        (qis_domain.bounds), proved by one pass over them (~0.07 µs a text): their figures
        are then made only if read (~0.2 µs a text: a batch settled in columns under the
        default rules never reads them, see ScalarFigures). None if any text is not (it may still be a valid decimal:
        "+1", "1e3", "1.", or out of bounds). Raises as the constructor."""
        if not _all_own(texts):
            return None
        points = cls.__new__(cls)
        points._init(kind, utc_us, offsets_s, None, texts, array)
        points._own = texts
        return points

    def _init(
        self,
        kind: type[Price] | type[Volume],
        utc_us: list[int],
        offsets_s: list[int],
        figures: list[Decimal] | None,
        texts: list[str] | None,
        array: npt.NDArray[np.int64] | None,
    ) -> None:
        """`figures` None: made from `texts` when first read."""
        n = len(utc_us)
        if any(len(column) != n for column in (offsets_s, figures, texts) if column is not None):
            raise ValueError("every column has a row per point")
        if array is None:
            array = np.fromiter(utc_us, dtype=np.int64, count=n)
        elif len(array) != n:
            raise ValueError("every column has a row per point")
        array.setflags(write=False)
        self.kind = kind
        self.utc_us = utc_us
        self.offsets_s = offsets_s
        self._figures = figures
        self.texts = texts
        self.array = array
        self._values: list[DataValue] | None = None
        self._pairs: list[tuple[Snap, DataValue]] | None = None
        self._own: list[str] | None = None
        self.ascending = bool((array[1:] > array[:-1]).all())  # sent in order (the usual)
        if not self.ascending and len(np.unique(array)) != n:
            raise ValueError("snaps must be unique within one batch")

    @property
    def data_type(self) -> DataType:
        return DataType.PRICE if self.kind is Price else DataType.VOLUME

    @property
    def figures(self) -> list[Decimal]:
        """The figures, in the order sent (made from the texts when first read, if the points
        were made `of_own_texts`: each text's Decimal, exactly)."""
        if self._figures is None:
            assert self.texts is not None  # the one way to make points without figures
            self._figures = list(map(Decimal, self.texts))
        return self._figures

    @property
    def values(self) -> list[DataValue]:
        """The values, in the order sent: made once, a field at a time (`made`)."""
        if self._values is None:
            self._values = made(self.kind, len(self.figures), self.figures, repeat(""))
        return self._values

    def own_texts(self) -> list[str]:
        """Each figure's own text (str(figure)): what the events store and the fingerprint
        hashes. The texts sent, when a pass over them (~0.07 µs a text) proves each is its
        figure's own: no sign but "-", no leading zero, no exponent ("+1", "01.5", ".5", "1.",
        "0.0000001" are not); else written from the figures. Made once."""
        if self._own is None:
            texts = self.texts
            if texts is not None and _all_own(texts):
                self._own = texts
            else:
                self._own = list(map(str, self.figures))
        return self._own

    def pairs(self) -> list[tuple[Snap, DataValue]]:
        """The points as the per-point form makes them: (Snap, value), in the order sent."""
        if self._pairs is None:
            snaps = map(tuple.__new__, repeat(Snap), zip(self.utc_us, self.offsets_s, strict=True))
            self._pairs = list(zip(snaps, self.values, strict=True))
        return self._pairs

    def __len__(self) -> int:
        return len(self.utc_us)

    @overload
    def __getitem__(self, i: int) -> tuple[Snap, DataValue]: ...

    @overload
    def __getitem__(self, i: slice) -> ScalarPoints: ...

    def __getitem__(self, i: int | slice) -> tuple[Snap, DataValue] | ScalarPoints:
        if not isinstance(i, slice):
            return self.pairs()[i]
        part = ScalarPoints.__new__(ScalarPoints)
        part._init(
            self.kind,
            self.utc_us[i],
            self.offsets_s[i],
            None if self._figures is None else self._figures[i],
            None if self.texts is None else self.texts[i],
            self.array[i],
        )
        if self._values is not None:
            part._values = self._values[i]
        if self._own is not None:
            part._own = self._own[i]
        return part

    def __iter__(self) -> Iterator[tuple[Snap, DataValue]]:
        return iter(self.pairs())

    def __eq__(self, other: object) -> bool:
        # It stands for the list of its pairs: equal to that list, not to a tuple of them.
        if isinstance(other, ScalarPoints):
            return self.pairs() == other.pairs()
        if type(other) is list:
            return self.pairs() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as a list's

    def __repr__(self) -> str:
        return repr(self.pairs())  # a command reads the same in either form


class _Made(Sequence[_V]):
    """A column of ScalarPoints made when one of its items is first read (`column`: how)."""

    __slots__ = ("_column", "_points")

    def __init__(self, points: ScalarPoints, column: Callable[[ScalarPoints], list[_V]]) -> None:
        self._points = points
        self._column = column

    def __len__(self) -> int:
        return len(self._points)

    @overload
    def __getitem__(self, i: int) -> _V: ...

    @overload
    def __getitem__(self, i: slice) -> list[_V]: ...

    def __getitem__(self, i: int | slice) -> _V | list[_V]:
        return self._column(self._points)[i]

    def __iter__(self) -> Iterator[_V]:
        return iter(self._column(self._points))


class ScalarValues(_Made[DataValue]):
    """The values of ScalarPoints, made when one is first read (all at once, `made`): a
    decision that settles its points in columns reads their texts, never a value."""

    __slots__ = ()

    def __init__(self, points: ScalarPoints) -> None:
        super().__init__(points, _VALUES)

    @property
    def kind(self) -> type[Price] | type[Volume]:
        return self._points.kind


class ScalarFigures(_Made[Decimal]):
    """The figures of ScalarPoints, made when one is first read (ScalarPoints.figures): a
    decision that settles its points in columns under the default rules reads none."""

    __slots__ = ()

    def __init__(self, points: ScalarPoints) -> None:
        super().__init__(points, _FIGURES)


_VALUES: Callable[[ScalarPoints], list[DataValue]] = attrgetter("values")
_FIGURES: Callable[[ScalarPoints], list[Decimal]] = attrgetter("figures")


def made(cls: type[_V], n: int, *fields: Iterable[Any]) -> list[_V]:
    """`n` instances of `cls`, a frozen slots dataclass without __post_init__ (a value), from
    a column per field: each field is set for every row by its slot's setter, mapped in C,
    where the generated __init__ is a Python call per row (a Price 0.43 us, this 0.17)."""
    if hasattr(cls, "__post_init__"):  # not an assert: -O must not skip a value's own checks
        raise TypeError(f"{cls.__name__} checks what it is made of: build it by its __init__")
    out: list[_V] = list(map(object.__new__, repeat(cls, n)))
    for field, column in zip(dataclasses.fields(cls), fields, strict=True):  # type: ignore[arg-type]
        deque(map(getattr(cls, field.name).__set__, out, column), 0)
    return out
