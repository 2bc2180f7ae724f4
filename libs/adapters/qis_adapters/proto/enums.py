"""The contract's enum values of the domain's names: routed event types, quality rules,
severities, issue statuses and value methods.

The contract names each value as the domain does, upper case after the enum's prefix
("jump" is QUALITY_RULE_JUMP). The tables are built from the domain's lists by that rule, so a
domain name without its enum value stops a process at import rather than reaching a client as an
unknown number; the projector (which writes topic messages), the query service (which shows
read models and topics) and the command service (which reads topic definitions) share them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from qis.data.v1 import quality_pb2, routing_pb2
from qis.data.v1 import query_service_pb2 as query_pb
from qis_domain.definitions import ReconciliationMethod
from qis_domain.routing import ROUTED_EVENT_TYPES
from qis_domain.rules import RULE_NAMES, Severity
from qis_domain.series_bucket import MANUAL

from qis_adapters.readstore.port import ISSUE_STATUSES

E = TypeVar("E")


def _by_name(value: Callable[[str], E], prefix: str, names: Iterable[str]) -> dict[str, E]:
    """Each domain name's enum value: `value(prefix + NAME)` (raises ValueError if none)."""
    return {name: value(prefix + name.upper()) for name in names}


def _snake(name: str) -> str:
    """ "QualityIssueDetected" -> "quality_issue_detected"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


EVENT_TYPES = {
    kind: routing_pb2.RoutedEventType.Value("ROUTED_EVENT_TYPE_" + _snake(kind).upper())
    for kind in ROUTED_EVENT_TYPES
}
"""A routed event's type ("DataPublished") to its RoutedEventType."""
RULES = _by_name(quality_pb2.QualityRule.Value, "QUALITY_RULE_", RULE_NAMES)
SEVERITIES = _by_name(quality_pb2.Severity.Value, "SEVERITY_", (s.value for s in Severity))
MIN_SEVERITIES = {"": quality_pb2.SEVERITY_UNSPECIFIED, **SEVERITIES}
"""A topic's minimum severity of the issues it takes ("": any)."""
STATUSES = _by_name(quality_pb2.QualityIssueStatus.Value, "QUALITY_ISSUE_STATUS_", ISSUE_STATUSES)
METHODS = _by_name(
    query_pb.ValueMethod.Value, "VALUE_METHOD_", [*(m.value for m in ReconciliationMethod), MANUAL]
)
