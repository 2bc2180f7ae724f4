"""`qis-feeds`: runs the feeds of the configuration file (QIS_FEEDS_CONFIG, default
DATA_DIR/feeds.toml) until SIGTERM or SIGINT, then sends what was received and stops. At start
it reads each source's configuration from the query service (QIS_QUERY_ADDRESS): a feed of a
disabled source is not run; rate limits, retries and credentials the file leaves out come from it.

Health (grpc.health.v1 on QIS_FEEDS_ADDRESS): "" SERVING while it runs; `qis.feeds.NAME` per
feed, NOT_SERVING while its provider is failing (the reason is logged), SERVING again once it
recovers. Counters (received, sent, skipped, dropped, retried) are logged as they change.
Its health report (qis.data.v1.StatusService) has a component `feed.NAME` per feed: SERVING,
DEGRADED while it answers but some calls failed or were rate-limited, NOT_SERVING while its
provider fails; with the provider's figures (calls, errors, latency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from grpc_health.v1 import health_pb2
from qis_runtime.auth import server_security
from qis_runtime.logs import configure_logging
from qis_runtime.server import QisServer
from qis_runtime.status import DEGRADED, NOT_SERVING, SERVING, Check, ComponentReport
from qis_runtime.telemetry import active, configure_telemetry

from qis_feeds.application.ports import ProviderHealth
from qis_feeds.bootstrap import FeedsApp, build
from qis_feeds.config import ConfigError, load
from qis_feeds.settings import FeedsSettings

log = logging.getLogger("qis.feeds")
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_name(feed: str) -> str:
    return f"qis.feeds.{feed}"


async def run(settings: FeedsSettings) -> None:
    config = load(settings.resolved_config())
    server = QisServer(settings.feeds_address, [], security=server_security(settings))
    checks: dict[str, Check] = {}  # named once the feeds are built
    # Its components' grpc.health.v1 names follow the feeds as often as the feeds are looked at.
    server.report_status("qis-feeds", checks, settings.feeds_health_s)
    port = await server.start()
    app = await build(settings, config)
    for feed in app.feeds:
        checks[f"feed.{feed.name}"] = functools.partial(_feed_check, feed.provider.get_health)
    for name, folder in app.folders:
        checks[f"feed.{name}"] = functools.partial(_feed_check, folder.get_health)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.mark_serving()
    log.info(
        "feeds health on port %d: %s",
        port,
        ", ".join([f.name for f in app.feeds] + [n for n, _ in app.folders]) or "no feed",
    )
    work: list[Awaitable[object]] = [folder.run(stop) for _, folder in app.folders]
    if app.feeds:
        work.append(app.runner.run_live(app.feeds, stop))
    watcher = asyncio.create_task(_watch(app, server, settings.feeds_health_s))
    running = asyncio.ensure_future(asyncio.gather(*work))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        waiters: set[asyncio.Future[Any]] = {running, stopping}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()  # a feed that ended by itself failed: say why, loudly
        try:
            # What was received goes out, unless the command service cannot take it in time.
            await asyncio.wait_for(running, settings.shutdown_grace_s)
        except TimeoutError:
            log.warning("not all was sent within %.0f s of the stop", settings.shutdown_grace_s)
    finally:
        stopping.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        log.info("stopped: %s", app.runner.counters.summary())
        await app.close()
        await server.stop(settings.shutdown_grace_s)


async def _feed_check(health: Callable[[], Awaitable[ProviderHealth]]) -> ComponentReport:
    now = await health()
    figures: dict[str, int | float | str] = {
        "requests": now.requests,
        "errors": now.errors,
        "rate_limited": now.rate_limited,
        "retries": now.retries,
    }
    if now.latency_ms is not None:
        figures["latency_ms"] = now.latency_ms
    if not now.connected:
        return ComponentReport(NOT_SERVING, now.last_error or "not connected", figures)
    if now.last_error:
        return ComponentReport(DEGRADED, f"recovered; last error: {now.last_error}", figures)
    return ComponentReport(SERVING, "", figures)


async def _watch(app: FeedsApp, server: QisServer, every_s: float) -> None:
    said = ""
    checks: list[tuple[str, Callable[[], Awaitable[ProviderHealth]]]] = [
        (feed.name, feed.provider.get_health) for feed in app.feeds
    ]
    checks += [(name, folder.get_health) for name, folder in app.folders]
    connected = (
        active()
        .meter("qis.feeds")
        .create_gauge(
            "qis.feed.connected", unit="1", description="1 while a feed's provider answers, else 0."
        )
    )
    while True:
        for name, check in checks:
            health = await check()
            connected.set(int(health.connected), {"feed": name})
            await server.health.set(
                health_name(name), _SERVING if health.connected else _NOT_SERVING
            )
            if not health.connected and health.last_error:
                log.warning(
                    "feed %s: %s (%d of %d calls failed)",
                    name,
                    health.last_error,
                    health.errors,
                    health.requests,
                )
        summary = app.runner.counters.summary()
        if summary != said:
            log.info("%s", summary)
            said = summary
        await asyncio.sleep(every_s)


def main() -> None:
    argparse.ArgumentParser(prog="qis-feeds", description=__doc__).parse_args()
    settings = FeedsSettings()
    configure_logging(settings.log_level, "qis.feeds")
    telemetry = configure_telemetry("qis-feeds", settings.metrics_address)
    try:
        asyncio.run(run(settings))
    except ConfigError as error:
        log.error("%s", error)
        raise SystemExit(2) from None
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
