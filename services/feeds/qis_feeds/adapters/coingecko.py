"""CoinGecko (REST): /coins/{id}/market_chart/range and /coins/{id}/ohlc.

Plans and keys, as CoinGecko documents them: the keyless and Demo plans use
https://api.coingecko.com/api/v3 (a Demo key in the `x-cg-demo-api-key` header), paid plans
https://pro-api.coingecko.com/api/v3 (the `x-cg-pro-api-key` header). The key is read from the
environment variable the configuration names, never from the configuration itself.

market_chart/range answers {"prices": [[ms, price], ...], "market_caps": [...],
"total_volumes": [...]}, at a granularity chosen by the span asked for: 1 day = 5-minutely
(from the current time) or hourly, 2-90 days = hourly, above 90 days = daily (00:00 UTC). Paid
plans may ask for one with `interval` (`hourly` up to 100 days a call, `daily`; `5m` up to 10
days, Enterprise only). A long range is paged into windows the granularity allows, and a window
shorter than its granularity needs (the last one, usually) is widened backwards and its extra
values left out, so each value is sent once, in the granularity asked for.

ohlc answers [[ms, open, high, low, close], ...] for the last `days` (1, 7, 14, 30, 90, 180,
365, max), candles of 30 minutes (1-2 days), 4 hours (3-30 days) or 4 days (31 and more); the
time is the candle's close, which becomes the snap. It has no range: the smallest `days` that
reaches back to the start is asked for, and candles outside the range are left out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from qis_feeds.adapters.http import JsonApi, RetryPolicy, VendorError
from qis_feeds.application.points import Number, RawBar, RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth

log = logging.getLogger("qis.feeds.coingecko")
DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OHLC_DAYS = (1, 7, 14, 30, 90, 180, 365)


class Plan(StrEnum):
    KEYLESS = "keyless"
    DEMO = "demo"
    PRO = "pro"


BASE_URLS = {
    Plan.KEYLESS: "https://api.coingecko.com/api/v3",
    Plan.DEMO: "https://api.coingecko.com/api/v3",
    Plan.PRO: "https://pro-api.coingecko.com/api/v3",
}
KEY_HEADERS = {Plan.DEMO: "x-cg-demo-api-key", Plan.PRO: "x-cg-pro-api-key"}


class Field(StrEnum):
    PRICE = "price"
    MARKET_CAP = "market_cap"
    TOTAL_VOLUME = "total_volume"
    OHLC = "ohlc"


_CHART_KEYS = {
    Field.PRICE: "prices",
    Field.MARKET_CAP: "market_caps",
    Field.TOTAL_VOLUME: "total_volumes",
}
_KINDS = {
    Field.PRICE: ValueKind.PRICE,
    Field.MARKET_CAP: ValueKind.PRICE,
    Field.TOTAL_VOLUME: ValueKind.VOLUME,
    Field.OHLC: ValueKind.OHLC_BAR,
}


class Granularity(StrEnum):
    DAILY = "daily"
    HOURLY = "hourly"
    FIVE_MINUTES = "5m"


@dataclass(frozen=True, slots=True)
class Span:
    """How one granularity is paged: windows of at most `longest`, at least `shortest`; the
    `interval` parameter to send (paid plans), None for CoinGecko's automatic choice."""

    longest: timedelta
    shortest: timedelta
    interval: str | None


def span_of(granularity: Granularity, plan: Plan) -> Span:
    """CoinGecko's documented rules (docs/providers.md has them with their source)."""
    paid = plan is Plan.PRO
    if granularity is Granularity.DAILY:
        # Automatic: daily above 90 days only, so a shorter window is widened to 91 days.
        return Span(365 * DAY, DAY if paid else 91 * DAY, "daily" if paid else None)
    if granularity is Granularity.HOURLY:
        # Automatic: hourly from 2 to 90 days (one day from now would be 5-minutely).
        return Span(
            100 * DAY if paid else 90 * DAY, DAY if paid else 2 * DAY, "hourly" if paid else None
        )
    if not paid:
        raise ValueError(
            "5-minutely ranges need a paid (Enterprise) plan: interval=5m; on other plans"
            " CoinGecko gives 5-minutely data for the last day only"
        )
    return Span(10 * DAY, timedelta(minutes=5), "5m")


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    """Values with start <= time < end are sent."""
    ask_from: datetime
    """What is asked for: `start`, or earlier when the window is shorter than its span's
    shortest (the values before `start` are then left out)."""


def windows(start: datetime, end: datetime, span: Span) -> Iterator[Window]:
    cursor = start
    while cursor < end:
        stop = min(end, cursor + span.longest)
        yield Window(cursor, stop, min(cursor, stop - span.shortest))
        cursor = stop


@dataclass(frozen=True, slots=True)
class CoinInstrument:
    series_id: str
    coin_id: str
    vs_currency: str = "usd"
    field: Field = Field.PRICE
    granularity: Granularity = Granularity.DAILY


KEY_ENV = "COINGECKO_API_KEY"
"""Where the key is looked for when neither the feed nor its source names a place."""
CALLS_PER_MINUTE = 30.0
"""The rate limit when neither the feed nor its source states one: below every plan's."""


@dataclass(frozen=True, slots=True)
class CoinGeckoSettings:
    plan: Plan = Plan.DEMO
    api_key: str | None = None
    base_url: str | None = None
    """Default: the plan's documented base URL (a test's local server otherwise)."""
    calls_per_minute: float = CALLS_PER_MINUTE
    """The plan's rate limit, or less (documented: Demo 100 a minute; paid plans by plan)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll_s: float = 60.0
    """How often a subscription asks for new values."""


def _ms_time(item: Any, where: str) -> int:
    if isinstance(item, bool) or not isinstance(item, int):
        raise VendorError(f"{where}: {item!r} is not a time in milliseconds", retryable=False)
    return item * 1_000


def _number(item: Any) -> Number | None:
    """A number of the answer; None for CoinGecko's null (no value at that time)."""
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, int | str | Decimal):
        return item
    return None


def chart_values(body: Any, instrument: CoinInstrument) -> Iterator[tuple[int, Number]]:
    """(µs, value) of a market_chart answer, for the instrument's field. A body of another
    shape fails the load (JSON that does not parse is retried, by JsonApi: a cut answer; a
    well-formed answer of another shape would come back the same)."""
    key = _CHART_KEYS[instrument.field]
    rows = body.get(key) if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise VendorError(f"market_chart: no {key!r} list in the answer", retryable=False)
    for row in rows:
        if not isinstance(row, list) or len(row) != 2:
            raise VendorError(f"market_chart {key}: {row!r} is not [time, value]", retryable=False)
        value = _number(row[1])
        if value is not None:
            yield _ms_time(row[0], key), value


def ohlc_values(body: Any) -> Iterator[tuple[int, RawBar]]:
    if not isinstance(body, list):
        raise VendorError("ohlc: the answer is not a list of candles", retryable=False)
    for row in body:
        if not isinstance(row, list) or len(row) != 5:
            raise VendorError(
                f"ohlc: {row!r} is not [time, open, high, low, close]", retryable=False
            )
        numbers = [_number(item) for item in row[1:]]
        if all(number is not None for number in numbers):
            o, h, lo, c = (n for n in numbers if n is not None)
            yield _ms_time(row[0], "ohlc"), RawBar(o, h, lo, c)


def ohlc_days(start: datetime, now: datetime) -> int | str:
    """The smallest `days` CoinGecko takes that reaches back to `start`."""
    needed = (now - start) / DAY
    return next((d for d in _OHLC_DAYS if d >= needed), "max")


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class CoinGeckoProvider:
    name = "coingecko"

    def __init__(
        self,
        instruments: Sequence[CoinInstrument],
        settings: CoinGeckoSettings,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._instruments = {i.series_id: i for i in instruments}
        self._settings = settings
        self._now = now
        self.kinds: Mapping[str, ValueKind] = {i.series_id: _KINDS[i.field] for i in instruments}
        for instrument in instruments:
            if instrument.field is not Field.OHLC:
                span_of(instrument.granularity, settings.plan)  # refuses what the plan cannot
        headers = {}
        if settings.plan is not Plan.KEYLESS:
            if not settings.api_key:
                raise ValueError(f"the {settings.plan} plan needs an API key")
            headers[KEY_HEADERS[settings.plan]] = settings.api_key
        self._api = JsonApi(
            settings.base_url or BASE_URLS[settings.plan],
            headers,
            settings.calls_per_minute,
            settings.retry,
        )
        self._last_value_us: dict[str, int] = {}

    async def connect(self) -> None:
        return None  # HTTP: a connection per need, kept alive by httpx

    async def close(self) -> None:
        await self._api.close()

    async def get_health(self) -> ProviderHealth:
        return self._api.health(self._last_value_us)

    @property
    def retries(self) -> int:
        return self._api.calls.retries

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        for series_id in request.series_ids or tuple(self._instruments):
            instrument = self._instruments.get(series_id)
            if instrument is None:
                raise ValueError(f"{series_id} is not a series of this CoinGecko feed")
            async for value in self._range(instrument, request.start, request.end):
                yield value

    async def _range(
        self, instrument: CoinInstrument, start: datetime, end: datetime
    ) -> AsyncIterator[RawValue]:
        if instrument.field is Field.OHLC:
            params: dict[str, str | int] = {
                "vs_currency": instrument.vs_currency,
                "days": ohlc_days(start, self._now()),
            }
            body = await self._api.get(f"coins/{instrument.coin_id}/ohlc", params)
            first, stop = _us(start), _us(end)
            for snap_us, bar in sorted(ohlc_values(body), key=lambda item: item[0]):
                if first <= snap_us < stop:
                    yield self._seen(RawValue(instrument.series_id, snap_us, bar))
            return
        span = span_of(instrument.granularity, self._settings.plan)
        for window in windows(start, end, span):
            params = {
                "vs_currency": instrument.vs_currency,
                "from": int(window.ask_from.timestamp()),
                "to": int(window.end.timestamp()),
            }
            if span.interval is not None:
                params["interval"] = span.interval
            body = await self._api.get(f"coins/{instrument.coin_id}/market_chart/range", params)
            first, stop = _us(window.start), _us(window.end)
            for snap_us, value in chart_values(body, instrument):
                if first <= snap_us < stop:
                    yield self._seen(RawValue(instrument.series_id, snap_us, value))

    def _seen(self, value: RawValue) -> RawValue:
        self._last_value_us[value.series_id] = time.time_ns() // 1000
        return value

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        """Polls every `poll_s` for what came since the latest value (at first: the last day)."""
        instrument = self._instruments[series_id]
        since = self._now() - DAY
        while True:
            now = self._now()
            latest = since
            async for value in self._range(instrument, since, now):
                assert isinstance(value.time, int)
                latest = max(latest, _EPOCH + timedelta(microseconds=value.time + 1))
                yield value
            since = latest
            await asyncio.sleep(self._settings.poll_s)
