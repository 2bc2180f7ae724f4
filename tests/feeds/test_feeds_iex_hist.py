"""IEX HIST files: captures the tests build from the TOPS 1.6 and IEX-TP 1.25 specifications
(tests/feeds/iex_capture.py), read by the provider into points, and loaded through the real
command service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from qis.data.v1 import values_pb2
from qis_cli.main import main
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, SenderSettings
from qis_feeds.adapters.iex_hist import IexField, IexHistProvider, IexInstrument
from qis_feeds.adapters.pcap import CaptureError
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import Point, RawValue, ValueKind, normalise
from qis_feeds.application.ports import HistoricalRequest
from qis_feeds.application.runner import Feed, FeedRunner, ProviderFailed
from qis_feeds.bootstrap import provider_of
from qis_feeds.config import ConfigError, load

from tests.feeds import iex_capture as cap
from tests.feeds.feeds_support import FEEDER, command_service, define_series

T0 = 1_717_594_200_000_000_000  # 2024-06-05T13:30:00Z in nanoseconds
ALL = HistoricalRequest((), datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC))
AAPL = [
    IexInstrument("AAPL.LAST", "AAPL", IexField.PRICE),
    IexInstrument("AAPL.VOL", "AAPL", IexField.VOLUME),
    IexInstrument("AAPL.BID", "AAPL", IexField.BID),
    IexInstrument("AAPL.ASK", "AAPL", IexField.ASK),
]


def day() -> list[bytes]:
    """A small trading day of two symbols, AAPL and MSFT, in three segments."""
    return [
        cap.segment(
            [
                cap.system_event(T0),
                cap.quote(T0 + 1_000, "AAPL", 100, 1_923_400, 1_923_700, 200),
                cap.quote(T0 + 1_500, "MSFT", 100, 4_150_000, 4_151_000, 100),
                # Two prints in one microsecond (different nanoseconds): one point each series.
                cap.trade(T0 + 2_000_100, "AAPL", 50, 1_923_500, 101),
                cap.trade(T0 + 2_000_900, "AAPL", 25, 1_923_600, 102),
            ],
            first_sequence=1,
        ),
        cap.segment(
            [
                cap.trade(T0 + 3_000_000, "MSFT", 10, 4_150_500, 103),
                # Only the ask moved: no bid point for an unchanged bid.
                cap.quote(T0 + 4_000_000, "AAPL", 300, 1_923_400, 1_923_800, 200),
                cap.trade(T0 + 5_000_000, "AAPL", 100, 1_923_800, 104),
            ],
            first_sequence=6,
        ),
        cap.segment(
            [
                # The bid side empties (price 0), then comes back at the old price: a point.
                cap.quote(T0 + 6_000_000, "AAPL", 0, 0, 1_923_800, 200),
                cap.quote(T0 + 7_000_000, "AAPL", 100, 1_923_400, 1_923_800, 200),
            ],
            first_sequence=9,
        ),
    ]


def write(tmp_path: Path, data: bytes, name: str = "20240605_IEXTP1_TOPS1.6.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def read(provider: IexHistProvider, request: HistoricalRequest = ALL) -> list[Point]:
    await provider.connect()
    values: list[RawValue] = [value async for value in provider.request_historical(request)]
    return [normalise(value, "iex", provider.kinds[value.series_id]) for value in values]


def by_series(points: list[Point]) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    for point in points:
        found.setdefault(point.series_id, []).append((point.snap_us, point.values[0]))
    return found


US0 = T0 // 1000


async def test_trades_and_quotes_of_the_mapped_symbol_become_exact_points(tmp_path: Path) -> None:
    provider = IexHistProvider(AAPL, [write(tmp_path, cap.pcap([cap.udp_frame(s) for s in day()]))])
    found = by_series(await read(provider))
    assert found == {
        "AAPL.LAST": [(US0 + 2_000, "192.3600"), (US0 + 5_000, "192.3800")],
        "AAPL.VOL": [(US0 + 2_000, "75"), (US0 + 5_000, "100")],
        "AAPL.BID": [(US0 + 1, "192.3400"), (US0 + 7_000, "192.3400")],
        "AAPL.ASK": [(US0 + 1, "192.3700"), (US0 + 4_000, "192.3800")],
    }
    stats = provider.stats
    assert (stats.tops.trades, stats.tops.quotes, stats.tops.other["S"]) == (4, 5, 1)
    assert stats.unmapped == 2  # MSFT's quote and trade
    # The empty bid; unchanged: the bid at +4 ms, the ask at +6 ms and at +7 ms.
    assert (stats.no_quote, stats.unchanged) == (1, 3)
    assert stats.capture.packets == stats.capture.udp == 3


async def test_pcapng_with_vlan_tags_and_gzip_reads_the_same(tmp_path: Path) -> None:
    classic = IexHistProvider(AAPL, [write(tmp_path, cap.pcap([cap.udp_frame(s) for s in day()]))])
    frames = [cap.udp_frame(s, vlan=7) for s in day()]
    packed = write(tmp_path, cap.gzipped(cap.pcapng(frames)), "day.pcap.gz")
    assert await read(IexHistProvider(AAPL, [packed])) == await read(classic)


async def test_a_broken_trade_is_never_sent(tmp_path: Path) -> None:
    segments = [
        *day(),
        # Hours later, IEX breaks the second print of the first microsecond.
        cap.segment([cap.trade_break(T0 + 9_000_000, "AAPL", 25, 1_923_600, 102)], 11),
    ]
    provider = IexHistProvider(
        AAPL[:2], [write(tmp_path, cap.pcap([cap.udp_frame(s) for s in segments]))]
    )
    found = by_series(await read(provider))
    assert found["AAPL.LAST"] == [(US0 + 2_000, "192.3500"), (US0 + 5_000, "192.3800")]
    assert found["AAPL.VOL"] == [(US0 + 2_000, "50"), (US0 + 5_000, "100")]
    assert (provider.stats.broken, provider.stats.tops.breaks) == (1, 1)


async def test_an_unknown_message_type_is_skipped_and_counted(tmp_path: Path) -> None:
    odd = b"z" + bytes(20)  # a type the specification does not name, of its own length
    segment = cap.segment([odd, cap.trade(T0, "AAPL", 5, 1_000_000, 1)], first_sequence=1)
    provider = IexHistProvider(AAPL[:1], [write(tmp_path, cap.pcap([cap.udp_frame(segment)]))])
    assert by_series(await read(provider)) == {"AAPL.LAST": [(US0, "100.0000")]}
    assert dict(provider.stats.tops.unknown) == {ord("z"): 1}


async def test_a_truncated_file_fails_naming_the_offset_and_sends_nothing(tmp_path: Path) -> None:
    whole = cap.pcap([cap.udp_frame(s) for s in day()])
    provider = IexHistProvider(AAPL, [write(tmp_path, whole[:-30])])
    await provider.connect()
    received: list[RawValue] = []

    async def consume() -> None:
        async for value in provider.request_historical(ALL):
            received.append(value)

    with pytest.raises(CaptureError) as caught:
        await consume()
    third_packet = len(cap.pcap([cap.udp_frame(s) for s in day()[:2]]))
    assert f"truncated at byte {third_packet + 16}" in str(caught.value)
    assert "20240605_IEXTP1_TOPS1.6.pcap" in str(caught.value)
    assert received == []  # the first two packets were whole, and still nothing was sent
    health = await provider.get_health()
    assert (health.connected, health.errors) == (False, 1)


async def test_a_gzip_file_cut_short_fails_too(tmp_path: Path) -> None:
    packed = cap.gzipped(cap.pcap([cap.udp_frame(s) for s in day()]))
    provider = IexHistProvider(AAPL, [write(tmp_path, packed[: len(packed) // 2], "d.pcap.gz")])
    with pytest.raises(CaptureError, match="truncated at byte"):
        await read(provider)


async def test_a_packet_cut_by_the_snap_length_fails(tmp_path: Path) -> None:
    data = cap.pcap([cap.udp_frame(s) for s in day()], cut_to=80)
    with pytest.raises(CaptureError, match="snap length"):
        await read(IexHistProvider(AAPL, [write(tmp_path, data)]))


async def test_a_packet_captured_twice_counts_once_and_a_gap_is_counted(tmp_path: Path) -> None:
    first, second, third = day()
    frames = [cap.udp_frame(s) for s in (first, first, second, third)]
    frames.append(cap.udp_frame(cap.segment([cap.trade(T0 + 8_000_000, "AAPL", 1, 1, 9)], 20)))
    provider = IexHistProvider(AAPL[1:2], [write(tmp_path, cap.pcap(frames))])
    found = by_series(await read(provider))
    assert [volume for _, volume in found["AAPL.VOL"]] == ["75", "100", "1"]
    assert (provider.stats.tops.duplicates, provider.stats.tops.missing) == (5, 9)


async def test_only_the_requested_range_is_sent(tmp_path: Path) -> None:
    provider = IexHistProvider(
        AAPL[:1], [write(tmp_path, cap.pcap([cap.udp_frame(s) for s in day()]))]
    )
    start = datetime.fromtimestamp((US0 + 3_000) / 1e6, UTC)
    request = HistoricalRequest(("AAPL.LAST",), start, datetime(2024, 7, 1, tzinfo=UTC))
    assert by_series(await read(provider, request)) == {"AAPL.LAST": [(US0 + 5_000, "192.3800")]}
    assert provider.stats.outside == 1


def test_instruments_must_name_distinct_series(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="series of its own"):
        IexHistProvider([AAPL[0], AAPL[0]], [tmp_path / "x.pcap"])


async def test_a_load_lands_once_through_the_command_service(tmp_path: Path) -> None:
    path = write(tmp_path, cap.gzipped(cap.pcap([cap.udp_frame(s) for s in day()])), "d.pcap.gz")
    async with command_service() as served:
        await define_series(served.stub, "AAPL.LAST", "iex")
        for attempt in (1, 2):
            counters = FeedCounters()
            sender = BulkIngestSender(served.stub, FEEDER, counters, SenderSettings())
            runner = FeedRunner(sender, counters=counters)
            feed = Feed("iex", IexHistProvider(AAPL[:1], [path]), "iex")
            await runner.load_history(feed, ALL)
            assert (counters.received, counters.sent) == (2, 2)
            assert counters.accepted == (2 if attempt == 1 else 0)


async def test_a_damaged_file_fails_the_load_before_anything_is_sent(tmp_path: Path) -> None:
    whole = cap.pcap([cap.udp_frame(s) for s in day()])
    async with command_service() as served:
        await define_series(served.stub, "AAPL.LAST", "iex")
        counters = FeedCounters()
        sender = BulkIngestSender(served.stub, FEEDER, counters, SenderSettings())
        feed = Feed("iex", IexHistProvider(AAPL[:1], [write(tmp_path, whole[:-5])]), "iex")
        with pytest.raises(ProviderFailed, match="truncated at byte"):
            await FeedRunner(sender, counters=counters).load_history(feed, ALL)
        assert counters.received == counters.sent == 0


def test_a_feeds_toml_section_makes_the_provider(tmp_path: Path) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text(
        '[[feed]]\nname = "iex"\nprovider = "iex_hist"\nsource = "iex"\n'
        'files = ["/data/20240605_IEXTP1_TOPS1.6.pcap.gz"]\n'
        '[[feed.instrument]]\nseries = "AAPL.BID"\nsymbol = "AAPL"\nfield = "bid"\n'
    )
    (feed,) = load(config).feed
    provider = provider_of(feed)  # type: ignore[arg-type]
    assert isinstance(provider, IexHistProvider)
    assert dict(provider.kinds) == {"AAPL.BID": ValueKind.PRICE}
    config.write_text(config.read_text().replace('field = "bid"', 'field = "mid"'))
    with pytest.raises(ConfigError, match="field"):
        load(config)


async def test_qis_feed_iex_hist_prints_its_counts_and_a_second_run_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segments = [
        *day(),
        cap.segment([cap.trade_break(T0 + 9_000_000, "AAPL", 25, 1_923_600, 102)], 11),
    ]
    path = write(tmp_path, cap.gzipped(cap.pcap([cap.udp_frame(s) for s in segments])), "d.gz")
    async with command_service() as served:
        await define_series(served.stub, "AAPL.VOL", "iex", values_pb2.DATA_TYPE_VOLUME)
        load = [
            "feed",
            "iex-hist",
            f"--file={path}",
            "--symbol=AAPL",
            "--field=volume",
            "--series=AAPL.VOL",
            "--source=iex",
            f"--address={served.address}",
            "--user=feeder",
        ]
        outputs = []
        for _ in range(2):
            capsys.readouterr()
            # `qis` runs its own event loop: in a thread, beside the service's loop.
            assert await asyncio.to_thread(main, load) == 0
            outputs.append(capsys.readouterr().out)
    first, again = outputs
    assert "iex-hist -> series/AAPL.VOL from sources/iex" in first
    # Two volume points (the broken print left out of the first microsecond's sum).
    assert "received 2, sent 2 (stored 2, already stored 0," in first
    assert "received 2, sent 2 (stored 0, already stored 2," in again
    assert "trades 4, trade breaks 1, quotes 5," in first
    assert "not mapped 1, broken trades left out 1," in first  # MSFT's trade
    assert "dropped 0" in first
    assert "dropped 0" in again
