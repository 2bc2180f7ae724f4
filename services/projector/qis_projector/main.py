"""`qis-projector`: keeps the read models (`run`, the default) or rebuilds them (`rebuild`).

`rebuild` projects the whole log into a fresh generation while the running projector and the
query service go on with the active one, then switches the active generation: no downtime.
It switches only once the fresh generation has projected at least as far as the active one,
which the running projector advanced meanwhile (its checkpoint read just before the switch:
only what is projected between that read and the switch can be missing for a moment, and the
query cache allows for it). The running projector follows the switch within about a second.

`run` rebuilds by itself when it starts on an active generation built with an older read-model
format (qis_adapters.readstore.port.READ_MODEL_FORMAT; a store from before formats were
recorded counts as older): it logs one WARNING saying why, projects the log into a fresh
generation and switches to it, then keeps that one. The query service goes on serving the old
generation until the switch, but nothing advances it meanwhile (the new code does not write the
old format): its reads lag the log by the rebuild's duration. An unfinished rebuild (stopped,
or halted) is dropped; the next start begins it again.

Health: the process serves grpc.health.v1 as long as it runs. `qis.data.v1.Projector` is
SERVING while the read model is current, NOT_SERVING when it lags, waits for a store or halted
at an event it cannot project, with the reason in the `qis-health-reason` trailer of Check
(`grpcurl -v ... grpc.health.v1.Health/Check`).

Its health report (qis.data.v1.StatusService, on the same port) has the components `projector`
(the status and reason above, with the checkpoint, the lag and what was projected),
`event-store` and `read-store`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from grpc_health.v1 import health_pb2
from qis_adapters.faults import store_fault
from qis_adapters.readstore.port import FORMAT_CHANGES, READ_MODEL_FORMAT
from qis_runtime.logs import configure_logging, tune_garbage_collection
from qis_runtime.status import (
    NOT_SERVING,
    SERVING,
    Check,
    ComponentReport,
    event_store_check,
    read_store_check,
)
from qis_runtime.telemetry import configure_telemetry

from qis_projector.application.faults import Backoff, describe
from qis_projector.application.projector import ProjectionHalted
from qis_projector.bootstrap import (
    ActiveGeneration,
    ProjectorApp,
    active_or_first_generation,
    build,
    discard_generation,
    health_server,
    next_generation,
)
from qis_projector.entrypoints.health import ExplainedHealth
from qis_projector.settings import ProjectorSettings

log = logging.getLogger("qis.projector")
LAG_SERVICE = "qis.data.v1.Projector"
_WATCH_INTERVAL_S = 1.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class _Running:
    """What the health report looks at: the projector at work, once its stores are open."""

    health: ExplainedHealth
    max_lag: int
    app: ProjectorApp | None = None

    def checks(self) -> dict[str, Check]:
        return {
            "projector": self.projector,
            "event-store": lambda: self._store(lambda app: event_store_check(app.events)),
            "read-store": lambda: self._store(lambda app: read_store_check(app.store)),
        }

    async def projector(self) -> ComponentReport:
        status, reason = self.health.explained(LAG_SERVICE)
        figures: dict[str, int | float | str] = {}
        app = self.app
        if app is not None:
            projector = app.projector
            figures = {
                "generation": app.generation,
                "checkpoint": projector.checkpoint or 0,
                "lag_positions": await projector.lag(),
                "events_projected": projector.events_projected,
                "points_projected": projector.points_projected,
                "store_retries": projector.retries,
            }
        serving = SERVING if status == _SERVING else NOT_SERVING
        return ComponentReport(serving, reason, figures)

    async def _store(
        self, check: Callable[[ProjectorApp], Awaitable[ComponentReport]]
    ) -> ComponentReport:
        if self.app is None:
            return ComponentReport(NOT_SERVING, "not open yet")
        return await check(self.app)


async def run(settings: ProjectorSettings) -> None:
    server = health_server(settings)
    health = server.health = ExplainedHealth()  # before start(), which registers it
    running = _Running(health, settings.projector_max_lag)
    server.report_status("qis-projector", running.checks())
    port = await server.start()
    await health.explain(LAG_SERVICE, _NOT_SERVING, "starting")
    await server.mark_serving()
    log.info("projector health on port %d", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _project(settings, health, stop, running)
    finally:
        await server.stop(settings.shutdown_grace_s)


async def _project(
    settings: ProjectorSettings,
    health: ExplainedHealth,
    stop: asyncio.Event,
    running: _Running | None = None,
) -> None:
    """Projects into the active generation, following it when a rebuild switches it, until
    asked to stop. Stores that cannot be opened yet are waited for, saying why.

    An active generation of an older read-model format is first rebuilt into a fresh one,
    which becomes active (see the module's docstring): until that switch the query service
    serves the old generation, which is not advanced meanwhile. A newer format than this code
    writes is refused (GenerationFormatError ends the process). `running`: where the
    projector at work is shown to the health report (`run`'s).
    """
    running = running or _Running(health, settings.projector_max_lag)
    backoff = Backoff()
    failures = 0
    warned = ""
    while not stop.is_set():
        try:
            active = await active_or_first_generation(settings)
            if active.format < READ_MODEL_FORMAT:
                why = _why_rebuild(active)
                if why != warned:  # once, not at every retry of a store that cannot open
                    log.warning("%s", why)
                    warned = why
                await _rebuild_stale(settings, running, stop, why)
                failures = 0
                continue
            generation = active.name
            app = await build(settings, generation)
        except Exception as error:
            cause = store_fault(error)
            if cause is None:
                raise
            failures += 1
            delay = backoff.delay(failures)
            reason = (
                f"cannot open the stores ({describe(cause)}); retry {failures} in {delay:.1f} s"
            )
            log.warning("%s", reason)
            await health.explain(LAG_SERVICE, _NOT_SERVING, reason)
            await _pause(stop, delay)
            continue
        failures = 0
        log.info("projecting into generation %s", generation)
        task = asyncio.create_task(app.projector.run())
        running.app = app
        try:
            await _watch(settings, app, task, health, stop)
        finally:
            running.app = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ProjectionHalted):
                await task
            await app.close()


async def _watch(
    settings: ProjectorSettings,
    app: ProjectorApp,
    task: asyncio.Task[None],
    health: ExplainedHealth,
    stop: asyncio.Event,
) -> None:
    """Reports the projector's status until asked to stop or until a rebuild switched the
    active generation. A halted projector stays reported: the process stays up to say why."""
    while not stop.is_set():
        if task.done() and app.projector.halted is None:
            task.result()  # not a halt but a bug: let it end the process, loudly
            raise RuntimeError("the projector stopped without a reason")
        status = await app.projector.status(settings.projector_max_lag)
        await health.explain(
            LAG_SERVICE, _SERVING if status.serving else _NOT_SERVING, status.reason
        )
        log.debug("%s", status.reason)
        try:
            if await app.store.active_generation() != app.generation:
                log.info("active generation changed: following it")
                return
        except Exception as error:
            # The projector reports the store's trouble itself; the switch can wait a round.
            if store_fault(error) is None:
                raise
        await _pause(stop, _WATCH_INTERVAL_S)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(stop.wait()), seconds)


def _why_rebuild(active: ActiveGeneration) -> str:
    changes = "; ".join(
        f"format {n}: {FORMAT_CHANGES[n]}"
        for n in range(active.format + 1, READ_MODEL_FORMAT + 1)
        if n in FORMAT_CHANGES
    )
    return (
        f"the active generation {active.name} holds read models of format {active.format},"
        f" older than format {READ_MODEL_FORMAT} of this projector ({changes}): rebuilding"
        f" them into a fresh generation; queries read {active.name}, not advanced any more,"
        " until the switch"
    )


async def _rebuild_stale(
    settings: ProjectorSettings, running: _Running, stop: asyncio.Event, why: str
) -> None:
    """Projects the log into a fresh generation and makes it active, reporting progress as the
    health reason; an unfinished one (asked to stop, halted, or failed) is dropped."""
    generation = await next_generation(settings)
    log.info("rebuilding the read models into generation %s", generation)
    try:
        app = await build(settings, generation)
    except BaseException:
        await discard_generation(settings, generation)
        raise
    switched = False
    running.app = app
    try:
        switched = await _watch_rebuild(settings, app, running.health, stop, why)
    finally:
        running.app = None
        await app.close()
        if not switched:
            await discard_generation(settings, generation)


async def _watch_rebuild(
    settings: ProjectorSettings,
    app: ProjectorApp,
    health: ExplainedHealth,
    stop: asyncio.Event,
    why: str,
) -> bool:
    """Rebuilds into `app`'s generation, reporting it, until it caught up, then makes it active
    (`_switch`): True. False when asked to stop first. A halted rebuild stays reported, as in
    `_watch`."""
    task = asyncio.create_task(_catch_up(app))
    try:
        while not stop.is_set():
            if task.done() and app.projector.halted is None:
                task.result()  # not a halt: a store failure to retry, or a bug, raised
                if await _switch(app):
                    return True
                task = asyncio.create_task(_catch_up(app))
            status = await app.projector.status(settings.projector_max_lag)
            reason = status.reason
            if app.projector.halted is None:
                reason = f"{why}; generation {app.generation}: {status.reason}"
            await health.explain(LAG_SERVICE, _NOT_SERVING, reason)
            # Woken by the end of the rebuild too, unless it is over (halted): then by stop only.
            stopping = asyncio.ensure_future(stop.wait())
            wakers: set[asyncio.Future[Any]] = {stopping} if task.done() else {stopping, task}
            try:
                await asyncio.wait(wakers, timeout=_WATCH_INTERVAL_S, return_when=FIRST_COMPLETED)
            finally:
                stopping.cancel()
        return False
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ProjectionHalted):
            await task


async def _catch_up(app: ProjectorApp) -> None:
    """Projects until the checkpoint reaches the head of the log, as it stands when it does."""
    while True:
        head = await app.events.head_position()
        await app.projector.run(until_position=head)
        if await app.events.head_position() == head:
            return


async def _switch(app: ProjectorApp) -> bool:
    """Makes the rebuilt generation active, True, unless it is behind the active one's
    checkpoint, read just before: False, catch up again. The running projector goes on in the
    active generation while the rebuild catches up with the head it saw; made active behind
    it, the read model would go back, and queries answer from before changes they already
    answered with (the query cache would keep such answers as if read at the later position)."""
    active = await app.store.active_generation()
    if active is not None:
        reached = await app.store.generation_checkpoint(active) or 0
        if (app.projector.checkpoint or 0) < reached:
            log.info(
                "rebuilt generation %s up to position %s, behind generation %s at %s: catching"
                " up again before the switch",
                app.generation,
                app.projector.checkpoint,
                active,
                reached,
            )
            return False
    await app.store.set_active_generation(app.generation)
    log.info(
        "rebuilt generation %s up to position %s and made it active",
        app.generation,
        app.projector.checkpoint,
    )
    return True


async def rebuild(settings: ProjectorSettings) -> None:
    generation = await next_generation(settings)
    app = await build(settings, generation)
    try:
        await _catch_up(app)
        while not await _switch(app):
            await _catch_up(app)
        print(f"generation {generation} active at position {app.projector.checkpoint}")
    finally:
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="qis-projector", description=__doc__)
    parser.add_argument("action", nargs="?", choices=["run", "rebuild"], default="run")
    args = parser.parse_args()
    settings = ProjectorSettings()
    configure_logging(settings.log_level, "qis.projector")
    telemetry = configure_telemetry("qis-projector", settings.metrics_address)
    tune_garbage_collection()
    try:
        asyncio.run(rebuild(settings) if args.action == "rebuild" else run(settings))
    except ProjectionHalted:
        raise SystemExit(1) from None  # the projector logged the report
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
