"""The per-point state of one series over one time bucket: values per source, the reconciled
candidate, the official versions, open quality issues, cut-offs and overrides, and the commands
already handled.

A series' points are split into buckets (see snaps.BUCKET_SPAN_US) so that deciding a command
reads a bounded state, whatever the length of the series' history. State keeps values in their
encoded event form and decodes one only when a decision compares it, and keeps them in columns
(`_Points`: ascending int64 snaps, one object array per field) rather than an object per point:
applying a 1,000-point event in snap order appends to a few arrays, decisions look up a whole
command's snaps at once, and the collector has no per-point containers to rescan. An ingest
reads its snaps into an array once, for its decision and for the apply of its events alike
(`_Snaps`, carried by the events it makes). The values of two sources of a point are columns
too (`_Observations.pairs`); a point with more, or with a flagged or rejected value, is a dict
of its own (`_Observations.mixed`).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import compress, repeat
from operator import itemgetter
from typing import Any, NamedTuple, TypeGuard, TypeVar, cast

import numpy as np
import numpy.typing as npt

from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.cross_series import CrossSeriesView, check_cross_series, reach
from qis_domain.decisions import (
    PRIORITY,
    Candidate,
    Contributions,
    Decider,
    Observed,
    Reconciled,
    SeriesView,
    Timeline,
    flags_of,
    issues_of,
    point_issue,
    tuples_of,
)
from qis_domain.definitions import (
    JumpWindow,
    ReconciliationMethod,
    SeriesDefinition,
    ValidationRules,
)
from qis_domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DomainEvent,
    Issue,
    ManualOverrideExpired,
    ManualOverrideSet,
    PublicationScheduled,
    QualityApproved,
    QualityIssueDetected,
    QualityOverridden,
    QualityRejected,
    QualityRetracted,
    RawValue,
)
from qis_domain.names import issue_resource, point_resource
from qis_domain.quality import ONE, IssueStatus, PointStatus
from qis_domain.reconciliation import (
    close_proven,
    midpoints_exact,
    pair_contributors,
    within_tolerance,
)
from qis_domain.rules import (
    Received,
    RuleFailure,
    Severity,
    approx,
    check_history,
    check_session,
    check_spike,
    check_values,
    history_suspects,
    text_floats,
)
from qis_domain.scalar_points import ScalarFigures, ScalarPoints, ScalarValues
from qis_domain.service_levels import LATE_ARRIVAL, LATE_PUBLICATION, Arrivals
from qis_domain.snaps import BUCKET_SPAN_US, Frequency, Snap
from qis_domain.structure_checks import check_structures
from qis_domain.values import DataType, DataValue, encode_value, scalar_figures

MANUAL = "manual"
CUTOFF = "cutoff"
_POINT_STATUSES = {s.value: s for s in PointStatus}  # a DataReconciled's column, decoded
_RESOLUTIONS: dict[str, type[QualityApproved | QualityRejected | QualityOverridden]] = {
    "approve": QualityApproved,
    "reject": QualityRejected,
    "override": QualityOverridden,
}
_RESOLVED: dict[type[DomainEvent], IssueStatus] = {
    QualityApproved: IssueStatus.APPROVED,
    QualityRejected: IssueStatus.REJECTED,
    QualityOverridden: IssueStatus.OVERRIDDEN,
    QualityRetracted: IssueStatus.RETRACTED,
}
_Resolution = QualityApproved | QualityRejected | QualityOverridden | QualityRetracted
# The rules of a value's look-back (rules.check_history) that a backfill or a correction of
# the figures before it judges again; `spike`, about the point before, is judged with them.
_JUDGED_AGAIN = frozenset({"jump", "spike_zscore", "stale"})
AGAIN = "look-back judged again"
REPLACED = "the source replaced the value"
NO_VIEW = SeriesView()
_V = TypeVar("_V", bound=tuple[Any, ...])
_T = TypeVar("_T")
_SCALARS = (DataType.PRICE, DataType.VOLUME)
LOOK_BACK_BUCKETS = 3
"""How far "the previous point" reaches: into at most this many buckets before a point's own.
A longer gap restarts the look-back rules, the same way whether or not the points on either
side of it came in one command."""


def bucket_stream(series_id: str, bucket_us: int) -> str:
    return f"series/{series_id}/points/{bucket_us}"


@dataclass(frozen=True, slots=True)
class Recorded:
    """Where an event being applied came from: the command that caused it and its place in the
    log (the part of the metadata the state needs)."""

    command_id: str
    user_id: str
    position: int
    stream_version: int
    recorded_at_us: int | None = None  # its commit time, when read from the store


class Official(NamedTuple):
    version: int
    raw: RawValue
    manual: bool  # a manual value: automatic reconciliation does not override it
    published_at_us: int  # when version 1 was decided, by the deciding command's clock
    by: str  # who caused the current version


class IssueState(NamedTuple):
    snap_us: int
    source_id: str
    rule: str
    blocking: bool
    status: IssueStatus = IssueStatus.OPEN


@dataclass(frozen=True, slots=True)
class PointSummary:
    """One point as quality metrics see it."""

    snap_us: int
    figures: dict[str, Decimal | None]  # per source that counts
    official: DataValue | None
    published_at_us: int
    checked: int  # source values the rules looked at
    clean: int  # ...and that passed every rule


_NO_SNAPS = np.zeros(0, dtype=np.int64)
# Bounds below and above every snap: look-ups over a whole bucket.
_SNAP_MIN, _SNAP_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
# A command's points (snap, value) read a column at a time, with no Python call per point.
_SNAP, _VALUE = itemgetter(0), itemgetter(1)
_LATENESS = (LATE_ARRIVAL, LATE_PUBLICATION)  # rules about when a value came
_LateAt = Callable[[int, int], tuple[str, int] | None]
"""Of a point's snap and deadline, the evidence's name and time of what makes it late (None:
not late)."""


def snap_array(snaps: Sequence[int] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Snaps as an int64 array. A list is read by fromiter: asarray first inspects every
    element for a shape, at five times the cost. A command's snaps (`_Snaps`) are read once."""
    if type(snaps) is _Snaps:
        return snaps.array
    if isinstance(snaps, np.ndarray):
        return snaps.astype(np.int64, copy=False)
    return np.fromiter(snaps, dtype=np.int64, count=len(snaps))


class _Snaps(list[int]):
    """An ingest's snaps (ascending), the list its events carry, with their int64 array made
    once: the decision's lookups, and the apply of each of its events that carries this very
    list (`_EventColumns`), read the array where each would convert the list again (some 25 µs
    a thousand snaps). Made only by a decision, it never changes, as no event's column does
    once made; its array is read-only. Stored and read back, it is a list like any other,
    converted when applied."""

    __slots__ = ("array",)

    def __init__(self, snaps: Iterable[int], array: np.ndarray[Any, Any]) -> None:
        super().__init__(snaps)
        array.setflags(write=False)
        self.array = array


class _Contributions(list[dict[str, str]]):
    """A DataReconciled's contributions as a decision made them, with the sources of each row
    (its keys, in order; one tuple per distinct list of them, as `_contributors` makes them):
    the apply of the event keeps that column for its candidates rather than read each row's
    keys. Made and kept as `_Snaps` is."""

    __slots__ = ("sources",)

    def __init__(self, rows: Iterable[dict[str, str]], sources: list[tuple[str, ...]]) -> None:
        super().__init__(rows)
        self.sources = sources


def _locate(
    known: np.ndarray[Any, Any], at: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Where each of the snaps `at` is in the ascending snaps `known`, and whether it is
    there."""
    pos = known.searchsorted(at)
    if not len(known):
        return pos, np.zeros(len(at), dtype=bool)
    # A snap past the last is compared with the last, which is smaller: one gather, no masks.
    return pos, known.take(pos, mode="clip") == at


def _objects(column: Iterable[Any], n: int) -> np.ndarray[Any, Any]:
    """A column as a one-dimensional object array (tuples stay elements, not rows)."""
    return np.fromiter(column, dtype=object, count=n)


def _rereadable(column: object) -> TypeGuard[_Column]:
    """Whether `column` can be read again later (not an iterator)."""
    return type(column) in _REREADABLE


class _Room:
    """Buffers that the columns of one or more copies of a `_Points` are the first `used` rows
    of. Rows below `used` never change; the copy whose columns end at `used` owns the rows past
    it and appends there in place, any other copy appends to buffers of its own. Appending a
    batch then copies the batch, not the bucket's columns so far, and a copy costs nothing."""

    __slots__ = ("buffers", "used")

    def __init__(self, buffers: tuple[np.ndarray[Any, Any], ...], used: int) -> None:
        self.buffers = buffers
        self.used = used


_NO_OBJECTS = _objects((), 0)


class _Fill(NamedTuple):
    """A column of one value (for `_Points.put`): written without an object per row."""

    value: Any


class _Mapped(NamedTuple):
    """A column `map(convert, column)` (for `_Points.put`), converted when first read: a
    bucket being loaded may never read it."""

    convert: Callable[[Any], Any]
    column: Sequence[Any]


_Column = Sequence[Any] | np.ndarray[Any, Any] | _Fill | _Mapped
_REREADABLE = {list, tuple, np.ndarray, _Fill, _Mapped}


class _Later(NamedTuple):
    """The rows [start, stop) appended by one batch, a column per field."""

    start: int
    stop: int
    columns: tuple[_Column, ...]


_LATER_BATCHES = 8
"""Appended batches a bucket keeps unwritten at most: beyond, it writes them, so that a
bucket filled a few points at a time holds arrays rather than a list per field and batch."""


def _grown(column: np.ndarray[Any, Any], rows: int, size: int) -> np.ndarray[Any, Any]:
    """A buffer of `size` rows that begins with the first `rows` of `column`: rows after them
    are unset."""
    out = np.empty(size, dtype=column.dtype)
    out[:rows] = column[:rows]
    return out


def _made(column: _Column | Iterable[Any], n: int) -> np.ndarray[Any, Any]:
    """A column of `n` rows as a one-dimensional object array."""
    if isinstance(column, _Fill):
        out = np.empty(n, dtype=object)
        out.fill(column.value)
        return out
    if isinstance(column, _Mapped):
        return _objects(map(column.convert, column.column), n)
    return _objects(column, n)


class _Points(Mapping[int, _V]):
    """Snap -> a NamedTuple `kind`, in columns: the snaps ascending (int64) and one object
    array per field. A value is made when read. Applying a batch event in order appends to
    the arrays (in place, past the rows of every copy: `_Room`), with no object per point;
    rows are otherwise replaced, never changed in place, so a copy of the state shares them.

    The rows an append adds to each field are written when that field is first read
    (`_later`), not by the append: a bucket being loaded is asked which snaps it holds, and
    seldom for most of its fields. Writing them then fills rows of buffers the copies that
    hold those rows share, with the same values whichever copy writes first."""

    __slots__ = ("_done", "_fields", "_kind", "_later", "_names", "_room", "snaps")

    def __init__(
        self,
        kind: type[_V],
        snaps: np.ndarray[Any, Any] = _NO_SNAPS,
        fields: tuple[np.ndarray[Any, Any], ...] | None = None,
        room: _Room | None = None,
        later: tuple[_Later, ...] = (),
        done: tuple[int, ...] = (),
    ) -> None:
        self._kind = kind
        self._names: tuple[str, ...] = cast(Any, kind)._fields
        self.snaps = snaps
        self._fields = fields or (_NO_OBJECTS,) * len(self._names)
        self._room = room
        self._later = later
        self._done = done or (0,) * len(self._names)  # per field, the batches it has written

    def copy(self) -> _Points[_V]:
        return _Points(self._kind, self.snaps, self._fields, self._room, self._later, self._done)

    def __len__(self) -> int:
        return len(self.snaps)

    def __iter__(self) -> Iterator[int]:
        """Ascending."""
        return iter(self.snaps.tolist())

    def __contains__(self, snap_us: object) -> bool:
        # numpy's integers too: snaps often come from a column.
        return isinstance(snap_us, int | np.integer) and self._find(int(snap_us)) >= 0

    def __getitem__(self, snap_us: int) -> _V:
        i = self._find(snap_us)
        if i < 0:
            raise KeyError(snap_us)
        return tuple.__new__(self._kind, [f[i] for f in self._written()])

    def _find(self, snap_us: int) -> int:
        i = int(self.snaps.searchsorted(snap_us))
        return i if i < len(self.snaps) and self.snaps[i] == snap_us else -1

    def field(self, name: str) -> np.ndarray[Any, Any]:
        return self._write(self._names.index(name))

    def _write(self, j: int) -> np.ndarray[Any, Any]:
        """Field `j`, its rows still to write (`_later`) written."""
        field = self._fields[j]
        later, done = self._later, self._done
        if done[j] < len(later):
            for start, stop, columns in later[done[j] :]:
                field[start:stop] = _made(columns[j], stop - start)
            done = (*done[:j], len(later), *done[j + 1 :])
            if min(done) == len(later):
                later, done = (), (0,) * len(done)
            self._later, self._done = later, done
        return field

    def _written(self) -> tuple[np.ndarray[Any, Any], ...]:
        """Every field, its rows still to write written."""
        if self._later:
            for j in range(len(self._names)):
                self._write(j)
        return self._fields

    def locate(
        self, snaps: Sequence[int] | np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Where each of `snaps` is (an index into the columns) and whether it is there."""
        return _locate(self.snaps, snap_array(snaps))

    def has(self, snaps: Sequence[int]) -> np.ndarray[Any, Any]:
        return self.locate(snaps)[1]

    def rows(self, snaps: Sequence[int]) -> list[_V | None]:
        pos, found = self.locate(snaps)
        made = iter(self.at(pos[found]))
        return [next(made) if ok else None for ok in found.tolist()]

    def at(self, pos: np.ndarray[Any, Any]) -> Iterator[_V]:
        """The values at positions `pos` of the columns."""
        return tuples_of(self._kind, *(f[pos].tolist() for f in self._written()))

    def put(
        self, snaps: Sequence[int] | np.ndarray[Any, Any], *columns: _Column | Iterable[Any]
    ) -> None:
        """Sets the values at `snaps`, one column per field: new snaps after the last are
        appended as they come; others replace values or are merged in order. A snap listed
        twice takes its last value, as a map would."""
        n = len(snaps)
        if not n:
            return
        at = snap_array(snaps)
        ascending = bool((at[1:] > at[:-1]).all())
        if ascending and (not len(self.snaps) or at[0] > self.snaps[-1]):
            self._append(at, columns)
            return
        made = [_made(c, n) for c in columns]
        if not ascending:
            _, first_from_end = np.unique(at[::-1], return_index=True)
            if len(first_from_end) < n:
                lasts = n - 1 - first_from_end
                at, made = at[lasts], [c[lasts] for c in made]
        pos, found = self.locate(at)
        fields = [f.copy() for f in self._written()]
        for f, c in zip(fields, made, strict=True):
            f[pos[found]] = c[found]
        new = ~found
        self._room = None
        if not new.any():
            self._fields = tuple(fields)
            return
        merged = np.concatenate((self.snaps, at[new]))
        order = merged.argsort(kind="stable")
        self.snaps = merged[order]
        self._fields = tuple(
            np.concatenate((f, c[new]))[order] for f, c in zip(fields, made, strict=True)
        )

    def _append(self, at: np.ndarray[Any, Any], columns: Sequence[_Column | Iterable[Any]]) -> None:
        """Appends rows after the last: the snaps `at`, and a column per field, written
        when the field is read (a column that can be read only once, now)."""
        n, k = len(self.snaps), len(at)
        room = self._room
        if room is None or room.used != n or len(room.buffers[0]) < n + k:
            # To spare, an eighth of the rows so far or room for another batch as large as this
            # one, whichever is more (but no more than the rows so far): a bucket filled a few
            # points at a time is copied every n / 8 points instead of at every batch, one
            # filled a thousand points at a time at every other batch rather than at each, one
            # filled at once holds no unused room, and a full one at most a batch.
            size = n + k + max(n // 8, min(n, k))
            # Of each field, the rows written so far: those still to write (`_later`) are
            # written into the new buffer when the field is read, not copied unset now.
            later = self._later
            written = [later[d].start if d < len(later) else n for d in self._done]
            buffers = (self.snaps, *self._fields)
            room = self._room = _Room(tuple(map(_grown, buffers, (n, *written), repeat(size))), n)
        room.buffers[0][n : n + k] = at
        room.used = n + k
        self.snaps, *fields = (buffer[: n + k] for buffer in room.buffers)
        self._fields = tuple(fields)
        kept = tuple(c if _rereadable(c) else _objects(c, k) for c in columns)
        self._later = (*self._later, _Later(n, n + k, kept))
        if len(self._later) > _LATER_BATCHES:
            self._written()

    def drop(self, snaps: Iterable[int]) -> None:
        pos, found = self.locate(np.fromiter(snaps, dtype=np.int64))
        self.drop_at(pos[found])

    def drop_at(self, pos: np.ndarray[Any, Any] | list[int]) -> None:
        """Drops the values at positions `pos` of the columns."""
        if len(pos):
            keep = np.ones(len(self.snaps), dtype=bool)
            keep[pos] = False
            self._room = None
            self.snaps = self.snaps[keep]
            self._fields = tuple(f[keep] for f in self._written())


def _clean(raws: Sequence[RawValue], users: Iterable[str]) -> Iterator[Observed]:
    """Values without failures, not rejected, from columns."""
    n = len(raws)
    return tuples_of(
        Observed, raws, users, repeat((), n), repeat((), n), repeat(False, n), repeat(False, n)
    )


class _Plain(NamedTuple):
    """A point's one clean value (no failure, not rejected): the common case, in columns."""

    source_id: str
    raw: RawValue
    user_id: str


class _Pair(NamedTuple):
    """A point's clean values of two sources (the case of two-source reconciliation), in
    columns: the first to arrive, then the other, the order of the point's dict."""

    source_id: str
    raw: RawValue
    user_id: str
    other_id: str
    other_raw: RawValue
    other_user_id: str


class _Observations(Mapping[int, dict[str, Observed]]):
    """Snap -> {source: Observed}: the points with one clean value (`plain`) or clean values
    of two sources (`pairs`) in columns, the others (more sources, failures, rejections) one
    dict each (`mixed`); a snap is in one of them."""

    __slots__ = ("mixed", "pairs", "plain")

    def __init__(self) -> None:
        self.plain = _Points(_Plain)
        self.pairs = _Points(_Pair)
        self.mixed: dict[int, dict[str, Observed]] = {}

    def copy(self) -> _Observations:
        out = _Observations()
        out.plain, out.pairs, out.mixed = self.plain.copy(), self.pairs.copy(), dict(self.mixed)
        return out

    def __len__(self) -> int:
        return len(self.plain) + len(self.pairs) + len(self.mixed)

    def __iter__(self) -> Iterator[int]:
        yield from self.plain
        yield from self.pairs
        yield from self.mixed

    def __contains__(self, snap_us: object) -> bool:
        return snap_us in self.mixed or snap_us in self.plain or snap_us in self.pairs

    def __getitem__(self, snap_us: int) -> dict[str, Observed]:
        if (mixed := self.mixed.get(snap_us)) is not None:
            return mixed
        if snap_us in self.pairs:
            return dict(_pair_values(self.pairs[snap_us]))
        source_id, raw, user_id = self.plain[snap_us]
        return {source_id: Observed(raw, user_id)}

    def has(self, snaps: Sequence[int]) -> np.ndarray[Any, Any]:
        found = self.plain.has(snaps)
        if len(self.pairs):
            found |= self.pairs.has(snaps)
        if self.mixed:
            found |= self._in_mixed(snaps)
        return found

    def held_apart(self, source_id: str, snaps: Sequence[int]) -> Iterator[tuple[int, Observed]]:
        """(index in `snaps`, value) of the values of `source_id` at `snaps` held as dicts, as
        every flagged or rejected value is: the only ones with issues."""
        if self.mixed:
            for i in np.flatnonzero(self._in_mixed(snaps)).tolist():
                if (value := self.mixed[snaps[i]].get(source_id)) is not None:
                    yield i, value

    def _in_mixed(self, snaps: Sequence[int]) -> np.ndarray[Any, Any]:
        """Which of `snaps` are held as dicts: fewer dicts than snaps are looked for among
        their sorted snaps, without a look-up per snap."""
        mixed = self.mixed
        if len(mixed) < len(snaps):
            return _locate(_sorted_keys(mixed), snap_array(snaps))[1]
        return np.fromiter(map(mixed.__contains__, snaps), dtype=bool, count=len(snaps))

    def rows(self, snaps: Sequence[int]) -> list[dict[str, Observed] | None]:
        pos, found = self.plain.locate(snaps)
        out: list[dict[str, Observed] | None] = [None] * len(snaps)
        if found.any():  # else the columns need not be read
            plain = ({source: value} for source, value in self._plain_at(pos[found]))
            out = [next(plain) if ok else None for ok in found.tolist()]
        if len(self.pairs):
            pos, found = self.pairs.locate(snaps)
            at = np.flatnonzero(found)
            for i, pair in zip(at.tolist(), self.pairs.at(pos[at]), strict=True):
                out[i] = dict(_pair_values(pair))
        if self.mixed:
            for i, snap_us in enumerate(snaps):
                if (mixed := self.mixed.get(snap_us)) is not None:
                    out[i] = mixed
        return out

    def of_source(
        self, source_id: str, lo_us: int, hi_us: int, among: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The snaps in [lo_us, hi_us) where `source_id` has a value that counts (not
        rejected), ascending, and those values: read from the columns of that range alone, and
        from the dicts of the snaps `among` (every snap of the range where a value counts: the
        bucket's candidates) or of every dict, whichever are fewer."""
        snaps: list[np.ndarray[Any, Any]] = []
        raws: list[np.ndarray[Any, Any]] = []
        for points, fields in (
            (self.plain, (("source_id", "raw"),)),
            (self.pairs, (("source_id", "raw"), ("other_id", "other_raw"))),
        ):
            i, j = points.snaps.searchsorted((lo_us, hi_us)).tolist()
            for source, raw in fields if j > i else ():
                mine = points.field(source)[i:j] == source_id
                snaps.append(points.snaps[i:j][mine])
                raws.append(points.field(raw)[i:j][mine])
        dicts = self.mixed
        if len(among) < len(dicts):
            at: Iterable[int] = (s for s in among.tolist() if s in dicts)
        else:
            at = (s for s in dicts if lo_us <= s < hi_us)
        mixed = [
            (snap_us, value.raw)
            for snap_us in at
            if (value := dicts[snap_us].get(source_id)) is not None and not value.rejected
        ]
        if mixed:
            snaps.append(np.fromiter((s for s, _ in mixed), dtype=np.int64, count=len(mixed)))
            raws.append(_objects((r for _, r in mixed), len(mixed)))
        if not snaps:
            return _NO_SNAPS, _NO_OBJECTS
        at, values = np.concatenate(snaps), np.concatenate(raws)
        order = at.argsort(kind="stable")
        return at[order], values[order]

    def _plain_at(self, pos: np.ndarray[Any, Any] | list[int]) -> Iterator[tuple[str, Observed]]:
        """The points at positions `pos` of the columns: (source, its value)."""
        columns = (self.plain.field(name)[pos].tolist() for name in _Plain._fields)
        sources, raws, users = columns
        return zip(sources, _clean(raws, users), strict=True)

    def _dicts_at(
        self, points: _Points[Any], pos: np.ndarray[Any, Any]
    ) -> Iterator[dict[str, Observed]]:
        """The points at positions `pos` of `points` (the plain or the pair columns), one dict
        of values each."""
        if points is self.plain:
            return ({source: value} for source, value in self._plain_at(pos))
        return (dict(_pair_values(pair)) for pair in self.pairs.at(pos))

    def __setitem__(self, snap_us: int, observed: dict[str, Observed]) -> None:
        if snap_us not in self.mixed:
            self.plain.drop((snap_us,))
            self.pairs.drop((snap_us,))
        self.mixed[snap_us] = observed

    def mix(self, snaps: Iterable[int]) -> None:
        """Moves the `snaps` held in columns to one dict each (before they change other than
        by a clean value of one of their sources)."""
        at = [s for s in snaps if s not in self.mixed]
        for points in (self.plain, self.pairs):
            pos, found = points.locate(at)
            if found.any():
                moving = snap_array(at)[found].tolist()
                self.mixed.update(zip(moving, self._dicts_at(points, pos[found]), strict=True))
                points.drop(moving)

    def ingest(self, source_id: str, snaps: list[int], raws: list[RawValue], user_id: str) -> None:
        """One source's clean values: into the columns of one value, or of two when the point
        has one other source's value; a third source's value makes the point a dict."""
        n = len(snaps)
        # The points whose value is their only one: all, or (in arrays) those apart from others.
        alone: Sequence[int] | np.ndarray[Any, Any] = snaps
        alone_raws: _Column = raws
        if self.mixed or len(self.plain) or len(self.pairs):
            pos, found = self.plain.locate(snaps)
            joins = np.zeros(n, dtype=bool)  # a value of another source in the columns
            if found.any():
                joins[found] = self.plain.field("source_id")[pos[found]] != source_id
            paired = self.pairs.has(snaps) if len(self.pairs) else np.zeros(n, dtype=bool)
            mixed = self.mixed
            known = self._in_mixed(snaps) if mixed else np.zeros(n, dtype=bool)
            apart = joins | paired | known
            if apart.any():
                at, values = snap_array(snaps), _objects(raws, n)
                if paired.any():
                    self._ingest_paired(source_id, at, values, user_id, paired)
                joining = np.flatnonzero(joins)
                columns = (self.plain.field(name)[pos[joining]] for name in _Plain._fields)
                self.pairs.put(
                    at[joining], *columns, _Fill(source_id), values[joining], _Fill(user_id)
                )
                self.plain.drop_at(pos[joining])
                for i in np.flatnonzero(known).tolist():
                    # a new dict: the old one may be shared with a copy of the state
                    mixed[snaps[i]] = {**mixed[snaps[i]], source_id: Observed(raws[i], user_id)}
                alone, alone_raws = at[~apart], values[~apart]
        self.plain.put(alone, _Fill(source_id), alone_raws, _Fill(user_id))

    def _ingest_paired(
        self,
        source_id: str,
        snaps: np.ndarray[Any, Any],
        raws: np.ndarray[Any, Any],
        user_id: str,
        paired: np.ndarray[Any, Any],
    ) -> None:
        """The values of the `paired` points (a mask of `snaps`): each replaces its source's
        value in the pair, or makes the point a dict of three."""
        at = np.flatnonzero(paired)
        pairs = self.pairs
        at_snaps = snaps[at]
        pos = pairs.locate(at_snaps)[0]
        first, raw, user, other, other_raw, other_user = (
            pairs.field(name)[pos] for name in _Pair._fields
        )
        new = raws[at]
        mine, theirs = first == source_id, other == source_id
        third = ~(mine | theirs)
        if third.any():
            moving = at_snaps[third].tolist()
            made = pairs.at(pos[third])
            values = new[third].tolist()
            self.mixed.update(
                (s, {**dict(_pair_values(pair)), source_id: Observed(value, user_id)})
                for s, pair, value in zip(moving, made, values, strict=True)
            )
            pairs.drop(moving)
        keep = ~third
        pairs.put(
            at_snaps[keep],
            first[keep],
            np.where(mine, new, raw)[keep],
            np.where(mine, user_id, user)[keep],
            other[keep],
            np.where(theirs, new, other_raw)[keep],
            np.where(theirs, user_id, other_user)[keep],
        )


def _sorted_keys(points: Mapping[int, Any]) -> np.ndarray[Any, Any]:
    """The snaps of `points`, ascending."""
    return np.sort(np.fromiter(points, dtype=np.int64, count=len(points)))


def _pair_values(pair: _Pair) -> tuple[tuple[str, Observed], tuple[str, Observed]]:
    source_id, raw, user_id, other_id, other_raw, other_user_id = pair
    return (source_id, Observed(raw, user_id)), (other_id, Observed(other_raw, other_user_id))


class SeriesBucket:
    def __init__(self, series_id: str, bucket_us: int) -> None:
        self.series_id = series_id
        self.bucket_us = bucket_us
        self.version: int | None = None  # stream version of the last applied event
        # Per snap (UTC µs), in columns rather than one object per point: applying a batch
        # event in snap order appends to a few arrays. Everything inside them is immutable and
        # replaced, never changed in place, so `clone` shares it.
        self.observed = _Observations()
        self.candidates = _Points(Candidate)
        self.officials = _Points(Official)
        self.issues: dict[str, IssueState] = {}
        self.breaks_approved: set[int] = set()
        self.scheduled: dict[int, int] = {}  # snap -> cut-off time
        self.overrides: dict[int, int] = {}  # snap -> expiry (0: none)
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return bucket_stream(self.series_id, self.bucket_us)

    @property
    def size(self) -> int:
        """What the aggregate cache counts: everything here that grows with the stream. A hot
        bucket that takes one point per command, or the same points restated again and again,
        holds a command outcome (or an issue) per event besides its points."""
        return len(self.observed) + len(self._outcomes) + len(self.issues) or 1

    def outcome_of(self, command_id: str) -> CommandOutcome | None:
        return self._outcomes.get(command_id)

    def clone(self) -> SeriesBucket:
        """A copy that shares no mutable state with this one (the maps' contents are
        immutable): a decision works on its own copy, so nothing changes under it."""
        copy = SeriesBucket(self.series_id, self.bucket_us)
        if self.version is None:
            # Nothing applied: the new one is the copy. An ingest reads the buckets after its
            # own for its look-back rules (`rejudge`): in snap order, empty ones.
            return copy
        copy.version = self.version
        copy.observed = self.observed.copy()
        copy.candidates = self.candidates.copy()
        copy.officials = self.officials.copy()
        copy.issues = dict(self.issues)
        copy.breaks_approved = set(self.breaks_approved)
        copy.scheduled = dict(self.scheduled)
        copy.overrides = dict(self.overrides)
        copy._outcomes = dict(self._outcomes)
        return copy

    def last_structure(self, decider: Decider, source_id: str) -> DataValue | None:
        """The received value of the bucket's last point of `source_id` (None: none)."""
        return self._last_structure(source_id, [], [], decider)

    def received(self, decider: Decider, source_id: str, last: int | None = None) -> list[Received]:
        """One source's received figures, ascending: what the look-back rules of its later
        values compare with. `last`: only the last that many (what a later bucket's values
        can reach), so that a command does not decode a whole earlier bucket."""
        return self._received(source_id, _SNAP_MIN, _SNAP_MAX, decider, last)

    def _received_near(
        self, source_id: str, snaps_us: list[int], n: int, decider: Decider, reach_in: bool
    ) -> list[Received]:
        """The received figures of `source_id` that a command of its values at `snaps_us`
        (ascending) compares with, judges again or leaves for later buckets to compare with:
        those between its points, the `n` before them, the first and the last `n` of the
        bucket after them (the command's own points get new ones), and with `reach_in` (values
        of the command in earlier buckets) the bucket's first `n`. A command decodes what it
        may need, not the whole bucket."""
        first, last = snaps_us[0], snaps_us[-1] + 1
        snaps, raws = self._of_source(source_id, first, last)
        between = ~np.isin(snaps, snap_array(snaps_us), assume_unique=True)
        after, after_raws = self._of_source(source_id, last, _SNAP_MAX)
        if len(after) > 2 * n:
            after = np.concatenate((after[:n], after[-n:]))
            after_raws = np.concatenate((after_raws[:n], after_raws[-n:]))
        before = self._received(source_id, _SNAP_MIN, first, decider, n)
        if reach_in and before:
            before = [*self._firsts(source_id, before[0].snap_us, n, decider), *before]
        return [
            *before,
            *self._figures(source_id, snaps[between], raws[between], decider),
            *self._figures(source_id, after, after_raws, decider),
        ]

    def _firsts(self, source_id: str, before_us: int, n: int, decider: Decider) -> list[Received]:
        """The received figures of the first `n` values of `source_id` before `before_us`:
        those whose look-back may reach an earlier bucket."""
        snaps, raws = self._of_source(source_id, _SNAP_MIN, before_us)
        return self._figures(source_id, snaps[:n], raws[:n], decider)

    def _of_source(
        self, source_id: str, lo_us: int, hi_us: int
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """`_Observations.of_source` in [lo_us, hi_us): a snap where a value counts has a
        candidate (one whose values were all rejected has none, and none of them counts)."""
        known = self.candidates.snaps
        i, j = known.searchsorted((lo_us, hi_us)).tolist()
        return self.observed.of_source(source_id, lo_us, hi_us, known[i:j])

    def _received(
        self, source_id: str, lo_us: int, hi_us: int, decider: Decider, last: int | None
    ) -> list[Received]:
        """The received figures of `source_id` in [lo_us, hi_us), or the last `last` of them
        that have a figure, read from a window of the bucket's last points before `hi_us`
        widened (the points before it read) until it holds that many (the bucket's points are
        the candidates' snaps)."""
        if last is None:
            return self._figures(source_id, *self._of_source(source_id, lo_us, hi_us), decider)
        known = self.candidates.snaps
        end = int(known.searchsorted(hi_us))
        width, stop = 2 * last, hi_us
        found: list[Received] = []
        while True:
            start = max(lo_us, int(known[end - width])) if width < end else lo_us
            snaps, raws = self._of_source(source_id, start, stop)
            found = [*self._figures(source_id, snaps, raws, decider, last - len(found)), *found]
            if len(found) >= last or start == lo_us:
                return found
            # Only the points before those read: a sparse source is read once, not per pass.
            stop, width = start, width * 4

    @staticmethod
    def _figures(
        source_id: str,
        snaps: np.ndarray[Any, Any],
        raws: np.ndarray[Any, Any],
        decider: Decider,
        last: int | None = None,
    ) -> list[Received]:
        """The received figures of one source's values at `snaps` (ascending), or of the last
        `last` of them that have one (decoded from the end, no further): each rounded to the
        series' precision, as a candidate of that value alone is (a value without a figure has
        none)."""
        out = []
        sources = (source_id,)
        for snap_us, raw in zip(reversed(snaps.tolist()), reversed(raws.tolist()), strict=True):
            figure = decider.figure(raw)
            if figure is not None:
                figure = decider.rounded_figure(figure)
                out.append(Received(snap_us, figure, sources, approx(figure)))
                if last is not None and len(out) >= last:
                    break
        return out[::-1]

    def _structures_before(
        self,
        source_id: str,
        snaps_us: list[int],
        received: Sequence[DataValue],
        decider: Decider,
        earlier_bucket: DataValue | None,
    ) -> list[DataValue | None]:
        """The received value of `source_id` at its snap before each of `snaps_us`
        (ascending), as the command leaves it: the command's own value of the point before
        when no earlier value of the source lies between, else that value; for the source's
        first point in the bucket, `earlier_bucket` (its last structure in the earlier
        buckets, or None)."""
        known, raws = self._of_source(source_id, _SNAP_MIN, _SNAP_MAX)
        out: list[DataValue | None] = []
        for i, snap_us in enumerate(snaps_us):
            j = int(known.searchsorted(snap_us))
            theirs = (int(known[j - 1]), raws[j - 1]) if j else None
            own = (snaps_us[i - 1], received[i - 1]) if i else None
            out.append(self._latest(theirs, own, decider, earlier_bucket))
        return out

    def _last_structure(
        self,
        source_id: str,
        snaps_us: list[int],
        received: Sequence[DataValue],
        decider: Decider,
    ) -> DataValue | None:
        """The bucket's last received value of `source_id` once the command on `snaps_us`
        (ascending, with their `received` values) is decided: what the next bucket's first
        snap compares with."""
        known, raws = self._of_source(source_id, _SNAP_MIN, _SNAP_MAX)
        theirs = (int(known[-1]), raws[-1]) if len(known) else None
        own = (snaps_us[-1], received[-1]) if snaps_us else None
        return self._latest(theirs, own, decider, None)

    @staticmethod
    def _latest(
        theirs: tuple[int, RawValue] | None,
        own: tuple[int, DataValue] | None,
        decider: Decider,
        otherwise: DataValue | None,
    ) -> DataValue | None:
        """The later of the bucket's recorded value `theirs` and the command's `own` (each a
        snap and a value): the command's when none is later, else the recorded one, decoded;
        `otherwise` when there is neither."""
        if own is not None and (theirs is None or theirs[0] <= own[0]):
            return own[1]
        if theirs is not None:
            return decider.decode(theirs[1])
        return otherwise

    def due_cutoffs(self, now_us: int) -> list[int]:
        return sorted(s for s, due in self.scheduled.items() if due <= now_us)

    def due_overrides(self, now_us: int) -> list[int]:
        return sorted(s for s, expiry in self.overrides.items() if 0 < expiry <= now_us)

    def summaries(self, start_us: int, end_us: int, decider: Decider) -> list[PointSummary]:
        out = []
        snaps = [s for s in sorted(self.observed) if start_us <= s < end_us]
        for snap_us, observed, official in zip(
            snaps, self.observed.rows(snaps), self.officials.rows(snaps), strict=True
        ):
            assert observed is not None  # one of the bucket's points
            counting = {s: o for s, o in observed.items() if not o.rejected}
            out.append(
                PointSummary(
                    snap_us=snap_us,
                    figures={s: decider.decode(o.raw).number for s, o in counting.items()},
                    official=None if official is None else decider.decode(official.raw),
                    published_at_us=0 if official is None else official.published_at_us,
                    checked=len(observed),
                    clean=sum(1 for o in observed.values() if not o.failures),
                )
            )
        return out

    # --- decisions: pure functions of the state and the command, returning new events ---

    def ingest(
        self,
        definition: SeriesDefinition,
        source_id: str,
        points: Sequence[tuple[Snap, DataValue]],
        ctx: CommandContext,
        view: SeriesView = NO_VIEW,
    ) -> list[DomainEvent]:
        """New values of one source, decided in snap order: first what each point's candidate
        is made of (hence its received figure, which no rule changes), then the rules, which
        compare each value with the received figures before it (decided earlier or by this
        very command), then the candidate and settlement of each point. A run of new points
        with one clean value each, and of points with a clean value of one other source, the
        bulk-load cases, are decided in columns. The source's own later figures whose look-back
        reaches a new or changed value are judged again (`_judge_again`), and a changed value's
        open issues retracted: a source's issues depend on the figures it sent, not on the
        order they came in."""
        points, snaps, offsets = _in_snap_order(points)
        decide = Decider(definition, ctx)
        rules = definition.validation
        values, scalars, raws = _value_columns(points)
        chosen = values if decide.quantum is None else list(map(decide.rounded, values))
        prior = None if rules.day_over_day is None else view.prior
        back = look_back(definition)
        # The values' figures and their floats for the look-back rules and their float screen,
        # made once (None: no look-back rule; pairs are screened from their texts alone).
        numbers: Sequence[Decimal | None] | None = None
        incoming = None
        if back:
            numbers = [value.number for value in values] if scalars is None else list(scalars)
            incoming = _value_floats(values, None if scalars is None else cast(list[str], raws))
        pairs = (
            None
            if prior is not None
            else self._pairs(source_id, snaps, values, raws, decide, incoming)
        )
        batch = _Batch(source_id, snaps, raws, values, chosen, pairs)
        paired = np.zeros(len(snaps), dtype=bool) if pairs is None else pairs.mask
        known = self._reconciled(source_id, snaps, values, raws, decide, paired)
        failures = check_values(values, rules, scalars if numbers is None else numbers)
        if (schema := definition.structure) is not None:
            tail = view.structures
            first = None
            if tail is not None:
                first = tail.before(
                    self.bucket_us, look_back_floor(self.bucket_us, definition.frequency)
                )
            previous = self._structures_before(source_id, snaps, chosen, decide, first)
            for i, more in check_structures(values, schema, previous).items():
                failures.setdefault(i, []).extend(more)
            if tail is not None:
                tail.last[self.bucket_us] = self._last_structure(source_id, snaps, chosen, decide)
        spikes: dict[int, tuple[Received, RuleFailure]] = {}
        if incoming is not None:  # a look-back rule
            # Alone (no view), the bucket's own points are all it compares with. The source's
            # own figures only: what it is compared with never depends on what other sources
            # sent, nor on whether they came first.
            timeline = Timeline() if view.timeline is None else view.timeline
            if self.bucket_us not in timeline.covered:
                reach_in = bool(timeline.changed) and timeline.changed[0] < self.bucket_us
                near = self._received_near(source_id, snaps, back, decide, reach_in)
                timeline.add(self.bucket_us, near)
            assert numbers is not None  # made with `incoming`
            figures = numbers if chosen is values else [value.number for value in chosen]
            floats = incoming if chosen is values else _value_floats(chosen, None)
            sources: list[tuple[str, ...]] = [(source_id,)] * len(snaps)
            if scalars is not None:  # every value a price or volume: each has a figure
                timeline.put_columns(snaps, cast(list[Decimal], figures), sources, floats.tolist())
                timeline.changed.extend(snaps)
            else:
                put = [
                    p
                    for p in tuples_of(Received, snaps, figures, sources, floats.tolist())
                    if p.figure is not None
                ]
                timeline.put_all(put)
                timeline.changed.extend(p.snap_us for p in put)
            floor_us = look_back_floor(self.bucket_us, definition.frequency)
            windows = (
                [rules.jump_window(decide.local_seconds(snap_us)) for snap_us in snaps]
                if rules.jump_windows
                else None
            )
            for i, (more, spike) in _check_history(
                timeline, back, floor_us, snaps, numbers, incoming, rules, windows
            ).items():
                failures.setdefault(i, []).extend(more)
                if spike is not None:
                    spikes[i] = spike
            if view.references is not None:
                for i, more in _check_cross_series(
                    timeline, floor_us, snaps, values, rules, view.references
                ).items():
                    failures.setdefault(i, []).extend(more)
        if rules.check_calendar and (calendar := view.calendar) is not None:
            for i, snap_us in enumerate(snaps):
                if miss := check_session(decide.local_day(snap_us), calendar):
                    failures.setdefault(i, []).append(miss)
        # Decided one by one: every point but a new one with a clean value that publication
        # takes as it comes and one of a clean pair (decided in columns, `_Rows.columns`).
        if prior is not None:
            # Each point settles before the next is checked: its official version may be the
            # prior session of a later one (see qis_domain.day_over_day).
            general = set(range(len(snaps)))
        elif decide.sole_source_status is PointStatus.PUBLISHED:
            republished = np.flatnonzero(self.officials.has(snaps) & ~paired).tolist()
            general = known.keys() | failures.keys() | set(republished)
        else:
            general = set(np.flatnonzero(~paired).tolist()) | failures.keys()
        issues: list[Issue] = []
        rows = _Rows(definition)
        late = _Why(f"late source {source_id}", "late_source")
        corrected = _Why(f"corrected value from {source_id}", "corrected_source")
        start = 0  # of the run of new clean points not decided yet
        # What each point decided one by one holds now, read in one go.
        befores = dict(zip(general, self.observed.rows([snaps[i] for i in general]), strict=True))
        replaced = self._replaced(source_id, snaps)
        closing = {iid for iid, _ in replaced}
        for i in sorted(general | spikes.keys()):
            if (spike := spikes.get(i)) is not None:
                issues.extend(self._spike_issue(ctx, *spike, issues, closing))
            if i not in general:
                continue
            rows.columns(batch, start, i, self.scheduled)
            start = i + 1
            snap_us, value, raw = snaps[i], values[i], raws[i]
            before = befores[i]
            observed = {} if before is None else dict(before)
            why = corrected if source_id in observed else late
            if prior is not None and (miss := prior.check(snap_us, value)) is not None:
                failures.setdefault(i, []).append(miss)
            if point_failures := failures.get(i):
                new_issues = issues_of(ctx.command_id, snap_us, source_id, point_failures)
                issues.extend(new_issues)
                ids = tuple(issue.issue_id for issue in new_issues)
                observed[source_id] = Observed(raw, ctx.user_id, tuple(point_failures), ids)
            else:
                observed[source_id] = Observed(raw, ctx.user_id)
            made = known.get(i) or decide.reconciled(observed, (source_id, value))
            assert made is not None  # the value being ingested counts
            candidate, contributions, point_issues = decide.judged(
                snap_us, observed, made, snap_us in self.breaks_approved
            )
            issues.extend(
                i for i in point_issues if not self._has_open(snap_us, i.rule, i.source_id)
            )
            self._settle(rows, snap_us, candidate, contributions, observed, decide, why)
            if prior is not None:
                prior.settled(snap_us, rows.last_official(snap_us), decide.figure)
        rows.columns(batch, start, len(snaps), self.scheduled)
        retracted = {REPLACED: replaced, AGAIN: []}
        again: list[DomainEvent] = []
        if incoming is not None:  # a look-back rule: `timeline` holds the source's figures
            spiked = {spike[0].snap_us for spike in spikes.values()}
            again = self._judge_again(
                definition,
                source_id,
                timeline,
                snaps,
                spiked,
                closing,
                decide,
                issues,
                retracted[AGAIN],
            )
        events: list[DomainEvent] = [
            DataIngested.model_construct(
                series_id=self.series_id,
                source_id=source_id,
                data_type=definition.data_type,
                unit=definition.unit,
                snaps=snaps,
                offsets=offsets,
                values=raws,
            )
        ]
        for arrivals in view.arrivals:  # of the levels one after the other: disjoint snaps
            issues.extend(self._late_arrivals(arrivals, source_id, snaps, ctx))
        if issues:
            events.append(QualityIssueDetected(series_id=self.series_id, issues=issues))
        events.extend(self._retractions(retracted))
        return events + rows.events(self.series_id, "automatic", ctx) + again

    def rejudge(
        self, definition: SeriesDefinition, source_id: str, ctx: CommandContext, view: SeriesView
    ) -> list[DomainEvent]:
        """A bucket after those of an ingest of `source_id`, within the rules' reach: its first
        figures of the source are judged again where their look-back reaches a value of the
        ingest (the view's timeline, as the ingest's decisions left it), as `ingest` judges
        the later figures of its own buckets."""
        timeline = view.timeline
        if timeline is None or not timeline.changed or not len(self.candidates):
            return []
        decide = Decider(definition, ctx)
        timeline.put_all(self._firsts(source_id, _SNAP_MAX, look_back(definition), decide))
        issues: list[Issue] = []
        retracted: list[tuple[str, int]] = []
        again = self._judge_again(
            definition, source_id, timeline, [], (), (), decide, issues, retracted
        )
        events: list[DomainEvent] = []
        if issues:
            events.append(QualityIssueDetected(series_id=self.series_id, issues=issues))
        return events + self._retractions({AGAIN: retracted}) + again

    def unflag(self, source_id: str, snaps: Iterable[int]) -> list[QualityRetracted]:
        """Spikes about points of this bucket that a later bucket's decision no longer finds
        (the next figure of the source changed): their open issues are retracted."""
        return self._retractions({AGAIN: self._open_spikes(source_id, snaps)})

    def _judge_again(
        self,
        definition: SeriesDefinition,
        source_id: str,
        timeline: Timeline,
        own: Sequence[int],
        spiked: Container[int],
        closing: Container[str],
        decide: Decider,
        issues: list[Issue],
        retracted: list[tuple[str, int]],
    ) -> list[DomainEvent]:
        """The figures of `source_id` in this bucket whose look-back reaches a value of the
        command (the timeline's `changed` snaps; `own`: this bucket's, ascending) are judged
        again against the source's figures as they now are, so that its issues depend on the
        figures it sent, not on the order they came in: what now fails and was not raised is
        raised (added to `issues`), an open issue that no longer holds is retracted (added to
        `retracted`; a person's decision stays as it is). The spike about the point before
        each figure judged follows that point's next figure, whichever it now is (`spiked`:
        the points the command's own values found one about; `closing`: the issues the command
        retracts as about values it replaced, which a spike found again replaces). Returns the
        events of the points whose issues changed, decided again by the shared settle step: a
        held one may publish, a published one is never unpublished nor restated (its value is
        unchanged).
        In snap order (nothing of the source after the command's first value) this reads one
        point before the command's."""
        back = look_back(definition)
        floor_us = look_back_floor(self.bucket_us, definition.frequency)
        end_us = self.bucket_us + BUCKET_SPAN_US[definition.frequency]
        known, changed = timeline.snaps, timeline.changed
        if not changed:
            return []
        fresh: Container[int]
        again: list[int] = []
        if len(known) - bisect.bisect_left(known, changed[0]) == len(changed):
            # Every figure from the command's first on is the command's (snap order): none to
            # judge again, and only the point before its first value here had another next
            # figure (or none). A figure is the command's if it is not before its first.
            fresh, own = range(changed[0], _SNAP_MAX), own[:1]
        else:
            fresh = set(changed)
            reached: set[int] = set()
            for snap_us in changed:
                if floor_us <= snap_us < end_us:
                    i = bisect.bisect_left(known, snap_us)
                    reached.update(known[i + 1 : i + 1 + back])
            again = sorted(s for s in reached - fresh if self.bucket_us <= s < end_us)
        unspiked = []
        for snap_us in own:
            i = bisect.bisect_left(known, snap_us)
            if i and (before := known[i - 1]) >= floor_us and before not in fresh:
                unspiked.append(before)
        rules = definition.validation
        settle = []
        for snap_us in again:
            observed = self.observed[snap_us][source_id]
            figure = cast(Decimal, decide.figure(observed.raw))  # in the timeline: it has one
            previous = timeline.before(snap_us, back, floor_us)
            window = (
                rules.jump_window(decide.local_seconds(snap_us)) if rules.jump_windows else None
            )
            failures = check_history(figure, previous, rules, window)
            if (spike := check_spike(figure, snap_us, previous, rules)) is not None:
                issues.extend(self._spike_issue(decide.ctx, previous[-1], spike, issues, closing))
            elif previous and previous[-1].snap_us not in fresh:
                unspiked.append(previous[-1].snap_us)
            raised: dict[str, list[str]] = {}
            for failure, iid in zip(observed.failures, observed.issue_ids, strict=True):
                if failure.rule in _JUDGED_AGAIN:
                    raised.setdefault(failure.rule, []).append(iid)
            failing = {failure.rule for failure in failures}
            new = [failure for failure in failures if failure.rule not in raised]
            gone = [
                (iid, snap_us)
                for rule, iids in raised.items()
                if rule not in failing
                for iid in iids
                if self.issues[iid].status is IssueStatus.OPEN
            ]
            if new or gone:
                issues.extend(issues_of(decide.ctx.command_id, snap_us, source_id, new))
                retracted.extend(gone)
                settle.append(snap_us)
        for snap_us in unspiked:
            if snap_us in spiked:
                continue
            if snap_us >= self.bucket_us:
                retracted.extend(self._open_spikes(source_id, [snap_us]))
            else:  # the bucket that holds it retracts it (see `unflag`)
                timeline.unspiked.append(snap_us)
        if not settle:
            return []
        # Decided again on a copy of the state the new issues and retractions lead to.
        points = set(settle)
        after = self.clone()
        after._apply_issues([i for i in issues if i.snap_us in points])
        gone = [(iid, snap_us) for iid, snap_us in retracted if snap_us in points]
        for event in self._retractions({AGAIN: gone}):
            after._apply_resolution(event)
        return after._redecide(definition, settle, decide.ctx, AGAIN)

    def _open_spikes(self, source_id: str, snaps: Iterable[int]) -> list[tuple[str, int]]:
        """(issue id, snap) of the open spike issues about the values of `source_id` at
        `snaps`: on flagged values, all held as dicts (a look-up, not a row made of columns)."""
        out: list[tuple[str, int]] = []
        for snap_us in snaps:
            observed = self.observed.mixed.get(snap_us, {}).get(source_id)
            if observed is not None:
                out.extend(
                    (iid, snap_us)
                    for failure, iid in zip(observed.failures, observed.issue_ids, strict=True)
                    if failure.rule == "spike" and self.issues[iid].status is IssueStatus.OPEN
                )
        return out

    def _replaced(self, source_id: str, snaps: list[int]) -> list[tuple[str, int]]:
        """(issue id, snap) of the open issues of the values of `source_id` that an ingest at
        `snaps` replaces: about a value that no longer stands (the new one raises its own).
        The same figure sent again too: its new value raises what still fails, and the old
        issues, no longer on any value, could never be retracted (a duplicate in the queue)."""
        return [
            (iid, snaps[i])
            for i, old in self.observed.held_apart(source_id, snaps)
            for iid in old.issue_ids
            if self.issues[iid].status is IssueStatus.OPEN
        ]

    def _retractions(
        self, retracted: Mapping[str, list[tuple[str, int]]]
    ) -> list[QualityRetracted]:
        """A QualityRetracted per reason with issues (id, snap) to retract."""
        return [
            QualityRetracted(
                series_id=self.series_id,
                issue_ids=[i for i, _ in pairs],
                snaps=[s for _, s in pairs],
                reason=reason,
            )
            for reason, pairs in retracted.items()
            if pairs
        ]

    def _reconciled(
        self,
        source_id: str,
        snaps: list[int],
        values: Sequence[DataValue],
        raws: list[RawValue],
        decide: Decider,
        paired: npt.NDArray[np.bool_],
    ) -> dict[int, Reconciled]:
        """For each point (by index) the bucket knows already, but for the `paired` ones (a
        mask), what its candidate will be made of once the new value is in: no rule changes
        that."""
        out = {}
        for i in np.flatnonzero(self.observed.has(snaps) & ~paired).tolist():
            snap_us = snaps[i]
            before = self.observed[snap_us]
            observed = {**before, source_id: Observed(raws[i], decide.ctx.user_id)}
            made = decide.reconciled(observed, (source_id, values[i]))
            assert made is not None  # the value being ingested counts
            out[i] = made
        return out

    def _pairs(
        self,
        source_id: str,
        snaps: list[int],
        values: Sequence[DataValue],
        raws: list[RawValue],
        decide: Decider,
        incoming: npt.NDArray[np.float64] | None,
    ) -> _Pairs | None:
        """The points (by index) whose new value joins one other source's clean value, the same
        other source for all, where reconciling the two and settling the candidate are proven
        without a Decimal computation: scalar values within tolerance (a float screen,
        `close_proven`), and either no official version to publish over, a manual one, or one
        the candidate equals or is proven within tolerance of. What `reconcile`,
        `Decider.judged` and `_settle` decide of each is then `pair_contributors`' value
        (rounded), a clean candidate (score 1) and at most a first version: see `_Rows.pairs`."""
        d = decide.definition
        if d.data_type not in _SCALARS:
            return None
        other, found, theirs = self._other_values(source_id, snaps)
        if not found:
            return None
        first, second = decide.by_priority(source_id, other)
        policy = d.reconciliation
        method, sources = pair_contributors(policy, first, second)
        # Scalar values encode as their figure's text (`encode_value`); the other source's
        # figure is written as the per-point decisions write it, decoded.
        mine_texts = cast(list[str], [raws[i] for i in found])
        their_figures = list(map(Decimal, theirs))
        their_texts = list(map(str, their_figures))
        mine = text_floats(mine_texts) if incoming is None else incoming[found]
        their = text_floats(theirs)
        mine_first = first == source_id
        first_f, other_f = (mine, their) if mine_first else (their, mine)
        proven = close_proven(other_f, first_f, policy)
        if method is not ReconciliationMethod.PRIORITY and not midpoints_exact(
            mine_texts + their_texts, float(max(np.abs(mine).max(), np.abs(their).max()))
        ):
            return None
        status = decide.status(blocking=False, sources=2, score=ONE)
        chosen, chosen_f = mine_texts if mine_first else their_texts, first_f
        if decide.quantum is not None:
            figures = their_figures
            if mine_first:  # a scalar has a figure
                figures = cast(list[Decimal], [values[i].number for i in found])
            chosen = [str(decide.rounded_figure(figure)) for figure in figures]
            chosen_f = text_floats(chosen)
        firsts = [False] * len(found)
        if status is PointStatus.PUBLISHED:
            # The official version a candidate may move: none (a first one), a manual one (it
            # stays), the candidate's very value, or one to compare with in floats.
            # Read from the columns: no Official made per point.
            officials = self.officials
            pos, known = officials.locate(snap_array(snaps)[found])
            firsts = (~known).tolist()
            at = np.flatnonzero(known)
            current = officials.field("raw")[pos[at]]
            automatic = ~officials.field("manual")[pos[at]].astype(bool)
            moved = automatic & (current != _objects(chosen, len(chosen))[at])
            if moved.any():
                versus = [
                    float(raw) if isinstance(raw, str) else np.nan
                    for raw in current[moved].tolist()
                ]
                compared = at[moved]
                proven[compared] &= close_proven(chosen_f[compared], np.array(versus), policy)
        if not proven.all():
            keep = np.flatnonzero(proven).tolist()
            if not keep:
                return None
            found = [found[k] for k in keep]
            chosen, firsts = [chosen[k] for k in keep], [firsts[k] for k in keep]
            mine_texts, their_texts = [mine_texts[k] for k in keep], [their_texts[k] for k in keep]
        # The figures each source contributed, as the per-point decisions write them.
        ranked = (mine_texts, their_texts) if mine_first else (their_texts, mine_texts)
        if len(sources) == 1:
            contributions = [{first: text} for text in ranked[0]]
        else:
            contributions = [{first: a, second: b} for a, b in zip(*ranked, strict=True)]
        return _Pairs.of(
            found,
            len(snaps),
            method.value,
            sources,
            status,
            chosen,
            contributions,
            firsts,
        )

    def _other_values(self, source_id: str, snaps: list[int]) -> tuple[str, list[int], list[str]]:
        """The points (by index) with one clean value of another source besides this one's
        (a value of this one may be replaced), all of the same source, the first such one's:
        that source, and its values (encoded scalars)."""
        plain, pairs, mixed = self.observed.plain, self.observed.pairs, self.observed.mixed
        pos, in_columns = plain.locate(snaps)
        at = np.flatnonzero(in_columns)
        # Per form of the state the values come from: the points (by index), the other
        # source and its value, as arrays.
        seen = []
        if len(at):
            seen.append((at, plain.field("source_id")[pos[at]], plain.field("raw")[pos[at]]))
        if len(pairs):
            pos, paired = pairs.locate(snaps)
            in_columns |= paired
            at = np.flatnonzero(paired)
            pos = pos[at]
            first = pairs.field("source_id")[pos]
            second = pairs.field("other_id")[pos] == source_id
            # a pair without this source's value is no pair once it comes
            mine = second | (first == source_id)
            if mine.any():
                at, pos, second = at[mine], pos[mine], second[mine]
                sources = np.where(second, first[mine], pairs.field("other_id")[pos])
                raws = np.where(second, pairs.field("raw")[pos], pairs.field("other_raw")[pos])
                seen.append((at, sources, raws))
        if mixed:
            # The few points held as dicts, found without a look at each of the others.
            rest = np.flatnonzero(~in_columns)
            dicts: list[tuple[int, str, RawValue]] = []
            for i in rest[_locate(_sorted_keys(mixed), snap_array(snaps)[rest])[1]].tolist():
                before = mixed[snaps[i]]
                if len(before) == 1:
                    ((source, value),) = before.items()
                elif len(before) == 2 and source_id in before:
                    x, y = before.items()
                    source, value = y if x[0] == source_id else x
                else:
                    continue
                if not (value.failures or value.rejected):
                    dicts.append((i, source, value.raw))
            if dicts:
                i_s, sources_s, raws_s = zip(*dicts, strict=True)
                n = len(dicts)
                seen.append(
                    (np.array(i_s, dtype=np.intp), _objects(sources_s, n), _objects(raws_s, n))
                )
        seen = [form for form in seen if len(form[0])]
        if not seen:
            return "", [], []
        index, ids, raws = (np.concatenate(column) for column in zip(*seen, strict=True))
        if len(seen) > 1:
            order = index.argsort(kind="stable")
            index, ids, raws = index[order], ids[order], raws[order]
        usable: npt.NDArray[np.bool_] = ids != source_id
        if set(map(type, raws.tolist())) != {str}:
            usable &= np.fromiter((type(r) is str for r in raws.tolist()), dtype=bool)
        if not usable.any():
            return "", [], []
        other = str(ids[usable][0])
        keep = usable & (ids == other)
        return other, index[keep].tolist(), raws[keep].tolist()

    def publish(
        self,
        definition: SeriesDefinition,
        snaps: Sequence[tuple[str, int]],
        comment: str,
        ctx: CommandContext,
    ) -> list[DomainEvent]:
        """Manual approval of the current candidates. `snaps` pairs a field path with a snap.

        Four-eyes: the approver may not be anyone whose value the candidate was made from, nor
        who set the point's current manual value. Open issues of the points are approved.
        """
        _unique(snaps)
        rows = _Rows(definition)
        approved: list[tuple[str, int]] = []
        for field_path, snap_us in snaps:
            candidate = self.candidates.get(snap_us)
            if candidate is None:
                raise NotFound(point_resource(self.series_id, snap_us), field_path)
            self._four_eyes(snap_us, candidate.sources, ctx, field_path)
            approved.extend((i, snap_us) for i in self._open_issues(snap_us))
            official = self.officials.get(snap_us)
            if official is not None and not official.manual and official.raw == candidate.raw:
                continue  # already official: approving it again changes nothing
            flags = flags_of(self.observed.get(snap_us, {}), candidate.sources)
            version = 1 if official is None else official.version + 1
            cause = "" if official is None else "approved_change"
            rows.publish(snap_us, version, candidate, flags, comment, cause)
        events: list[DomainEvent] = []
        if approved:
            events.append(
                _resolution(QualityApproved, self.series_id, approved, comment or "published")
            )
        return events + rows.events(self.series_id, MANUAL, ctx)

    def restate(
        self,
        definition: SeriesDefinition,
        snap_us: int,
        value: DataValue,
        reason: str,
        ctx: CommandContext,
        reason_code: str = "",
        expires_us: int = 0,
    ) -> list[DomainEvent]:
        """A manual correction of a published point: a new version that automatic
        reconciliation will not override (until `expires_us`, when given)."""
        if snap_us not in self.officials:
            raise FailedPrecondition(
                f"{point_resource(self.series_id, snap_us).name} has not been published",
                "POINT_NOT_PUBLISHED",
            )
        return self._manual_value(
            definition, snap_us, value, reason, reason_code, expires_us, ctx, []
        )

    def resolve(
        self,
        definition: SeriesDefinition,
        issue_ids: Sequence[tuple[str, str]],
        action: str,
        reason: str,
        ctx: CommandContext,
        value: DataValue | None = None,
        reason_code: str = "",
        expires_us: int = 0,
    ) -> list[DomainEvent]:
        """The exception queue: approve, reject or override open issues (pairs of field path
        and issue id), then decide their points again."""
        if not reason.strip():
            raise InvalidArgument.single("reason", "a resolution needs a reason")
        kind = _RESOLUTIONS.get(action)
        if kind is None:
            raise InvalidArgument.single(
                "resolution", f"approve, reject or override, not {action!r}"
            )
        _unique(issue_ids)
        found: list[tuple[str, int]] = []
        for field_path, iid in issue_ids:
            issue = self.issues.get(iid)
            if issue is None:
                raise NotFound(issue_resource(self.series_id, iid), field_path)
            if issue.status is not IssueStatus.OPEN:
                raise FailedPrecondition(
                    f"{field_path}: issue {iid} is already {issue.status}", "ISSUE_RESOLVED"
                )
            if kind is QualityRejected and not issue.source_id:
                raise FailedPrecondition(
                    f"{field_path}: a {issue.rule} issue is about no single source's value: it"
                    " can be approved or overridden, not rejected",
                    "BREAK_NOT_REJECTABLE",
                )
            if kind is not QualityRejected:
                self._four_eyes(issue.snap_us, self._sources_of(issue), ctx, field_path)
            found.append((iid, issue.snap_us))
        if kind is QualityOverridden:
            snaps = {snap for _, snap in found}
            if value is None or len(snaps) != 1:
                raise InvalidArgument.single(
                    "value", "an override gives one value for the issues of one point"
                )
            (snap_us,) = snaps
            return self._manual_value(
                definition, snap_us, value, reason, reason_code, expires_us, ctx, found
            )
        resolution = _resolution(kind, self.series_id, found, reason)
        # Decide again on a copy of the state the resolution leads to.
        after = self.clone()
        after._apply_resolution(resolution)
        events: list[DomainEvent] = [resolution]
        points = sorted({snap for _, snap in found})
        events.extend(after._redecide(definition, points, ctx, f"{_RESOLVED[kind]}: {reason}"))
        return events

    def publish_due(self, definition: SeriesDefinition, ctx: CommandContext) -> list[DomainEvent]:
        """Cut-off reached: publish pending points with what has arrived; flag held ones."""
        rows = _Rows(definition)
        missed: list[Issue] = []
        decide = Decider(definition, ctx)
        policy = definition.publication
        for snap_us in self.due_cutoffs(ctx.now_us):
            candidate = self.candidates.get(snap_us)
            if candidate is None or snap_us in self.officials:
                continue
            enough_quality = (
                policy.min_quality_score is None
                or Decimal(candidate.quality) >= policy.min_quality_score
            )
            observed = self.observed.get(snap_us, {})
            if candidate.status is PointStatus.PENDING and enough_quality:
                arrived = sum(1 for o in observed.values() if not o.rejected)
                reason = f"cut-off reached with {arrived} of {policy.min_sources} sources"
                self._publish(
                    rows, snap_us, candidate, observed, decide, _Why("", "", reason, CUTOFF)
                )
            else:
                evidence: dict[str, Any] = {
                    "due_us": self.scheduled[snap_us],
                    "status": candidate.status.value,
                }
                missed.append(
                    point_issue(
                        ctx.command_id, snap_us, "missed_cutoff", Severity.WARNING, evidence
                    )
                )
        events: list[DomainEvent] = []
        if missed:
            events.append(QualityIssueDetected(series_id=self.series_id, issues=missed))
        return events + rows.events(self.series_id, CUTOFF, ctx)

    def expire_overrides(
        self, definition: SeriesDefinition, ctx: CommandContext
    ) -> list[DomainEvent]:
        """Overrides past their expiry give way to automatic reconciliation again."""
        due = self.due_overrides(ctx.now_us)
        if not due:
            return []
        expired = ManualOverrideExpired(series_id=self.series_id, snaps=due)
        after = self.clone()
        after._apply_override_expiry(expired)
        return [expired, *after._redecide(definition, due, ctx, "override expired")]

    def raise_lateness(
        self,
        rule: str,
        source_id: str,
        due: Sequence[tuple[int, int]],
        severity: Severity,
        ctx: CommandContext,
    ) -> list[DomainEvent]:
        """Service levels (qis_domain.service_levels): of the points `due` (snap, deadline),
        those without the source's value (late_arrival) or without an official version
        (late_publication, source "") when checked, and those first published after their
        deadline (late_publication, evidence `published_at_us`). One issue per point, rule and
        source ever: a later check, however batched, raises none, even once the first one is
        resolved."""
        if rule not in (LATE_ARRIVAL, LATE_PUBLICATION):
            raise InvalidArgument.single("rule", f"{LATE_ARRIVAL} or {LATE_PUBLICATION}")
        if any(deadline_us > ctx.now_us for _, deadline_us in due):
            raise InvalidArgument.single("deadline_us", "a deadline not reached yet")
        checked = ("checked_at_us", ctx.now_us)
        late_at: _LateAt = (
            (lambda snap_us, _: None if source_id in self.observed.get(snap_us, {}) else checked)
            if rule == LATE_ARRIVAL
            else lambda snap_us, deadline_us: self._published_late(snap_us, deadline_us, checked)
        )
        issues = self._late(rule, source_id, due, late_at, severity, ctx)
        return [QualityIssueDetected(series_id=self.series_id, issues=issues)] if issues else []

    def _published_late(
        self, snap_us: int, deadline_us: int, checked: tuple[str, int]
    ) -> tuple[str, int] | None:
        """The evidence of a point not official by `deadline_us`: `checked` while it has no
        official version, the time its first version was decided if that was after. Judged
        here from the time kept with the point (from its event: the same on replay) rather
        than by the scheduler watching publications: its walk reaches every expected snap once
        after the deadline, after a restart from its checkpoint too (its cursor never passes a
        snap not checked), so a point published late while it was stopped is found by the
        check it makes on its return, and the raised-set keeps that to one issue per point."""
        official = self.officials.get(snap_us)
        if official is None:
            return checked
        if official.published_at_us > deadline_us:
            return "published_at_us", official.published_at_us
        return None

    # --- helpers of the decisions ---

    def _raised(self, rule: str) -> set[tuple[int, str]]:
        """(snap, source) of every issue of `rule`, whatever its status."""
        return {(i.snap_us, i.source_id) for i in self.issues.values() if i.rule == rule}

    def _late_arrivals(
        self, arrivals: Arrivals, source_id: str, snaps: list[int], ctx: CommandContext
    ) -> list[Issue]:
        """The late_arrival issues of the source's first values at `snaps` that arrive (at the
        command's time) after their deadline; none where the scheduler found the value missing
        already, or the source had sent one (a correction is not an arrival)."""
        late = arrivals.late(snaps, ctx.now_us)
        if not late:
            return []
        at = [snaps[i] for i in late]
        sent = {
            snap_us
            for snap_us, before in zip(at, self.observed.rows(at), strict=True)
            if before is not None and source_id in before
        }
        due = zip(at, late.values(), strict=True)
        arrived = ("arrived_at_us", ctx.now_us)

        def late_at(snap_us: int, _: int) -> tuple[str, int] | None:
            return None if snap_us in sent else arrived

        return self._late(LATE_ARRIVAL, source_id, due, late_at, Severity.WARNING, ctx)

    def _late(
        self,
        rule: str,
        source_id: str,
        due: Iterable[tuple[int, int]],
        late_at: _LateAt,
        severity: Severity,
        ctx: CommandContext,
    ) -> list[Issue]:
        """An issue of `rule` for each (snap, deadline) `due` that `late_at` finds late, unless
        one was raised for the point and source before, whatever its status."""
        raised = self._raised(rule)
        issues = []
        for snap_us, deadline_us in due:
            if (snap_us, source_id) in raised or (when := late_at(snap_us, deadline_us)) is None:
                continue
            raised.add((snap_us, source_id))
            evidence = {"source_id": source_id, "deadline_us": deadline_us, when[0]: when[1]}
            issues.append(point_issue(ctx.command_id, snap_us, rule, severity, evidence, source_id))
        return issues

    def _manual_value(
        self,
        definition: SeriesDefinition,
        snap_us: int,
        value: DataValue,
        reason: str,
        reason_code: str,
        expires_us: int,
        ctx: CommandContext,
        resolved: list[tuple[str, int]],
    ) -> list[DomainEvent]:
        if not reason.strip():
            raise InvalidArgument.single("reason", "a manual value needs a reason")
        if expires_us and expires_us <= ctx.now_us:
            raise InvalidArgument.single("expire_time", "must be in the future")
        decide = Decider(definition, ctx)
        manual = Candidate(
            encode_value(decide.rounded(value)), MANUAL, (MANUAL,), "1", PointStatus.PUBLISHED
        )
        current = self.officials.get(snap_us)
        version = 1 if current is None else current.version + 1
        cause = f"override:{reason_code}" if reason_code else "manual_correction"
        review = _manual_review(definition, snap_us, version, reason, reason_code, ctx)
        rows = _Rows(definition)
        flags = [] if review is None else [review.rule]
        rows.publish(snap_us, version, manual, flags, reason, cause)
        events: list[DomainEvent] = []
        if resolved:
            events.append(_resolution(QualityOverridden, self.series_id, resolved, reason))
        if review is not None:
            events.append(QualityIssueDetected(series_id=self.series_id, issues=[review]))
        events.extend(rows.events(self.series_id, MANUAL, ctx))
        events.append(
            ManualOverrideSet(
                series_id=self.series_id,
                snaps=[snap_us],
                expires_us=[expires_us],
                reason_codes=[reason_code],
            )
        )
        return events

    def _redecide(
        self, definition: SeriesDefinition, snaps: Sequence[int], ctx: CommandContext, reason: str
    ) -> list[DomainEvent]:
        """New candidates (and official versions) for points whose state changed other than by
        a new value: a resolution, an expired override."""
        decide = Decider(definition, ctx)
        rows = _Rows(definition)
        why = _Why(reason, "redecided", reason)
        for snap_us in snaps:
            observed = self.observed.get(snap_us, {})
            candidate, contributions, _ = decide.candidate(
                snap_us, observed, snap_us in self.breaks_approved
            )
            if candidate is None:
                # Every value was rejected: withdraw the candidate, so that neither a manual
                # publication nor a cut-off can make a rejected value official.
                rows.withdraw(snap_us)
                continue
            self._settle(rows, snap_us, candidate, contributions, observed, decide, why)
        return rows.events(self.series_id, "automatic", ctx)

    def _settle(
        self,
        rows: _Rows,
        snap_us: int,
        candidate: Candidate,
        contributions: Contributions,
        observed: dict[str, Observed],
        decide: Decider,
        why: _Why,
    ) -> None:
        """One point's new candidate, the step every decision that reconciles takes: its
        reconciled row, a cut-off while it waits for sources or an approver (then it is
        published with what arrived, or flagged as still held), or the official version it
        makes."""
        rows.reconcile(snap_us, candidate, contributions)
        if candidate.status is PointStatus.PUBLISHED:
            self._publish(rows, snap_us, candidate, observed, decide, why)
        elif rows.cutoff_us and snap_us not in self.scheduled:
            rows.scheduled.append(snap_us)

    def _publish(
        self,
        rows: _Rows,
        snap_us: int,
        candidate: Candidate,
        observed: dict[str, Observed],
        decide: Decider,
        why: _Why,
    ) -> None:
        """The official version a publishable candidate makes: the first one, or a new one when
        it moved beyond tolerance from the current version, unless that one is manual."""
        current = self.officials.get(snap_us)
        if current is None:
            version, reason, cause = 1, why.first_reason, why.first_cause
        elif current.manual or within_tolerance(
            decide.decode(candidate.raw),
            decide.decode(current.raw),
            decide.definition.reconciliation,
        ):
            return
        else:
            version, reason, cause = current.version + 1, why.reason, why.cause
        flags = flags_of(observed, candidate.sources)
        rows.publish(snap_us, version, candidate, flags, reason, cause)

    def _four_eyes(
        self, snap_us: int, sources: Iterable[str], ctx: CommandContext, field_path: str
    ) -> None:
        observed = self.observed.get(snap_us, {})
        involved = {observed[s].user_id for s in sources if s in observed}
        official = self.officials.get(snap_us)
        if official is not None and official.manual:
            involved.add(official.by)
        if ctx.user_id in involved:
            raise PermissionDenied(
                f"{field_path}: four-eyes rule: {ctx.user_id!r} submitted or set a value of this"
                " point and cannot also approve it",
                "FOUR_EYES",
            )

    def _sources_of(self, issue: IssueState) -> list[str]:
        if issue.source_id:
            return [issue.source_id]
        return list(self.observed.get(issue.snap_us, {}))

    def _has_open(
        self, snap_us: int, rule: str, source_id: str, closing: Container[str] = ()
    ) -> bool:
        """One open issue of a point-level rule (source break, spike) per point and source is
        enough: a later value re-raising it would only add a duplicate to the queue. Per
        source, as a spike is about one source's figures: another source's spike at the point
        is its own issue, which a correction of the first source may retract. `closing`: open
        issues the command retracts (about a value it replaced): a spike found again about the
        new value is raised anew, or it would be lost."""
        return any(
            i.snap_us == snap_us
            and i.rule == rule
            and i.source_id == source_id
            and i.status is IssueStatus.OPEN
            and iid not in closing
            for iid, i in self.issues.items()
        )

    def _spike_issue(
        self,
        ctx: CommandContext,
        spiked: Received,
        failure: RuleFailure,
        pending: list[Issue],
        closing: Container[str],
    ) -> list[Issue]:
        """The issue of an out-and-back spike, raised on the point in between. That point may
        belong to an earlier bucket: the application routes such issues to their bucket
        (`flag`), which drops a duplicate the same way."""
        snap_us = spiked.snap_us
        source = spiked.sources[0] if len(spiked.sources) == 1 else ""
        if any(
            (i.snap_us, i.rule, i.source_id) == (snap_us, failure.rule, source) for i in pending
        ) or self._has_open(snap_us, failure.rule, source, closing):
            return []
        return issues_of(ctx.command_id, snap_us, source, [failure])

    def flag(
        self, issues: Sequence[Issue], closing: Container[str] = ()
    ) -> list[QualityIssueDetected]:
        """Issues another bucket's decision found about points of this one (a spike is seen
        when the move back arrives, maybe in the next bucket). `closing`: the open issues the
        same command retracts here (as `_has_open`)."""
        fresh = [i for i in issues if not self._has_open(i.snap_us, i.rule, i.source_id, closing)]
        return [QualityIssueDetected(series_id=self.series_id, issues=fresh)] if fresh else []

    def _open_issues(self, snap_us: int) -> list[str]:
        return [
            i
            for i, s in self.issues.items()
            if s.snap_us == snap_us and s.status is IssueStatus.OPEN
        ]

    # --- evolution: the only place state changes ---

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        command_id, position = meta.command_id, meta.position
        outcome = self._outcomes.get(command_id) or CommandOutcome(position)
        if isinstance(event, DataIngested):
            self.observed.ingest(event.source_id, event.snaps, event.values, meta.user_id)
            outcome = outcome + CommandOutcome(position, accepted=len(event.snaps))
        elif isinstance(event, QualityIssueDetected):
            self._apply_issues(event.issues)
            outcome = outcome + CommandOutcome(
                position, flagged=len({i.snap_us for i in event.issues})
            )
        elif isinstance(event, DataReconciled):
            if PointStatus.WITHDRAWN.value in event.statuses:
                withdrawn = [
                    s
                    for s, status in zip(event.snaps, event.statuses, strict=True)
                    if status == PointStatus.WITHDRAWN.value
                ]
                for snap_us in withdrawn:
                    self.scheduled.pop(snap_us, None)
                self.candidates.drop(withdrawn)
                event = _without_withdrawn(event)
            contributions = event.contributions
            self.candidates.put(
                event.snaps,
                event.values,
                event.methods,
                contributions.sources
                if type(contributions) is _Contributions
                else _contributors(contributions),
                event.quality_scores,
                _Mapped(_POINT_STATUSES.__getitem__, event.statuses),
            )
        elif isinstance(event, DataPublished | DataRestated):
            officials = self.officials
            # when version 1 was decided: this event's time for a first version
            first_at: _Column = _Fill(event.decided_at_us)
            snaps = snap_array(event.snaps)  # read once, for locate and put
            pos, found = officials.locate(snaps)
            if found.any():
                first_at = _made(first_at, len(snaps))
                first_at[found] = officials.field("published_at_us")[pos[found]]
            officials.put(
                snaps,
                event.versions,
                event.values,
                _Mapped(MANUAL.__eq__, event.methods),
                first_at,
                _Fill(meta.user_id),
            )
            if self.scheduled:
                for snap_us in event.snaps:
                    self.scheduled.pop(snap_us, None)
            outcome = outcome + CommandOutcome(position, published=len(event.snaps))
        elif isinstance(event, PublicationScheduled):
            self.scheduled.update(zip(event.snaps, event.due_us, strict=True))
        elif isinstance(event, _Resolution):
            self._apply_resolution(event)
        elif isinstance(event, ManualOverrideSet):
            for snap_us, expiry in zip(event.snaps, event.expires_us, strict=True):
                self.overrides[snap_us] = expiry
        elif isinstance(event, ManualOverrideExpired):
            self._apply_override_expiry(event)
        # Every event of the command moves its position, not only those it counts: the
        # outcome's position is where the command's append ended, the consistency token.
        self._outcomes[command_id] = outcome + CommandOutcome(position)

    def _apply_issues(self, issues: Sequence[Issue]) -> None:
        # Lateness is about when a value came, not about the value: it holds nothing and
        # counts no failed check, whether it was raised before or on arrival, so its point's
        # values stay as they are (in columns).
        self.observed.mix(i.snap_us for i in issues if i.source_id and i.rule not in _LATENESS)
        for issue in issues:
            self.issues[issue.issue_id] = IssueState(
                issue.snap_us, issue.source_id, issue.rule, issue.blocking
            )
            if issue.rule == "missed_cutoff":
                self.scheduled.pop(issue.snap_us, None)
            flagged = self.observed.get(issue.snap_us, {}).get(issue.source_id)
            if flagged is not None and issue.rule not in _LATENESS:
                failure = RuleFailure(issue.rule, Severity(issue.severity), issue.evidence)
                self._replace_observed(
                    issue.snap_us,
                    issue.source_id,
                    flagged._replace(
                        failures=(*flagged.failures, failure),
                        issue_ids=(*flagged.issue_ids, issue.issue_id),
                        # a new error holds the value again; a new warning does not
                        cleared=flagged.cleared and not failure.blocking,
                    ),
                )

    def _apply_resolution(self, event: _Resolution) -> None:
        status = _RESOLVED[type(event)]
        for iid in event.issue_ids:
            issue = self.issues[iid]._replace(status=status)
            self.issues[iid] = issue
            observed = self.observed.get(issue.snap_us, {}).get(issue.source_id)
            if observed is not None and iid not in observed.issue_ids:
                continue  # about a value the source has replaced since: only the issue closes
            if isinstance(event, QualityRejected) and observed is not None:
                self._replace_observed(
                    issue.snap_us, issue.source_id, observed._replace(rejected=True)
                )
            elif isinstance(event, QualityRetracted) and observed is not None:
                # No longer a failure of the value: it counts in neither its score nor its
                # flags, and holds it no more (an error a person approved still does not).
                kept = [k for k, i in enumerate(observed.issue_ids) if i != iid]
                left = observed._replace(
                    failures=tuple(observed.failures[k] for k in kept),
                    issue_ids=tuple(observed.issue_ids[k] for k in kept),
                )
                cleared = left.cleared or not self._holds(left)
                self._replace_observed(
                    issue.snap_us, issue.source_id, left._replace(cleared=cleared)
                )
            elif isinstance(event, QualityApproved):
                if observed is None:
                    # Only an approved break or low confidence lets the point's sources
                    # disagree; approving a point-level spike or cut-off issue says nothing
                    # about later values.
                    if issue.rule in ("source_break", "confidence_level"):
                        self.breaks_approved.add(issue.snap_us)
                elif not self._holds(observed):
                    # Only errors hold: an approved error publishes even while a warning on
                    # the same value stays open (it is still flagged).
                    self._replace_observed(
                        issue.snap_us, issue.source_id, observed._replace(cleared=True)
                    )

    def _apply_override_expiry(self, event: ManualOverrideExpired) -> None:
        for snap_us in event.snaps:
            self.overrides.pop(snap_us, None)
            official = self.officials.get(snap_us)
            if official is not None:
                self.officials.put([snap_us], *([v] for v in official._replace(manual=False)))

    def _replace_observed(self, snap_us: int, source_id: str, observed: Observed) -> None:
        self.observed[snap_us] = {**self.observed[snap_us], source_id: observed}

    def _holds(self, observed: Observed) -> bool:
        """Whether an error of the value is still open."""
        return any(
            failure.blocking and (i not in self.issues or self.issues[i].status is IssueStatus.OPEN)
            for failure, i in zip(observed.failures, observed.issue_ids, strict=True)
        )


def _in_snap_order(
    points: Sequence[tuple[Snap, DataValue]],
) -> tuple[Sequence[tuple[Snap, DataValue]], _Snaps, list[int]]:
    """An ingest's points in snap order (sent in order, as they mostly are, they stay as they
    are), their snaps and their offsets; InvalidArgument when a snap comes twice. Both columns
    are read in one pass (a `Snap` is the pair of them), the order checked on the array; points
    kept in columns (ScalarPoints) sent in order are read from their columns."""
    if type(points) is ScalarPoints and points.ascending:
        return points, _Snaps(points.utc_us, points.array), list(points.offsets_s)
    utc: Sequence[int] = ()
    offsets: Sequence[int] = ()
    if points:
        utc, offsets = zip(*map(_SNAP, points), strict=True)
    at = np.fromiter(utc, dtype=np.int64, count=len(utc))
    if not (at[1:] > at[:-1]).all():
        order = at.argsort(kind="stable")
        at = at[order]
        if (at[1:] == at[:-1]).any():
            raise InvalidArgument.single("points", "snaps must be unique within one command")
        rows = order.tolist()
        points, utc, offsets = [points[i] for i in rows], at.tolist(), [offsets[i] for i in rows]
    return points, _Snaps(utc, at), list(offsets)


def _value_columns(
    points: Sequence[tuple[Snap, DataValue]],
) -> tuple[Sequence[DataValue], Sequence[Decimal] | None, list[RawValue]]:
    """The points' values, their figures if all are prices or all volumes (None: any other
    batch), and their stored forms (`encode_value`: a scalar's is its figure's text). Points
    kept in columns have their texts as a column already, and their values and figures are
    made only if read (ScalarValues, ScalarFigures)."""
    if type(points) is ScalarPoints:
        return ScalarValues(points), ScalarFigures(points), list(points.own_texts())
    values = list(map(_VALUE, points))
    scalars = scalar_figures(values)
    raws: list[RawValue] = (
        list(map(encode_value, values)) if scalars is None else list(map(str, scalars))
    )
    return values, scalars, raws


def look_back_floor(bucket_us: int, frequency: Frequency) -> int:
    """The earliest snap a point of the bucket may be compared with."""
    return bucket_us - LOOK_BACK_BUCKETS * BUCKET_SPAN_US[frequency]


def look_back(definition: SeriesDefinition) -> int:
    """How many earlier received values the series' rules look at (0: none)."""
    r = definition.validation
    n = 0
    if r.jump_limits() != (None, None):
        n = 1
    if r.max_spike_percent is not None:
        n = 2
    if r.max_zscore is not None:
        n = max(n, r.zscore_window + 1)
    if r.stale_after_snaps > 1:
        n = max(n, r.stale_after_snaps - 1)
    return max(n, reach(r))


def _manual_review(
    definition: SeriesDefinition,
    snap_us: int,
    version: int,
    reason: str,
    reason_code: str,
    ctx: CommandContext,
) -> Issue | None:
    """The "manual_value" warning a value set by hand raises when the series asks for review
    (None when it does not). Only the commands of a caller set one (a restatement, an
    override): the scheduler and the feeds never do, so whoever set it is a person or acts
    for one, and the evidence says who and why. It is about the point, not a source's value:
    it flags the version, never holds it, and four-eyes keeps its author from approving it."""
    if not definition.validation.review_manual_values:
        return None
    evidence: dict[str, Any] = {"by": ctx.user_id, "reason": reason, "version": version}
    if reason_code:
        evidence["reason_code"] = reason_code
    return point_issue(ctx.command_id, snap_us, "manual_value", Severity.WARNING, evidence)


def _contributors(contributions: Sequence[Mapping[str, str]]) -> list[tuple[str, ...]]:
    """The sources of each of a DataReconciled's points: one tuple per distinct list of them,
    not one per point, as most points share it."""
    sources = list(map(tuple, contributions))
    distinct: dict[tuple[str, ...], tuple[str, ...]] = {}
    return list(map(distinct.setdefault, sources, sources))


def _without_withdrawn(event: DataReconciled) -> DataReconciled:
    keep = [i for i, status in enumerate(event.statuses) if status != PointStatus.WITHDRAWN.value]
    return event.model_copy(update={c: [getattr(event, c)[i] for i in keep] for c in _RECONCILED})


def _unique(pairs: Sequence[tuple[str, Any]]) -> None:
    seen: set[Any] = set()
    for field_path, key in pairs:
        if key in seen:
            raise InvalidArgument.single(field_path, "listed twice")
        seen.add(key)


def _resolution(
    kind: type[QualityApproved | QualityRejected | QualityOverridden],
    series_id: str,
    issues: list[tuple[str, int]],
    reason: str,
) -> QualityApproved | QualityRejected | QualityOverridden:
    return kind(
        series_id=series_id,
        issue_ids=[i for i, _ in issues],
        snaps=[s for _, s in issues],
        reason=reason,
    )


class _History(NamedTuple):
    """What the look-back rules found about one value."""

    failures: list[RuleFailure]
    spike: tuple[Received, RuleFailure] | None  # about the point before


def _check_history(
    timeline: Timeline,
    back: int,
    floor_us: int,
    snaps: list[int],
    figures: Sequence[Decimal | None],
    floats: npt.NDArray[np.float64],
    rules: ValidationRules,
    windows: list[JumpWindow | None] | None,
) -> dict[int, _History]:
    """The look-back rules of each value (by index; `figures`: theirs, None for a value
    without one) that fails one. The timeline holds the received figures of the points being
    decided already: the previous of each value are those before it, whichever command
    decided them. A float screen of the whole batch (`floats`: of the values' figures) spares
    the exact rules every value it proves clean. `windows`: the jump window of each value
    (None: the series has none)."""
    # A value without a figure has a NaN float: only those need a look.
    missing = {i for i in np.flatnonzero(np.isnan(floats)).tolist() if figures[i] is None}
    checked: Sequence[int] = range(len(figures))
    if not missing:
        at, x = snap_array(snaps), floats
    else:
        checked = [i for i in checked if i not in missing]
        at, x = snap_array([snaps[i] for i in checked]), floats[checked]
    known = timeline.snaps
    lo = max(bisect.bisect_left(known, floor_us), bisect.bisect_left(known, snaps[0]) - back)
    hi = bisect.bisect_left(known, snaps[-1])
    suspects = history_suspects(
        x,
        np.array(timeline.approx[lo:hi], dtype=np.float64),
        np.searchsorted(snap_array(known[lo:hi]), at),
        back,
        rules,
        None if windows is None else [_multiplier(windows[i]) for i in checked],
    )
    out = {}
    for k in np.flatnonzero(suspects).tolist():
        i = checked[k]
        figure = cast(Decimal, figures[i])
        previous = timeline.before(snaps[i], back, floor_us)
        failures = check_history(figure, previous, rules, None if windows is None else windows[i])
        spike = check_spike(figure, snaps[i], previous, rules)
        if failures or spike is not None:
            out[i] = _History(failures, None if spike is None else (previous[-1], spike))
    return out


def _check_cross_series(
    timeline: Timeline,
    floor_us: int,
    snaps: list[int],
    values: Sequence[DataValue],
    rules: ValidationRules,
    view: CrossSeriesView,
) -> dict[int, list[RuleFailure]]:
    """The cross-series rules of each value (by index) that fails one, against the same
    received figures before it as the look-back rules."""
    n = reach(rules)
    out = {}
    for i, value in enumerate(values):
        if value.number is not None:
            previous = timeline.before(snaps[i], n, floor_us)
            if failures := check_cross_series(value.number, snaps[i], previous, rules, view):
                out[i] = failures
    return out


def _value_floats(
    values: Sequence[DataValue], texts: Sequence[str] | None
) -> npt.NDArray[np.float64]:
    """`figure_floats` of the values' figures (NaN where a value has none); `texts`: those
    figures' texts, when at hand (a scalar's encoded form), cheaper to read as floats than the
    figures."""
    if texts is not None:
        return text_floats(texts)
    return np.array(
        [math.nan if (figure := value.number) is None else approx(figure) for value in values],
        dtype=np.float64,
    )


def _multiplier(window: JumpWindow | None) -> Decimal:
    return Decimal(1) if window is None else window.multiplier


class _Pairs(NamedTuple):
    """What `SeriesBucket._pairs` proved of an ingest's points (`at`: their indices in the
    command, ascending; `mask`: the same by index): columns of those points alone."""

    at: list[int]
    mask: npt.NDArray[np.bool_]
    edges: list[int]  # the indices where a run of pairs or of other points starts, but 0
    method: str
    sources: tuple[str, ...]  # the contributors, by priority
    status: PointStatus
    values: list[str]  # the chosen value, encoded
    contributions: list[dict[str, str]]
    firsts: list[bool]  # the candidate makes a first official version

    @classmethod
    def of(
        cls,
        at: list[int],
        n: int,
        method: str,
        sources: tuple[str, ...],
        status: PointStatus,
        values: list[str],
        contributions: list[dict[str, str]],
        firsts: list[bool],
    ) -> _Pairs:
        """Of a command of `n` points."""
        mask = np.zeros(n, dtype=bool)
        mask[at] = True
        edges = (np.flatnonzero(mask[1:] != mask[:-1]) + 1).tolist()
        return cls(at, mask, edges, method, sources, status, values, contributions, firsts)

    def runs(self, lo: int, hi: int) -> Iterator[tuple[int, int, int | None]]:
        """The runs of points in [lo, hi), each as (start, end, the index of its first point
        in the pair columns: None for a run of other points)."""
        if lo >= hi:
            return
        cuts = self.edges[bisect.bisect_right(self.edges, lo) : bisect.bisect_left(self.edges, hi)]
        for start, end in itertools.pairwise([lo, *cuts, hi]):
            yield start, end, bisect.bisect_left(self.at, start) if self.mask[start] else None


class _Batch(NamedTuple):
    """An ingest's points, by snap: what the columns of its decisions are made from."""

    source_id: str
    snaps: list[int]
    raws: list[RawValue]
    values: Sequence[DataValue]
    chosen: Sequence[DataValue]  # rounded to the series' precision
    pairs: _Pairs | None


class _Why(NamedTuple):
    """What an official version records as its reason and cause: a later version (a
    restatement) and a first one."""

    reason: str
    cause: str
    first_reason: str = ""
    first_cause: str = ""


def _run(column: list[_T], lo: int, hi: int) -> list[_T]:
    """`column[lo:hi]`: the very list when that is all of it (see `_EventColumns`)."""
    return column if lo == 0 and hi == len(column) else column[lo:hi]


class _EventColumns:
    """The columns of an event being made, by name. A first run of rows decided in columns is
    kept as the lists it came in until another row comes, not copied: a batch decided wholly
    in columns hands its own lists to every event it makes, its snaps with their array
    (`_Snaps`), and the apply of each reads that array. No list given here is changed, as no
    event's column is once made."""

    __slots__ = ("_borrowed", "columns")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.columns: dict[str, Any] = {name: [] for name in names}
        self._borrowed = False  # the columns are lists given (`extend`), not this one's own

    def add(self, row: tuple[Any, ...]) -> None:
        """One row: a value per column, in the columns' order."""
        self._own()
        for column, value in zip(self.columns.values(), row, strict=True):
            column.append(value)

    def extend(self, run: tuple[tuple[str, list[Any]], ...]) -> None:
        """Rows: (name, values) per column, in the columns' order."""
        made = dict(run)
        assert list(made) == list(self.columns)
        if not self.columns["snaps"]:
            self.columns = made
            self._borrowed = True
            return
        self._own()
        deque(map(list.extend, self.columns.values(), made.values()), 0)

    def _own(self) -> None:
        if self._borrowed:
            self.columns = {name: list(column) for name, column in self.columns.items()}
            self._borrowed = False


class _Rows:
    """The rows a decision makes, in the columns of the events they become. Those events skip
    pydantic validation (`model_construct`): the columns are made here, equal in length by
    construction, and validating a thousand-point batch would cost about as much as deciding
    it. Every event read back from the store is validated in full."""

    def __init__(self, definition: SeriesDefinition) -> None:
        self.definition = definition
        self.cutoff_us = definition.publication.cutoff_seconds * 1_000_000
        # Beside the DataReconciled's columns, each row's sources (`_Contributions`).
        self.reconciled = _EventColumns((*_RECONCILED, _CONTRIBUTORS))
        self.scheduled: list[int] = []  # snaps given a cut-off
        self.official = _EventColumns(_OFFICIAL)
        self._distinct: dict[tuple[str, ...], tuple[str, ...]] = {}  # of the sources

    def reconcile(self, snap_us: int, c: Candidate, contributions: Contributions) -> None:
        figures = contributions.figures
        self.reconciled.add(
            (
                snap_us,
                c.raw,
                c.method,
                figures,
                contributions.excluded,
                c.quality,
                c.status.value,
                self._sources(tuple(figures)),
            ),
        )

    def withdraw(self, snap_us: int) -> None:
        self.reconciled.add((snap_us, "", "none", {}, [], "0", _WITHDRAWN, ()))

    def _sources(self, sources: tuple[str, ...]) -> tuple[str, ...]:
        """`sources`, as the first equal tuple made: one per distinct list of sources."""
        return self._distinct.setdefault(sources, sources)

    def publish(
        self,
        snap_us: int,
        version: int,
        c: Candidate,
        flags: list[str],
        reason: str = "",
        cause: str = "",
    ) -> None:
        row = (snap_us, version, c.raw, c.quality, list(c.sources), c.method, flags, reason, cause)
        self.official.add(row)

    def last_official(self, snap_us: int) -> tuple[int, RawValue] | None:
        """The version and value of the last official row, if it is one of `snap_us`."""
        official = self.official.columns
        snaps = official["snaps"]
        if not snaps or snaps[-1] != snap_us:
            return None
        return official["versions"][-1], official["values"][-1]

    def columns(self, batch: _Batch, lo: int, hi: int, scheduled: Container[int]) -> None:
        """The points of `batch` in [lo, hi) that are decided in columns: runs of new points
        (`first_values`) and of pairs (`pairs`), in order. `scheduled`: snaps given a cut-off
        before."""
        pairs = batch.pairs
        if pairs is None:
            self.first_values(batch, lo, hi)
            return
        for start, end, k in pairs.runs(lo, hi):
            if k is None:
                self.first_values(batch, start, end)
            else:
                self.pairs(_run(batch.snaps, start, end), pairs, k, k + end - start, scheduled)

    def first_values(self, batch: _Batch, lo: int, hi: int) -> None:
        """Points new to the bucket, each with one clean value, that publication takes as they
        come: what `SeriesBucket._settle` decides of each, in columns."""
        if lo == hi:
            return
        snaps, raws = _run(batch.snaps, lo, hi), _run(batch.raws, lo, hi)
        official = raws
        if batch.chosen is not batch.values:  # rounded to the series' precision
            official = [
                r if c is v else encode_value(c)
                for r, v, c in zip(raws, batch.values[lo:hi], batch.chosen[lo:hi], strict=True)
            ]
        source_id = batch.source_id
        # The figure each source contributed, as it sent it (values read only when not all
        # are scalars, whose texts these are: see ScalarValues).
        figures = (
            cast(list[str], raws)  # scalars' texts (their types read without a Python call)
            if set(map(type, raws)) == {str}
            else [
                r if isinstance(r, str) else str(v.number)
                for r, v in zip(raws, batch.values[lo:hi], strict=True)
            ]
        )
        contributions = [{source_id: f} for f in figures]
        self._clean(snaps, official, PRIORITY, contributions, (source_id,), _PUBLISHED)
        self._firsts(snaps, official, PRIORITY, [source_id])

    def pairs(
        self,
        snaps: list[int],
        pairs: _Pairs,
        lo: int,
        hi: int,
        scheduled: Container[int],
    ) -> None:
        """What `SeriesBucket._settle` decides of the pairs [lo, hi) of the pair columns, at
        `snaps`, in columns."""
        values = pairs.values[lo:hi]
        contributions = pairs.contributions[lo:hi]
        status = pairs.status.value
        self._clean(snaps, values, pairs.method, contributions, pairs.sources, status)
        if pairs.status is PointStatus.PUBLISHED:
            firsts = pairs.firsts[lo:hi]
            self._firsts(
                list(compress(snaps, firsts)),
                list(compress(values, firsts)),
                pairs.method,
                list(pairs.sources),
            )
        elif self.cutoff_us:
            self.scheduled.extend(s for s in snaps if s not in scheduled)

    def _clean(
        self,
        snaps: list[int],
        values: list[str] | list[RawValue],
        method: str,
        contributions: list[dict[str, str]],
        sources: tuple[str, ...],
        status: str,
    ) -> None:
        """Reconciled rows of candidates that no value's failure nor a break penalises, each
        made of `sources` (its contributions' keys). A list every row has the same is one list
        (an event's columns never change in place)."""
        n = len(snaps)
        made: tuple[tuple[str, list[Any]], ...] = (
            ("snaps", snaps),
            ("values", values),
            ("methods", [method] * n),
            ("contributions", contributions),
            ("excluded", [[]] * n),
            ("quality_scores", ["1"] * n),
            ("statuses", [status] * n),
            (_CONTRIBUTORS, [self._sources(sources)] * n),
        )
        self.reconciled.extend(made)

    def _firsts(
        self, snaps: list[int], values: list[str] | list[RawValue], method: str, sources: list[str]
    ) -> None:
        """First official versions of clean candidates (lists shared by rows as `_clean`)."""
        n = len(snaps)
        made: tuple[tuple[str, list[Any]], ...] = (
            ("snaps", snaps),
            ("versions", [1] * n),
            ("values", values),
            ("quality_scores", ["1"] * n),
            ("sources", [list(sources)] * n),
            ("methods", [method] * n),
            ("flags", [[]] * n),
            ("reasons", [""] * n),
            ("causes", [""] * n),
        )
        self.official.extend(made)

    def events(self, series_id: str, mode: str, ctx: CommandContext) -> list[DomainEvent]:
        """A DataReconciled, a PublicationScheduled, then a DataPublished for first versions
        and a DataRestated for later ones, as needed."""
        d = self.definition
        events: list[DomainEvent] = []
        reconciled = dict(self.reconciled.columns)
        if reconciled["snaps"]:
            sources = reconciled.pop(_CONTRIBUTORS)
            reconciled["contributions"] = _Contributions(reconciled["contributions"], sources)
            events.append(
                DataReconciled.model_construct(
                    series_id=series_id, data_type=d.data_type, unit=d.unit, **reconciled
                )
            )
        if self.scheduled:
            due = [s + self.cutoff_us for s in self.scheduled]
            events.append(
                PublicationScheduled(series_id=series_id, snaps=self.scheduled, due_us=due)
            )
        versions = self.official.columns["versions"]
        firsts = versions.count(1)
        common: dict[str, Any] = {
            "series_id": series_id,
            "data_type": d.data_type,
            "unit": d.unit,
            "decided_at_us": ctx.now_us,
        }
        if firsts:
            columns = self._pick(firsts == len(versions), lambda v: v == 1)
            events.append(DataPublished.model_construct(mode=mode, **common, **columns))
        if firsts < len(versions):
            later = self._pick(not firsts, lambda v: v != 1)
            events.append(DataRestated.model_construct(**common, **later))
        return events

    def _pick(self, every: bool, version: Callable[[int], bool]) -> dict[str, Any]:
        """The official rows whose `version` holds (`every`: all of them, known beforehand by
        a count, which spares a bulk load's batch a scan)."""
        official = self.official.columns
        if every:
            return official
        rows = [i for i, v in enumerate(official["versions"]) if version(v)]
        return {name: [column[i] for i in rows] for name, column in official.items()}


_RECONCILED = (
    "snaps",
    "values",
    "methods",
    "contributions",
    "excluded",
    "quality_scores",
    "statuses",
)
_CONTRIBUTORS = "contributors"
_OFFICIAL = (
    "snaps",
    "versions",
    "values",
    "quality_scores",
    "sources",
    "methods",
    "flags",
    "reasons",
    "causes",
)
_PUBLISHED = PointStatus.PUBLISHED.value
_WITHDRAWN = PointStatus.WITHDRAWN.value
