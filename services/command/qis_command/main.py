"""`qis-command`: the write side as its own process.

Its health report (qis.data.v1.StatusService) has the components `event-store` and, when it
runs, `scheduler`: NOT_SERVING once the scheduler stopped (the error is logged)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from qis_runtime.logs import configure_logging, tune_garbage_collection
from qis_runtime.server import run_until_signalled
from qis_runtime.status import (
    NOT_SERVING,
    SERVING,
    Check,
    ComponentReport,
    event_store_check,
)
from qis_runtime.telemetry import configure_telemetry

from qis_command.application.scheduler import Scheduler
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings

log = logging.getLogger("qis.command")


async def serve(settings: CommandSettings) -> None:
    app = await build(settings)
    scheduling: asyncio.Task[None] | None = None

    async def scheduler_check() -> ComponentReport:
        return _scheduler_report(app.scheduler, scheduling)

    checks: dict[str, Check] = {"event-store": functools.partial(event_store_check, app.store)}
    if app.scheduler is not None:
        checks["scheduler"] = scheduler_check
    app.server.report_status("qis-command", checks)
    try:
        port = await app.server.start()
        await app.server.mark_serving()
        log.info("command service listening on port %d", port)
        scheduling = asyncio.create_task(app.scheduler.run()) if app.scheduler else None
        if scheduling is not None:
            scheduling.add_done_callback(_report_crash)
        await run_until_signalled(app.server, settings.shutdown_grace_s)
        if scheduling is not None:
            scheduling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduling
    finally:
        await app.close()


def _scheduler_report(
    scheduler: Scheduler | None, task: asyncio.Task[None] | None
) -> ComponentReport:
    if scheduler is None or task is None:
        return ComponentReport(NOT_SERVING, "not started")
    figures = {
        "pending": len(scheduler.pending),
        "windows": len(scheduler.windows),
        "fired": scheduler.fired,
        # The log position a restart resumes from (0: none saved yet: it reads from the start).
        "checkpoint": scheduler.checkpoint[0] if scheduler.checkpoint else 0,
    }
    if task.done():
        error = None if task.cancelled() else task.exception()
        return ComponentReport(NOT_SERVING, f"stopped: {error!r}", figures)
    return ComponentReport(SERVING, "", figures)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the scheduler stopped", exc_info=task.exception())


def main() -> None:
    settings = CommandSettings()
    configure_logging(settings.log_level, "qis.command")
    telemetry = configure_telemetry("qis-command", settings.metrics_address)
    tune_garbage_collection()
    try:
        asyncio.run(serve(settings))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
