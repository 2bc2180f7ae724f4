"""Composition root of the query process: the one place that reads config and wires adapters."""

from __future__ import annotations

from dataclasses import dataclass

from qis.data.v1 import query_service_pb2, query_service_pb2_grpc
from qis_adapters.readstore.factory import open_read_store
from qis_adapters.readstore.port import ReadModelReader, ReadStore
from qis_runtime.auth import loopback_only, server_security
from qis_runtime.server import QisServer, ServiceBinding

from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers
from qis_query.application.subscription import FeedSettings
from qis_query.entrypoints.flight import FlightTls, QueryFlight
from qis_query.entrypoints.grpc_service import QueryService
from qis_query.settings import QuerySettings

SERVICE_NAME = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


@dataclass
class QueryApp:
    handlers: QueryHandlers
    server: QisServer
    flight: QueryFlight | None
    """The Arrow Flight endpoint (None when QIS_FLIGHT_ADDRESS is empty); started and stopped
    with `server` (main.serve)."""
    opened_store: ReadStore | None  # the store `build` opened (an injected one is not its own)

    async def close(self) -> None:
        if self.opened_store is not None:
            await self.opened_store.close()


def build_handlers(reader: ReadModelReader, settings: QuerySettings) -> QueryHandlers:
    feed = FeedSettings(settings.subscribe_poll_s, settings.subscribe_stall_timeout_s)
    read_position = ReadPosition(reader, settings.query_max_wait_s)
    return QueryHandlers(reader, read_position, feed, settings.limits())


async def build(settings: QuerySettings, reader: ReadModelReader | None = None) -> QueryApp:
    """`reader`: a read store to serve instead of the one the settings name (tests inject an
    in-memory or SQLite one); its owner closes it."""
    security = server_security(settings)  # first: a refused configuration opens no store
    if settings.flight_address:
        loopback_only(("flight",), settings.flight_address, security)
    opened: ReadStore | None = None
    if reader is None:
        reader = opened = await open_read_store(
            settings.resolved_read_store_uri(), None, settings.mongo_database
        )
    handlers = build_handlers(reader, settings)
    binding = ServiceBinding(
        SERVICE_NAME,
        query_service_pb2_grpc.add_QueryServiceServicer_to_server,
        QueryService(handlers),
    )
    server = QisServer(
        settings.query_address,
        [binding],
        settings.query_max_request_bytes,
        security=security,
    )
    flight = None
    if settings.flight_address:
        # The same authenticator objects as the gRPC port: one JWKS cache, one policy.
        flight = QueryFlight(handlers, settings.flight_address, security, _flight_tls(settings))
    return QueryApp(handlers, server, flight, opened)


def _flight_tls(settings: QuerySettings) -> FlightTls | None:
    """The gRPC port's TLS files (QIS_TLS_*, checked by server_security); None: plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return FlightTls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
