"""`qis-query`: the read side as its own process: the gRPC QueryService and, on its own port,
the Arrow Flight endpoint (QIS_FLIGHT_ADDRESS). Its health report (qis.data.v1.StatusService)
has the components `read-store` and `cache`."""

from __future__ import annotations

import asyncio
import logging
import signal

from qis_runtime.logs import configure_logging, tune_garbage_collection
from qis_runtime.telemetry import configure_telemetry

from qis_query.bootstrap import QueryApp, build
from qis_query.settings import QuerySettings

log = logging.getLogger("qis.query")


async def serve(settings: QuerySettings) -> None:
    app = await build(settings)
    app.server.report_status("qis-query", app.health_checks())
    try:
        port = await app.server.start()
        try:
            if app.flight is not None:
                await app.flight.start()
        except BaseException:
            await app.server.stop(0)
            raise
        # SERVING only once both ports listen: `qis up` and orchestrators check the gRPC port.
        await app.server.mark_serving()
        log.info("query service listening on port %d", port)
        await _signalled()
        log.info(
            "stopping: health NOT_SERVING, draining for up to %.1f s", settings.shutdown_grace_s
        )
        await _stop(app, settings.shutdown_grace_s)
    finally:
        await app.close()


async def _signalled() -> None:
    """Returns on SIGTERM or SIGINT (as qis_runtime.server.run_until_signalled, which drains
    one server: here two drain side by side, within one grace period)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _stop(app: QueryApp, grace_s: float) -> None:
    stopping = [app.server.stop(grace_s)]
    if app.flight is not None:
        stopping.append(app.flight.stop(grace_s))
    await asyncio.gather(*stopping)


def main() -> None:
    settings = QuerySettings()
    configure_logging(settings.log_level, "qis.query")
    telemetry = configure_telemetry("qis-query", settings.metrics_address)
    tune_garbage_collection()
    try:
        asyncio.run(serve(settings))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
