"""`qis-query`: the read side as its own process."""

from __future__ import annotations

import asyncio
import logging

from qis_runtime.logs import configure_logging, tune_garbage_collection
from qis_runtime.server import run_until_signalled

from qis_query.bootstrap import build
from qis_query.settings import QuerySettings

log = logging.getLogger("qis.query")


async def serve(settings: QuerySettings) -> None:
    app = await build(settings)
    try:
        port = await app.server.start()
        await app.server.mark_serving()
        log.info("query service listening on port %d", port)
        await run_until_signalled(app.server, settings.shutdown_grace_s)
    finally:
        await app.close()


def main() -> None:
    settings = QuerySettings()
    configure_logging(settings.log_level, "qis.query")
    tune_garbage_collection()
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
