"""CoinGecko against a real local HTTP server answering with the documented shapes: keys and
base URLs per plan, granularity rules by span, paging, exact decimals, and the failures to
retry (429 with Retry-After, 5xx, timeouts, cut JSON) or not (401)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from qis_feeds.adapters.coingecko import (
    DAY,
    CoinGeckoProvider,
    CoinGeckoSettings,
    CoinInstrument,
    Field,
    Granularity,
    Plan,
    span_of,
    windows,
)
from qis_feeds.adapters.http import RetryPolicy, VendorError, retry_after_seconds
from qis_feeds.application.points import RawBar, RawValue
from qis_feeds.application.ports import HistoricalRequest
from werkzeug import Request, Response

QUICK = RetryPolicy(max_attempts=5, backoff_first_s=0.01, backoff_cap_s=0.05, timeout_s=0.3)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
MS = 1_000


def ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


Answer = Response | Callable[[Request], Response]


class Script:
    """Answers one request after another from a list (the last one for every further request),
    and keeps what was asked."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request) if callable(answer) and not isinstance(answer, Response) else answer


def chart(prices: list[tuple[int, str]], field: str = "prices") -> Response:
    """A market_chart/range body as CoinGecko writes it: numbers, not strings."""
    rows = ",".join(f"[{t},{v}]" for t, v in prices)
    others = [k for k in ("prices", "market_caps", "total_volumes") if k != field]
    body = f'{{"{field}":[{rows}],"{others[0]}":[],"{others[1]}":[]}}'
    return Response(body, 200, content_type="application/json")


def provider(
    server: HTTPServer,
    instruments: list[CoinInstrument],
    plan: Plan = Plan.DEMO,
    calls_per_minute: float = 6_000,
) -> CoinGeckoProvider:
    settings = CoinGeckoSettings(
        plan=plan,
        api_key=None if plan is Plan.KEYLESS else "secret-key",
        base_url=server.url_for("/api/v3"),
        calls_per_minute=calls_per_minute,
        retry=QUICK,
    )
    return CoinGeckoProvider(instruments, settings, now=lambda: NOW)


async def load(feed: CoinGeckoProvider, start: datetime, end: datetime) -> list[RawValue]:
    out = [v async for v in feed.request_historical(HistoricalRequest((), start, end))]
    await feed.close()
    return out


def test_ranges_are_paged_into_the_spans_each_granularity_allows() -> None:
    start = datetime(2023, 1, 1, tzinfo=UTC)
    hourly = list(windows(start, start + 200 * DAY, span_of(Granularity.HOURLY, Plan.DEMO)))
    assert [(w.end - w.start).days for w in hourly] == [90, 90, 20]
    assert all(w.ask_from == w.start for w in hourly)
    # One day would be 5-minutely from the current time: asked as two, the first left out.
    [short] = windows(start, start + DAY, span_of(Granularity.HOURLY, Plan.DEMO))
    assert short.ask_from == start - DAY
    # Daily needs more than 90 days without a paid plan's `interval`.
    daily = list(windows(start, start + 400 * DAY, span_of(Granularity.DAILY, Plan.DEMO)))
    assert [(w.end - w.start).days for w in daily] == [365, 35]
    assert daily[1].end - daily[1].ask_from == 91 * DAY
    pro = span_of(Granularity.HOURLY, Plan.PRO)
    assert (pro.longest, pro.interval) == (100 * DAY, "hourly")
    assert span_of(Granularity.FIVE_MINUTES, Plan.PRO).longest == 10 * DAY
    with pytest.raises(ValueError, match="paid"):
        span_of(Granularity.FIVE_MINUTES, Plan.DEMO)


async def test_market_chart_range_with_a_demo_key_maps_exact_values(httpserver: HTTPServer) -> None:
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    hours = [start - timedelta(hours=1) + timedelta(hours=h) for h in range(26)]
    # More digits than a float holds: the text must reach the point as written.
    script = Script(
        [chart([(ms(h), f"42000.12345678901234{i % 10}") for i, h in enumerate(hours)])]
    )
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart/range").respond_with_handler(
        script
    )
    feed = provider(
        httpserver, [CoinInstrument("BTC.USD", "bitcoin", granularity=Granularity.HOURLY)]
    )
    values = await load(feed, start, end)
    [request] = script.requests
    assert request.headers["x-cg-demo-api-key"] == "secret-key"
    assert "x-cg-pro-api-key" not in request.headers
    assert request.args["vs_currency"] == "usd"
    assert int(request.args["from"]) == int((start - DAY).timestamp())  # widened to two days
    assert int(request.args["to"]) == int(end.timestamp())
    assert "interval" not in request.args
    # The widened day and the value at `end` are left out: [start, end) only.
    assert [v.time for v in values] == [ms(h) * MS for h in hours if start <= h < end]
    assert str(values[0].value) == "42000.123456789012341"
    assert {v.series_id for v in values} == {"BTC.USD"}


async def test_a_pro_key_goes_to_its_header_with_the_interval(httpserver: HTTPServer) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    script = Script([chart([(ms(start), "1.5")], field="total_volumes")])
    httpserver.expect_request("/api/v3/coins/ethereum/market_chart/range").respond_with_handler(
        script
    )
    instrument = CoinInstrument(
        "ETH.VOL", "ethereum", "eur", Field.TOTAL_VOLUME, Granularity.HOURLY
    )
    values = await load(provider(httpserver, [instrument], Plan.PRO), start, start + 150 * DAY)
    assert [r.headers["x-cg-pro-api-key"] for r in script.requests] == ["secret-key"] * 2
    assert [r.args["interval"] for r in script.requests] == ["hourly"] * 2
    assert [r.args["vs_currency"] for r in script.requests] == ["eur"] * 2
    assert [(v.time, str(v.value)) for v in values] == [(ms(start) * MS, "1.5")]


async def test_ohlc_candles_become_bars_at_their_close_time(httpserver: HTTPServer) -> None:
    closes = [NOW - timedelta(hours=4 * k) for k in (3, 2, 1)]
    body = json.dumps([[ms(t), 10 + i, 12.5, 9.25, 11] for i, t in enumerate(closes)])
    script = Script([Response(body, 200, content_type="application/json")])
    httpserver.expect_request("/api/v3/coins/bitcoin/ohlc").respond_with_handler(script)
    instrument = CoinInstrument("BTC.BAR", "bitcoin", field=Field.OHLC)
    values = await load(provider(httpserver, [instrument]), NOW - 5 * DAY, NOW - timedelta(hours=5))
    assert script.requests[0].args["days"] == "7"  # the smallest that reaches five days back
    assert [(v.time, v.value) for v in values] == [
        (ms(closes[0]) * MS, RawBar(10, 12.5, 9.25, 11)),
        (ms(closes[1]) * MS, RawBar(11, 12.5, 9.25, 11)),
    ]


async def test_429_waits_for_retry_after_then_goes_on(httpserver: HTTPServer) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    limited = Response(
        '{"status":{"error_code":429,"error_message":"rate limited"}}', 429, {"Retry-After": "1"}
    )
    script = Script([limited, chart([(ms(start), "1")])])
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart/range").respond_with_handler(
        script
    )
    feed = provider(httpserver, [CoinInstrument("BTC.USD", "bitcoin")])
    began = time.monotonic()
    values = await load(feed, start, start + DAY)
    assert time.monotonic() - began >= 1.0
    assert len(values) == 1
    assert len(script.requests) == 2
    health = await feed.get_health()
    assert (health.requests, health.errors, feed.retries) == (2, 1, 1)


async def test_5xx_timeouts_and_cut_json_are_retried(httpserver: HTTPServer) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)

    def slow(request: Request) -> Response:
        time.sleep(0.6)  # beyond the client's 0.3 s
        return chart([])

    script = Script(
        [
            Response("upstream down", 503),
            Response('{"prices": [[17040672000', 200, content_type="application/json"),
            slow,
            chart([(ms(start), "7")]),
        ]
    )
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart/range").respond_with_handler(
        script
    )
    feed = provider(httpserver, [CoinInstrument("BTC.USD", "bitcoin")])
    values = await load(feed, start, start + DAY)
    assert [str(v.value) for v in values] == ["7"]
    assert len(script.requests) == 4
    assert feed.retries == 3


async def test_an_invalid_key_fails_at_once_with_the_vendors_message(
    httpserver: HTTPServer,
) -> None:
    body = '{"status":{"error_code":10002,"error_message":"API Key Missing"}}'
    script = Script([Response(body, 401)])
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart/range").respond_with_handler(
        script
    )
    feed = provider(httpserver, [CoinInstrument("BTC.USD", "bitcoin")])
    with pytest.raises(VendorError, match="API Key Missing"):
        await load(feed, NOW - DAY, NOW)
    assert len(script.requests) == 1


async def test_calls_are_spaced_by_the_rate_limit(httpserver: HTTPServer) -> None:
    script = Script([chart([])])
    httpserver.expect_request("/api/v3/coins/bitcoin/market_chart/range").respond_with_handler(
        script
    )
    instrument = CoinInstrument("BTC.USD", "bitcoin", granularity=Granularity.HOURLY)
    feed = provider(httpserver, [instrument], calls_per_minute=300)  # one per 0.2 s
    began = time.monotonic()
    await load(feed, NOW - 360 * DAY, NOW)  # four 90-day windows
    assert len(script.requests) == 4
    assert time.monotonic() - began >= 0.6


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("30") == 30.0
    assert retry_after_seconds("Mon, 01 Jan 2024 12:00:45 GMT", now) == 45.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_a_keyed_plan_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an API key"):
        CoinGeckoProvider([], CoinGeckoSettings(plan=Plan.PRO))
