"""Composition root of the projector process."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from qis_adapters.eventstore.factory import open_event_store
from qis_adapters.eventstore.port import EventStore
from qis_adapters.readstore.factory import AdministeredReadStore, open_read_store
from qis_runtime.auth import server_security
from qis_runtime.server import QisServer
from qis_runtime.telemetry import active

from qis_projector.application.metrics import SCOPE, ProjectorMetrics
from qis_projector.application.projector import Projector, ProjectorLimits
from qis_projector.settings import ProjectorSettings

FIRST_GENERATION = "g1"
log = logging.getLogger("qis.projector")


@dataclass
class ProjectorApp:
    events: EventStore
    store: AdministeredReadStore
    generation: str
    projector: Projector

    async def close(self) -> None:
        await self.store.close()
        await self.events.close()


def health_server(settings: ProjectorSettings) -> QisServer:
    """The projector's health endpoint, over TLS when configured like the other services (its
    callers are probes: health answers anonymously, whatever QIS_AUTH says)."""
    return QisServer(settings.projector_address, [], security=server_security(settings))


@dataclass(frozen=True, slots=True)
class ActiveGeneration:
    name: str
    format: int  # the read-model format it was built with (port.READ_MODEL_FORMAT)


async def active_or_first_generation(settings: ProjectorSettings) -> ActiveGeneration:
    """The generation queries read; before there is one, FIRST_GENERATION, created (of the
    current format) unless it exists, and activated."""
    admin = await open_read_store(settings.resolved_read_store_uri(), None, settings.mongo_database)
    try:
        active = await admin.active_generation()
        if active is None:
            active = FIRST_GENERATION
            if active not in await admin.list_generations():
                writer = await open_read_store(
                    settings.resolved_read_store_uri(), active, settings.mongo_database
                )
                await writer.close()
            await admin.set_active_generation(active)
        return ActiveGeneration(active, await admin.generation_format(active))
    finally:
        await admin.close()


async def next_generation(settings: ProjectorSettings) -> str:
    admin = await open_read_store(settings.resolved_read_store_uri(), None, settings.mongo_database)
    try:
        numbers = [
            int(m.group(1))
            for g in await admin.list_generations()
            if (m := re.fullmatch(r"g(\d+)", g))
        ]
        return f"g{max(numbers, default=0) + 1}"
    finally:
        await admin.close()


async def discard_generation(settings: ProjectorSettings, generation: str) -> None:
    """Drop a generation that was never made active (an unfinished rebuild); a failure is only
    logged: the generation is then left for an operator to drop."""
    try:
        admin = await open_read_store(
            settings.resolved_read_store_uri(), None, settings.mongo_database
        )
        try:
            await admin.drop_generation(generation)
        finally:
            await admin.close()
    except Exception as error:
        log.warning("could not drop the unfinished generation %s: %s", generation, error)


async def build(settings: ProjectorSettings, generation: str) -> ProjectorApp:
    events = await open_event_store(settings.resolved_event_store_uri())
    try:
        store = await open_read_store(
            settings.resolved_read_store_uri(), generation, settings.mongo_database
        )
    except BaseException:
        # The caller retries a read store that cannot be opened yet: no connection may leak.
        await events.close()
        raise
    telemetry = active()
    metrics = None
    if telemetry.meter_provider is not None:
        metrics = ProjectorMetrics(
            telemetry.meter(SCOPE), series_labels=settings.metrics_series_labels
        )
    projector = Projector(
        events,
        store,
        limits=ProjectorLimits(max_batch_points=settings.projector_batch_points),
        metrics=metrics,
        tracer=telemetry.tracer(SCOPE),
    )
    return ProjectorApp(events, store, generation, projector)
