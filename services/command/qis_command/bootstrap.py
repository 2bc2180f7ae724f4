"""Composition root of the command process: the one place that reads config and wires adapters."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from qis.data.v1 import command_service_pb2, command_service_pb2_grpc
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.factory import open_event_store
from qis_adapters.eventstore.port import EventStore
from qis_runtime.auth import server_security
from qis_runtime.authorization import authorization
from qis_runtime.server import QisServer, ServiceBinding

from qis_command.application.access import AccessControl, OpenAccess, PolicyAccess
from qis_command.application.handlers import CommandHandlers
from qis_command.application.ports import TradingCalendar
from qis_command.application.repository import Repository
from qis_command.application.scheduler import Scheduler
from qis_command.entrypoints.grpc_service import CommandService
from qis_command.settings import CommandSettings

SERVICE_NAME = command_service_pb2.DESCRIPTOR.services_by_name["CommandService"].full_name
log = logging.getLogger("qis.command")


@dataclass
class CommandApp:
    store: EventStore
    handlers: CommandHandlers
    server: QisServer
    scheduler: Scheduler | None
    scheduler_store: EventStore | None

    async def close(self) -> None:
        if self.scheduler_store is not None:
            await self.scheduler_store.close()
        await self.store.close()


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def build_handlers(
    store: EventStore, settings: CommandSettings, calendar: TradingCalendar | None = None
) -> CommandHandlers:
    repository = Repository(store, EventCodec(), settings.aggregate_cache_points)
    return CommandHandlers(repository, calendar or ExchangeCalendars())


async def build(
    settings: CommandSettings,
    store: EventStore | None = None,
    calendar: TradingCalendar | None = None,
) -> CommandApp:
    """`store` and `calendar` replace the configured adapters (tests inject in-memory ones)."""
    # First: a refused configuration opens no store.
    security = server_security(settings)
    authz = authorization(settings)
    injected = store is not None
    if store is None:
        store = await open_event_store(settings.resolved_event_store_uri())
    handlers = build_handlers(store, settings, calendar)
    access: AccessControl = (
        PolicyAccess(store, authz.admins, services=authz.services)
        if authz.enforced
        else OpenAccess()
    )
    log.info("authorisation: %s", authz.summary)
    servicer = CommandService(handlers, wall_clock_us, settings.bulk_idle_timeout_s, access)
    binding = ServiceBinding(
        SERVICE_NAME, command_service_pb2_grpc.add_CommandServiceServicer_to_server, servicer
    )
    scheduler = scheduler_store = None
    if settings.scheduler_enabled:
        # Its own connection: a catch-up read must not queue behind the command appends. (An
        # injected store is the only one there is.)
        if not injected:
            scheduler_store = await open_event_store(settings.resolved_event_store_uri())
        scheduler = Scheduler(
            scheduler_store or store,
            handlers,
            wall_clock_us,
            settings.scheduler_tick_s,
            settings.metrics_grace_s,
            settings.metrics_quiet_s,
            checkpoint_s=settings.scheduler_checkpoint_s,
            checkpoint_events=settings.scheduler_checkpoint_events,
        )
    server = QisServer(
        settings.command_address,
        [binding],
        settings.command_max_request_bytes,
        security=security,
        max_request_setting="QIS_COMMAND_MAX_REQUEST_BYTES",
    )
    return CommandApp(store, handlers, server, scheduler, scheduler_store)
