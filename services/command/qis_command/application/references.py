"""The other series' official figures a bucket's cross-series checks need
(qis_domain.cross_series), read from their write-side buckets when the command is decided.

Read like any aggregate (the repository's cached buckets, brought up to date from the event
store), never from the read model: what the checks compare with is what the command side knew
when it decided, and each figure keeps the official version it came from, for the evidence.
Read inside the decision, so that a retry after a conflict reads them again with the rest.
Only the snaps a check may use are read: the bucket's points of the command, and the points
before them that the checks look back to (this series' received points, within the look-back
floor); a reference series that is not defined gives no figures, so no check runs.

The day_over_day rule reads the series' own officials the same way (`prior_officials`): at the
prior snaps of the command's points, from the buckets as loaded for the command or, for a prior
session in an earlier bucket, from that bucket.

Service levels read the exchange calendar's sessions (`level_sessions`), for the scheduler and
for the decision of a value that may arrive late.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from zoneinfo import ZoneInfo

from qis_domain.cross_series import CrossSeriesView, OfficialFigure, ReferenceSeries, reach
from qis_domain.day_over_day import PriorOfficials, SessionDays, Weekdays
from qis_domain.decisions import Decider, SeriesView
from qis_domain.definitions import SeriesDefinition
from qis_domain.reference_data import ReferenceData
from qis_domain.series_bucket import SeriesBucket, look_back_floor
from qis_domain.service_levels import Sessions
from qis_domain.snaps import Snap, bucket_of
from qis_domain.values import DataValue

from qis_command.application.ports import TradingCalendar

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
    figures = await _officials(series_id, definition, snaps, load_bucket, {})
    return ReferenceSeries(series_id, figures)


async def prior_officials(
    series_id: str,
    definition: SeriesDefinition,
    snaps: Sequence[int],
    sessions: SessionDays | None,
    loaded: Sequence[SeriesBucket],
    load_bucket: LoadBucket,
) -> PriorOfficials | None:
    """What the day_over_day rule of a command on `snaps` compares with (None: the series
    has no such rule): the officials of their prior snaps, read from the command's `loaded`
    buckets (as they stood before it) or loaded. `sessions`: the calendar's, from a session
    before the earliest snap's day (None: a series without a calendar, whose sessions are its
    service level's weekdays)."""
    if (rule := definition.validation.day_over_day) is None:
        return None
    level = definition.service_level
    days = sessions if sessions is not None or level is None else Weekdays(level.weekdays)
    prior = PriorOfficials(rule, ZoneInfo(definition.time_zone), days)
    wanted = sorted({at for s in snaps if (at := prior.prior_snap(s)) is not None})
    own = {b.bucket_us: b for b in loaded}
    prior.recorded.update(await _officials(series_id, definition, wanted, load_bucket, own))
    return prior


async def _officials(
    series_id: str,
    definition: SeriesDefinition,
    snaps: Sequence[int],
    load_bucket: LoadBucket,
    loaded: Mapping[int, SeriesBucket],
) -> dict[int, OfficialFigure]:
    """The official figures of a series at `snaps` (where it has one), from its buckets:
    those `loaded` already, else loaded."""
    decider = Decider.reading(definition)
    by_bucket: dict[int, list[int]] = {}
    for snap_us in snaps:
        by_bucket.setdefault(bucket_of(snap_us, definition.frequency), []).append(snap_us)
    figures = {}
    for bucket_us, at in by_bucket.items():
        bucket = loaded.get(bucket_us) or await load_bucket(series_id, bucket_us)
        for snap_us, official in zip(at, bucket.officials.rows(at), strict=True):
            if official is not None and (figure := decider.figure(official.raw)) is not None:
                figures[snap_us] = OfficialFigure(figure, official.version)
    return figures


def level_sessions(calendar: TradingCalendar, code: str) -> Sessions:
    """The sessions of exchange `code` as service levels read them (none without a code)."""

    def sessions(first: date, last: date) -> tuple[frozenset[date], date, date] | None:
        if not code:
            return None
        return (calendar.sessions(code, first, last), *calendar.coverage(code))

    return sessions
