"""A synthetic price feed with injected faults, for demos, benchmarks and end-to-end tests of the
data-quality rules.

Each series is a random walk on a fixed grid of snaps (`start` + i x `step`), rounded to
`decimals` places. Faults are drawn per snap with the configured probabilities:
gap (the snap is skipped), jump (the level moves by `jump_size` and stays), spike (one value
off by `spike_size`, the next one back), stale (the last value repeated for `stale_run`
snaps), late (the value held back and sent after `late_by` later ones), duplicate (sent twice),
out of order (sent after the next one), and a second source (`second_source`) sending every
value too, off by `second_bias` with probability `disagree`.

Deterministic: the random.Random passed in seeds one generator per series (in series order), and
a history of a range is the same every time it is asked for, so a re-run of a load sends the
same chunks. A live subscription walks from the current snap, one value per `pace_s` (default:
`step`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from qis_feeds.application.points import RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Faults:
    gap: float = 0.0
    jump: float = 0.0
    spike: float = 0.0
    stale: float = 0.0
    late: float = 0.0
    duplicate: float = 0.0
    out_of_order: float = 0.0
    disagree: float = 0.0
    jump_size: float = 0.05
    spike_size: float = 0.2
    stale_run: int = 5
    late_by: int = 3
    second_source: str | None = None
    second_bias: float = 0.01


@dataclass(frozen=True, slots=True)
class Walk:
    series_id: str
    start_price: float = 100.0
    volatility: float = 0.001
    """Standard deviation of the log return per step."""
    decimals: int = 4


@dataclass
class _State:
    rng: random.Random
    level: float
    stale_left: int = 0
    last: Decimal | None = None
    held: deque[tuple[int, RawValue]] = field(default_factory=deque)
    """Values held back: (values still to send before it, the value)."""


class SyntheticProvider:
    name = "synthetic"

    def __init__(
        self,
        walks: Sequence[Walk],
        rng: random.Random,
        *,
        step: timedelta = timedelta(seconds=1),
        faults: Faults = Faults(),
        pace_s: float | None = None,
    ) -> None:
        if step <= timedelta(0):
            raise ValueError("step must be positive")
        self._walks = {walk.series_id: walk for walk in sorted(walks, key=lambda w: w.series_id)}
        # One seed per series, drawn in series order: values do not depend on which series is
        # read first or how the subscriptions interleave.
        self._seeds = {series_id: rng.getrandbits(64) for series_id in self._walks}
        self._step_us = step // _US
        self._faults = faults
        self._pace_s = step.total_seconds() if pace_s is None else pace_s
        self.kinds: Mapping[str, ValueKind] = dict.fromkeys(self._walks, ValueKind.PRICE)
        self.injected: Counter[str] = Counter()
        """How many of each fault were injected, for tests and demos."""
        self._last_value_us: dict[str, int] = {}

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get_health(self) -> ProviderHealth:
        return ProviderHealth(connected=True, last_value_us=dict(self._last_value_us))

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        start_us = self._align((request.start - _EPOCH) // _US)
        end_us = (request.end - _EPOCH) // _US
        for series_id in request.series_ids or tuple(self._walks):
            count = max(0, -(-(end_us - start_us) // self._step_us))
            for value in self.values(series_id, start_us, count):
                yield value

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        snap_us = self._align(time.time_ns() // 1_000)
        for value in self.values(series_id, snap_us, None):
            self._last_value_us[series_id] = time.time_ns() // 1_000
            yield value
            if self._pace_s:
                await asyncio.sleep(self._pace_s)
            else:
                await asyncio.sleep(0)  # let the other tasks of the loop run

    def _align(self, us: int) -> int:
        return -(-us // self._step_us) * self._step_us

    def values(self, series_id: str, first_us: int, count: int | None) -> Iterator[RawValue]:
        """The values of `count` snaps (None: without end) from `first_us`, faults included, in
        the order they are sent."""
        walk = self._walks[series_id]
        state = _State(random.Random(self._seeds[series_id] ^ first_us), walk.start_price)
        index = 0
        while count is None or index < count:
            yield from self._snap(walk, state, first_us + index * self._step_us)
            index += 1
        while state.held:
            yield state.held.popleft()[1]

    def _snap(self, walk: Walk, state: _State, snap_us: int) -> Iterator[RawValue]:
        faults, rng, injected = self._faults, state.rng, self.injected
        state.level *= 1.0 + rng.gauss(0.0, walk.volatility)
        if rng.random() < faults.jump:
            injected["jump"] += 1
            state.level *= 1.0 + faults.jump_size * rng.choice((-1.0, 1.0))
        if rng.random() < faults.gap:
            injected["gap"] += 1
            yield from self._release(state)
            return
        if state.stale_left:
            state.stale_left -= 1
            value = state.last
        elif rng.random() < faults.stale and state.last is not None:
            injected["stale"] += 1
            state.stale_left = faults.stale_run - 1
            value = state.last
        else:
            value = None
        if value is None:
            level = state.level
            if rng.random() < faults.spike:
                injected["spike"] += 1
                level *= 1.0 + faults.spike_size
            value = Decimal(f"{level:.{walk.decimals}f}")
        state.last = value
        out = [RawValue(walk.series_id, snap_us, value)]
        if faults.second_source is not None:
            other = value
            if rng.random() < faults.disagree:
                injected["disagree"] += 1
                other = Decimal(f"{float(value) * (1.0 + faults.second_bias):.{walk.decimals}f}")
            out.append(RawValue(walk.series_id, snap_us, other, faults.second_source))
        if rng.random() < faults.duplicate:
            injected["duplicate"] += 1
            out.append(out[0])
        hold: tuple[int, RawValue] | None = None
        if rng.random() < faults.late:
            injected["late"] += 1
            hold = (faults.late_by, out.pop(0))
        elif rng.random() < faults.out_of_order:
            injected["out_of_order"] += 1
            hold = (1, out.pop(0))
        yield from out
        yield from self._release(state)
        if hold is not None:
            state.held.append(hold)

    def _release(self, state: _State) -> Iterator[RawValue]:
        """Held values whose turn came, after the values of this snap: each waits for a number
        of later snaps."""
        kept: deque[tuple[int, RawValue]] = deque()
        for left, value in state.held:
            if left <= 1:
                yield value
            else:
                kept.append((left - 1, value))
        state.held = kept
