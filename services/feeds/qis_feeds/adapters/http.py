"""JSON over HTTP for REST providers: a rate limit, retries with jittered backoff, and health.

Every call waits for the rate limiter (aiolimiter: `calls_per_minute`, evenly spaced; retries
wait for it too), then is retried
(tenacity) on what a later try may cure: HTTP 429 (after its Retry-After, in seconds or as an
HTTP date, capped), 408 and 5xx, a timeout or a broken connection, and a body that is not the
JSON it should be (a truncated answer). Other answers (400, 401, 403, 404) fail at once with the
vendor's own message: trying again would only spend the plan's credits. Numbers in the JSON
are read as Decimals, never floats.

Health (CallStats): every attempt is a request, those after the first of a call are retries, a
429 is a rate-limited failure; a success is timed from sending to the parsed body (the wait for
the rate limiter and the backoff are not the vendor's latency).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from qis_feeds.adapters.calls import CallStats, elapsed_ms
from qis_feeds.application.ports import ProviderHealth

log = logging.getLogger("qis.feeds.http")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_first_s: float = 1.0
    backoff_cap_s: float = 60.0
    retry_after_cap_s: float = 300.0
    """A Retry-After beyond this is cut to it (a misconfigured server must not park a feed)."""
    timeout_s: float = 30.0


class VendorError(Exception):
    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After (RFC 9110 §10.2.3): delay-seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _vendor_message(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {text[:300]}" if text else f"HTTP {response.status_code}"


class JsonApi:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        calls_per_minute: float,
        policy: RetryPolicy,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"accept": "application/json", **headers},
            timeout=policy.timeout_s,
        )
        # One call per 60/calls_per_minute seconds, evenly: no burst at start that a vendor
        # counting per rolling minute would refuse.
        self._limiter = AsyncLimiter(1, 60.0 / calls_per_minute)
        self._policy = policy
        self._backoff = wait_random_exponential(
            multiplier=policy.backoff_first_s, max=policy.backoff_cap_s
        )
        self.calls = CallStats()

    async def close(self) -> None:
        await self._client.aclose()

    def health(self, last_value_us: dict[str, int]) -> ProviderHealth:
        calls = self.calls
        return calls.health(
            calls.last_success_us is not None and not calls.last_error, last_value_us
        )

    async def get(self, path: str, params: Mapping[str, str | int]) -> Any:
        result: Any = None
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, VendorError) and e.retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._limiter:
                    result = await self._once(path, params, attempt.retry_state.attempt_number > 1)
        return result

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, VendorError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self._policy.retry_after_cap_s)
        return float(self._backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("%s; try %d in %.1f s", self.calls.last_error, state.attempt_number + 1, wait)

    async def _once(self, path: str, params: Mapping[str, str | int], retry: bool) -> Any:
        started = self.calls.started(retry=retry)
        try:
            response = await self._client.get(path, params=dict(params))
        except httpx.TimeoutException as error:
            raise self._failed(f"{path}: timed out ({type(error).__name__})", True) from error
        except httpx.TransportError as error:
            raise self._failed(f"{path}: {type(error).__name__}: {error}", True) from error
        status = response.status_code
        if status == 429:
            after = retry_after_seconds(response.headers.get("retry-after"))
            message = f"{path}: rate limited ({_vendor_message(response)})"
            raise self._failed(message, True, after, rate_limited=True)
        if status == 408 or status >= 500:
            raise self._failed(f"{path}: {_vendor_message(response)}", True)
        if status != 200:
            raise self._failed(f"{path}: {_vendor_message(response)}", False)
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError as error:
            raise self._failed(f"{path}: the answer is not JSON ({error})", True) from error
        self.calls.succeeded(elapsed_ms(started))
        return body

    def _failed(
        self,
        message: str,
        retryable: bool,
        retry_after_s: float | None = None,
        *,
        rate_limited: bool = False,
    ) -> VendorError:
        self.calls.failed(message, rate_limited=rate_limited)
        return VendorError(message, retryable=retryable, retry_after_s=retry_after_s)
