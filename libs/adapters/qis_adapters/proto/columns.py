"""Points in columns (qis.data.v1.PointColumns) to the domain's points.

A columnar IngestPoints is the same command as the per-point one with the same points:
`points_from_columns` makes the very (Snap, value) pairs `values.points_from_proto` makes of
them (each Decimal as written; the series' currency or unit left empty, as in a per-point value
that names none), so the command's fingerprint is the same and resending one form for the other
is a duplicate. Prices and volumes stay in columns (qis_domain.scalar_points.ScalarPoints,
which reads as those pairs), so that the decision reads the columns rather than a pair per
point. The bounds are the per-point form's (qis_domain.bounds).

It is the form that is cheap to parse, so it is parsed a column at a time: each repeated field
is read once as a whole list (no protobuf object per row), the snaps are checked as one int64
array, a column of decimal strings in one pass over its joined text, and the domain's values
are made a field at a time (`made`). Field paths are formatted only for what fails: a column
that does not pass as a whole is read again row by row, with the per-point rules, to name each
bad row ("columns.prices.texts[17]"). A per-point batch of good prices is made the same way
(values.points_from_proto).
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from itertools import repeat
from operator import mul
from typing import cast

import numpy as np
import numpy.typing as npt
from qis.data.v1 import values_pb2
from qis_domain.bounds import (
    INSTANTS,
    MAX_BATCH,
    MAX_DECIMAL_DIGITS_BEFORE_POINT,
    MAX_DECIMAL_PLACES,
    MAX_INSTANT_US,
    MAX_UTC_OFFSET_SECONDS,
    MIN_INSTANT_US,
)
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import ScalarPoints, made
from qis_domain.snaps import Snap
from qis_domain.values import DataValue, OhlcBar, Price, Volume, parse_decimal

MAX_OFFSET_MINUTES = MAX_UTC_OFFSET_SECONDS // 60
# The joined text of a column of plain decimals: digits, points, signs and the separator.
_PLAIN_TEXT = re.compile(r"[0-9.+\-,]*")
# A plain decimal of at most this many characters is within the bounds by its length alone:
# at most 18 digits before the point (|x| < 1e18) and 17 after it.
_SURELY_BOUNDED = MAX_DECIMAL_DIGITS_BEFORE_POINT
# Exact: a bounded decimal has at most 36 digits, an unscaled one 19.
_EXACT = decimal.Context(prec=64, traps=[InvalidOperation])
_QUANTA = [Decimal(1).scaleb(-s, _EXACT) for s in range(MAX_DECIMAL_PLACES + 1)]
_INT64 = 2**63
_BAR_FIELDS = ("open", "high", "low", "close")

Points = Sequence[tuple[Snap, DataValue]]


def value_column(columns: values_pb2.PointColumns, path: str = "columns") -> str:
    """The path of the value column(s) a request sends ("columns.prices"): what a value of the
    wrong type for the series is named by."""
    case = columns.WhichOneof("values")
    return path if case is None else f"{path}.{case}"


def points_from_columns(
    columns: values_pb2.PointColumns, violations: list[FieldViolation], path: str = "columns"
) -> Points:
    """The points of `columns`, ordered as sent (prices or volumes kept in their columns:
    ScalarPoints, with the texts sent); no points if anything is wrong, with every violation
    recorded in `violations`."""
    n = len(columns.snap_time_micros)
    if not 1 <= n <= MAX_BATCH:
        violations.append(
            FieldViolation(
                f"{path}.snap_time_micros", f"1 to {MAX_BATCH:,} rows per request, got {n:,}"
            )
        )
        return []
    found = len(violations)
    snaps: list[int] = list(columns.snap_time_micros)
    utc_us = _check_snaps(snaps, f"{path}.snap_time_micros", violations)
    offsets = _offsets(
        list(columns.utc_offset_minutes), n, f"{path}.utc_offset_minutes", violations
    )
    case = columns.WhichOneof("values")
    if case is not None and (kind := _SCALARS.get(case)) is not None:
        column = getattr(columns, case)
        sent = column.texts
        if (
            len(violations) == found
            and offsets is not None
            and len(sent) == n
            and not column.scale
            and not column.unscaled
            and (points := ScalarPoints.of_own_texts(kind, snaps, offsets, list(sent), utc_us))
        ):
            # The usual column: each text its Decimal's own, within the bounds (checked whole),
            # so nothing about it can fail; no Decimal is made unless the decision reads one.
            return points
        figures = _decimals(column, n, f"{path}.{case}", violations)
        if len(violations) > found or offsets is None or figures is None:
            return []
        texts = list(column.texts) or None  # unscaled: none
        return ScalarPoints(kind, snaps, offsets, cast(list[Decimal], figures), texts, utc_us)
    values = _values(columns, n, path, violations)
    if len(violations) > found or offsets is None or values is None:
        return []
    return list(zip(snaps_of(snaps, offsets), values, strict=True))


_SCALARS: dict[str, type[Price] | type[Volume]] = {"prices": Price, "volumes": Volume}


def snaps_of(utc_us: Iterable[int], offsets_s: Iterable[int]) -> Iterable[Snap]:
    """Snaps of checked columns: tuple.__new__ is what Snap._make does, without a Python call
    per row."""
    return map(tuple.__new__, repeat(Snap), zip(utc_us, offsets_s, strict=True))


# --- snaps and offsets ---


def _check_snaps(snaps: list[int], path: str, v: list[FieldViolation]) -> npt.NDArray[np.int64]:
    """Within the instants of qis_domain.bounds and unique; sorted input (the usual) costs two
    vector comparisons. The snaps as an array."""
    a = np.array(snaps, dtype=np.int64)  # sint64/int64 on the wire: always fits
    ascending = bool((a[1:] > a[:-1]).all())
    lo, hi = (snaps[0], snaps[-1]) if ascending else (int(a.min()), int(a.max()))
    if lo < MIN_INSTANT_US or hi > MAX_INSTANT_US:
        v.extend(
            FieldViolation(f"{path}[{i}]", f"{us:,} µs is outside {INSTANTS}")
            for i, us in enumerate(snaps)
            if not MIN_INSTANT_US <= us <= MAX_INSTANT_US
        )
    if not ascending and len(np.unique(a)) != len(snaps):
        first: dict[int, int] = {}
        for i, us in enumerate(snaps):
            if (j := first.setdefault(us, i)) != i:
                v.append(FieldViolation(f"{path}[{i}]", f"the same instant as {path}[{j}]"))
    return a


def _offsets(minutes: list[int], n: int, path: str, v: list[FieldViolation]) -> list[int] | None:
    """UTC offsets in seconds, as Snap keeps them, a row per point: none sent (UTC), one for
    every row, or one per row."""
    if not minutes:
        return [0] * n
    if len(minutes) not in (1, n):
        v.append(
            FieldViolation(
                path, f"none, one, or one per row ({n:,}) are sent, got {len(minutes):,}"
            )
        )
        return None
    lo, hi = min(minutes), max(minutes)
    if lo < -MAX_OFFSET_MINUTES or hi > MAX_OFFSET_MINUTES:
        v.extend(
            FieldViolation(
                f"{path}[{i}]",
                f"{m} minutes is not an offset: -{MAX_OFFSET_MINUTES:,} to"
                f" +{MAX_OFFSET_MINUTES:,} (±23:59)",
            )
            for i, m in enumerate(minutes)
            if not -MAX_OFFSET_MINUTES <= m <= MAX_OFFSET_MINUTES
        )
        return None
    if len(minutes) == 1:
        return [minutes[0] * 60] * n
    seconds: list[int] = (np.array(minutes, dtype=np.int64) * 60).tolist()
    return seconds


# --- values ---


def _values(
    columns: values_pb2.PointColumns, n: int, path: str, v: list[FieldViolation]
) -> list[DataValue] | None:
    """Values of another kind than a scalar's (`_SCALARS`)."""
    if columns.WhichOneof("values") == "bars":
        return _bars(columns.bars, n, f"{path}.bars", v)
    v.append(FieldViolation(path, "a value column is required: prices, volumes or bars"))
    return None


def _bars(
    bars: values_pb2.OhlcBarColumns, n: int, path: str, v: list[FieldViolation]
) -> list[DataValue] | None:
    parts = [_decimals(getattr(bars, f), n, f"{path}.{f}", v) for f in _BAR_FIELDS]
    volume = bars.volume
    volumes: Iterable[Decimal | None] | None = repeat(None, n)
    if len(volume.texts) or len(volume.unscaled):  # an empty column: no bar has a volume
        volumes = _decimals(volume, n, f"{path}.volume", v, optional=True)
    open_, high, low, close = parts
    if open_ is None or high is None or low is None or close is None or volumes is None:
        return None
    return made(OhlcBar, n, open_, high, low, close, volumes)


def _decimals(
    column: values_pb2.DecimalColumn,
    n: int,
    path: str,
    v: list[FieldViolation],
    optional: bool = False,
) -> list[Decimal | None] | None:
    """The column's n decimals (None for an optional column's "" rows), or None (recorded)."""
    texts, unscaled, scale = column.texts, column.unscaled, column.scale
    if len(texts) and len(unscaled):
        v.append(FieldViolation(path, "texts or unscaled, not both"))
        return None
    if len(unscaled):
        if not 0 <= scale <= MAX_DECIMAL_PLACES:
            v.append(
                FieldViolation(f"{path}.scale", f"0 to {MAX_DECIMAL_PLACES} places, got {scale:,}")
            )
        if not _has_rows(len(unscaled), n, path, v) or not 0 <= scale <= MAX_DECIMAL_PLACES:
            return None
        return _scaled(list(unscaled), scale, f"{path}.unscaled", v)
    if scale:
        v.append(FieldViolation(f"{path}.scale", "applies to unscaled only: texts are as written"))
    if not _has_rows(len(texts), n, path, v):
        return None
    return decimal_texts(list(texts), f"{path}.texts", v, optional)


def _has_rows(got: int, n: int, path: str, v: list[FieldViolation]) -> bool:
    if got == n:
        return True
    what = f"got {got:,}" if got else "the column is empty"
    v.append(FieldViolation(path, f"one value per snap ({n:,}) is required, {what}"))
    return False


def _scaled(
    ints: list[int], scale: int, path: str, v: list[FieldViolation]
) -> list[Decimal | None] | None:
    """unscaled × 10^-scale, exactly: the Decimal of the same value written with `scale`
    places (10125 at scale 2 is Decimal("101.25"), 0 at scale 2 Decimal("0.00"))."""
    limit = 10 ** (MAX_DECIMAL_DIGITS_BEFORE_POINT + scale)  # |x| < 1e18
    if limit <= _INT64 and (min(ints) <= -limit or max(ints) >= limit):
        v.extend(
            FieldViolation(
                f"{path}[{i}]",
                f"{u} at scale {scale} is beyond |x| < 1e{MAX_DECIMAL_DIGITS_BEFORE_POINT}",
            )
            for i, u in enumerate(ints)
            if not -limit < u < limit
        )
        return None
    if not scale:
        return list(map(Decimal, ints))
    with decimal.localcontext(_EXACT):
        return list(map(mul, map(Decimal, ints), repeat(_QUANTA[scale])))


def decimal_texts(
    texts: list[str], path: str, v: list[FieldViolation], optional: bool = False
) -> list[Decimal | None] | None:
    """Decimal strings as the per-point form takes them (values.parse_decimal). A column of
    plain decimals is checked whole: its joined text holds only digits, points and signs, and
    the Decimal constructor refuses every arrangement of those but a plain decimal; only a
    decimal longer than _SURELY_BOUNDED characters needs its bounds checked on its own."""
    joined = ",".join(texts)
    if _PLAIN_TEXT.fullmatch(joined) and joined.count(",") == len(texts) - 1:
        out: list[Decimal | None]
        try:
            if optional and "" in texts:
                out = [_EXACT.create_decimal(t) if t else None for t in texts]
            else:
                out = list(map(_EXACT.create_decimal, texts))
        except InvalidOperation:
            pass  # not all plain decimals: row by row, to name each bad one
        else:
            if max(map(len, texts)) <= _SURELY_BOUNDED:
                return out
            long = [i for i, t in enumerate(texts) if len(t) > _SURELY_BOUNDED]
            return _checked(texts, long, out, path, v)
    return _checked(texts, range(len(texts)), [None] * len(texts), path, v, optional)


def _checked(
    texts: list[str],
    rows: Iterable[int],
    out: list[Decimal | None],
    path: str,
    v: list[FieldViolation],
    optional: bool = False,
) -> list[Decimal | None] | None:
    """`out` with `rows` parsed by the per-point rules; a field path only for a row that
    fails."""
    failed: list[FieldViolation] = []
    found = len(v)
    for i in rows:
        text = texts[i]
        if optional and text == "":
            continue
        out[i] = parse_decimal(text, "", failed)
        if failed:
            v.append(FieldViolation(f"{path}[{i}]", failed[0].description))
            failed.clear()
    return None if len(v) > found else out
