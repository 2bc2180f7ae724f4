"""Composition root of qis-feeds: the one place that reads the feed configuration, its sources'
configurations (from the query service, once), the environment (keys named by either) and the
settings, and wires providers, runner and sender."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

import grpc
import grpc.aio
from qis.data.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from qis_cli.connection import channel_credentials, identity
from qis_cli.kinds import ValueKind as FileKind

from qis_feeds.adapters import coingecko, rest_poll
from qis_feeds.adapters.bloomberg import (
    BbgInstrument,
    BloombergProvider,
    BloombergSettings,
    BloombergUnavailable,
    BlpapiSession,
)
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, CommandHealthReporter, SenderSettings
from qis_feeds.adapters.coingecko import (
    CoinGeckoProvider,
    CoinGeckoSettings,
    CoinInstrument,
    Plan,
)
from qis_feeds.adapters.drop_folder import DropFolder, DropFolderSettings
from qis_feeds.adapters.iex_hist import IexHistProvider, IexInstrument
from qis_feeds.adapters.lseg import (
    LsegInstrument,
    LsegLibrary,
    LsegProvider,
    LsegSettings,
    LsegUnavailable,
)
from qis_feeds.adapters.rest_poll import RestPollProvider, RestPollSettings
from qis_feeds.adapters.source_config import (
    UNKNOWN,
    CredentialsError,
    SourceSettings,
    calls_per_minute,
    credentials,
    read_source,
    retry_policy,
)
from qis_feeds.adapters.synthetic import SyntheticProvider, Walk
from qis_feeds.adapters.ticks import TickFields, TickInstrument
from qis_feeds.adapters.websocket import WebSocketProvider, WebSocketSettings
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.ports import DataProvider
from qis_feeds.application.runner import Feed, FeedRunner, RunnerSettings
from qis_feeds.config import (
    BloombergFeed,
    CoinGeckoFeed,
    ConfigError,
    DropFolderFeed,
    FeedsConfig,
    IexHistFeed,
    LsegFeed,
    ProviderConfig,
    SyntheticFeed,
    WebSocketFeed,
)
from qis_feeds.settings import FeedsSettings

log = logging.getLogger("qis.feeds")


@dataclass
class FeedsApp:
    feeds: list[Feed]
    folders: list[tuple[str, DropFolder]]
    runner: FeedRunner
    channel: grpc.aio.Channel
    folder_channel: grpc.Channel | None

    async def close(self) -> None:
        await self.channel.close()
        if self.folder_channel is not None:
            self.folder_channel.close()


def _channel(address: str) -> grpc.aio.Channel:
    credentials = channel_credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, credentials)


def _sync_channel(address: str) -> grpc.Channel:
    credentials = channel_credentials()
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials)


def provider_of(config: ProviderConfig, source: SourceSettings = UNKNOWN) -> DataProvider:
    """The feed's provider, with what its configuration leaves unset taken from its source's
    (`source`, see qis_feeds.adapters.source_config), then from the defaults. Rate limits and
    retries apply to the providers that call a vendor over HTTP (CoinGecko, REST polling)."""
    if isinstance(config, CoinGeckoFeed):
        key = None
        if config.plan is not Plan.KEYLESS:
            key = _secret(config.name, config.api_key_env, source, coingecko.KEY_ENV)
            if not key:
                where = config.api_key_env or source.credentials_ref or coingecko.KEY_ENV
                raise ConfigError(f"feed {config.name}: set {where} to the API key")
        return CoinGeckoProvider(
            [
                CoinInstrument(i.series, i.coin, i.vs_currency, i.field, i.granularity)
                for i in config.instrument
            ],
            CoinGeckoSettings(
                plan=config.plan,
                api_key=key,
                base_url=config.base_url,
                calls_per_minute=calls_per_minute(
                    config.calls_per_minute, source, coingecko.CALLS_PER_MINUTE
                ),
                retry=retry_policy(config.max_attempts, source),
                poll_s=config.poll_s,
            ),
        )
    if isinstance(config, SyntheticFeed):
        return SyntheticProvider(
            [Walk(i.series, i.start_price, i.volatility, i.decimals) for i in config.instrument],
            random.Random(config.seed),
            step=timedelta(seconds=config.step_s),
            faults=config.faults,
            pace_s=config.pace_s,
        )
    if isinstance(config, IexHistFeed):
        return IexHistProvider(
            [IexInstrument(i.series, i.symbol, i.field) for i in config.instrument], config.files
        )
    if isinstance(config, BloombergFeed | LsegFeed):
        return _vendor_library_provider(config)
    instruments = [TickInstrument(i.series, i.symbol, i.kind) for i in config.instrument]
    fields = TickFields(
        config.symbol_field, config.time_field, config.time_unit, config.value_field
    )
    if isinstance(config, WebSocketFeed):
        return WebSocketProvider(
            instruments, WebSocketSettings(config.url, config.subscribe, fields)
        )
    headers = {}
    if config.api_key_env is not None or source.credentials_ref:
        key = _secret(config.name, config.api_key_env, source, None)
        if not key:
            raise ConfigError(f"feed {config.name}: set {config.api_key_env} to the API key")
        headers[config.api_key_header] = key
    return RestPollProvider(
        instruments,
        RestPollSettings(
            url=config.url,
            params=config.params,
            items_field=config.items_field,
            fields=fields,
            poll_s=config.poll_s,
            headers=headers,
            calls_per_minute=calls_per_minute(
                config.calls_per_minute, source, rest_poll.CALLS_PER_MINUTE
            ),
            retry=retry_policy(config.max_attempts, source),
        ),
    )


def _secret(
    feed: str, explicit_env: str | None, source: SourceSettings, default: str | None
) -> str:
    try:
        return credentials(explicit_env, source, default)
    except CredentialsError as error:
        raise ConfigError(f"feed {feed}: {error}") from None


def _vendor_library_provider(config: BloombergFeed | LsegFeed) -> DataProvider:
    """Bloomberg and LSEG come through their vendors' libraries, imported here, when the feed is
    built: a missing one fails the start with how to install it, never an import of qis_feeds."""
    try:
        if isinstance(config, BloombergFeed):
            return BloombergProvider(
                [BbgInstrument(i.series, i.security, i.field) for i in config.instrument],
                BlpapiSession(config.host, config.port),
                BloombergSettings(time_field=config.time_field, tz=config.tz),
            )
        return LsegProvider(
            [LsegInstrument(i.series, i.ric, i.field) for i in config.instrument],
            LsegLibrary(config.session),
            LsegSettings(interval=config.interval),
        )
    except (BloombergUnavailable, LsegUnavailable) as error:
        raise ConfigError(f"feed {config.name}: {error}") from None


async def build(settings: FeedsSettings, config: FeedsConfig) -> FeedsApp:
    token = settings.feeds_token.get_secret_value() if settings.feeds_token else None
    metadata = identity(settings.feeds_user, token)
    channel = _channel(settings.command_address)
    counters = FeedCounters()
    sender = BulkIngestSender(
        command_service_pb2_grpc.CommandServiceStub(channel),
        metadata,
        counters,
        SenderSettings(window=settings.feeds_in_flight),
    )
    runner = FeedRunner(
        sender,
        RunnerSettings(
            batch_points=settings.feeds_batch_points,
            batch_delay_s=settings.feeds_batch_delay_s,
            queue_points=settings.feeds_queue_points,
        ),
        counters,
        reporter=CommandHealthReporter(
            command_service_pb2_grpc.CommandServiceStub(channel), metadata
        ),
        health_interval_s=settings.feeds_health_report_s,
    )
    feeds: list[Feed] = []
    folders: list[tuple[str, DropFolder]] = []
    folder_channel = None
    sources = await _read_sources(settings, metadata, {feed.source for feed in config.feed})
    for feed in config.feed:
        if not sources[feed.source].enabled:
            counters.feeds_disabled += 1
            log.warning("feed %s: not run: sources/%s is disabled", feed.name, feed.source)
            continue
        if isinstance(feed, DropFolderFeed):
            # The code of `qis ingest`, which is synchronous: its own channel, used in a thread.
            folder_channel = folder_channel or _sync_channel(settings.command_address)
            folder = DropFolder(
                DropFolderSettings(
                    feed.path,
                    feed.source,
                    FileKind(feed.kind.value),
                    feed.series,
                    feed.columns,
                    feed.settle_s,
                ),
                command_service_pb2_grpc.CommandServiceStub(folder_channel),
                metadata,
            )
            folders.append((feed.name, folder))
        else:
            feeds.append(Feed(feed.name, provider_of(feed, sources[feed.source]), feed.source))
    return FeedsApp(feeds, folders, runner, channel, folder_channel)


async def _read_sources(
    settings: FeedsSettings, metadata: tuple[tuple[str, str], ...], source_ids: set[str]
) -> dict[str, SourceSettings]:
    """Each source's configuration, read once at start from the query service."""
    async with _channel(settings.query_address) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        return {s: await read_source(stub, metadata, s) for s in sorted(source_ids)}
