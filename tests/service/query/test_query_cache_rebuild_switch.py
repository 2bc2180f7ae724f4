"""A switch to a rebuilt generation whose checkpoint is behind the one queries last saw (the
`qis-projector rebuild` command switches once it caught up with the head as it saw it, while
the running projector may have projected later events into the old generation): the cache
must not take the old generation's position as the new one's, or it skips, for good, the
changes the new generation projects up to it."""

from __future__ import annotations

import pytest
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import LATEST
from qis_projector.application.projector import Projector
from qis_query.application import cache as cache_module
from qis_query.application.consistency import ReadPosition
from qis_query.application.handlers import QueryHandlers

from tests.service.query.cache_support import CacheWorld, snap

S, T = "S", "T"


async def versions(handlers: QueryHandlers, series_id: str, min_position: int) -> list[int]:
    read = await handlers.values(series_id, [snap(0)], LATEST, min_position)
    return [v.version for v in read.value]


async def test_a_switch_to_a_generation_behind_the_last_seen_checkpoint_never_hides_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache_module, "GENERATION_CHECK_S", 0.0)
    world = CacheWorld()
    await world.define(S)
    await world.define(T)
    await world.publish(S, [snap(0)], "100")
    await world.publish(T, [snap(0)], "7")
    await world.project()
    # The rebuild catches up with the head as it saw it...
    rebuilt = InMemoryReadStore(world.database, "g2")
    rebuilder = Projector(world.events, rebuilt)
    await rebuilder.run(until_position=world.head)
    # ...while the running projector projects a restatement into the old generation.
    restated = await world.publish(S, [snap(0)], "99")
    await world.project()
    # The handlers reuse the checkpoint they saw for a while (ReadPosition.max_age_s, 50 ms in
    # the service; a minute here, so that the test does not hang on timing).
    cached, _ = world.handlers(max_age_s=60)
    assert await versions(cached, S, restated) == [2]

    await rebuilt.set_active_generation("g2")  # behind `restated`
    await versions(cached, S, 0)  # a query while the seen checkpoint is still reused

    # The new generation projects the restatement, then a change of another series.
    await world.publish(T, [snap(0)], "8")
    await rebuilder.run(until_position=world.head)
    assert await versions(world.fresh(), S, world.head) == [2]
    # Read-your-writes at the head, which the active generation has projected.
    assert await versions(cached, S, world.head) == [2]


class _Checkpoints:
    """A reader whose checkpoint is each of `answers` in turn (a rebuild's switch goes back)."""

    def __init__(self, *answers: int) -> None:
        self._answers = list(answers)

    async def checkpoint(self) -> int:
        return self._answers.pop(0)


async def test_after_a_switch_behind_answers_claim_the_new_generations_position() -> None:
    """The position answers reflect is the checkpoint as last read, not the highest ever read:
    before, the old generation's stayed, claimed by every answer read within the next
    `max_age_s` of each later read, as long as queries kept coming."""
    position = ReadPosition(_Checkpoints(10, 5), max_wait_s=1, max_age_s=0)  # type: ignore[arg-type]
    assert await position.at_least(0) == 10
    assert await position.at_least(0) == 5
    position._max_age_s = 60  # within the age, the last read is used without asking again
    assert await position.at_least(0) == 5
