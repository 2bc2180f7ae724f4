"""The feed configuration file: every provider's section, and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from qis_feeds.adapters.coingecko import CoinGeckoProvider, Plan
from qis_feeds.adapters.rest_poll import RestPollProvider
from qis_feeds.adapters.synthetic import Faults, SyntheticProvider
from qis_feeds.adapters.websocket import WebSocketProvider
from qis_feeds.application.points import ValueKind
from qis_feeds.bootstrap import provider_of
from qis_feeds.config import CoinGeckoFeed, ConfigError, DropFolderFeed, SyntheticFeed, load

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
        ('[[feed]]\nname = "x"\nprovider = "bloomberg"\nsource = "s"\n', "bloomberg"),
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
