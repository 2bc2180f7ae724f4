"""Composition root of the query process: the one place that reads config and wires adapters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc.aio
from qis.data.v1 import (
    command_service_pb2_grpc,
    query_service_pb2,
    topic_service_pb2,
    topic_service_pb2_grpc,
)
from qis_adapters.readstore.factory import open_read_store
from qis_adapters.readstore.port import ReadModelReader, ReadStore
from qis_runtime.auth import loopback_only, server_security
from qis_runtime.authorization import Authorization, authorization
from qis_runtime.identity import current_identity
from qis_runtime.server import QisServer, ServiceBinding
from qis_runtime.status import Check, read_store_check

from qis_query.adapters.command_client import Metadata, open_command_channel
from qis_query.adapters.denials import CommandServiceRecorder
from qis_query.adapters.groups import CommandServiceGroups
from qis_query.adapters.redis_cache import RedisCache
from qis_query.application.access import OpenAccess, PolicyAccess, ReadAccess, wall_clock_us
from qis_query.application.cache import AnswerCache, NoCache, QueryCache, SharedCache
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.paging import PageTokens
from qis_query.application.sources import SourceQueries
from qis_query.application.subscription import FeedSettings
from qis_query.application.topics import TopicGroups
from qis_query.entrypoints.flight import FlightTls, QueryFlight
from qis_query.entrypoints.grpc_service import QueryService, add_to_server
from qis_query.entrypoints.topics import TopicService
from qis_query.settings import QuerySettings

SERVICE_NAME = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name
TOPIC_SERVICE_NAME = topic_service_pb2.DESCRIPTOR.services_by_name["TopicService"].full_name
log = logging.getLogger("qis.query")


@dataclass
class QueryApp:
    handlers: QueryHandlers
    server: QisServer
    flight: QueryFlight | None
    """The Arrow Flight endpoint (None when QIS_FLIGHT_ADDRESS is empty); started and stopped
    with `server` (main.serve)."""
    opened_store: ReadStore | None  # the store `build` opened (an injected one is not its own)
    access: ReadAccess
    groups: TopicGroups
    command_channel: grpc.aio.Channel
    """Where refusals and the consumer groups' records are made (the command service)."""
    reader: ReadModelReader
    cache: AnswerCache
    shared_cache: RedisCache | None = None
    """The cache's L2 (None without QIS_CACHE_REDIS_URL)."""

    def health_checks(self) -> dict[str, Check]:
        """The components of the process's health report (qis.component.NAME)."""
        return {"read-store": lambda: read_store_check(self.reader), "cache": self.cache.report}

    async def close(self) -> None:
        await self.groups.close()
        await self.command_channel.close()
        if self.shared_cache is not None:
            await self.shared_cache.close()
        if self.opened_store is not None:
            await self.opened_store.close()


def answer_cache(
    reader: ReadModelReader, settings: QuerySettings, shared_cache: SharedCache | None
) -> AnswerCache:
    """The settings' L1 over `shared_cache`, the L2 (its owner closes it)."""
    if not settings.cache_max_bytes:
        return NoCache()
    return QueryCache(reader, settings.cache_limits(), shared_cache)


def page_tokens(settings: QuerySettings, clock_us: Callable[[], int] = wall_clock_us) -> PageTokens:
    """The page tokens under the settings' keys (a random one when unset: see
    QuerySettings.query_page_token_key), bound to the caller of the gRPC call being answered,
    issued on `clock_us` and living as long as the settings say."""
    keys = settings.page_token_keys()
    lifetime_us = settings.query_page_token_ttl_s * 1_000_000
    if keys is None:
        log.info("page tokens: under a key made at start-up (QIS_QUERY_PAGE_TOKEN_KEY unset)")
        return PageTokens.random(_caller, clock_us=clock_us, lifetime_us=lifetime_us)
    key, previous = keys
    return PageTokens(
        key, _caller, previous_keys=previous, clock_us=clock_us, lifetime_us=lifetime_us
    )


def _caller() -> str:
    """Who makes the gRPC call being answered (the identity interceptor's); "" outside one: a
    Flight export pages through QueryRange in the process, its tokens never leave it."""
    try:
        return current_identity().user_id
    except RuntimeError:
        return ""


def build_handlers(
    reader: ReadModelReader,
    settings: QuerySettings,
    read_position: ReadPosition | None = None,
    cache: AnswerCache | None = None,
    tokens: PageTokens | None = None,
) -> QueryHandlers:
    """`cache`: None, the settings' L1 alone. `tokens`: None, the settings' (page_tokens)."""
    feed = FeedSettings(settings.subscribe_poll_s, settings.subscribe_stall_timeout_s)
    read_position = read_position or ReadPosition(reader, settings.query_max_wait_s)
    if cache is None:
        cache = answer_cache(reader, settings, None)
    if tokens is None:
        tokens = page_tokens(settings)
    return QueryHandlers(reader, read_position, feed, settings.limits(), cache, tokens)


def _access(
    reader: ReadModelReader,
    read_position: ReadPosition,
    authz: Authorization,
    stub: command_service_pb2_grpc.CommandServiceAsyncStub,
    metadata: Metadata,
) -> ReadAccess:
    """The access checks the settings ask for, recording their refusals through `stub`."""
    if not authz.enforced:
        return OpenAccess()
    recorder = CommandServiceRecorder(stub, metadata)
    return PolicyAccess(reader, read_position, recorder, authz.admins)


async def build(
    settings: QuerySettings,
    reader: ReadModelReader | None = None,
    clock_us: Callable[[], int] = wall_clock_us,
) -> QueryApp:
    """`reader`: a read store to serve instead of the one the settings name (tests inject an
    in-memory or SQLite one); its owner closes it. `clock_us`: the time the tokens are issued
    and read back at."""
    # First: a refused configuration opens no store.
    security = server_security(settings)
    authz = authorization(settings)
    if settings.flight_address:
        loopback_only(("flight",), settings.flight_address, security)
    opened: ReadStore | None = None
    if reader is None:
        reader = opened = await open_read_store(
            settings.resolved_read_store_uri(), None, settings.mongo_database
        )
    # One view of the read model's checkpoint: what the queries wait for, and what the
    # policies are read again at.
    read_position = ReadPosition(reader, settings.query_max_wait_s)
    shared_cache = None
    if settings.cache_redis_url:
        shared_cache = RedisCache.from_url(settings.cache_redis_url, settings.cache_redis_timeout_s)
    cache = answer_cache(reader, settings, shared_cache)
    tokens = page_tokens(settings, clock_us)
    handlers = build_handlers(reader, settings, read_position, cache, tokens)
    token = settings.query_token.get_secret_value() if settings.query_token else None
    command_channel, metadata = open_command_channel(
        settings.command_address, settings.query_user, token
    )
    stub = command_service_pb2_grpc.CommandServiceStub(command_channel)
    access = _access(reader, read_position, authz, stub, metadata)
    groups = TopicGroups(reader, CommandServiceGroups(stub, metadata), settings.group_settings())
    log.info("authorisation: %s", authz.summary)
    binding = ServiceBinding(
        SERVICE_NAME,
        add_to_server,  # QueryRange's pages sent as built
        QueryService(
            handlers, access, SourceQueries(reader, read_position, settings.limits(), tokens)
        ),
    )
    topics = ServiceBinding(
        TOPIC_SERVICE_NAME,
        topic_service_pb2_grpc.add_TopicServiceServicer_to_server,
        TopicService(groups, access, tokens),
    )
    server = QisServer(
        settings.query_address,
        [binding, topics],
        settings.query_max_request_bytes,
        security=security,
        max_request_setting="QIS_QUERY_MAX_REQUEST_BYTES",
    )
    flight = None
    if settings.flight_address:
        # The same authenticator objects as the gRPC port: one JWKS cache, one policy.
        # Given the read model, price and volume exports stream its segments directly.
        flight = QueryFlight(
            handlers,
            access,
            settings.flight_address,
            security,
            _flight_tls(settings),
            segments=reader,
        )
    return QueryApp(
        handlers,
        server,
        flight,
        opened,
        access,
        groups,
        command_channel,
        reader,
        cache,
        shared_cache,
    )


def _flight_tls(settings: QuerySettings) -> FlightTls | None:
    """The gRPC port's TLS files (QIS_TLS_*, checked by server_security); None: plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return FlightTls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
