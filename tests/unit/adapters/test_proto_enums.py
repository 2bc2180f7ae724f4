"""One table of the contract's enum values for the domain's names (qis_adapters.proto.enums),
shared by the projector, the query service and the command service: every name has its value
and no two names share one."""

from __future__ import annotations

from qis.data.v1 import quality_pb2, routing_pb2
from qis_adapters.proto import enums
from qis_domain.routing import ROUTED_EVENT_TYPES, TopicDefinition
from qis_domain.rules import RULE_NAMES, Severity
from qis_query.entrypoints.topics import topic_message


def test_every_routed_event_type_has_its_own_enum_value() -> None:
    assert set(enums.EVENT_TYPES) == set(ROUTED_EVENT_TYPES)
    named = {routing_pb2.RoutedEventType.Name(v) for v in enums.EVENT_TYPES.values()}
    assert named == {
        name
        for name in routing_pb2.RoutedEventType.DESCRIPTOR.values_by_name
        if name != "ROUTED_EVENT_TYPE_UNSPECIFIED"
    }
    assert enums.EVENT_TYPES["QualityIssueDetected"] == (
        routing_pb2.ROUTED_EVENT_TYPE_QUALITY_ISSUE_DETECTED
    )


def test_rules_and_severities_are_one_to_one() -> None:
    for table, names in (
        (enums.RULES, RULE_NAMES),
        (enums.SEVERITIES, [s.value for s in Severity]),
    ):
        assert set(table) == set(names)
        assert len(set(table.values())) == len(table)
        assert 0 not in table.values()  # never UNSPECIFIED
    assert enums.MIN_SEVERITIES[""] == quality_pb2.SEVERITY_UNSPECIFIED
    assert enums.MIN_SEVERITIES["warning"] == quality_pb2.SEVERITY_WARNING


def test_the_query_service_shows_a_topic_with_the_table() -> None:
    definition = TopicDefinition(
        event_types=tuple(sorted(ROUTED_EVENT_TYPES)),
        series_patterns=(),
        min_severity="error",
        max_attempts=3,
        ack_timeout_s=10,
        description="",
    )
    shown = topic_message("ops.alerts", definition)
    assert list(shown.event_types) == [enums.EVENT_TYPES[k] for k in definition.event_types]
    assert shown.min_severity == quality_pb2.SEVERITY_ERROR
