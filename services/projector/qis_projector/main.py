"""`qis-projector`: keeps the read models (`run`, the default) or rebuilds them (`rebuild`).

`rebuild` projects the whole log into a fresh generation while the running projector and the
query service go on with the active one, then switches the active generation: no downtime.
The running projector follows the switch within about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from grpc_health.v1 import health_pb2
from qis_runtime.logs import configure_logging, tune_garbage_collection
from qis_runtime.server import QisServer

from qis_projector.bootstrap import (
    ProjectorApp,
    active_or_first_generation,
    build,
    next_generation,
)
from qis_projector.settings import ProjectorSettings

log = logging.getLogger("qis.projector")
LAG_SERVICE = "qis.data.v1.Projector"
_WATCH_INTERVAL_S = 1.0


async def run(settings: ProjectorSettings) -> None:
    server = QisServer(settings.projector_address, [])
    port = await server.start()
    await server.mark_serving()
    log.info("projector health on port %d", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            generation = await active_or_first_generation(settings)
            app = await build(settings, generation)
            log.info(
                "projecting into generation %s from checkpoint %s",
                generation,
                await app.store.checkpoint(),
            )
            task = asyncio.create_task(app.projector.run())
            try:
                await _watch(settings, app, task, server, stop)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await app.close()
    finally:
        await server.stop(settings.shutdown_grace_s)


async def _watch(
    settings: ProjectorSettings,
    app: ProjectorApp,
    task: asyncio.Task[None],
    server: QisServer,
    stop: asyncio.Event,
) -> None:
    """Returns when asked to stop or when a rebuild switched the active generation; re-raises
    a projection failure so that a supervisor restarts the process from its checkpoint."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stop.wait()), _WATCH_INTERVAL_S)
        if task.done():
            task.result()
            return
        lag = await app.projector.lag()
        ok = lag <= settings.projector_max_lag
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await server.health.set(LAG_SERVICE, status)
        log.debug("checkpoint %s lag %d", app.projector.checkpoint, lag)
        if await app.store.active_generation() != app.generation:
            log.info("active generation changed: following it")
            return


async def rebuild(settings: ProjectorSettings) -> None:
    generation = await next_generation(settings)
    app = await build(settings, generation)
    try:
        while True:
            head = await app.events.head_position()
            await app.projector.run(until_position=head)
            if await app.events.head_position() == head:
                break
        await app.store.set_active_generation(generation)
        log.info(
            "rebuilt generation %s up to position %s and made it active",
            generation,
            app.projector.checkpoint,
        )
        print(f"generation {generation} active at position {app.projector.checkpoint}")
    finally:
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="qis-projector", description=__doc__)
    parser.add_argument("action", nargs="?", choices=["run", "rebuild"], default="run")
    args = parser.parse_args()
    settings = ProjectorSettings()
    configure_logging(settings.log_level, "qis.projector")
    tune_garbage_collection()
    asyncio.run(rebuild(settings) if args.action == "rebuild" else run(settings))


if __name__ == "__main__":
    main()
