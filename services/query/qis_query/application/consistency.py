"""Read-your-writes: wait (bounded) until the read model has projected a commit position."""

from __future__ import annotations

import asyncio

from qis_adapters.readstore.port import ReadModelReader


class ReadModelBehind(Exception):
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
