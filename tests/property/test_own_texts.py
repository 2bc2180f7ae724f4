"""The texts a batch of scalar points stores and hashes (ScalarPoints.
own_texts) are the texts sent only when the own-text pattern proves each is its Decimal's own.
A text the pattern wrongly took would be stored in events and hashed in fingerprints where the
per-point form writes str(figure): a command and its retry in the other form would differ, and
the stored text would not be the figure's. So: the pattern against `str(Decimal(t)) == t` over
generated texts, and the per-point form (proto/values.py `_good_prices`, which now keeps its
texts) hashed and stored as the same points as a list of pairs, slices included."""

from __future__ import annotations

import itertools
from decimal import Decimal, InvalidOperation

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import example, given
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.proto.columns import points_from_columns
from qis_adapters.proto.values import points_from_proto, value_from_proto
from qis_command.application.commands import IngestPoints
from qis_domain.command_log import canonical, fingerprint, legacy_fingerprint
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import _OWN_TEXTS, ScalarPoints
from qis_domain.snaps import Snap
from qis_domain.values import DataValue, Price, parse_decimal

T0_S = 1_709_326_800

# Any arrangement of the characters a plain decimal is made of, and structured literals that
# reach the pattern's edges: signs, leading zeros, a bare point, up to 12 zeros after "0."
# (str switches to an exponent below an adjusted exponent of -6), trailing zeros.
noise = st.text(alphabet="0123456789.-+", min_size=1, max_size=14)
literals = st.builds(
    lambda sign, whole, point, zeros, digits: f"{sign}{whole}{point}{'0' * zeros}{digits}",
    st.sampled_from(["", "-", "+", "--"]),
    st.sampled_from(["", "0", "00", "1", "10", "012", "9" * 18, "9" * 19]),
    st.sampled_from(["", "."]),
    st.integers(0, 12),
    st.sampled_from(["", "0", "1", "10", "5", "100", "123456", "1" * 14, "1" * 18]),
)
texts = noise | literals


def bounded(text: str) -> bool:
    """Within the bounds of every decimal a point may hold (qis_domain.bounds)."""
    v: list[FieldViolation] = []
    parse_decimal(text, "", v)
    return not v


def own(text: str) -> bool:
    try:
        return str(Decimal(text)) == text
    except InvalidOperation:
        return False


@given(texts)
@example("0.000000")  # six zeros: still plain
@example("0.0000000")  # seven: "0E-7"
@example("0.000001")
@example("0.0000001")  # "1E-7"
@example("0.0000010")  # adjusted -6: plain
@example("0.00000010")  # "1.0E-7"
@example("-0")
@example("-0.000000")
@example("-0.0000000")
@example("9" * 18 + "." + "9" * 18)  # the bounds' edges: taken
@example("9" * 19)  # beyond them: refused by every form, so the pattern passes it by
@example("1." + "0" * 19)
@example("0.00000" + "1" * 14)  # 19 places
def test_a_text_the_pattern_takes_is_its_decimals_own(text: str) -> None:
    """Taken: its Decimal's own text, within the bounds, so that a column of such texts is
    checked by this pattern alone (ScalarPoints.of_own_texts)."""
    if _OWN_TEXTS.fullmatch(text) is not None:
        assert own(text), text
        assert bounded(text), text
    elif own(text):
        # the pattern may only pass by texts with an exponent (written again from the figure)
        # or out of the bounds (refused)
        assert "E" in text or not bounded(text), text


@given(st.lists(texts, min_size=1, max_size=6))
def test_a_joined_column_matches_exactly_when_each_text_does(column: list[str]) -> None:
    joined = _OWN_TEXTS.fullmatch(",".join(column)) is not None
    assert joined == all(_OWN_TEXTS.fullmatch(t) is not None for t in column)


# --- the per-point form of good prices keeps its texts now ---

plain = st.integers(0, 8).flatmap(
    lambda places: st.decimals(-(10**17), 10**17, places=places).map(str)
) | st.sampled_from(
    ["+1", "01.5", ".5", "1.", "0.0000001", "1E+3", "1e2", "-0", "0.000000", "1.50"]
)


def request(rows: list[tuple[int, int, str]]) -> list[values_pb2.DataPoint]:
    return [
        values_pb2.DataPoint(
            snap_time=Timestamp(seconds=T0_S + s),
            utc_offset=Duration(seconds=minutes * 60),
            value=values_pb2.DataValue(price=values_pb2.Price(value=text)),
        )
        for s, minutes, text in rows
    ]


def pairs_one_by_one(points: list[values_pb2.DataPoint]) -> list[tuple[Snap, DataValue]]:
    """The per-point form read point by point (what it was before any batch was kept in
    columns): the list of pairs every other form must hash and store as."""
    v: list[FieldViolation] = []
    out = []
    for p in points:
        value = value_from_proto(p.value, "value", v)
        assert value is not None
        out.append((Snap(p.snap_time.seconds * 1_000_000, p.utc_offset.seconds), value))
    assert v == []
    return out


rows = st.lists(
    st.tuples(st.integers(0, 10**6), st.sampled_from([0, -300, 60]), plain),
    min_size=1,
    max_size=25,
    unique_by=lambda r: r[0],
)


@given(rows)
def test_per_point_prices_hash_and_store_as_the_pairs_they_are(
    drawn: list[tuple[int, int, str]],
) -> None:
    points = request(drawn)
    violations: list[FieldViolation] = []
    batch = points_from_proto(points, violations)
    if violations:
        return  # refused either way
    assert type(batch) is ScalarPoints
    pairs = pairs_one_by_one(points)
    assert batch.own_texts() == [str(value.number) for _, value in pairs]
    kept = IngestPoints("SPX", "bbg", batch)
    listed = IngestPoints("SPX", "bbg", pairs)
    assert canonical(kept) == canonical(listed)
    assert fingerprint(kept) == fingerprint(listed)
    assert legacy_fingerprint(kept) == legacy_fingerprint(listed)
    # the columnar form of the same points is the same command
    columns = values_pb2.PointColumns(
        snap_time_micros=[(T0_S + s) * 1_000_000 for s, _, _ in drawn],
        utc_offset_minutes=[m for _, m, _ in drawn],
        prices=values_pb2.DecimalColumn(texts=[t for _, _, t in drawn]),
    )
    columnar = points_from_columns(columns, violations)
    assert violations == []
    assert fingerprint(IngestPoints("SPX", "bbg", columnar)) == fingerprint(listed)


@given(rows, st.integers(-30, 30), st.integers(-30, 30), st.sampled_from([None, 1, 2, -1, -2]))
def test_a_slice_hashes_and_stores_as_its_own_pairs_whether_the_parent_read_its_texts(
    drawn: list[tuple[int, int, str]], lo: int, hi: int, step: int | None
) -> None:
    violations: list[FieldViolation] = []
    for cached in (False, True):
        batch = points_from_proto(request(drawn), violations)
        if violations:
            return
        assert type(batch) is ScalarPoints
        if cached:
            batch.own_texts()  # the parent's list, sliced with it
        part = batch[lo:hi:step]
        assert part.own_texts() == list(map(str, part.figures))
        if len(part):
            assert fingerprint(IngestPoints("S", "b", part)) == fingerprint(
                IngestPoints("S", "b", list(part))
            )


def test_a_batch_of_one_odd_text_among_own_ones_stores_each_figures_own() -> None:
    batch = ScalarPoints(
        Price,
        [1, 2, 3],
        [0, 0, 0],
        [Decimal("1.5"), Decimal("+2"), Decimal("0.0000001")],
        ["1.5", "+2", "0.0000001"],
    )
    assert batch.own_texts() == ["1.5", "2", "1E-7"]
    assert batch[1:].own_texts() == ["2", "1E-7"]
    assert batch[:1].own_texts() == ["1.5"]


def test_every_short_text_of_zeros_ones_points_and_minus_is_judged_right() -> None:
    """Exhaustive up to 10 characters: the boundary of six zeros after "0." ("0.0000001",
    "0.00000010") and every sign and point arrangement near it."""
    wrongly_taken = []
    for size in range(1, 11):
        for chars in itertools.product("0.1-", repeat=size):
            text = "".join(chars)
            if _OWN_TEXTS.fullmatch(text) is not None and not own(text):
                wrongly_taken.append(text)
            elif own(text) and _OWN_TEXTS.fullmatch(text) is None:
                wrongly_taken.append(f"missed {text}")
    assert wrongly_taken == []
