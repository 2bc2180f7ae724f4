"""The feed configuration file (TOML): which providers run, for which instruments, into which
series. docs/providers.md has a complete example. Secrets are never in it: a provider's key is
named by the environment variable that holds it (`api_key_env`), or by the source's
credentials reference. Settings left out here may come from the source's configuration
(qis_feeds.adapters.source_config)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from qis_feeds.adapters.bloomberg import BbgField
from qis_feeds.adapters.coingecko import Field as CoinField
from qis_feeds.adapters.coingecko import Granularity, Plan
from qis_feeds.adapters.iex_hist import IexField
from qis_feeds.adapters.synthetic import Faults
from qis_feeds.adapters.ticks import TimeUnit
from qis_feeds.application.points import ValueKind


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CoinGeckoInstrument(_Strict):
    series: str
    coin: str
    vs_currency: str = "usd"
    field: CoinField = CoinField.PRICE
    granularity: Granularity = Granularity.HOURLY


class CoinGeckoFeed(_Strict):
    provider: Literal["coingecko"]
    name: str
    source: str
    plan: Plan = Plan.DEMO
    # Unset (None): the source's configuration says, else the default (qis_feeds.bootstrap).
    api_key_env: str | None = None
    base_url: str | None = None
    calls_per_minute: PositiveFloat | None = None
    max_attempts: PositiveInt | None = None
    poll_s: PositiveFloat = 300.0
    instrument: list[CoinGeckoInstrument]


class SyntheticInstrument(_Strict):
    series: str
    start_price: PositiveFloat = 100.0
    volatility: PositiveFloat = 0.001
    decimals: Annotated[int, Field(ge=0, le=18)] = 4


class SyntheticFeed(_Strict):
    provider: Literal["synthetic"]
    name: str
    source: str
    seed: int = 1
    step_s: PositiveFloat = 1.0
    pace_s: float | None = None
    # The provider's own value, validated field by field (unknown names refused).
    faults: Faults = Faults()
    instrument: list[SyntheticInstrument]


class TickInstrumentConfig(_Strict):
    series: str
    symbol: str
    kind: Literal[ValueKind.PRICE, ValueKind.VOLUME] = ValueKind.PRICE


class _TickFeed(_Strict):
    name: str
    source: str
    url: str
    symbol_field: str = "s"
    time_field: str = "t"
    time_unit: TimeUnit = TimeUnit.MILLISECONDS
    value_field: str = "p"
    instrument: list[TickInstrumentConfig]


class WebSocketFeed(_TickFeed):
    provider: Literal["websocket"]
    subscribe: str = ""


class RestPollFeed(_TickFeed):
    provider: Literal["rest_poll"]
    params: dict[str, str] = {}
    items_field: str = ""
    poll_s: PositiveFloat = 5.0
    api_key_env: str | None = None
    api_key_header: str = "x-api-key"
    calls_per_minute: PositiveFloat | None = None
    max_attempts: PositiveInt | None = None


class DropFolderFeed(_Strict):
    provider: Literal["drop_folder"]
    name: str
    source: str
    path: Path
    kind: ValueKind = ValueKind.PRICE
    series: str | None = None
    columns: str = ""
    settle_s: PositiveFloat = 2.0


class IexHistInstrument(_Strict):
    series: str
    symbol: str
    field: IexField = IexField.PRICE


class IexHistFeed(_Strict):
    provider: Literal["iex_hist"]
    name: str
    source: str
    files: Annotated[list[Path], Field(min_length=1)]
    instrument: list[IexHistInstrument]


class BloombergInstrument(_Strict):
    series: str
    security: str
    field: BbgField = BbgField.PX_LAST


class BloombergFeed(_Strict):
    provider: Literal["bloomberg"]
    name: str
    source: str
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65_535)] = 8194
    time_field: str = "EVENT_TIME"
    tz: str = "UTC"
    instrument: list[BloombergInstrument]

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{tz!r} is not an IANA time zone") from None
        return tz


class LsegInstrumentConfig(_Strict):
    series: str
    ric: str
    field: str = "TRDPRC_1"


class LsegFeed(_Strict):
    provider: Literal["lseg"]
    name: str
    source: str
    session: str | None = None
    interval: str = "daily"
    instrument: list[LsegInstrumentConfig]


ProviderConfig = (
    CoinGeckoFeed
    | SyntheticFeed
    | WebSocketFeed
    | RestPollFeed
    | IexHistFeed
    | BloombergFeed
    | LsegFeed
)
"""Every feed a provider runs (drop folders run `qis ingest`'s code instead)."""
FeedConfig = Annotated[ProviderConfig | DropFolderFeed, Field(discriminator="provider")]


class FeedsConfig(_Strict):
    feed: list[FeedConfig] = []


class ConfigError(ValueError):
    pass


def load(path: Path) -> FeedsConfig:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    try:
        config = FeedsConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: {error}") from None
    if not config.feed:
        raise ConfigError(f"{path}: no [[feed]] in it: nothing to run")
    names = [feed.name for feed in config.feed]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: feed names must be unique ({', '.join(names)})")
    return config
