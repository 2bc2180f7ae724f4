"""What one call or one caller may cost the query service: a QueryRange call streams a bounded
number of points (then ends with a token that continues), and Subscribe streams are counted per
caller and in all, since each holds a task, a polling loop and up to one batch in memory for as
long as it is open."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from qis_domain.errors import LimitExceeded


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_points_per_call: int = 250_000
    """Points one QueryRange call streams at most (3.2 s with pages of 100 or 1,000 points, 5.6 s
    with pages of 10,000, measured on a busy 2-core machine)..."""
    max_messages_per_call: int = 10_000
    """...and messages: with small pages the cost of a message dominates, some 0.15 to 0.35 ms
    against 0.013 ms a point (10,000 messages of one point: 1.5 to 3.6 s)."""
    max_value_bytes_per_call: int = 64 << 20
    """...and bytes of serialised values and reasons (qis_query.application.ranges.pages):
    250,000 points of 2,000-node surfaces would be 24 GB. The call ends after the page that
    reaches it."""
    max_subscriptions_per_caller: int = 100
    """Open Subscribe streams of one caller."""
    max_subscriptions: int = 1_000
    """Open Subscribe streams in all, whoever the callers (while identities are self-declared,
    the per-caller cap alone bounds nothing)."""
    max_scanned_per_call: int = 5_000
    """Store records one call of a filtered listing reads at most when some of its filter is
    checked in the service (see scanning): its page may then be short, even empty, with a token
    that continues. 5,000 small records are a few milliseconds of reading and checking."""

    def points_per_call(self, page_size: int) -> int:
        return min(self.max_points_per_call, self.max_messages_per_call * page_size)


DEFAULT_LIMITS = QueryLimits()


class TooManySubscriptions(LimitExceeded):
    """Refused before anything is read: the caller closes a subscription first (a subscription
    can follow several series, and every series when it names none)."""

    reason = "TOO_MANY_SUBSCRIPTIONS"


class SubscriptionSlots:
    def __init__(self, limits: QueryLimits) -> None:
        self._limits = limits
        self._open: Counter[str] = Counter()
        self._total = 0

    @contextmanager
    def held(self, caller: str) -> Iterator[None]:
        """A slot of `caller` for the duration of the block; TooManySubscriptions when none is
        free."""
        if self._open[caller] >= self._limits.max_subscriptions_per_caller:
            raise TooManySubscriptions(
                f"{caller} has {self._open[caller]} subscriptions open, the most one caller may"
                " have: close one first (one subscription can follow several series)"
            )
        if self._total >= self._limits.max_subscriptions:
            raise TooManySubscriptions(
                f"the service has {self._total} subscriptions open, the most it serves: retry later"
            )
        self._open[caller] += 1
        self._total += 1
        try:
            yield
        finally:
            self._total -= 1
            self._open[caller] -= 1
            if not self._open[caller]:
                del self._open[caller]  # the table holds open callers only
