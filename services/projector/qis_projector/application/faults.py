"""How long the projector waits between tries of a store that failed. Which failures it waits
out is one rule for every process (qis_adapters.faults.store_fault).

A transient failure is the store's, not the event's: a full disk, a lock held too long, a
read-only file, an unreachable MongoDB. The same write succeeds once the store recovers, so the
projector pauses and tries again. Any other failure is deterministic: the log is immutable, so
trying the same event again fails the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses between tries: doubling from `first_s` up to `cap_s`."""

    first_s: float = 0.25
    cap_s: float = 30.0

    def delay(self, failures: int) -> float:
        """The pause after `failures` failures in a row (1 or more). Drawn from the upper half of
        the step, so that processes that failed together do not retry in lockstep."""
        step = min(self.cap_s, self.first_s * 2 ** min(failures - 1, 32))
        return random.uniform(step / 2, step)
