"""Values at the edge: decimals of |x| < 1e18 with at most 18 decimal places (qis_domain.bounds),
which a client in any language and every store can hold exactly; currency and unit codes as
sent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from qis_domain import bounds
from qis_domain.bounds import check_length
from qis_domain.errors import FieldViolation
from qis_domain.values import check_currency, check_unit, parse_decimal

LARGEST = "999999999999999999.999999999999999999"


@pytest.mark.parametrize(
    "text",
    [
        LARGEST,
        "-" + LARGEST,
        "0.000000000000000001",
        "1E-18",
        "1E+17",
        "9.99E+17",
        "0000000000000000000000001.5",  # leading zeros add no magnitude
        "0E+40",  # zero, whatever its exponent
        "0",
        "-0.0",
        "101.25",
    ],
)
def test_decimals_within_the_bounds_are_accepted(text: str) -> None:
    violations: list[FieldViolation] = []
    assert parse_decimal(text, "f", violations) == Decimal(text)
    assert violations == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1000000000000000000", "1e18"),
        ("-1000000000000000000", "1e18"),
        ("1E+18", "1e18"),
        ("999999999999999999.9999999999999999995", "18 decimal places"),
        ("0.0000000000000000001", "18 decimal places"),
        ("1E-19", "18 decimal places"),
        ("0E-19", "18 decimal places"),
        ("1.0000000000000000000", "18 decimal places"),
        ("1e30", "1e18"),
        ("1e-30", "18 decimal places"),
        ("1e9999", "1e18"),
    ],
)
def test_decimals_beyond_the_bounds_are_violations(text: str, reason: str) -> None:
    violations: list[FieldViolation] = []
    assert parse_decimal(text, "points[2].value.price.value", violations) == Decimal(0)
    assert [v.field for v in violations] == ["points[2].value.price.value"]
    assert reason in violations[0].description


def test_a_huge_decimal_text_is_not_echoed_whole() -> None:
    violations: list[FieldViolation] = []
    parse_decimal("1" * 100_000, "f", violations)
    parse_decimal("x" * 100_000, "f", violations)
    assert len(violations) == 2
    assert all(len(v.description) < 200 for v in violations)


@pytest.mark.parametrize("code", ["USD", "EUR", "XAU"])
def test_an_iso_4217_shaped_code_is_a_currency(code: str) -> None:
    violations: list[FieldViolation] = []
    check_currency(code, "f", violations)
    assert violations == []


@pytest.mark.parametrize("code", ["usd", "Usd", "US", "USDT", " USD", "USD\n", "ÜSD", ""])
def test_anything_else_is_not_normalised_but_refused(code: str) -> None:
    violations: list[FieldViolation] = []
    check_currency(code, "f", violations)
    assert [v.field for v in violations] == ["f"]


def test_unit_codes() -> None:
    violations: list[FieldViolation] = []
    for unit in ["shares", "contracts", "MWh", "t", "bbl", "lots_100", "m3/d"]:
        check_unit(unit, "ok", violations)
    check_unit("x" * (bounds.MAX_UNIT_LENGTH + 1), "too long", violations)
    check_unit("1x", "digit first", violations)
    check_unit("", "empty", violations)
    assert [v.field for v in violations] == ["too long", "digit first", "empty"]


def test_lengths_and_quotes_are_bounded() -> None:
    violations: list[FieldViolation] = []
    check_length("a" * bounds.MAX_TEXT_LENGTH, bounds.MAX_TEXT_LENGTH, "ok", violations)
    check_length("a" * (bounds.MAX_TEXT_LENGTH + 1), bounds.MAX_TEXT_LENGTH, "long", violations)
    assert [v.field for v in violations] == ["long"]
    assert bounds.quoted("USD") == "'USD'"
    assert len(bounds.quoted("x" * 1_000_000)) < 2 * bounds.MAX_QUOTED_LENGTH
