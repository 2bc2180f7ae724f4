"""Read-model records to v1 messages: the domain's names of rules, severities, statuses and
methods to the contract's enums (each one both ways, so that a rule added on either side alone
fails here), the filter's enum words, and the fields renamed by the AIP pass."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from google.protobuf import duration_pb2
from google.protobuf.descriptor import EnumDescriptor
from google.type import date_pb2
from qis.data.v1 import quality_pb2
from qis.data.v1 import query_service_pb2 as pb
from qis_adapters.proto import enums
from qis_adapters.proto.times import timestamp
from qis_adapters.readstore.port import ISSUE_STATUSES, AuditEntry
from qis_domain.definitions import ReconciliationMethod
from qis_domain.rules import RULE_NAMES, Severity
from qis_query.application import issues
from qis_query.application.filtering import EnumField
from qis_query.entrypoints import mapping

from tests.contract.readstore.test_readstore_contract import (
    SNAPS,
    V1,
    V2,
    audit,
    change,
    closed,
    issue,
    metric,
    observation,
)


def contract_names(enum: EnumDescriptor, prefix: str) -> set[str]:
    """The enum's value names without their prefix, but for UNSPECIFIED."""
    return {value.name.removeprefix(prefix) for value in enum.values} - {"UNSPECIFIED"}


def mapped_names(table: Mapping[str, int], enum: EnumDescriptor, prefix: str) -> set[str]:
    """The names of the enum values a mapping table maps to, without their prefix."""
    return {enum.values_by_number[number].name.removeprefix(prefix) for number in table.values()}


RULE = quality_pb2.QualityRule.DESCRIPTOR
SEVERITY = quality_pb2.Severity.DESCRIPTOR
STATUS = quality_pb2.QualityIssueStatus.DESCRIPTOR
METHOD = pb.ValueMethod.DESCRIPTOR


def test_every_rule_has_its_enum_value_and_every_enum_value_its_rule() -> None:
    assert set(enums.RULES) == RULE_NAMES
    names = mapped_names(enums.RULES, RULE, "QUALITY_RULE_")
    assert len(names) == len(RULE_NAMES)  # no two rules share a value
    assert names == contract_names(RULE, "QUALITY_RULE_")
    assert enums.RULES["jump"] == quality_pb2.QUALITY_RULE_JUMP
    assert enums.RULES["spike_zscore"] == quality_pb2.QUALITY_RULE_SPIKE_ZSCORE


def test_every_severity_status_and_method_has_its_enum_value_and_back() -> None:
    tables: list[tuple[Mapping[str, int], set[str], EnumDescriptor, str]] = [
        (enums.SEVERITIES, {s.value for s in Severity}, SEVERITY, "SEVERITY_"),
        (enums.STATUSES, set(ISSUE_STATUSES), STATUS, "QUALITY_ISSUE_STATUS_"),
        (
            enums.METHODS,
            {m.value for m in ReconciliationMethod} | {"manual"},
            METHOD,
            "VALUE_METHOD_",
        ),
    ]
    for table, domain, enum, prefix in tables:
        assert set(table) == domain, prefix
        names = mapped_names(table, enum, prefix)
        assert len(names) == len(domain), prefix
        assert names == contract_names(enum, prefix), prefix
    assert enums.METHODS["manual"] == pb.VALUE_METHOD_MANUAL
    assert enums.STATUSES["overridden"] == quality_pb2.QUALITY_ISSUE_STATUS_OVERRIDDEN


def test_the_issue_filter_names_enum_values_as_the_contract_does() -> None:
    filtered: list[tuple[str, Mapping[str, int], EnumDescriptor, str]] = [
        ("rule", enums.RULES, RULE, "QUALITY_RULE_"),
        ("severity", enums.SEVERITIES, SEVERITY, "SEVERITY_"),
        ("status", enums.STATUSES, STATUS, "QUALITY_ISSUE_STATUS_"),
    ]
    for field, table, enum, prefix in filtered:
        spec = issues.FIELDS[field]
        assert isinstance(spec, EnumField)
        assert set(spec.words) == contract_names(enum, prefix), field
        # Each word stands for the domain value that maps back to that very enum value.
        for word, value in spec.words.items():
            assert enum.values_by_number[table[value]].name == prefix + word


def test_an_official_value_with_its_knowledge_interval_and_lineage() -> None:
    current = V2  # version 2 of snap 2, flagged "spike"
    msg = mapping.official_value("series/S1", current)
    assert msg.snap_time == timestamp(SNAPS[2])
    assert (msg.record_time, msg.record_position) == (timestamp(2000), 20)
    assert not msg.HasField("supersede_time")
    assert msg.supersede_position == 0
    assert list(msg.sources) == ["sources/bbg", "sources/lseg"]
    assert msg.method == pb.VALUE_METHOD_PRIORITY
    assert list(msg.flags) == [quality_pb2.QUALITY_RULE_SPIKE]
    assert msg.value.price.value == "202.00"

    superseded = mapping.official_value("series/S1", closed(V1[2], V2))
    assert superseded.supersede_time == timestamp(2000)
    assert superseded.supersede_position == 20
    assert list(superseded.flags) == []


def test_a_manual_value_has_no_sources() -> None:
    manual = V2._replace(sources=("manual",), method="manual", flags=())
    msg = mapping.official_value("series/S1", manual)
    assert list(msg.sources) == []
    assert msg.method == pb.VALUE_METHOD_MANUAL
    fed = mapping.changed_value(change(manual, 0))
    assert list(fed.sources) == []
    assert fed.method == pb.VALUE_METHOD_MANUAL


def test_a_change_is_an_official_value_recorded_at_its_position() -> None:
    msg = mapping.changed_value(change(V2, 3))
    assert msg.series == "series/S1"
    assert (msg.record_time, msg.record_position, msg.version) == (timestamp(2000), 20, 2)
    assert list(msg.flags) == [quality_pb2.QUALITY_RULE_SPIKE]
    assert list(msg.sources) == ["sources/bbg", "sources/lseg"]


def test_an_observation_with_its_stated_offset() -> None:
    msg = mapping.observation(observation("S1", SNAPS[0], "bbg", 12, 3))
    assert msg.source == "sources/bbg"
    assert msg.utc_offset == duration_pb2.Duration(seconds=-18_000)
    assert (msg.record_time, msg.record_position) == (timestamp(12_000), 12)
    assert msg.value.price.value == "12.3"


def test_audit_entries_name_the_resource_acted_on() -> None:
    of_point = mapping.audit_entry(audit(10, 1, "S1", SNAPS[1]))
    assert of_point.resource == "series/S1"
    assert of_point.snap_time == timestamp(SNAPS[1])
    assert (of_point.commit_time, of_point.commit_position) == (timestamp(10_000), 10)
    of_series = mapping.audit_entry(audit(11, 0, "S1", None))
    assert not of_series.HasField("snap_time")
    of_source: AuditEntry = audit(12, 0, "", None, source_id="bbg")
    assert mapping.audit_entry(of_source).resource == "sources/bbg"
    of_policy = dataclasses.replace(audit(13, 0, "", None), resource="accessPolicies/ops")
    assert mapping.audit_entry(of_policy).resource == "accessPolicies/ops"


def test_a_quality_issue_with_its_enums() -> None:
    msg = mapping.quality_issue(
        issue("I1", 10, rule="missed_cutoff", severity="error", status="rejected")
    )
    assert msg.rule == quality_pb2.QUALITY_RULE_MISSED_CUTOFF
    assert msg.severity == quality_pb2.SEVERITY_ERROR
    assert msg.status == quality_pb2.QUALITY_ISSUE_STATUS_REJECTED
    assert msg.snap_time == timestamp(SNAPS[0])
    assert msg.source == "sources/bbg"
    assert not msg.HasField("resolve_time")
    source_break = mapping.quality_issue(issue("I2", 10, rule="source_break", source_id=""))
    assert source_break.source == ""


def test_quality_metrics_with_their_window_and_missing_sessions_as_dates() -> None:
    msg = mapping.quality_metrics(metric(SNAPS[0], 10, missing=("2023-11-14", "0001-01-01")))
    assert (msg.start_time, msg.end_time) == (
        timestamp(SNAPS[0]),
        timestamp(SNAPS[0] + 60_000_000),
    )
    assert list(msg.missing_sessions) == [
        date_pb2.Date(year=2023, month=11, day=14),
        date_pb2.Date(year=1, month=1, day=1),
    ]
    assert math.isnan(mapping.quality_metrics(metric(SNAPS[0], 10, completeness=None)).completeness)
