"""Values between the v1 contract (qis.data.v1.DataValue) and the domain.

Parsing collects every violation with its field path instead of stopping at the first, so one
rejected request tells the client everything that is wrong with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from itertools import repeat
from operator import add, floordiv, mul
from typing import Any, cast

from google.type import date_pb2
from qis.data.v1 import values_pb2
from qis_domain.bounds import MAX_TIMESTAMP_SECONDS, MAX_UTC_OFFSET_SECONDS, MIN_TIMESTAMP_SECONDS
from qis_domain.errors import FieldViolation
from qis_domain.events import RawValue
from qis_domain.scalar_points import ScalarPoints, made
from qis_domain.snaps import Snap
from qis_domain.structures import MAX_STRUCTURE_NODES, structure_violations
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
    check_currency,
    check_unit,
    is_currency,
    parse_decimal,
    parse_optional_decimal,
)

from qis_adapters.proto.columns import decimal_texts, snaps_of
from qis_adapters.proto.times import required_snap_micros, utc_offset_from_proto

_RIGHTS = {
    values_pb2.OPTION_RIGHT_CALL: OptionRight.CALL,
    values_pb2.OPTION_RIGHT_PUT: OptionRight.PUT,
}
_RIGHTS_BACK = {v.value: k for k, v in _RIGHTS.items()}
_ACTIONS = {
    values_pb2.CORPORATE_ACTION_TYPE_CASH_DIVIDEND: CorporateActionType.CASH_DIVIDEND,
    values_pb2.CORPORATE_ACTION_TYPE_STOCK_SPLIT: CorporateActionType.STOCK_SPLIT,
    values_pb2.CORPORATE_ACTION_TYPE_STOCK_DIVIDEND: CorporateActionType.STOCK_DIVIDEND,
    values_pb2.CORPORATE_ACTION_TYPE_SPIN_OFF: CorporateActionType.SPIN_OFF,
    values_pb2.CORPORATE_ACTION_TYPE_RIGHTS_ISSUE: CorporateActionType.RIGHTS_ISSUE,
}
_ACTIONS_BACK = {v.value: k for k, v in _ACTIONS.items()}


def points_from_proto(
    points: Sequence[values_pb2.DataPoint], violations: list[FieldViolation]
) -> Sequence[tuple[Snap, DataValue]]:
    """A batch of good prices (the bulk of every load) is read a field at a time into columns
    and checked and made as columns are (see columns.py); any other batch point by point, with
    a field path formatted for each violation. (A snap's violations are recorded relative to
    its point, then prefixed with the point's index.)"""
    if (prices := _good_prices(points)) is not None:
        return prices
    out: list[tuple[Snap, DataValue]] = []
    failed: list[FieldViolation] = []
    for i, point in enumerate(points):
        snap = _snap_from_proto(point, failed)
        if failed:
            violations.extend(
                FieldViolation(f"points[{i}].{f.field}", f.description) for f in failed
            )
            failed.clear()
        value = value_from_proto(point.value, f"points[{i}].value", violations)
        if snap is not None and value is not None:
            out.append((snap, value))
    return out


def _good_prices(
    points: Sequence[values_pb2.DataPoint],
) -> Sequence[tuple[Snap, DataValue]] | None:
    """The points, if every one is a price with a snap and value `points_from_proto` takes as
    they are (checked over each column's distinct values, which are few but for snaps and
    prices); None if any is not. The first point's kind rules out other batches (volumes,
    bars, structures) before any column is read. Prices in the series' currency (none named)
    at unique snaps are kept in columns (ScalarPoints), as the columnar form's are."""
    if points and points[0].value.WhichOneof("kind") != "price":
        return None
    rows = [
        (
            p.HasField("snap_time"),
            (ts := p.snap_time).seconds,
            ts.nanos,
            (offset := p.utc_offset).seconds,
            offset.nanos,
            (value := p.value).WhichOneof("kind"),
            (price := value.price).value,
            price.currency,
        )
        for p in points
    ]
    if not rows:
        return []
    has_snap, seconds, nanos, offsets, offset_nanos, kinds, texts, currencies = zip(
        *rows, strict=True
    )
    if (
        not all(has_snap)
        or set(kinds) != {"price"}
        or min(seconds) < MIN_TIMESTAMP_SECONDS
        or max(seconds) > MAX_TIMESTAMP_SECONDS
        # Whole microseconds within the second, offsets whole minutes within ±23:59.
        or any(not 0 <= ns < 1_000_000_000 or ns % 1_000 for ns in set(nanos))
        or set(offset_nanos) != {0}
        or any(s % 60 or abs(s) > MAX_UTC_OFFSET_SECONDS for s in set(offsets))
        or not all(map(is_currency, set(currencies) - {""}))
    ):
        return None
    utc_us = list(
        map(add, map(mul, seconds, repeat(1_000_000)), map(floordiv, nanos, repeat(1_000)))
    )
    sent = list(texts)
    in_columns = set(currencies) == {""}
    if in_columns:
        with contextlib.suppress(ValueError):  # a snap sent twice: the handler names each
            # The usual texts, checked whole; their figures made only if read (as in columns).
            if (own := ScalarPoints.of_own_texts(Price, utc_us, list(offsets), sent)) is not None:
                return own
    failed: list[FieldViolation] = []
    decimals = decimal_texts(sent, "", failed)
    if decimals is None:
        return None
    if in_columns:
        with contextlib.suppress(ValueError):
            return ScalarPoints(Price, utc_us, list(offsets), cast(list[Decimal], decimals), sent)
    values = made(Price, len(rows), decimals, currencies)
    return list(zip(snaps_of(utc_us, offsets), values, strict=True))


def _snap_from_proto(point: values_pb2.DataPoint, v: list[FieldViolation]) -> Snap | None:
    utc_us = required_snap_micros(point, "snap_time", v)
    offset_s = utc_offset_from_proto(point.utc_offset, "utc_offset", v)  # unset: UTC
    return None if utc_us is None or offset_s is None else Snap(utc_us, offset_s)


def value_from_proto(
    msg: values_pb2.DataValue, path: str, v: list[FieldViolation]
) -> DataValue | None:
    """Currencies and units are optional (the series' own when empty), checked when given."""
    kind = msg.WhichOneof("kind")
    if kind == "price":
        value = parse_decimal(msg.price.value, f"{path}.price.value", v)
        if currency := msg.price.currency:
            check_currency(currency, f"{path}.price.currency", v)
        return Price(value, currency)
    if kind == "volume":
        q = parse_decimal(msg.volume.quantity, f"{path}.volume.quantity", v)
        if unit := msg.volume.unit:
            check_unit(unit, f"{path}.volume.unit", v)
        return Volume(q, unit)
    if kind == "bar":
        b, p = msg.bar, f"{path}.bar"
        return OhlcBar(
            parse_decimal(b.open, f"{p}.open", v),
            parse_decimal(b.high, f"{p}.high", v),
            parse_decimal(b.low, f"{p}.low", v),
            parse_decimal(b.close, f"{p}.close", v),
            parse_optional_decimal(b.volume, f"{p}.volume", v),
        )
    if kind == "options_chain":
        return _chain_from_proto(msg.options_chain, f"{path}.options_chain", v)
    if kind == "corporate_action":
        return _action_from_proto(msg.corporate_action, f"{path}.corporate_action", v)
    if kind == "term_structure":
        return _structure_from_proto(msg.term_structure, path, v)
    if kind == "surface":
        return _structure_from_proto(msg.surface, path, v)
    v.append(FieldViolation(path, "a value is required"))
    return None


def _chain_from_proto(
    chain: values_pb2.OptionsChain, path: str, v: list[FieldViolation]
) -> OptionsChain:
    quotes = []
    for i, q in enumerate(chain.quotes):
        p = f"{path}.quotes[{i}]"
        right = _RIGHTS.get(q.right)
        if right is None:
            v.append(FieldViolation(f"{p}.right", "CALL or PUT is required"))
            right = OptionRight.CALL
        quotes.append(
            OptionQuote(
                _date_from_proto(q.expiry, f"{p}.expiry", v) or date.min,
                parse_decimal(q.strike, f"{p}.strike", v),
                right,
                parse_optional_decimal(q.bid, f"{p}.bid", v),
                parse_optional_decimal(q.ask, f"{p}.ask", v),
                parse_optional_decimal(q.implied_volatility, f"{p}.implied_volatility", v),
            )
        )
    if not quotes:
        v.append(FieldViolation(f"{path}.quotes", "at least one quote is required"))
    underlying = parse_optional_decimal(chain.underlying_price, f"{path}.underlying_price", v)
    return OptionsChain(tuple(quotes), underlying)


def _structure_from_proto(
    msg: values_pb2.TermStructure | values_pb2.Surface, path: str, v: list[FieldViolation]
) -> TermStructure | Surface:
    """A curve or surface of the shape every one has (the series' schema is checked where the
    series is known): nodes parsed only when they are not too many to be one."""
    at = f"{path}.{'surface' if isinstance(msg, values_pb2.Surface) else 'term_structure'}"
    if len(msg.nodes) > MAX_STRUCTURE_NODES:
        v.append(
            FieldViolation(
                f"{at}.nodes", f"{len(msg.nodes):,} nodes, more than {MAX_STRUCTURE_NODES:,}"
            )
        )
        return TermStructure(()) if isinstance(msg, values_pb2.TermStructure) else Surface(())
    before = len(v)
    value: TermStructure | Surface
    if isinstance(msg, values_pb2.TermStructure):
        value = TermStructure(
            tuple(
                CurveNode(n.tenor, parse_decimal(n.value, f"{at}.nodes[{i}].value", v))
                for i, n in enumerate(msg.nodes)
            )
        )
    else:
        value = Surface(
            tuple(
                SurfaceNode(
                    n.tenor,
                    parse_decimal(n.coordinate, f"{at}.nodes[{i}].coordinate", v),
                    parse_decimal(n.value, f"{at}.nodes[{i}].value", v),
                )
                for i, n in enumerate(msg.nodes)
            )
        )
    if len(v) == before:
        structure_violations(value, None, path, v)
    return value


def _action_from_proto(
    a: values_pb2.CorporateAction, path: str, v: list[FieldViolation]
) -> CorporateAction:
    kind = _ACTIONS.get(a.type)
    if kind is None:
        v.append(FieldViolation(f"{path}.type", "a corporate action type is required"))
        kind = CorporateActionType.CASH_DIVIDEND
    ex_date = _date_from_proto(a.ex_date, f"{path}.ex_date", v) or date.min
    action = CorporateAction(
        kind,
        ex_date,
        _date_from_proto(a.record_date, f"{path}.record_date", v, required=False),
        _date_from_proto(a.pay_date, f"{path}.pay_date", v, required=False),
        parse_optional_decimal(a.ratio, f"{path}.ratio", v),
        parse_optional_decimal(a.amount, f"{path}.amount", v),
        a.currency,
    )
    if a.currency:
        check_currency(a.currency, f"{path}.currency", v)
    return action


def _date_from_proto(
    d: date_pb2.Date, path: str, v: list[FieldViolation], required: bool = True
) -> date | None:
    if (d.year, d.month, d.day) == (0, 0, 0):
        if required:
            v.append(FieldViolation(path, "a date is required"))
        return None
    try:
        return date(d.year, d.month, d.day)
    except ValueError as error:
        v.append(FieldViolation(path, f"not a calendar date: {error}"))
        return None


def _text(d: Any) -> str:
    return "" if d is None else str(d)


def _date_doc(text: str | None) -> date_pb2.Date | None:
    if text is None:
        return None
    day = date.fromisoformat(text)
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def doc_to_proto(doc: dict[str, Any]) -> values_pb2.DataValue:
    """From the JSON form values have inside events (see qis_domain.values.value_to_doc)."""
    ((kind, body),) = doc.items()
    if kind == "price":
        return values_pb2.DataValue(
            price=values_pb2.Price(value=body["value"], currency=body["currency"])
        )
    if kind == "volume":
        return values_pb2.DataValue(
            volume=values_pb2.Volume(quantity=body["quantity"], unit=body["unit"])
        )
    if kind == "bar":
        return values_pb2.DataValue(
            bar=values_pb2.OhlcBar(
                open=body["open"],
                high=body["high"],
                low=body["low"],
                close=body["close"],
                volume=_text(body.get("volume")),
            )
        )
    if kind == "options_chain":
        return values_pb2.DataValue(
            options_chain=values_pb2.OptionsChain(
                underlying_price=_text(body.get("underlying_price")),
                quotes=[
                    values_pb2.OptionQuote(
                        expiry=_date_doc(q["expiry"]),
                        strike=q["strike"],
                        right=_RIGHTS_BACK[q["right"]],
                        bid=_text(q.get("bid")),
                        ask=_text(q.get("ask")),
                        implied_volatility=_text(q.get("implied_volatility")),
                    )
                    for q in body["quotes"]
                ],
            )
        )
    if kind == "term_structure":
        return values_pb2.DataValue(
            term_structure=values_pb2.TermStructure(
                nodes=[
                    values_pb2.CurveNode(tenor=n["tenor"], value=n["value"]) for n in body["nodes"]
                ]
            )
        )
    if kind == "surface":
        return values_pb2.DataValue(
            surface=values_pb2.Surface(
                nodes=[
                    values_pb2.SurfaceNode(
                        tenor=n["tenor"], coordinate=n["coordinate"], value=n["value"]
                    )
                    for n in body["nodes"]
                ]
            )
        )
    return values_pb2.DataValue(
        corporate_action=values_pb2.CorporateAction(
            type=_ACTIONS_BACK[body["type"]],
            ex_date=_date_doc(body["ex_date"]),
            record_date=_date_doc(body.get("record_date")),
            pay_date=_date_doc(body.get("pay_date")),
            ratio=_text(body.get("ratio")),
            amount=_text(body.get("amount")),
            currency=body.get("currency", ""),
        )
    )


def raw_to_proto_bytes(data_type: DataType, unit: str) -> Callable[[RawValue], bytes]:
    """A serialiser from the event form of values (qis_domain.values.encode_value) to
    qis.data.v1.DataValue bytes, specialised once per event for the per-point loop."""
    if data_type is DataType.PRICE:
        return lambda raw: values_pb2.DataValue(
            price=values_pb2.Price(value=str(raw), currency=unit)
        ).SerializeToString()
    if data_type is DataType.VOLUME:
        return lambda raw: values_pb2.DataValue(
            volume=values_pb2.Volume(quantity=str(raw), unit=unit)
        ).SerializeToString()
    return lambda raw: doc_to_proto(raw).SerializeToString()  # type: ignore[arg-type]
