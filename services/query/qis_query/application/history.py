"""GetPointHistory a page at a time: a point's versions and the observations they were made of,
together in commit order.

The read store lists a point's versions and its observations whole, and pages are cut from them
here: a point has a version per publication or restatement and an observation per source and
ingestion, a few dozen in all, so reading them whole for each page costs little, where a paged
read merging two tables in every adapter would cost more code than it saves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qis_adapters.readstore.port import Observation, OfficialVersion

from qis_query.application import paging

HISTORY = "history"  # the kind of its page tokens

Step = tuple[int, int, int]
"""Where a version or an observation stands in commit order: (commit position, 0 for a version
or 1 for an observation, its version number or its index in the event)."""


@dataclass(frozen=True, slots=True)
class PointHistory:
    versions: list[OfficialVersion]  # ascending by version
    observations: list[Observation]  # ascending by (position, index)
    next_page_token: str  # "" on the last page


def _step(item: OfficialVersion | Observation) -> Step:
    if isinstance(item, OfficialVersion):
        return item.position_from, 0, item.version
    return item.position, 1, item.index


def page(
    versions: Sequence[OfficialVersion],
    observations: Sequence[Observation],
    query: object,
    after: Step | None,
    size: int,
    tokens: paging.PageTokens,
) -> PointHistory:
    """The up to `size` versions and observations after `after` in commit order, and the token
    of the rest. A point's versions are in commit order by version already: each restatement
    commits after the version it supersedes."""
    lineage: list[OfficialVersion | Observation] = [*versions, *observations]
    lineage.sort(key=_step)
    ahead = lineage if after is None else [item for item in lineage if _step(item) > after]
    taken = ahead[:size]
    last = _step(taken[-1]) if len(ahead) > size else None
    return PointHistory(
        [item for item in taken if isinstance(item, OfficialVersion)],
        [item for item in taken if isinstance(item, Observation)],
        tokens.steps_token(HISTORY, query, last),
    )
