"""The feed configuration file: every provider's section, and the mistakes it refuses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from qis_feeds.adapters.bloomberg import BbgField
from qis_feeds.adapters.coingecko import CoinGeckoProvider, Plan
from qis_feeds.adapters.lseg import LsegProvider
from qis_feeds.adapters.rest_poll import RestPollProvider
from qis_feeds.adapters.synthetic import Faults, SyntheticProvider
from qis_feeds.adapters.websocket import WebSocketProvider
from qis_feeds.application.points import ValueKind
from qis_feeds.bootstrap import provider_of
from qis_feeds.config import (
    BloombergFeed,
    CoinGeckoFeed,
    ConfigError,
    DropFolderFeed,
    LsegFeed,
    SyntheticFeed,
    load,
)

EXAMPLE = """
[[feed]]
name = "btc"
provider = "coingecko"
source = "coingecko"
plan = "pro"
api_key_env = "TEST_CG_KEY"
[[feed.instrument]]
series = "BTC.USD"
coin = "bitcoin"
[[feed.instrument]]
series = "BTC.BAR"
coin = "bitcoin"
field = "ohlc"

[[feed]]
name = "demo"
provider = "synthetic"
source = "synthetic"
seed = 3
[feed.faults]
spike = 0.01
second_source = "synthetic-b"
[[feed.instrument]]
series = "DEMO.PX"

[[feed]]
name = "ticks"
provider = "websocket"
source = "ws"
url = "wss://example.invalid/stream"
time_unit = "rfc3339"
[[feed.instrument]]
series = "X.VOL"
symbol = "X"
kind = "volume"

[[feed]]
name = "quotes"
provider = "rest_poll"
source = "quotes"
url = "https://example.invalid/v1/quotes"
params = { symbols = "ACME", since = "{since_ms}" }
items_field = "data"
symbol_field = "ticker"
[[feed.instrument]]
series = "ACME.LAST"
symbol = "ACME"

[[feed]]
name = "files"
provider = "drop_folder"
source = "files"
path = "/srv/drop"
kind = "ohlc_bar"
"""


BLOOMBERG = """
[[feed]]
name = "bbg"
provider = "bloomberg"
source = "bloomberg"
host = "bpipe.internal"
port = 8196
tz = "America/New_York"
[[feed.instrument]]
series = "IBM.LAST"
security = "IBM US Equity"
field = "PX_LAST"
[[feed.instrument]]
series = "IBM.BAR"
security = "IBM US Equity"
field = "OHLC"
"""

LSEG = """
[[feed]]
name = "lseg"
provider = "lseg"
source = "lseg"
session = "desktop.workspace"
interval = "daily"
[[feed.instrument]]
series = "VOD.LAST"
ric = "VOD.L"
[[feed.instrument]]
series = "VOD.VOL"
ric = "VOD.L"
field = "ACVOL_UNS"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.toml"
    path.write_text(text)
    return path


def test_every_provider_is_built_from_its_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load(write(tmp_path, EXAMPLE))
    assert [f.provider for f in config.feed] == [
        "coingecko",
        "synthetic",
        "websocket",
        "rest_poll",
        "drop_folder",
    ]
    monkeypatch.setenv("TEST_CG_KEY", "k")
    coingecko, synthetic, ticks, quotes = (
        provider_of(f) for f in config.feed if not isinstance(f, DropFolderFeed)
    )
    assert isinstance(coingecko, CoinGeckoProvider)
    assert dict(coingecko.kinds) == {"BTC.USD": ValueKind.PRICE, "BTC.BAR": ValueKind.OHLC_BAR}
    assert isinstance(synthetic, SyntheticProvider)
    faults = next(f for f in config.feed if isinstance(f, SyntheticFeed)).faults
    assert faults == Faults(spike=0.01, second_source="synthetic-b")
    assert isinstance(ticks, WebSocketProvider)
    assert dict(ticks.kinds) == {"X.VOL": ValueKind.VOLUME}
    assert isinstance(quotes, RestPollProvider)
    assert dict(quotes.kinds) == {"ACME.LAST": ValueKind.PRICE}


def test_a_key_named_but_not_set_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_CG_KEY", raising=False)
    feed = load(write(tmp_path, EXAMPLE)).feed[0]
    assert isinstance(feed, CoinGeckoFeed)
    assert feed.plan is Plan.PRO
    with pytest.raises(ConfigError, match="set TEST_CG_KEY"):
        provider_of(feed)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[[feed]]\nname = "x"\nprovider = "reuters"\nsource = "s"\n', "reuters"),
        (BLOOMBERG.replace("security =", "securty ="), "securty"),
        (BLOOMBERG.replace('"PX_LAST"', '"LAST_PRICE"'), "field"),
        (BLOOMBERG.replace('"America/New_York"', '"Mars/Olympus"'), "not an IANA time zone"),
        (LSEG.replace("ric =", "rics ="), "rics"),
        (LSEG.replace('session = "desktop.workspace"', 'sesion = "x"'), "sesion"),
        (
            '[[feed]]\nname = "x"\nprovider = "synthetic"\nsource = "s"\nsed = 1\ninstrument = []\n',
            "sed",
        ),
        (
            '[[feed]]\nname = "x"\nprovider = "synthetic"\nsource = "s"\ninstrument = []\n'
            "[feed.faults]\nspik = 0.1\n",
            "spik",
        ),
        ("[[feed]\n", "feeds.toml"),
        (EXAMPLE + EXAMPLE, "unique"),
        ("# nothing yet\n", "nothing to run"),
        (
            '[[feed]]\nname = "x"\nprovider = "coingecko"\nsource = "s"\napi_key = "secret"\ninstrument = []\n',
            "api_key",
        ),
    ],
)
def test_mistakes_are_refused_with_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load(write(tmp_path, text))


def test_a_bloomberg_section_parses_and_without_blpapi_fails_at_start_naming_its_index(
    tmp_path: Path,
) -> None:
    (feed,) = load(write(tmp_path, BLOOMBERG)).feed
    assert isinstance(feed, BloombergFeed)
    assert (feed.host, feed.port, feed.tz) == ("bpipe.internal", 8196, "America/New_York")
    assert [(i.series, i.security, i.field) for i in feed.instrument] == [
        ("IBM.LAST", "IBM US Equity", BbgField.PX_LAST),
        ("IBM.BAR", "IBM US Equity", BbgField.OHLC),
    ]
    if importlib.util.find_spec("blpapi") is not None:
        pytest.skip("blpapi is installed: the provider would start")
    # Loading the file (and importing qis_feeds) needed no blpapi: the start does.
    with pytest.raises(ConfigError) as caught:
        provider_of(feed)
    message = str(caught.value)
    assert message.startswith("feed bbg: ")
    assert "https://blpapi.bloomberg.com/repository/releases/python/simple/" in message


def test_an_lseg_section_makes_the_provider(tmp_path: Path) -> None:
    (feed,) = load(write(tmp_path, LSEG)).feed
    assert isinstance(feed, LsegFeed)
    provider = provider_of(feed)
    assert isinstance(provider, LsegProvider)
    assert dict(provider.kinds) == {"VOD.LAST": ValueKind.PRICE, "VOD.VOL": ValueKind.VOLUME}


def test_without_lseg_data_the_start_fails_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lseg.data", None)  # what an install without it imports
    (feed,) = load(write(tmp_path, LSEG)).feed
    assert isinstance(feed, LsegFeed)
    with pytest.raises(ConfigError, match=r"^feed lseg: .*pip install 'qis-data\[lseg\]'"):
        provider_of(feed)
