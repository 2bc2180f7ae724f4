"""How much an official value can be trusted, as a score in [0, 1]."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from decimal import Decimal

from qis_domain.rules import RuleFailure, Severity

_PENALTY = {
    Severity.INFO: Decimal("0.05"),
    Severity.WARNING: Decimal("0.2"),
    Severity.ERROR: Decimal("0.5"),
}
_BREAK_PENALTY = Decimal("0.2")
ONE = Decimal(1)


class PointStatus(enum.StrEnum):
    """Where a reconciled value stands on its way to publication."""

    PUBLISHED = "published"
    HELD = "held"  # a blocking issue or a manual-publication series: needs an approver
    PENDING = "pending"  # fewer sources than the policy wants, or below the quality threshold
    WITHDRAWN = "withdrawn"  # every value of the point was rejected: nothing to publish


class IssueStatus(enum.StrEnum):
    """Where a quality issue stands in the exception queue."""

    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"
    OVERRIDDEN = "overridden"
    RETRACTED = "retracted"  # by the system: no longer holds for the source's figures


def quality_score(failures: Iterable[RuleFailure], breaks: int) -> Decimal:
    """One penalty per distinct rule failed (by severity), one per source beyond tolerance."""
    worst: dict[str, Severity] = {}
    order = list(Severity)
    for failure in failures:
        known = worst.get(failure.rule)
        if known is None or order.index(failure.severity) > order.index(known):
            worst[failure.rule] = failure.severity
    score = ONE - sum((_PENALTY[s] for s in worst.values()), Decimal(0)) - _BREAK_PENALTY * breaks
    return max(score, Decimal(0))
