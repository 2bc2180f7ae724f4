"""Composition root of qis-feeds: the one place that reads the feed configuration, the
environment (keys named by it) and the settings, and wires providers, runner and sender."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

import grpc
import grpc.aio
from qis.data.v1 import command_service_pb2_grpc
from qis_cli.connection import channel_credentials, identity
from qis_cli.kinds import ValueKind as FileKind

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
from qis_feeds.adapters.http import RetryPolicy
from qis_feeds.adapters.iex_hist import IexHistProvider, IexInstrument
from qis_feeds.adapters.lseg import (
    LsegInstrument,
    LsegLibrary,
    LsegProvider,
    LsegSettings,
    LsegUnavailable,
)
from qis_feeds.adapters.rest_poll import RestPollProvider, RestPollSettings
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


def provider_of(config: ProviderConfig) -> DataProvider:
    if isinstance(config, CoinGeckoFeed):
        key = None if config.plan is Plan.KEYLESS else os.environ.get(config.api_key_env)
        if config.plan is not Plan.KEYLESS and not key:
            raise ConfigError(f"feed {config.name}: set {config.api_key_env} to the API key")
        return CoinGeckoProvider(
            [
                CoinInstrument(i.series, i.coin, i.vs_currency, i.field, i.granularity)
                for i in config.instrument
            ],
            CoinGeckoSettings(
                plan=config.plan,
                api_key=key,
                base_url=config.base_url,
                calls_per_minute=config.calls_per_minute,
                retry=RetryPolicy(max_attempts=config.max_attempts),
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
    if config.api_key_env is not None:
        key = os.environ.get(config.api_key_env)
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
            calls_per_minute=config.calls_per_minute,
            retry=RetryPolicy(max_attempts=config.max_attempts),
        ),
    )


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
    for feed in config.feed:
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
            feeds.append(Feed(feed.name, provider_of(feed), feed.source))
    return FeedsApp(feeds, folders, runner, channel, folder_channel)
