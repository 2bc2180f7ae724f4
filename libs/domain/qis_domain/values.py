"""Value objects for the data a series holds. Numbers are Decimal: never binary floats."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Any

from qis_domain.bounds import (
    MAX_DECIMAL_DIGITS_BEFORE_POINT,
    MAX_DECIMAL_PLACES,
    MAX_UNIT_LENGTH,
    quoted,
)
from qis_domain.errors import FieldViolation

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
# Plain notation within the bounds by its shape alone: the common case needs no arithmetic.
_BOUNDED_PLAIN = re.compile(
    rf"[+-]?[0-9]{{1,{MAX_DECIMAL_DIGITS_BEFORE_POINT}}}(?:\.[0-9]{{1,{MAX_DECIMAL_PLACES}}})?"
)
# Codes are compared as sent (a series in USD takes "USD", not "usd"): normalising them would
# make the stored lineage differ from what the source sent, and hide a feed that breaks them.
_CURRENCY = re.compile(r"[A-Z]{3}")
_UNIT = re.compile(rf"[A-Za-z][A-Za-z0-9_./-]{{0,{MAX_UNIT_LENGTH - 1}}}")


class DataType(enum.StrEnum):
    PRICE = "price"
    VOLUME = "volume"
    OHLC_BAR = "bar"
    OPTIONS_CHAIN = "options_chain"
    CORPORATE_ACTION = "corporate_action"
    TERM_STRUCTURE = "term_structure"
    SURFACE = "surface"


class OptionRight(enum.StrEnum):
    CALL = "call"
    PUT = "put"


class CorporateActionType(enum.StrEnum):
    CASH_DIVIDEND = "cash_dividend"
    STOCK_SPLIT = "stock_split"
    STOCK_DIVIDEND = "stock_dividend"
    SPIN_OFF = "spin_off"
    RIGHTS_ISSUE = "rights_issue"


@dataclass(frozen=True, slots=True)
class Price:
    value: Decimal
    currency: str

    @property
    def data_type(self) -> DataType:
        return DataType.PRICE

    @property
    def number(self) -> Decimal | None:
        return self.value


@dataclass(frozen=True, slots=True)
class Volume:
    quantity: Decimal
    unit: str

    @property
    def data_type(self) -> DataType:
        return DataType.VOLUME

    @property
    def number(self) -> Decimal | None:
        return self.quantity


@dataclass(frozen=True, slots=True)
class OhlcBar:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None

    @property
    def data_type(self) -> DataType:
        return DataType.OHLC_BAR

    @property
    def number(self) -> Decimal | None:
        return self.close


@dataclass(frozen=True, slots=True)
class OptionQuote:
    expiry: date
    strike: Decimal
    right: OptionRight
    bid: Decimal | None = None
    ask: Decimal | None = None
    implied_volatility: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OptionsChain:
    quotes: tuple[OptionQuote, ...]
    underlying_price: Decimal | None = None

    @property
    def data_type(self) -> DataType:
        return DataType.OPTIONS_CHAIN

    @property
    def number(self) -> Decimal | None:
        return self.underlying_price


@dataclass(frozen=True, slots=True)
class CorporateAction:
    type: CorporateActionType
    ex_date: date
    record_date: date | None = None
    pay_date: date | None = None
    ratio: Decimal | None = None
    amount: Decimal | None = None
    currency: str = ""

    @property
    def data_type(self) -> DataType:
        return DataType.CORPORATE_ACTION

    @property
    def number(self) -> Decimal | None:
        return self.amount if self.amount is not None else self.ratio


@dataclass(frozen=True, slots=True)
class CurveNode:
    tenor: str  # an ISO 8601 period (qis_domain.structures.tenor_years)
    value: Decimal


@dataclass(frozen=True, slots=True)
class TermStructure:
    """A whole curve at one snap, by increasing tenor: one value, published and restated as
    one (qis_domain.structures checks its shape, qis_domain.structure_checks its nodes)."""

    nodes: tuple[CurveNode, ...]

    @property
    def data_type(self) -> DataType:
        return DataType.TERM_STRUCTURE

    @property
    def number(self) -> Decimal | None:
        return None


@dataclass(frozen=True, slots=True)
class SurfaceNode:
    tenor: str
    coordinate: Decimal  # strike, moneyness or delta: the series' StructureSchema says
    value: Decimal


@dataclass(frozen=True, slots=True)
class Surface:
    """A whole surface at one snap, by increasing (tenor, coordinate)."""

    nodes: tuple[SurfaceNode, ...]

    @property
    def data_type(self) -> DataType:
        return DataType.SURFACE

    @property
    def number(self) -> Decimal | None:
        return None


Structure = TermStructure | Surface
StructureNode = CurveNode | SurfaceNode
DataValue = Price | Volume | OhlcBar | OptionsChain | CorporateAction | TermStructure | Surface
"""`number` is the figure rules and reconciliation compare (None: compared by equality only)."""


def is_bounded_plain_decimal(text: str) -> bool:
    """Whether `text` is surely a decimal within the bounds; False says nothing (see
    parse_decimal), it lets a hot loop skip formatting a field path for the common case."""
    return _BOUNDED_PLAIN.fullmatch(text) is not None


def parse_decimal(text: str, field: str, violations: list[FieldViolation]) -> Decimal:
    """A finite decimal in plain or exponent notation, |x| < 1e18 with at most 18 decimal places
    as written (qis_domain.bounds); records a violation and returns 0 if not.

    Collecting violations instead of raising lets one request report every bad field at once.
    """
    if _BOUNDED_PLAIN.fullmatch(text):
        return Decimal(text)
    if not _DECIMAL.fullmatch(text):
        reason = "is required" if text == "" else f"{quoted(text)} is not a finite decimal number"
        violations.append(FieldViolation(field, reason))
        return Decimal(0)
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, by the pattern
    if number and number.adjusted() >= MAX_DECIMAL_DIGITS_BEFORE_POINT:
        reason = f"beyond |x| < 1e{MAX_DECIMAL_DIGITS_BEFORE_POINT}"
    elif -exponent > MAX_DECIMAL_PLACES:
        # Places as written, trailing zeros included: the value is stored as sent.
        reason = f"more than {MAX_DECIMAL_PLACES} decimal places"
    else:
        return number
    violations.append(FieldViolation(field, f"{quoted(text)} is {reason}"))
    return Decimal(0)


def parse_optional_decimal(
    text: str, field: str, violations: list[FieldViolation]
) -> Decimal | None:
    return None if text == "" else parse_decimal(text, field, violations)


def is_currency(text: str) -> bool:
    """An ISO 4217-shaped code: three upper-case ASCII letters."""
    return _CURRENCY.fullmatch(text) is not None


def check_currency(text: str, field: str, violations: list[FieldViolation]) -> None:
    if not is_currency(text):
        reason = "is not an ISO 4217 currency code (three upper-case letters, e.g. 'USD')"
        violations.append(FieldViolation(field, f"{quoted(text)} {reason}"))


def check_unit(text: str, field: str, violations: list[FieldViolation]) -> None:
    """A unit of volume ("shares", "contracts", "MWh"): a short code, compared as sent."""
    if not _UNIT.fullmatch(text):
        violations.append(
            FieldViolation(
                field,
                f"{quoted(text)} is not a unit: a letter, then letters, digits or '_./-',"
                f" at most {MAX_UNIT_LENGTH} characters",
            )
        )


def check_series_unit(
    text: str, data_type: DataType, field: str, violations: list[FieldViolation]
) -> None:
    """The unit of a series: a unit code for volumes, a currency for every other data type."""
    (check_unit if data_type is DataType.VOLUME else check_currency)(text, field, violations)


# --- documents: the JSON form values take inside events (decimal strings, ISO dates) ---


def _opt(d: Decimal | None) -> str | None:
    return None if d is None else str(d)


def _opt_dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _opt_date(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def value_to_doc(value: DataValue) -> dict[str, Any]:
    if isinstance(value, Price):
        return {"price": {"value": str(value.value), "currency": value.currency}}
    if isinstance(value, Volume):
        return {"volume": {"quantity": str(value.quantity), "unit": value.unit}}
    if isinstance(value, OhlcBar):
        return {
            "bar": {
                "open": str(value.open),
                "high": str(value.high),
                "low": str(value.low),
                "close": str(value.close),
                "volume": _opt(value.volume),
            }
        }
    if isinstance(value, OptionsChain):
        return {
            "options_chain": {
                "underlying_price": _opt(value.underlying_price),
                "quotes": [
                    {
                        "expiry": q.expiry.isoformat(),
                        "strike": str(q.strike),
                        "right": q.right.value,
                        "bid": _opt(q.bid),
                        "ask": _opt(q.ask),
                        "implied_volatility": _opt(q.implied_volatility),
                    }
                    for q in value.quotes
                ],
            }
        }
    if isinstance(value, TermStructure):
        return {
            "term_structure": {
                "nodes": [{"tenor": n.tenor, "value": str(n.value)} for n in value.nodes]
            }
        }
    if isinstance(value, Surface):
        return {
            "surface": {
                "nodes": [
                    {"tenor": n.tenor, "coordinate": str(n.coordinate), "value": str(n.value)}
                    for n in value.nodes
                ]
            }
        }
    return {
        "corporate_action": {
            "type": value.type.value,
            "ex_date": value.ex_date.isoformat(),
            "record_date": None if value.record_date is None else value.record_date.isoformat(),
            "pay_date": None if value.pay_date is None else value.pay_date.isoformat(),
            "ratio": _opt(value.ratio),
            "amount": _opt(value.amount),
            "currency": value.currency,
        }
    }


def value_from_doc(doc: dict[str, Any]) -> DataValue:
    ((kind, body),) = doc.items()
    if kind == "price":
        return Price(Decimal(body["value"]), body["currency"])
    if kind == "volume":
        return Volume(Decimal(body["quantity"]), body["unit"])
    if kind == "bar":
        return OhlcBar(
            Decimal(body["open"]),
            Decimal(body["high"]),
            Decimal(body["low"]),
            Decimal(body["close"]),
            _opt_dec(body.get("volume")),
        )
    if kind == "options_chain":
        return OptionsChain(
            tuple(
                OptionQuote(
                    date.fromisoformat(q["expiry"]),
                    Decimal(q["strike"]),
                    OptionRight(q["right"]),
                    _opt_dec(q.get("bid")),
                    _opt_dec(q.get("ask")),
                    _opt_dec(q.get("implied_volatility")),
                )
                for q in body["quotes"]
            ),
            _opt_dec(body.get("underlying_price")),
        )
    if kind == "corporate_action":
        return CorporateAction(
            CorporateActionType(body["type"]),
            date.fromisoformat(body["ex_date"]),
            _opt_date(body.get("record_date")),
            _opt_date(body.get("pay_date")),
            _opt_dec(body.get("ratio")),
            _opt_dec(body.get("amount")),
            body.get("currency", ""),
        )
    if kind == "term_structure":
        return TermStructure(
            tuple(CurveNode(n["tenor"], Decimal(n["value"])) for n in body["nodes"])
        )
    if kind == "surface":
        return Surface(
            tuple(
                SurfaceNode(n["tenor"], Decimal(n["coordinate"]), Decimal(n["value"]))
                for n in body["nodes"]
            )
        )
    raise ValueError(f"unknown value kind {kind!r}")


def encode_value(value: DataValue) -> str | dict[str, Any]:
    """The compact form inside events: scalar kinds as a bare decimal string (their currency or
    unit is the series'), the others as a value document."""
    if isinstance(value, Price):
        return str(value.value)
    if isinstance(value, Volume):
        return str(value.quantity)
    return value_to_doc(value)


def scalar_figures(values: Sequence[DataValue]) -> list[Decimal] | None:
    """The figures of a batch of prices, or of volumes, read without a Python call per value
    (None: a batch of other or mixed kinds). Each encodes as its figure's text."""
    kinds: set[type] = set(map(type, values))
    if len(kinds) == 1 and (figure := _FIGURES.get(kinds.pop())) is not None:
        return list(map(figure, values))
    return None


_FIGURES: dict[type, Callable[[Any], Decimal]] = {
    Price: attrgetter("value"),
    Volume: attrgetter("quantity"),
}


def decode_value(data_type: DataType, unit: str, raw: str | dict[str, Any]) -> DataValue:
    if isinstance(raw, str):
        if data_type is DataType.PRICE:
            return Price(Decimal(raw), unit)
        return Volume(Decimal(raw), unit)
    return value_from_doc(raw)
