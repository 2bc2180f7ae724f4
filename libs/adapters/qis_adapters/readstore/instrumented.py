"""A read store that measures its calls (docs/observability.md): every coroutine method of the
store it wraps, looked up by name and timed under that name, so that it keeps the port's
semantics exactly (it only delegates) and follows the port as it grows without a copy of each
signature. Attributes that are not coroutine methods pass through unmeasured."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics

from qis_adapters.timing import OperationTimer

SCOPE = "qis.readstore"
DURATION = "qis.readstore.duration"


class InstrumentedReadStore:
    def __init__(self, inner: object, meter: metrics.Meter | None = None) -> None:
        """`meter`: the OpenTelemetry global's by default (no-op until a process configures
        its telemetry)."""
        self._inner = inner
        self._timer = OperationTimer(
            meter or metrics.get_meter(SCOPE), DURATION, "Duration of read-store calls."
        )

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(found):
            return found
        timed = self._timed(name, found)
        # Kept on the instance: the next lookup of the name finds it without coming back here.
        setattr(self, name, timed)
        return timed

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._timer.measure(name, method(*args, **kwargs))

        return call
