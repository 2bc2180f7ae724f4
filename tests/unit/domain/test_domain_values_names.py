"""Value objects (decimals, documents) and resource names."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from qis_domain.bounds import quoted
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.names import (
    SERIES_COLLECTION,
    SOURCES_COLLECTION,
    parse_name,
    series_name,
    source_name,
    validate_id,
)
from qis_domain.values import (
    CorporateAction,
    CorporateActionType,
    CurveNode,
    DataType,
    DataValue,
    OhlcBar,
    OptionQuote,
    OptionRight,
    OptionsChain,
    Price,
    Surface,
    SurfaceNode,
    TermStructure,
    Volume,
    parse_decimal,
    parse_optional_decimal,
    value_from_doc,
    value_to_doc,
)

# --- parse_decimal ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Decimal(0)),
        ("1", Decimal(1)),
        ("-1.5", Decimal("-1.5")),
        ("+2.25", Decimal("2.25")),
        (".5", Decimal("0.5")),
        ("1.", Decimal(1)),
        ("1e3", Decimal(1000)),
        ("1E-4", Decimal("0.0001")),
        ("-2.5e+10", Decimal("-25000000000")),
        ("0.000000000000000001", Decimal("1e-18")),
        ("123456789012345678.123", Decimal("123456789012345678.123")),  # |x| < 1e18
    ],
)
def test_parse_decimal_accepts_plain_and_exponent_notation(text: str, expected: Decimal) -> None:
    violations: list[FieldViolation] = []
    assert parse_decimal(text, "points[0].value.price.value", violations) == expected
    assert violations == []


def test_parse_decimal_is_exact_not_binary_float() -> None:
    violations: list[FieldViolation] = []
    parsed = parse_decimal("0.1", "f", violations)
    assert parsed + parse_decimal("0.2", "f", violations) == Decimal("0.3")
    assert str(parsed) == "0.1"


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1_000",
        " 1",
        "1 ",
        "1\n",
        "1,5",
        "0x10",
        "--1",
        ".",
        "e5",
        "1e",
        "1e99999",
        "1.2.3",
    ],
)
def test_parse_decimal_rejects_malformed_text(text: str) -> None:
    violations: list[FieldViolation] = []
    result = parse_decimal(text, "points[3].value.price.value", violations)
    assert result == Decimal(0)
    assert violations == [
        FieldViolation("points[3].value.price.value", f"{text!r} is not a finite decimal number")
    ]


def test_parse_decimal_empty_is_required() -> None:
    violations: list[FieldViolation] = []
    parse_decimal("", "points[0].value.volume.quantity", violations)
    assert violations == [FieldViolation("points[0].value.volume.quantity", "is required")]


def test_parse_decimal_collects_every_violation_in_order() -> None:
    violations: list[FieldViolation] = []
    fields = {"a.open": "NaN", "a.high": "2", "a.low": "1,5", "a.close": ""}
    for field, text in fields.items():
        parse_decimal(text, field, violations)
    assert [v.field for v in violations] == ["a.open", "a.low", "a.close"]
    error = InvalidArgument(violations)
    assert str(error) == "a.open: 'NaN' is not a finite decimal number (+2 more)"


@pytest.mark.parametrize("text", ["\u0661\u0662", "\uff11"])
def test_parse_decimal_rejects_non_ascii_digits(text: str) -> None:
    violations: list[FieldViolation] = []
    parse_decimal(text, "f", violations)
    assert len(violations) == 1


def test_parse_optional_decimal() -> None:
    violations: list[FieldViolation] = []
    assert parse_optional_decimal("", "bid", violations) is None
    assert parse_optional_decimal("1.25", "bid", violations) == Decimal("1.25")
    assert violations == []
    assert parse_optional_decimal("x", "ask", violations) == Decimal(0)
    assert [v.field for v in violations] == ["ask"]


# --- documents ---

_CHAIN = OptionsChain(
    quotes=(
        OptionQuote(
            date(2024, 6, 21),
            Decimal(100),
            OptionRight.CALL,
            Decimal("5.10"),
            Decimal("5.30"),
            Decimal("0.2150"),
        ),
        OptionQuote(date(2024, 6, 21), Decimal(100), OptionRight.PUT),  # all optionals None
        OptionQuote(date(2024, 9, 20), Decimal("102.5"), OptionRight.CALL, None, Decimal(7)),
    ),
    underlying_price=Decimal("101.37"),
)

ROUND_TRIP_VALUES: list[DataValue] = [
    Price(Decimal("1.08345"), "USD"),
    Price(Decimal("-37.63"), "USD"),  # negative prices exist (WTI, April 2020)
    Price(Decimal("1E+3"), "JPY"),
    Volume(Decimal(1500000), "shares"),
    OhlcBar(Decimal(10), Decimal("12.5"), Decimal("9.75"), Decimal(11), Decimal(120000)),
    OhlcBar(Decimal(10), Decimal("12.5"), Decimal("9.75"), Decimal(11)),  # no volume
    _CHAIN,
    OptionsChain(quotes=()),  # empty chain without underlying
    TermStructure((CurveNode("P3M", Decimal("4.31")), CurveNode("P10Y", Decimal("-0.05")))),
    Surface(
        (
            SurfaceNode("P1M", Decimal("0.9"), Decimal("0.2150")),
            SurfaceNode("P1M", Decimal("1.1"), Decimal("0.1975")),
            SurfaceNode("P1Y", Decimal("0.9"), Decimal("1E-7")),
        )
    ),
    CorporateAction(
        CorporateActionType.CASH_DIVIDEND,
        date(2024, 3, 1),
        date(2024, 3, 1),
        date(2024, 3, 15),
        None,
        Decimal("0.24"),
        "USD",
    ),
    CorporateAction(CorporateActionType.STOCK_SPLIT, date(2024, 6, 10), ratio=Decimal(4)),
    CorporateAction(CorporateActionType.SPIN_OFF, date(2024, 1, 2)),  # every optional None
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=lambda v: type(v).__name__)
def test_value_doc_round_trip(value: DataValue) -> None:
    doc = value_to_doc(value)
    back = value_from_doc(json.loads(json.dumps(doc)))  # survives JSON
    assert back == value
    assert type(back) is type(value)
    assert value_to_doc(back) == doc  # same strings: no change of scale or exponent


def test_round_trip_covers_every_data_type() -> None:
    assert {v.data_type for v in ROUND_TRIP_VALUES} == set(DataType)


def test_value_doc_keys_match_data_type_and_numbers_are_strings() -> None:
    for value in ROUND_TRIP_VALUES:
        doc = value_to_doc(value)
        assert list(doc) == [value.data_type.value]
    assert value_to_doc(Price(Decimal("0.10"), "EUR")) == {
        "price": {"value": "0.10", "currency": "EUR"}
    }
    chain_doc = value_to_doc(_CHAIN)["options_chain"]
    assert chain_doc["underlying_price"] == "101.37"
    assert chain_doc["quotes"][1] == {
        "expiry": "2024-06-21",
        "strike": "100",
        "right": "put",
        "bid": None,
        "ask": None,
        "implied_volatility": None,
    }
    action_doc = value_to_doc(ROUND_TRIP_VALUES[-1])["corporate_action"]
    assert action_doc == {
        "type": "spin_off",
        "ex_date": "2024-01-02",
        "record_date": None,
        "pay_date": None,
        "ratio": None,
        "amount": None,
        "currency": "",
    }


def test_value_from_doc_tolerates_missing_optional_keys() -> None:
    bar = value_from_doc({"bar": {"open": "1", "high": "2", "low": "1", "close": "2"}})
    assert bar == OhlcBar(Decimal(1), Decimal(2), Decimal(1), Decimal(2), None)
    action = value_from_doc({"corporate_action": {"type": "stock_split", "ex_date": "2024-01-02"}})
    assert action == CorporateAction(CorporateActionType.STOCK_SPLIT, date(2024, 1, 2))


def test_value_from_doc_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown value kind 'swap'"):
        value_from_doc({"swap": {}})


def test_number_is_the_compared_figure() -> None:
    assert Price(Decimal(5), "USD").number == Decimal(5)
    assert Volume(Decimal(7), "shares").number == Decimal(7)
    assert OhlcBar(Decimal(1), Decimal(3), Decimal(1), Decimal(2)).number == Decimal(2)
    assert _CHAIN.number == Decimal("101.37")
    assert OptionsChain(quotes=()).number is None
    dividend = CorporateAction(
        CorporateActionType.CASH_DIVIDEND, date(2024, 1, 2), ratio=Decimal(2), amount=Decimal(1)
    )
    assert dividend.number == Decimal(1)  # amount wins over ratio
    split = CorporateAction(CorporateActionType.STOCK_SPLIT, date(2024, 1, 2), ratio=Decimal(4))
    assert split.number == Decimal(4)
    assert CorporateAction(CorporateActionType.SPIN_OFF, date(2024, 1, 2)).number is None


# --- names ---


@pytest.mark.parametrize(
    "value", ["a", "EURUSD", "eur.usd:close-1", "0", "A" * 128, "bbg:AAPL.US", "x_y"]
)
def test_validate_id_accepts(value: str) -> None:
    assert validate_id(value, "series_id") == value


@pytest.mark.parametrize(
    "value", ["", "A" * 129, ".hidden", "-x", "_x", "a/b", "a b", "é", "a\n", "series/x"]
)
def test_validate_id_rejects_with_the_field_path(value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_id(value, "series.sources[2].source")
    [violation] = info.value.violations
    assert violation.field == "series.sources[2].source"
    assert quoted(value) in violation.description  # a long one shortened: answers stay small


def test_parse_name_returns_the_id() -> None:
    assert parse_name("series/EURUSD", SERIES_COLLECTION, "name") == "EURUSD"
    assert parse_name("sources/bbg", SOURCES_COLLECTION, "source") == "bbg"


@pytest.mark.parametrize(
    ("name", "description_part"),
    [
        ("sources/bbg", "is not a resource name 'series/{id}'"),
        ("EURUSD", "is not a resource name 'series/{id}'"),
        ("Series/EURUSD", "is not a resource name 'series/{id}'"),
        ("series/", "is not a valid id"),
        ("series/a/b", "is not a valid id"),
        ("series/ab ", "is not a valid id"),
    ],
)
def test_parse_name_rejects(name: str, description_part: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_name(name, SERIES_COLLECTION, "request.name")
    [violation] = info.value.violations
    assert violation.field == "request.name"
    assert description_part in violation.description


def test_names_round_trip() -> None:
    assert series_name("EURUSD") == "series/EURUSD"
    assert source_name("bbg") == "sources/bbg"
    assert parse_name(series_name("x.y"), SERIES_COLLECTION, "n") == "x.y"
    assert parse_name(source_name("x:y"), SOURCES_COLLECTION, "n") == "x:y"
