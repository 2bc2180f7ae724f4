"""Read-your-writes: wait (bounded) until the read model has projected a commit position."""

from __future__ import annotations

import asyncio

from qis_adapters.readstore.port import ReadModelReader
from qis_domain.errors import RetryLater


class ReadModelBehind(RetryLater):
    kind = "behind"
    retry_after_s = 0.2

    def __init__(self, wanted: int, reached: int, waited_s: float) -> None:
        super().__init__(
            f"the read model has projected position {reached}, not yet min_position {wanted}"
            f" (waited {waited_s:.1f} s); retry shortly"
        )
        self.wanted = wanted
        self.reached = reached


async def wait_for_position(
    reader: ReadModelReader, min_position: int, max_wait_s: float, poll_s: float = 0.01
) -> int:
    """The read model's checkpoint once it is >= min_position; raises ReadModelBehind."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while True:
        reached = await reader.checkpoint() or 0
        if reached >= min_position:
            return reached
        if loop.time() >= deadline:
            raise ReadModelBehind(min_position, reached, max_wait_s)
        await asyncio.sleep(poll_s)


class ReadPosition:
    """The read model's checkpoint as recently seen, so that most queries need no store call
    for it: a query whose min_position is already reached uses a value at most `max_age_s`
    old, the read position its answer claims; any other reads afresh and waits. The claim is a
    lower bound of what the answer reflects, except for up to `max_age_s` after a rebuild's
    switch to a generation behind it (the answer is then read from the new generation;
    docs/caching.md, Rebuilds)."""

    def __init__(self, reader: ReadModelReader, max_wait_s: float, max_age_s: float = 0.05) -> None:
        self._reader = reader
        self._max_wait_s = max_wait_s
        self._max_age_s = max_age_s
        self._known = 0
        self._seen_at = float("-inf")

    async def at_least(self, min_position: int) -> int:
        now = asyncio.get_running_loop().time()
        if min_position <= self._known and now - self._seen_at < self._max_age_s:
            return self._known
        reached = await wait_for_position(self._reader, min_position, self._max_wait_s)
        # The read that started last, not the highest seen: a rebuild's switch can make active
        # a generation behind the last one, whose position answers must not claim; and not
        # the read that finished last, which may have started before a newer one (the
        # checkpoint never goes back within a generation).
        if now >= self._seen_at:
            self._known, self._seen_at = reached, now
        return reached
