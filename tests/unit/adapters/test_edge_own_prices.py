"""Per-point prices of own texts, made `of_own_texts` (proto/values.py `_good_prices`): a snap
sent twice and a currency named still leave the columns for the list of pairs, as before; a bad
text among own ones is still named point by point."""

from __future__ import annotations

from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from qis.data.v1 import values_pb2
from qis_adapters.proto.values import points_from_proto
from qis_domain.errors import FieldViolation
from qis_domain.scalar_points import ScalarPoints
from qis_domain.snaps import Snap
from qis_domain.values import Price

T0_S = 1_709_326_800


def points(*rows: tuple[int, str, str]) -> list[values_pb2.DataPoint]:
    return [
        values_pb2.DataPoint(
            snap_time=Timestamp(seconds=T0_S + s),
            value=values_pb2.DataValue(price=values_pb2.Price(value=text, currency=currency)),
        )
        for s, text, currency in rows
    ]


def test_own_texts_at_a_snap_sent_twice_are_pairs_for_the_handler_to_name() -> None:
    violations: list[FieldViolation] = []
    batch = points_from_proto(points((0, "1.5", ""), (1, "2", ""), (0, "3", "")), violations)
    assert violations == []
    assert not isinstance(batch, ScalarPoints)
    us = T0_S * 1_000_000
    assert list(batch) == [
        (Snap(us, 0), Price(Decimal("1.5"), "")),
        (Snap(us + 1_000_000, 0), Price(Decimal("2"), "")),
        (Snap(us, 0), Price(Decimal("3"), "")),
    ]


def test_own_texts_with_a_currency_named_keep_it() -> None:
    violations: list[FieldViolation] = []
    batch = points_from_proto(points((0, "1.5", "USD"), (1, "2", "")), violations)
    assert violations == []
    assert not isinstance(batch, ScalarPoints)
    assert [value for _, value in batch] == [Price(Decimal("1.5"), "USD"), Price(Decimal("2"), "")]


def test_a_bad_text_among_own_ones_is_named_alone() -> None:
    violations: list[FieldViolation] = []
    points_from_proto(points((0, "1.5", ""), (1, "1e99", ""), (2, "2", "")), violations)
    assert [v.field for v in violations] == ["points[1].value.price.value"]
