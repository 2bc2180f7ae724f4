"""ListAuditEntries' filter: the fields it takes, the part the read store applies (the point of
a series: `snap_time =`, which its audit indexes serve), and the rest, checked on each entry
the store returns; and the resource name an entry is about."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from qis_adapters.readstore.port import AuditEntry, AuditScope
from qis_domain.names import series_name, source_name

from qis_query.application.filtering import (
    ORDERING,
    Comparison,
    FieldSpec,
    FilterError,
    Op,
    predicate,
    string_field,
    timestamp_field,
)


def resource_name(entry: AuditEntry) -> str:
    """What the entry is about: "series/{id}", "sources/{id}", or its other resource's name
    ("accessPolicies/{id}")."""
    if entry.series_id:
        return series_name(entry.series_id)
    if entry.source_id:
        return source_name(entry.source_id)
    return entry.resource


FIELDS: Mapping[str, FieldSpec] = {
    "snap_time": timestamp_field(frozenset({Op.EQ})),
    "commit_time": timestamp_field(ORDERING),
    "user": string_field(),
    "action": string_field(),
    "resource": string_field(),
}
STORED: Mapping[str, Callable[[AuditEntry], object]] = {
    "snap_time": attrgetter("snap_us"),  # None for series-level entries: never equal
    "commit_time": attrgetter("recorded_at_us"),
    "user": attrgetter("user_id"),
    "action": attrgetter("action"),
    "resource": resource_name,
}


@dataclass(frozen=True, slots=True)
class AuditQuery:
    scope: AuditScope  # what the read store applies
    keep: Callable[[AuditEntry], bool] | None  # the rest; None when the store applies all


def plan(parent: AuditScope, comparisons: Sequence[Comparison]) -> AuditQuery:
    """The entries of `parent` that meet every comparison. A point is a point of a series:
    `snap_time` with another parent is refused."""
    scope = parent
    left: list[Comparison] = []
    for c in comparisons:
        if c.field == "snap_time":
            if not parent.series_id:
                raise FilterError(c.offset, "snap_time needs a series as parent")
            if scope.snap_us is None:
                scope = dataclasses.replace(scope, snap_us=int(c.value))
                continue
        left.append(c)
    return AuditQuery(scope, predicate(left, STORED))
