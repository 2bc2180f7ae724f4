"""The query cache's L2 on Redis (QIS_CACHE_REDIS_URL): shared by the query instances.

Redis is an optimisation, never a dependency of an answer: a call that fails (Redis down, slow,
refusing) counts an error, logs once per outage, and reads as a miss / a write not made; for
`pause_s` after a failure the cache does not call Redis at all, so that an outage costs the
queries nothing more than L1 misses. No retries: a retried cache read is slower than the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from opentelemetry import metrics
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from qis_query.application.cache import METER

log = logging.getLogger("qis.query.cache")


class RedisCache:
    """SharedCache (qis_query.application.cache) on Redis: MGET to read, pipelined SET EX to
    write."""

    def __init__(
        self, client: Redis, pause_s: float = 5.0, meter: metrics.Meter | None = None
    ) -> None:
        self._client = client
        self._pause_s = pause_s
        self._paused_until = float("-inf")
        self._down = False
        self._errors = (meter or metrics.get_meter(METER)).create_counter(
            "qis.query.cache.l2.errors",
            unit="{error}",
            description="Calls to the shared cache (Redis) that failed: answered without it",
        )

    @classmethod
    def from_url(cls, url: str, timeout_s: float, pause_s: float = 5.0) -> RedisCache:
        client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, pause_s)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys or self._paused():
            return [None] * len(keys)
        try:
            found = await self._client.mget(keys)
        except (RedisError, OSError) as error:
            self._failed("read", error)
            return [None] * len(keys)
        self._recovered()
        # Bytes: the client does not decode responses (decode_responses is off).
        return [value if isinstance(value, bytes) else None for value in found]

    async def put_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        if not items or self._paused():
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value, ttl_s in items:
                    pipe.set(key, value, ex=ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as error:
            self._failed("write", error)
            return
        self._recovered()

    async def ping(self) -> None:
        """Calls Redis even while paused: the health report says whether it answers now."""
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()

    def _paused(self) -> bool:
        return asyncio.get_running_loop().time() < self._paused_until

    def _failed(self, what: str, error: BaseException) -> None:
        self._errors.add(1, {"operation": what})
        self._paused_until = asyncio.get_running_loop().time() + self._pause_s
        if not self._down:
            self._down = True
            log.warning(
                "shared cache (Redis) %s failed, answering without it for now: %s", what, error
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.info("shared cache (Redis) answers again")
