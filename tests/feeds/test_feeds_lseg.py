"""LSEG: the library itself (lseg-data, installed) driven against a local stand-in for the
Workspace API proxy (tests/feeds/lseg_proxy.py: real HTTP and WebSocket servers answering the
library's actual requests); the mapping on DataFrames shaped like get_history's; the provider
through a recorded session, the stream's callbacks coming from another thread as the library's
do."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pytest_httpserver import HTTPServer
from qis_feeds.adapters.lseg import (
    Closeable,
    LsegError,
    LsegInstrument,
    LsegLibrary,
    LsegProvider,
    LsegStats,
    OnMessage,
    frame_values,
)
from qis_feeds.application.points import RawValue, ValueKind, normalise
from qis_feeds.application.ports import HistoricalRequest

from tests.feeds.lseg_proxy import Proxy, serve_proxy

LAST = LsegInstrument("VOD.LAST", "VOD.L", "TRDPRC_1")
VOLUME = LsegInstrument("VOD.VOL", "VOD.L", "ACVOL_UNS")
BP = LsegInstrument("BP.LAST", "BP.L", "TRDPRC_1")
DAYS = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04"], name="Date")
JANUARY = HistoricalRequest((), datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))


def one_instrument() -> pd.DataFrame:
    """get_history("VOD.L", fields=[...], interval="daily"): columns named by the RIC."""
    frame = pd.DataFrame(
        {
            "TRDPRC_1": [72.1, np.nan, 71.86],
            "OPEN_PRC": [71.5, 72.0, 71.9],
            "ACVOL_UNS": pd.array([41_234_567, 38_000_001, pd.NA], dtype="Int64"),
        },
        index=DAYS,
    )
    frame.columns.name = "VOD.L"
    return frame


def day(number: int) -> datetime:
    return datetime(2024, 1, number, tzinfo=UTC)


def test_one_instruments_frame_maps_columns_and_skips_empty_cells() -> None:
    stats = LsegStats()
    values = list(frame_values(one_instrument(), [LAST, VOLUME], stats))
    assert values == [
        RawValue("VOD.LAST", day(2), 72.1),
        RawValue("VOD.VOL", day(2), 41_234_567),
        RawValue("VOD.VOL", day(3), 38_000_001),
        RawValue("VOD.LAST", day(4), 71.86),
    ]
    assert stats.empty == 2
    points = [normalise(v, "lseg", LsegInstrument(v.series_id, "", "").kind) for v in values]
    assert [p.values[0] for p in points] == ["72.1", "41234567", "38000001", "71.86"]
    assert (LAST.kind, VOLUME.kind) == (ValueKind.PRICE, ValueKind.VOLUME)


def test_a_field_lseg_left_out_fails_rather_than_loading_nothing() -> None:
    with pytest.raises(LsegError, match=r"VOD\.L HIGH_1: not in LSEG's answer"):
        list(frame_values(one_instrument(), [LsegInstrument("X", "VOD.L", "HIGH_1")], LsegStats()))


class RecordedLseg:
    """Answers like lseg.data with recorded frames; streams call back from their own thread."""

    def __init__(
        self, frame: pd.DataFrame, updates: Sequence[tuple[str, Mapping[str, Any], str]] = ()
    ):
        """`updates`: ("refresh" or "update", fields, RIC), called back in this order."""
        self._frame = frame
        self._updates = updates
        self.asked: list[tuple[str, list[str], str]] = []
        self.closed_streams = 0

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def history(
        self, ric: str, fields: Sequence[str], interval: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        self.asked.append((ric, list(fields), interval))
        return self._frame

    def stream(
        self,
        rics: Sequence[str],
        fields: Sequence[str],
        on_refresh: OnMessage,
        on_update: OnMessage,
    ) -> Closeable:
        def run() -> None:
            for kind, message, ric in self._updates:
                (on_refresh if kind == "refresh" else on_update)(message, ric)

        threading.Thread(target=run).start()
        return _Stream(self)


class _Stream:
    def __init__(self, session: RecordedLseg) -> None:
        self._session = session

    def close(self) -> None:
        self._session.closed_streams += 1


async def test_history_goes_through_the_session_and_keeps_to_the_range() -> None:
    session = RecordedLseg(one_instrument())
    provider = LsegProvider([LAST, VOLUME], session)
    await provider.connect()
    request = HistoricalRequest(("VOD.LAST",), day(3), day(5))
    values = [value async for value in provider.request_historical(request)]
    assert values == [RawValue("VOD.LAST", day(4), 71.86)]
    assert session.asked == [("VOD.L", ["TRDPRC_1"], "daily")]


async def test_streamed_updates_become_values_timed_when_received() -> None:
    updates: list[tuple[str, Mapping[str, Any], str]] = [
        ("refresh", {"TRDPRC_1": 72.0, "BID": 71.9}, "VOD.L"),  # the current image: not sent
        ("update", {"BID": 72.08, "ASK": 72.12}, "VOD.L"),
        ("update", {"TRDPRC_1": None}, "VOD.L"),
        ("update", {"TRDPRC_1": 72.1}, "VOD.L"),
    ]
    session = RecordedLseg(one_instrument(), updates)
    provider = LsegProvider([LAST], session)
    before = datetime.now(UTC)
    stream = provider.subscribe("VOD.LAST")
    assert isinstance(stream, AsyncGenerator)
    value = await asyncio.wait_for(anext(stream), 5)
    await stream.aclose()
    assert session.closed_streams == 1
    assert (value.series_id, value.value) == ("VOD.LAST", 72.1)
    assert isinstance(value.time, datetime)
    assert before <= value.time <= datetime.now(UTC)
    assert (provider.stats.empty, provider.stats.refreshes) == (1, 1)


@pytest.fixture
def proxy(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Proxy]:
    """The local Workspace proxy, found by the library as it finds Workspace's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("DP_PROXY_BASE_URL", raising=False)  # CodeBook's: would bypass discovery
    served = Proxy()
    with serve_proxy(served, httpserver, tmp_path):
        yield served


def interday(ric: str, rows: list[list[Any]]) -> list[dict[str, Any]]:
    """An interday-summaries answer as LSEG documents it: newest row first."""
    return [
        {
            "universe": {"ric": ric},
            "interval": "P1D",
            "summaryTimestampLabel": "endPeriod",
            "adjustments": ["exchangeCorrection", "manualCorrection", "CCH", "CRE", "RTS", "RPO"],
            "defaultPricingField": "TRDPRC_1",
            "qos": {"timeliness": "delayed"},
            "headers": [
                {"name": "DATE", "type": "string"},
                {"name": "TRDPRC_1", "type": "number", "decimalChar": "."},
                {"name": "ACVOL_UNS", "type": "number", "decimalChar": "."},
            ],
            "data": rows,
        }
    ]


async def test_the_library_itself_loads_history_through_a_local_proxy(proxy: Proxy) -> None:
    proxy.history["VOD.L"] = interday(
        "VOD.L",
        [
            ["2024-01-04", 71.86, None],
            ["2024-01-03", None, 38000001],
            ["2024-01-02", 72.1, 41234567],
        ],
    )
    proxy.history["BP.L"] = interday("BP.L", [["2024-01-02", 480.35, 9000000]])
    provider = LsegProvider([LAST, VOLUME, BP], LsegLibrary())
    await provider.connect()
    try:
        values = [value async for value in provider.request_historical(JANUARY)]
    finally:
        await provider.close()
    assert [(v.series_id, v.time, v.value) for v in values] == [
        ("VOD.LAST", day(2), 72.1),
        ("VOD.VOL", day(2), 41_234_567),
        ("VOD.VOL", day(3), 38_000_001),
        ("VOD.LAST", day(4), 71.86),
        ("BP.LAST", day(2), 480.35),
    ]
    assert provider.stats.empty == 2
    vod, bp = proxy.asked
    assert (vod[0], bp[0]) == ("VOD.L", "BP.L")
    assert vod[1]["interval"] == "P1D"
    assert vod[1]["start"].startswith("2024-01-01T00:00:00")
    assert vod[1]["end"].startswith("2024-02-01T00:00:00")
    assert set(vod[1]["fields"].split(",")) == {"TRDPRC_1", "ACVOL_UNS", "DATE"}


async def test_an_error_on_one_ric_fails_the_load_with_lsegs_words(proxy: Proxy) -> None:
    proxy.history["VOD.L"] = interday("VOD.L", [["2024-01-02", 72.1, 41234567]])
    proxy.history["NOPE.L"] = [
        {
            "universe": {"ric": "NOPE.L"},
            "status": {
                "code": "TS.Interday.UserRequestError.70005",
                "message": "The universe does not exist.",
            },
        }
    ]
    nope = LsegInstrument("NOPE.LAST", "NOPE.L")
    provider = LsegProvider([LAST, nope], LsegLibrary())
    await provider.connect()
    try:
        with pytest.raises(Exception, match=r"UserRequestError\.70005.*universe does not exist"):
            _ = [value async for value in provider.request_historical(JANUARY)]
    finally:
        await provider.close()
    health = await provider.get_health()
    assert (health.errors, health.connected) == (1, False)


async def test_the_library_itself_streams_updates_and_counts_the_refresh(proxy: Proxy) -> None:
    proxy.refresh = {"TRDPRC_1": 72.0}
    proxy.updates = [{"TRDPRC_1": 72.1}, {"TRDPRC_1": 72.15}]
    provider = LsegProvider([LAST], LsegLibrary())
    await provider.connect()
    stream = provider.subscribe("VOD.LAST")
    assert isinstance(stream, AsyncGenerator)
    try:
        first = await asyncio.wait_for(anext(stream), 30)
        second = await asyncio.wait_for(anext(stream), 5)
    finally:
        await stream.aclose()
        await provider.close()
    assert [first.value, second.value] == [72.1, 72.15]  # not the refresh's 72.0
    assert provider.stats.refreshes == 1
    request = next(m for m in proxy.streamed if m.get("Domain") == "MarketPrice")
    assert (request["Key"]["Name"], request["View"]) == ("VOD.L", ["TRDPRC_1"])


async def test_a_session_that_cannot_open_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no proxy announced, none running
    provider = LsegProvider([LAST], LsegLibrary())
    with pytest.raises(LsegError, match="did not open"):
        await provider.connect()
