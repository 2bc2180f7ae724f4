"""`qis-command`: the write side as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from qis_runtime.logs import configure_logging, tune_garbage_collection
from qis_runtime.server import run_until_signalled

from qis_command.bootstrap import build
from qis_command.settings import CommandSettings

log = logging.getLogger("qis.command")


async def serve(settings: CommandSettings) -> None:
    app = await build(settings)
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


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the scheduler stopped", exc_info=task.exception())


def main() -> None:
    settings = CommandSettings()
    configure_logging(settings.log_level, "qis.command")
    tune_garbage_collection()
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
