"""AIP-160 filters of the list calls, built from Python values.

ListQualityIssues and ListAuditEntries take comparisons joined by AND: strings in double quotes
(backslash escapes \\" and \\\\), enum values as bare words (the value's name without its enum's
prefix, upper case: OPEN, JUMP), timestamps as quoted RFC 3339. Each term is built here from a
checked value, so nothing a caller passes can change the filter's shape.
"""

from __future__ import annotations

import re
from datetime import datetime

from qis_client.values import timestamp

ANY_STATUS = "any"
# An enum value's name: one word, so that it can only ever be a value, never more filter.
_ENUM_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _enum_word(name: str) -> str:
    """ "jump", "source_break" or "OPEN" as the bare word of an enum value. Not checked against
    the enums this client knows: a rule added to a newer service can be asked for by name, and
    the service refuses a name it does not know."""
    if not _ENUM_WORD.fullmatch(name):
        raise ValueError(f"{name!r} is not the name of an enum value, e.g. 'open' or 'jump'")
    return name.upper()


def time_literal(moment: datetime) -> str:
    """An aware datetime as the filter's quoted RFC 3339 ("2024-03-01T21:00:00Z")."""
    return _quoted(timestamp(moment).ToJsonString())


def _all_of(*terms: str) -> str:
    """The terms given (empty ones left out) joined by AND; "" when none: no filter."""
    return " AND ".join(term for term in terms if term)


def issue_filter(
    *,
    status: str = "open",
    rule: str = "",
    severity: str = "",
    raised_before: datetime | None = None,
) -> str:
    """The filter of ListQualityIssues for these options. The service's empty filter means
    every status; the queue of work is the open issues, so `status` is "open" unless asked
    otherwise, and "any" leaves it out."""
    return _all_of(
        "" if status == ANY_STATUS else f"status = {_enum_word(status)}",
        f"rule = {_enum_word(rule)}" if rule else "",
        f"severity = {_enum_word(severity)}" if severity else "",
        f"raise_time < {time_literal(raised_before)}" if raised_before is not None else "",
    )
