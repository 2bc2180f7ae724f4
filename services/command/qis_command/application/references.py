"""The other series' official figures a bucket's cross-series checks need
(qis_domain.cross_series), read from their write-side buckets when the command is decided.

Read like any aggregate (the repository's cached buckets, brought up to date from the event
store), never from the read model: what the checks compare with is what the command side knew
when it decided, and each figure keeps the official version it came from, for the evidence.
Read inside the decision, so that a retry after a conflict reads them again with the rest.
Only the snaps a check may use are read: the bucket's points of the command, and the points
before them that the checks look back to (this series' received points, within the look-back
floor); a reference series that is not defined gives no figures, so no check runs.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from qis_domain.commands import CommandContext
from qis_domain.cross_series import CrossSeriesView, OfficialFigure, ReferenceSeries, reach
from qis_domain.decisions import Decider, SeriesView
from qis_domain.definitions import SeriesDefinition
from qis_domain.reference_data import ReferenceData
from qis_domain.series_bucket import SeriesBucket, look_back_floor
from qis_domain.snaps import Snap, bucket_of
from qis_domain.values import DataValue

LoadSeries = Callable[[str], Awaitable[ReferenceData]]
LoadBucket = Callable[[str, int], Awaitable[SeriesBucket]]


async def with_references(
    view: SeriesView,
    definition: SeriesDefinition,
    bucket: SeriesBucket,
    points: Sequence[tuple[Snap, DataValue]],
    load_series: LoadSeries,
    load_bucket: LoadBucket,
) -> SeriesView:
    """`view` with the reference figures the checks of `points` (of `bucket`) need; as it is
    when the series has no cross-series check. Call it after the timeline holds the earlier
    buckets' received figures (the handler's look-back load), before the bucket decides."""
    rules = definition.validation
    if rules.benchmark is None and rules.underlying is None:
        return view
    snaps = _wanted(definition, bucket, sorted(snap.utc_us for snap, _ in points), view)
    references = CrossSeriesView(
        benchmark=None
        if rules.benchmark is None
        else await _figures(rules.benchmark.series_id, snaps, load_series, load_bucket),
        underlying=None
        if rules.underlying is None
        else await _figures(rules.underlying.series_id, snaps, load_series, load_bucket),
    )
    return dataclasses.replace(view, references=references)


def _wanted(
    definition: SeriesDefinition, bucket: SeriesBucket, snaps: list[int], view: SeriesView
) -> list[int]:
    """The command's snaps in the bucket and every snap its checks may look back to: the last
    `reach` points before the bucket the timeline knows, and the bucket's own points from the
    `reach`-th before the first snap to the last (a superset: cheap, and exact enough)."""
    n = reach(definition.validation)
    floor_us = look_back_floor(bucket.bucket_us, definition.frequency)
    earlier = [] if view.timeline is None else view.timeline.before(bucket.bucket_us, n, floor_us)
    known = sorted({p.snap_us for p in earlier} | bucket.candidates.keys() | set(snaps))
    lo = max(0, bisect.bisect_left(known, snaps[0]) - n)
    hi = bisect.bisect_right(known, snaps[-1])
    return known[lo:hi]


async def _figures(
    series_id: str, snaps: list[int], load_series: LoadSeries, load_bucket: LoadBucket
) -> ReferenceSeries:
    definition = (await load_series(series_id)).definition
    if definition is None:
        return ReferenceSeries(series_id)
    decider = Decider(definition, CommandContext("", "", 0))
    by_bucket: dict[int, list[int]] = {}
    for snap_us in snaps:
        by_bucket.setdefault(bucket_of(snap_us, definition.frequency), []).append(snap_us)
    figures = {}
    for bucket_us, at in by_bucket.items():
        officials = (await load_bucket(series_id, bucket_us)).officials.rows(at)
        for snap_us, official in zip(at, officials, strict=True):
            if official is not None and (figure := decider.figure(official.raw)) is not None:
                figures[snap_us] = OfficialFigure(figure, official.version)
    return ReferenceSeries(series_id, figures)
