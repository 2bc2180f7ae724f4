"""Bloomberg: the mapping of //blp/refdata HistoricalDataResponse and //blp/mktdata
MarketDataEvents messages, driven by messages shaped like BLPAPI's element trees (as
`Message.toPy()` gives them), through a recorded session in place of blpapi's; and the clear
error when blpapi is not installed (it is not, here)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from qis_feeds.adapters.bloomberg import (
    BbgField,
    BbgInstrument,
    BbgMessage,
    BloombergError,
    BloombergProvider,
    BloombergUnavailable,
    BlpapiSession,
    Recap,
    TickStats,
    tick_values,
)
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, SenderSettings
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import RawBar, RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest
from qis_feeds.application.runner import Feed, FeedRunner

from tests.feeds.feeds_support import FEEDER, command_service, define_series

IBM = "IBM US Equity"
ERROR_INFO = {
    "source": "215::bbdbh5",
    "code": 15,
    "category": "BAD_SEC",
    "message": "Unknown/Invalid security [nid:215]",
    "subcategory": "INVALID_SECURITY",
}


def response(
    security: str = IBM,
    rows: Sequence[Mapping[str, Any]] = (),
    exceptions: Sequence[Mapping[str, Any]] = (),
    error: Mapping[str, Any] | None = None,
    sequence: int = 0,
) -> dict[str, Any]:
    """A HistoricalDataResponse's contents: securityData with its documented elements."""
    data: dict[str, Any] = {
        "security": security,
        "eidData": [],
        "sequenceNumber": sequence,
        "fieldExceptions": list(exceptions),
        "fieldData": list(rows),
    }
    if error is not None:
        data["securityError"] = error
    return {"securityData": data}


def row(day: int, **fields: float) -> dict[str, Any]:
    return {"date": date(2024, 1, day), **fields}


class RecordedSession:
    """Answers like a Bloomberg session with recorded messages, and remembers what was asked."""

    def __init__(
        self,
        history: Sequence[Mapping[str, Any]] = (),
        ticks: Sequence[BbgMessage] = (),
    ) -> None:
        self._history = history
        self._ticks = ticks
        self.asked: list[tuple[list[str], list[str], date, date]] = []
        self.subscribed: list[tuple[str, list[str]]] = []
        self.started = self.stopped = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def history(
        self, securities: Sequence[str], fields: Sequence[str], start: date, end: date
    ) -> Iterator[Mapping[str, Any]]:
        self.asked.append((list(securities), list(fields), start, end))
        yield from self._history

    def ticks(self, security: str, fields: Sequence[str]) -> Iterator[BbgMessage]:
        self.subscribed.append((security, list(fields)))
        yield from self._ticks


LAST = BbgInstrument("IBM.LAST", IBM, BbgField.PX_LAST)
VOLUME = BbgInstrument("IBM.VOL", IBM, BbgField.VOLUME)
BAR = BbgInstrument("IBM.BAR", IBM, BbgField.OHLC)
JANUARY = HistoricalRequest((), datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))


async def history(provider: BloombergProvider, request: HistoricalRequest) -> list[RawValue]:
    await provider.connect()
    return [value async for value in provider.request_historical(request)]


def day(number: int) -> datetime:
    return datetime(2024, 1, number, tzinfo=UTC)


async def test_history_rows_become_values_of_each_instrument() -> None:
    session = RecordedSession(
        [
            response(rows=[row(2, PX_LAST=185.64, PX_OPEN=187.15, PX_HIGH=188.44, PX_LOW=183.89)]),
            # A partial response, then the last one; VOLUME missing on the 3rd: no volume value.
            response(
                rows=[
                    row(3, PX_LAST=184.25, PX_OPEN=184.22, PX_HIGH=185.88, PX_LOW=183.43),
                    row(4, PX_LAST=181.91, VOLUME=71983600.0),
                ],
                sequence=0,
            ),
        ]
    )
    provider = BloombergProvider([LAST, VOLUME, BAR], session)
    values = await history(provider, JANUARY)
    assert values == [
        RawValue("IBM.LAST", day(2), 185.64),
        RawValue("IBM.BAR", day(2), RawBar(187.15, 188.44, 183.89, 185.64, None)),
        RawValue("IBM.LAST", day(3), 184.25),
        RawValue("IBM.BAR", day(3), RawBar(184.22, 185.88, 183.43, 184.25, None)),
        RawValue("IBM.LAST", day(4), 181.91),
        RawValue("IBM.VOL", day(4), 71983600.0),
    ]
    ((securities, fields, first, last),) = session.asked
    assert securities == [IBM]
    assert fields == ["PX_LAST", "VOLUME", "PX_OPEN", "PX_HIGH", "PX_LOW"]
    assert (first, last) == (date(2024, 1, 1), date(2024, 1, 31))
    assert dict(provider.kinds) == {
        "IBM.LAST": ValueKind.PRICE,
        "IBM.VOL": ValueKind.VOLUME,
        "IBM.BAR": ValueKind.OHLC_BAR,
    }


async def test_days_are_asked_for_whose_midnight_lies_in_the_range() -> None:
    session = RecordedSession([response(rows=[row(1, PX_LAST=1.0), row(3, PX_LAST=3.0)])])
    start = datetime(2024, 1, 1, 12, tzinfo=UTC)
    values = await history(BloombergProvider([LAST], session), HistoricalRequest((), start, day(3)))
    assert session.asked[0][2:] == (date(2024, 1, 2), date(2024, 1, 2))
    assert values == []  # what Bloomberg sends outside the range is left out too


async def test_a_security_error_fails_the_load_with_bloombergs_words() -> None:
    provider = BloombergProvider([LAST], RecordedSession([response(error=ERROR_INFO)]))
    with pytest.raises(BloombergError, match="IBM US Equity: BAD_SEC / INVALID_SECURITY"):
        await history(provider, JANUARY)
    health = await provider.get_health()
    assert (health.connected, health.errors) == (False, 1)
    assert "Unknown/Invalid security" in health.last_error


async def test_a_field_exception_fails_only_a_load_that_needs_the_field() -> None:
    exception = {
        "fieldId": "VOLUME",
        "errorInfo": {"category": "BAD_FLD", "message": "Field not applicable to security"},
    }
    answer = [response(rows=[row(2, PX_LAST=185.64)], exceptions=[exception])]
    only_last = BloombergProvider([LAST], RecordedSession(answer))
    assert await history(only_last, JANUARY) == [RawValue("IBM.LAST", day(2), 185.64)]
    with_volume = BloombergProvider([LAST, VOLUME], RecordedSession(answer))
    with pytest.raises(BloombergError, match="IBM US Equity VOLUME: BAD_FLD"):
        await history(with_volume, JANUARY)


async def test_a_response_error_fails_the_load() -> None:
    error = {"responseError": {"category": "NO_AUTH", "message": "Not authorized"}}
    with pytest.raises(BloombergError, match="response error: NO_AUTH / Not authorized"):
        await history(BloombergProvider([LAST], RecordedSession([error])), JANUARY)


RECEIVED = datetime(2024, 3, 5, 14, 30, 0, 500_000, tzinfo=UTC)
BID = BbgInstrument("IBM.BID", IBM, BbgField.PX_BID)
ASK = BbgInstrument("IBM.ASK", IBM, BbgField.PX_ASK)


def tick(fields: Mapping[str, Any], recap: Recap = Recap.NONE) -> BbgMessage:
    return BbgMessage(RECEIVED, recap, fields)


def test_ticks_carry_their_event_time_and_initial_paints_are_not_sent() -> None:
    stats = TickStats()
    both = [LAST, BID, ASK]
    paint = {"MKTDATA_EVENT_TYPE": "SUMMARY", "MKTDATA_EVENT_SUBTYPE": "INITPAINT", "BID": 1.0}
    assert tick_values(tick(paint), both, stats) == []
    quote = {
        "MKTDATA_EVENT_TYPE": "QUOTE",
        "MKTDATA_EVENT_SUBTYPE": "BID",
        "BID": 185.5,
        "ASK": 185.52,
        "EVENT_TIME": time(14, 29, 59, 987_000),  # a time of day: on the day received
    }
    at = datetime(2024, 3, 5, 14, 29, 59, 987_000, tzinfo=UTC)
    assert tick_values(tick(quote), both, stats) == [
        RawValue("IBM.BID", at, 185.5),
        RawValue("IBM.ASK", at, 185.52),
    ]
    trade = {"MKTDATA_EVENT_TYPE": "TRADE", "LAST_PRICE": 185.51}
    assert tick_values(tick(trade), both, stats) == [RawValue("IBM.LAST", RECEIVED, 185.51)]
    new_york = timezone(timedelta(hours=-5))
    stamped = {"LAST_PRICE": 185.49, "EVENT_TIME": datetime(2024, 3, 5, 9, 30, tzinfo=new_york)}
    assert tick_values(tick(stamped), both, stats)[0].time == datetime(
        2024, 3, 5, 14, 30, tzinfo=UTC
    )
    assert (stats.ticks, stats.initial_paints, stats.received_time) == (4, 1, 1)


def test_recaps_are_told_by_their_recap_type_and_not_sent() -> None:
    """A recap's fields look like a tick's (Bloomberg sends the current values); only the
    message's recapType() tells it: solicited after a (re)subscription, unsolicited at any
    time, with or without an INITPAINT subtype."""
    stats = TickStats()
    image = {"MKTDATA_EVENT_TYPE": "SUMMARY", "LAST_PRICE": 185.0, "BID": 184.9}
    trade = {"MKTDATA_EVENT_TYPE": "TRADE", "LAST_PRICE": 185.51}
    assert tick_values(tick(image, Recap.SOLICITED), [LAST, BID], stats) == []
    assert tick_values(tick(trade, Recap.UNSOLICITED), [LAST, BID], stats) == []
    assert tick_values(tick(trade), [LAST, BID], stats) == [RawValue("IBM.LAST", RECEIVED, 185.51)]
    assert (stats.ticks, stats.recaps, stats.initial_paints) == (3, 2, 0)


async def test_a_subscription_follows_the_live_field_of_its_instrument() -> None:
    session = RecordedSession(
        ticks=[
            tick({"MKTDATA_EVENT_SUBTYPE": "INITPAINT", "LAST_PRICE": 185.0}, Recap.SOLICITED),
            tick({"LAST_PRICE": 185.4}, Recap.UNSOLICITED),
            tick({"LAST_PRICE": 185.51, "BID": 185.5}),
        ]
    )
    provider = BloombergProvider([LAST, BID], session)
    await provider.connect()
    values = []
    async for value in provider.subscribe("IBM.LAST"):
        values.append(value)
        if len(values) == 1:
            break
    assert values == [RawValue("IBM.LAST", RECEIVED, 185.51)]
    assert session.subscribed == [(IBM, ["LAST_PRICE", "EVENT_TIME", "MKTDATA_EVENT_SUBTYPE"])]
    assert (provider.ticks.recaps, provider.ticks.initial_paints) == (2, 0)
    health = await provider.get_health()
    assert (health.requests, health.errors, health.latencies.calls) == (1, 0, 1)
    with pytest.raises(BloombergError, match="OHLC has no //blp/mktdata field"):
        await anext(BloombergProvider([BAR], session).subscribe("IBM.BAR"))


@pytest.mark.skipif(importlib.util.find_spec("blpapi") is not None, reason="blpapi is installed")
def test_without_blpapi_the_error_names_bloombergs_package_index() -> None:
    with pytest.raises(BloombergUnavailable) as caught:
        BlpapiSession()
    assert "https://blpapi.bloomberg.com/repository/releases/python/simple/" in str(caught.value)
    assert "not on PyPI" in str(caught.value)


async def test_a_history_load_lands_through_the_command_service() -> None:
    session = RecordedSession([response(rows=[row(d, PX_LAST=180 + d / 100) for d in (2, 3, 4)])])
    async with command_service() as served:
        await define_series(served.stub, "IBM.LAST", "bbg")
        counters = FeedCounters()
        sender = BulkIngestSender(served.stub, FEEDER, counters, SenderSettings())
        feed = Feed("bbg", BloombergProvider([LAST], session), "bbg")
        await FeedRunner(sender, counters=counters).load_history(feed, JANUARY)
    assert (counters.received, counters.accepted, counters.dropped) == (3, 3, 0)
    assert session.stopped == 1
