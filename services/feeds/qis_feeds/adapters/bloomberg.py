"""Bloomberg (BLPAPI): //blp/refdata HistoricalDataRequest for history, //blp/mktdata
subscriptions for live ticks.

`blpapi` is not on PyPI: Bloomberg publishes it on its own package index
(pip install --index-url=https://blpapi.bloomberg.com/repository/releases/python/simple/ blpapi),
and it needs a Terminal (Desktop API) or a B-PIPE / Server API host to talk to. It is imported
only when a session starts, and its absence is a clear error, never an ImportError at startup.

Two layers:
- the mapping (`history_values`, `tick_values`): pure functions of message contents shaped like
  BLPAPI's element trees as `Message.toPy()` gives them (blpapi 3.24 and later), so the tests
  drive them with recorded-shape messages:
  HistoricalDataResponse = {securityData = {security, sequenceNumber, securityError?,
  fieldExceptions[] = {fieldId, errorInfo = {source, code, category, message, subcategory}},
  fieldData[] = {date, PX_LAST, PX_OPEN, PX_HIGH, PX_LOW, VOLUME, ...}}} or {responseError =
  {...}}; MarketDataEvents = {LAST_PRICE, BID, ASK, VOLUME, ..., MKTDATA_EVENT_TYPE,
  MKTDATA_EVENT_SUBTYPE}, with the message's `recapType()` beside them (BbgMessage).
- the session (`BlpapiSession`): the only code that touches blpapi. It has not run against a
  Terminal here (none is reachable): its calls follow Bloomberg's Python examples and reference
  (SessionOptions, Session with an event handler, openService, createRequest, sendRequest,
  SubscriptionList, CorrelationId).

Times: a history row's `date` becomes that day at 00:00 UTC (the convention of daily series
here). A tick's time is its `time_field` element (EVENT_TIME by default; a time of day is taken
on the day the message was received; a datetime without an offset is in `tz`), else the time
the message was received. Recaps repeat the subscription's current state and would be false
observations: they are counted, not sent. They are told by `Message.recapType()` (documented:
RECAPTYPE_SOLICITED for a consumer who just subscribed or resubscribed, RECAPTYPE_UNSOLICITED at
the service's discretion, RECAPTYPE_NONE for a normal tick); a message flagged as no recap whose
MKTDATA_EVENT_SUBTYPE is INITPAINT (an initial paint, by the field's name in Bloomberg's examples,
not confirmed by a reference page) is left out too.
Health: each history request and subscription is a request, timed to its first answer.
Values are BLPAPI's floats, taken by their shortest repr (application.points).
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from enum import IntEnum, StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from qis_feeds.adapters.calls import CallStats, elapsed_ms
from qis_feeds.application.points import Number, RawBar, RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth

_UTC = ZoneInfo("UTC")
BLPAPI_INDEX = "https://blpapi.bloomberg.com/repository/releases/python/simple/"


class BloombergError(RuntimeError):
    """What Bloomberg answered instead of data: a response, security or field error."""


class BloombergUnavailable(BloombergError):
    pass


class Recap(IntEnum):
    """`blpapi.Message.recapType()`, as the documented constants RECAPTYPE_NONE, _SOLICITED and
    _UNSOLICITED number it."""

    NONE = 0
    SOLICITED = 1
    UNSOLICITED = 2


@dataclass(frozen=True, slots=True)
class BbgMessage:
    """One message routed to a request or subscription (a MarketDataEvents message, for one)."""

    received: datetime
    recap: Recap
    fields: Mapping[str, Any]
    """Its contents, as `Message.toPy()` gives them."""


_Routed = tuple[Any, BbgMessage]
"""A message for a request or subscription: its event's type, and the message."""


class BbgField(StrEnum):
    PX_LAST = "PX_LAST"
    PX_OPEN = "PX_OPEN"
    PX_HIGH = "PX_HIGH"
    PX_LOW = "PX_LOW"
    VOLUME = "VOLUME"
    PX_BID = "PX_BID"
    PX_ASK = "PX_ASK"
    OHLC = "OHLC"
    """A bar of PX_OPEN, PX_HIGH, PX_LOW, PX_LAST and VOLUME (history only)."""


_BAR_FIELDS = ("PX_OPEN", "PX_HIGH", "PX_LOW", "PX_LAST", "VOLUME")
LIVE_FIELDS = {
    BbgField.PX_LAST: "LAST_PRICE",
    BbgField.PX_BID: "BID",
    BbgField.PX_ASK: "ASK",
    BbgField.VOLUME: "VOLUME",
}
"""The //blp/mktdata field that follows a history field live."""


def kind_of(field: BbgField) -> ValueKind:
    if field is BbgField.VOLUME:
        return ValueKind.VOLUME
    return ValueKind.OHLC_BAR if field is BbgField.OHLC else ValueKind.PRICE


@dataclass(frozen=True, slots=True)
class BbgInstrument:
    series_id: str
    security: str
    """As Bloomberg names it, e.g. "IBM US Equity"."""
    field: BbgField = BbgField.PX_LAST


def request_fields(instruments: Sequence[BbgInstrument]) -> list[str]:
    fields: dict[str, None] = {}
    for instrument in instruments:
        names = _BAR_FIELDS if instrument.field is BbgField.OHLC else (instrument.field.value,)
        fields.update(dict.fromkeys(names))
    return list(fields)


def _error_text(error: Any) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    parts = (error.get("category"), error.get("subcategory"), error.get("message"))
    return " / ".join(str(p) for p in parts if p)


def _number(value: Any) -> Number | None:
    if isinstance(value, bool) or value is None:
        return None
    return value if isinstance(value, int | float | str) else None


def history_values(
    message: Mapping[str, Any], instruments: Sequence[BbgInstrument]
) -> Iterator[RawValue]:
    """The values of one HistoricalDataResponse message (a partial or the final one) for the
    instruments of its security. A response error, a security error or an exception on a field
    the instruments need raises BloombergError with Bloomberg's own words; a field missing from
    a row (no value that day) gives no value."""
    if "responseError" in message:
        raise BloombergError(f"response error: {_error_text(message['responseError'])}")
    data = message.get("securityData")
    if not isinstance(data, Mapping):
        raise BloombergError(f"not a HistoricalDataResponse: {sorted(message)}")
    security = str(data.get("security", ""))
    mine = [i for i in instruments if i.security == security]
    if "securityError" in data:
        raise BloombergError(f"{security}: {_error_text(data['securityError'])}")
    needed = set(request_fields(mine))
    for exception in data.get("fieldExceptions") or ():
        field_id = exception.get("fieldId")
        if field_id in needed:
            raise BloombergError(
                f"{security} {field_id}: {_error_text(exception.get('errorInfo'))}"
            )
    for row in data.get("fieldData") or ():
        day = row.get("date")
        if not isinstance(day, date):
            raise BloombergError(f"{security}: a fieldData row without a date: {row!r}")
        snap = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for instrument in mine:
            value = _row_value(row, instrument.field)
            if value is not None:
                yield RawValue(instrument.series_id, snap, value)


def _row_value(row: Mapping[str, Any], field: BbgField) -> Number | RawBar | None:
    if field is not BbgField.OHLC:
        return _number(row.get(field.value))
    o, h, lo, c = (_number(row.get(name)) for name in _BAR_FIELDS[:4])
    if o is None or h is None or lo is None or c is None:
        return None
    return RawBar(o, h, lo, c, _number(row.get("VOLUME")))


@dataclass
class TickStats:
    ticks: int = 0
    recaps: int = 0
    """Solicited or unsolicited recaps (Message.recapType()): not sent."""
    initial_paints: int = 0
    """Messages flagged as no recap but with MKTDATA_EVENT_SUBTYPE INITPAINT: not sent."""
    received_time: int = 0
    """Ticks timed by their arrival: no usable `time_field` in the message."""


def tick_values(
    message: BbgMessage,
    instruments: Sequence[BbgInstrument],
    stats: TickStats,
    time_field: str = "EVENT_TIME",
    tz: ZoneInfo = _UTC,
) -> list[RawValue]:
    """The values one MarketDataEvents message carries for the instruments of its security;
    none for a recap."""
    stats.ticks += 1
    fields, received = message.fields, message.received
    if message.recap is not Recap.NONE:
        stats.recaps += 1
        return []
    if fields.get("MKTDATA_EVENT_SUBTYPE") == "INITPAINT":
        stats.initial_paints += 1
        return []
    stamp = fields.get(time_field)
    if isinstance(stamp, datetime):
        moment = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=tz)
    elif isinstance(stamp, time_of_day):
        day = received.astimezone(tz).date()
        moment = datetime.combine(day, stamp, stamp.tzinfo or tz)
    else:
        stats.received_time += 1
        moment = received
    found = []
    for instrument in instruments:
        live = LIVE_FIELDS.get(instrument.field)
        value = _number(fields.get(live)) if live else None
        if value is not None:
            found.append(RawValue(instrument.series_id, moment, value))
    return found


class BloombergSession(Protocol):
    """What the provider needs of a Bloomberg session (BlpapiSession; a recording in tests)."""

    def start(self) -> None: ...

    def history(
        self, securities: Sequence[str], fields: Sequence[str], start: date, end: date
    ) -> Iterator[Mapping[str, Any]]:
        """The contents of each HistoricalDataResponse message, partial ones included."""
        ...

    def ticks(self, security: str, fields: Sequence[str]) -> Iterator[BbgMessage]:
        """Each MarketDataEvents message of the subscription, blocking, until closed."""
        ...

    def stop(self) -> None: ...


def load_blpapi() -> Any:
    try:
        return importlib.import_module("blpapi")
    except ImportError:
        raise BloombergUnavailable(
            "the Bloomberg provider needs Bloomberg's blpapi package, which is not on PyPI:"
            f" pip install --index-url={BLPAPI_INDEX} blpapi  (and a Terminal or B-PIPE host)"
        ) from None


class BlpapiSession:
    """A blpapi Session with an event handler that routes each message, by correlation id, to
    the request or subscription that asked for it. Not run against a Terminal here."""

    def __init__(self, host: str = "localhost", port: int = 8194, timeout_s: float = 30.0) -> None:
        self._blpapi = load_blpapi()
        self._host = host
        self._port = port
        self._timeout_s = timeout_s
        self._routes: dict[int, queue.Queue[_Routed | None]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._session: Any = None

    def start(self) -> None:
        blpapi = self._blpapi
        options = blpapi.SessionOptions()
        options.setServerHost(self._host)
        options.setServerPort(self._port)
        self._session = blpapi.Session(options, self._on_event)
        if not self._session.start():
            raise BloombergError(f"cannot start a session with {self._host}:{self._port}")
        for service in ("//blp/refdata", "//blp/mktdata"):
            if not self._session.openService(service):
                raise BloombergError(f"cannot open {service}")

    def stop(self) -> None:
        if self._session is not None:
            self._session.stop()
            self._session = None

    def _on_event(self, event: Any, _session: Any) -> None:
        received = datetime.now(UTC)
        for message in event:
            for correlation in message.correlationIds():
                route = self._routes.get(correlation.value())
                if route is not None:
                    routed = BbgMessage(received, Recap(message.recapType()), message.toPy())
                    route.put((event.eventType(), routed))

    def _route(self) -> tuple[int, queue.Queue[_Routed | None]]:
        with self._lock:
            number = next(self._ids)
            route: queue.Queue[_Routed | None] = queue.Queue()
            self._routes[number] = route
        return number, route

    def history(
        self, securities: Sequence[str], fields: Sequence[str], start: date, end: date
    ) -> Iterator[Mapping[str, Any]]:
        blpapi = self._blpapi
        request = self._session.getService("//blp/refdata").createRequest("HistoricalDataRequest")
        for security in securities:
            request.getElement("securities").appendValue(security)
        for name in fields:
            request.getElement("fields").appendValue(name)
        request.set("periodicitySelection", "DAILY")
        request.set("startDate", start.strftime("%Y%m%d"))
        request.set("endDate", end.strftime("%Y%m%d"))
        number, route = self._route()
        try:
            self._session.sendRequest(request, correlationId=blpapi.CorrelationId(number))
            while True:
                item = route.get(timeout=self._timeout_s)
                if item is None:
                    return
                kind, message = item
                if kind in (blpapi.Event.PARTIAL_RESPONSE, blpapi.Event.RESPONSE):
                    yield message.fields
                if kind == blpapi.Event.RESPONSE:
                    return
                if kind == blpapi.Event.REQUEST_STATUS:
                    raise BloombergError(f"request failed: {message.fields}")
        except queue.Empty:
            raise BloombergError(f"no answer within {self._timeout_s} s") from None
        finally:
            self._routes.pop(number, None)

    def ticks(self, security: str, fields: Sequence[str]) -> Iterator[BbgMessage]:
        blpapi = self._blpapi
        number, route = self._route()
        subscriptions = blpapi.SubscriptionList()
        subscriptions.add(security, list(fields), [], blpapi.CorrelationId(number))
        self._session.subscribe(subscriptions)
        try:
            while (item := route.get()) is not None:
                kind, message = item
                if kind == blpapi.Event.SUBSCRIPTION_DATA:
                    yield message
                elif kind == blpapi.Event.SUBSCRIPTION_STATUS and "reason" in message.fields:
                    raise BloombergError(f"{security}: subscription failed: {message.fields}")
        finally:
            self._routes.pop(number, None)
            self._session.unsubscribe(subscriptions)


@dataclass(frozen=True, slots=True)
class BloombergSettings:
    time_field: str = "EVENT_TIME"
    tz: str = "UTC"
    """The zone of Bloomberg times given without an offset."""


def _take(items: Iterator[Any], size: int) -> list[Any]:
    return list(itertools.islice(items, size))


class BloombergProvider:
    name = "bloomberg"

    def __init__(
        self,
        instruments: Sequence[BbgInstrument],
        session: BloombergSession,
        settings: BloombergSettings | None = None,
    ) -> None:
        self._instruments = {i.series_id: i for i in instruments}
        self._session = session
        self._settings = settings or BloombergSettings()
        self._tz = ZoneInfo(self._settings.tz)
        self.kinds: Mapping[str, ValueKind] = {i.series_id: kind_of(i.field) for i in instruments}
        self.ticks = TickStats()
        self._connected = False
        self._calls = CallStats()
        self._last_value_us: dict[str, int] = {}

    async def connect(self) -> None:
        if not self._connected:
            await asyncio.to_thread(self._session.start)
            self._connected = True

    async def close(self) -> None:
        if self._connected:
            await asyncio.to_thread(self._session.stop)
            self._connected = False

    async def get_health(self) -> ProviderHealth:
        connected = self._connected and not self._calls.last_error
        return self._calls.health(connected, self._last_value_us)

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        instruments = [self._instrument(s) for s in request.series_ids or self._instruments]
        securities = list(dict.fromkeys(i.security for i in instruments))
        # Daily rows: the days whose 00:00 UTC lies in [start, end).
        first = (request.start - timedelta(microseconds=1)).date() + timedelta(days=1)
        last = (request.end - timedelta(microseconds=1)).date()
        started = self._calls.started()
        latency_ms: float | None = None
        messages = self._session.history(securities, request_fields(instruments), first, last)
        try:
            while batch := await asyncio.to_thread(_take, messages, 16):
                if latency_ms is None:
                    latency_ms = elapsed_ms(started)
                for message in batch:
                    for value in history_values(message, instruments):
                        assert isinstance(value.time, datetime)
                        if request.start <= value.time < request.end:
                            yield self._seen(value)
        except BloombergError as error:
            self._calls.failed(str(error))
            raise
        self._calls.succeeded(latency_ms)

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        instrument = self._instrument(series_id)
        live = LIVE_FIELDS.get(instrument.field)
        if live is None:
            raise BloombergError(f"{instrument.field} has no //blp/mktdata field to follow")
        fields = [live, self._settings.time_field, "MKTDATA_EVENT_SUBTYPE"]
        started: float | None = self._calls.started()
        ticks = self._session.ticks(instrument.security, fields)
        try:
            while batch := await asyncio.to_thread(_take, ticks, 1):
                if started is not None:
                    self._calls.succeeded(elapsed_ms(started))
                    started = None
                for message in batch:
                    for value in tick_values(
                        message,
                        [instrument],
                        self.ticks,
                        self._settings.time_field,
                        self._tz,
                    ):
                        yield self._seen(value)
        except BloombergError as error:
            self._calls.failed(str(error))
            raise

    def _instrument(self, series_id: str) -> BbgInstrument:
        instrument = self._instruments.get(series_id)
        if instrument is None:
            raise ValueError(f"{series_id} is not a series of this Bloomberg feed")
        return instrument

    def _seen(self, value: RawValue) -> RawValue:
        self._last_value_us[value.series_id] = time.time_ns() // 1000
        return value
