"""What a provider's calls to its vendor came to, counted the same way by every provider: each
call is started (a request; a retry when it repeats an earlier one) and ends once, as a success
(its duration into the latency histogram) or as a failure (a rate limit or another error).

Counts only grow (ProviderHealth says why): a reading never resets them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from qis_feeds.application.counters import LatencyHistogram
from qis_feeds.application.ports import ProviderHealth


def wall_clock_us() -> int:
    return time.time_ns() // 1_000


def elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1_000


class CallStats:
    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self.rate_limited = 0
        self.retries = 0
        self.last_success_us: int | None = None
        self.last_error = ""
        self.latency_ms: float | None = None
        self._latencies = LatencyHistogram()

    def started(self, *, retry: bool = False) -> float:
        """A call goes out; returns when (for `elapsed_ms`)."""
        self.requests += 1
        self.retries += retry
        return time.monotonic()

    def succeeded(self, latency_ms: float | None) -> None:
        """`latency_ms`: how long the vendor took to answer; None where the duration says
        nothing of the vendor (a file read at the pace of the feed's consumer)."""
        if latency_ms is not None:
            self.latency_ms = latency_ms
            self._latencies.record(latency_ms)
        self.last_success_us = wall_clock_us()
        self.last_error = ""

    def failed(self, message: str, *, rate_limited: bool = False) -> None:
        self.failures += 1
        self.rate_limited += rate_limited
        self.last_error = message

    def health(self, connected: bool, last_value_us: Mapping[str, int]) -> ProviderHealth:
        latencies = self._latencies.reading()
        return ProviderHealth(
            connected=connected,
            requests=self.requests,
            errors=self.failures,
            last_success_us=self.last_success_us,
            last_error=self.last_error,
            latency_ms=self.latency_ms,
            rate_limited=self.rate_limited,
            retries=self.retries,
            latencies=latencies,
            latency_p50_ms=latencies.percentile(0.5),
            latency_p99_ms=latencies.percentile(0.99),
            last_value_us=dict(last_value_us),
        )
