"""REST polling against a real local HTTP server: ticks mapped by field name, the window of the
next poll from the latest tick, overlapping ticks dropped, failures retried or waited out."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from pytest_httpserver import HTTPServer
from qis_feeds.adapters.http import RetryPolicy
from qis_feeds.adapters.rest_poll import RestPollProvider, RestPollSettings
from qis_feeds.adapters.ticks import TickFields, TickInstrument, TimeUnit
from werkzeug import Request, Response

T0 = 1_717_200_000  # s
PARIS_SUMMER = timezone(timedelta(hours=2))


def quote(k: int) -> dict[str, str]:
    at = datetime.fromtimestamp(T0 + k, PARIS_SUMMER).isoformat()
    return {"ticker": "ACME", "at": at, "last": f"{k}.25"}


class Quotes:
    """Answers {"data": [...]}: the quotes of the first 3 x n seconds at or after `since`, n the
    answers given so far (so each poll brings back the latest tick of the one before), and a
    503 on the 2nd call."""

    def __init__(self) -> None:
        self.calls: list[Request] = []
        self.answers = 0

    def __call__(self, request: Request) -> Response:
        self.calls.append(request)
        if len(self.calls) == 2:
            return Response("busy", 503)
        self.answers += 1
        since_ms = int(request.args["since"])
        data = [quote(k) for k in range(3 * self.answers) if (T0 + k) * 1000 >= since_ms]
        data.append({"ticker": "OTHER", "at": "2024-06-01T00:00:00Z", "last": "1"})
        return Response(json.dumps({"data": data}), 200, content_type="application/json")


async def test_polls_map_ticks_and_drop_what_a_poll_brings_back(httpserver: HTTPServer) -> None:
    quotes = Quotes()
    httpserver.expect_request("/v1/quotes").respond_with_handler(quotes)
    feed = RestPollProvider(
        [TickInstrument("ACME.LAST", "ACME")],
        RestPollSettings(
            url=httpserver.url_for("/v1/quotes"),
            params={"symbols": "ACME", "since": "{since_ms}"},
            items_field="data",
            fields=TickFields("ticker", "at", TimeUnit.RFC3339, "last"),
            headers={"x-api-key": "k"},
            calls_per_minute=60_000,
            retry=RetryPolicy(backoff_first_s=0.01, backoff_cap_s=0.02),
        ),
    )
    for _ in range(3):
        await feed.poll()
    queue = feed.subscribe("ACME.LAST")
    values = [await asyncio.wait_for(anext(queue), 1) for _ in range(9)]
    await feed.close()
    assert [str(v.value) for v in values] == [f"{k}.25" for k in range(9)]
    assert [v.time for v in values] == [datetime.fromisoformat(quote(k)["at"]) for k in range(9)]
    since = [c.args["since"] for c in quotes.calls]
    assert since == ["0", f"{T0 + 2}000", f"{T0 + 2}000", f"{T0 + 5}000"]  # the 503 retried
    assert {c.headers["x-api-key"] for c in quotes.calls} == {"k"}
    assert feed.replayed == 2  # each poll after the first brings back the latest tick
    health = await feed.get_health()
    assert (health.requests, health.errors) == (4, 1)
