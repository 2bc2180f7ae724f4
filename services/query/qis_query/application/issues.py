"""ListQualityIssues' filter: the fields it takes, the part the read store applies (the series
and `status =`: what its issue indexes serve in (series, issue id) order, so that its reads stay
bounded),
and the rest, checked on each issue the store returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from qis_adapters.readstore.port import ISSUE_STATUSES, IssueFilter, QualityIssue
from qis_domain.errors import InvalidArgument
from qis_domain.names import SOURCES_COLLECTION, parse_name
from qis_domain.rules import RULE_NAMES, Severity

from qis_query.application.filtering import (
    FILTER,
    ORDERING,
    Comparison,
    FieldSpec,
    Op,
    QuotedField,
    enum_field,
    predicate,
    timestamp_field,
)


def _source_id(name: str) -> str:
    try:
        return parse_name(name, SOURCES_COLLECTION, FILTER)
    except InvalidArgument as error:
        raise ValueError(error.violations[0].description) from None


FIELDS: Mapping[str, FieldSpec] = {
    "rule": enum_field(sorted(RULE_NAMES)),
    "severity": enum_field(s.value for s in Severity),
    "status": enum_field(ISSUE_STATUSES),
    "source": QuotedField(_source_id, 'a source name in quotes, e.g. "sources/bloomberg"'),
    "snap_time": timestamp_field(ORDERING),
    "raise_time": timestamp_field(ORDERING),
}
STORED: Mapping[str, Callable[[QualityIssue], object]] = {
    "rule": attrgetter("rule"),
    "severity": attrgetter("severity"),
    "status": attrgetter("status"),
    "source": attrgetter("source_id"),  # "" for a source break: never equal to a source
    "snap_time": attrgetter("snap_us"),
    "raise_time": attrgetter("raised_at_us"),
}


@dataclass(frozen=True, slots=True)
class IssueQuery:
    pushed: IssueFilter  # what the read store applies
    keep: Callable[[QualityIssue], bool] | None  # the rest; None when the store applies all


def plan(series_id: str, comparisons: Sequence[Comparison]) -> IssueQuery:
    """The issues of `series_id` ("" for every series) that meet every comparison."""
    status = ""
    left: list[Comparison] = []
    for c in comparisons:
        if c.field == "status" and c.op is Op.EQ and not status:
            status = str(c.value)
        else:
            left.append(c)
    return IssueQuery(IssueFilter(series_id, status), predicate(left, STORED))
