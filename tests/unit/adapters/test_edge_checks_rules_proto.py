"""`forbid_zero`, `review_manual_values` and `min_agreeing_sources` at the edge: the zero rule
takes a warning or an error (unspecified: off; info is refused with its field), the minimum is
bounded, each travels both ways, and issues of each rule reach a client as its QualityRule
value."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from qis.data.v1 import quality_pb2, series_pb2
from qis_adapters.proto.definitions import series_from_proto, series_to_proto
from qis_adapters.readstore.port import QualityIssue
from qis_query.entrypoints.mapping import quality_issue

from tests.unit.adapters.test_edge_proto_mapping import series, violations_of

EVIDENCE: dict[str, dict[str, object]] = {
    "zero_value": {"fields": ["value"]},
    "manual_value": {"by": "alice", "reason": "busted trade", "version": 2},
    "confidence_level": {"agreeing": 1, "total": 3, "agreeing_sources": ["a"]},
    "benchmark_move": {"benchmark": "SPX", "benchmark_version": 1, "residual_percent": "5"},
    "underlying_move": {"underlying": "SPX", "underlying_version": 2, "against_percent": "1"},
    "flat_while_benchmark_moved": {"benchmark": "SPX", "benchmark_move_percent": "2.5"},
}


@pytest.mark.parametrize(
    ("severity", "domain"),
    [
        (quality_pb2.SEVERITY_UNSPECIFIED, None),
        (quality_pb2.SEVERITY_WARNING, "warning"),
        (quality_pb2.SEVERITY_ERROR, "error"),
    ],
)
def test_forbid_zero_travels_both_ways(severity: int, domain: str | None) -> None:
    definition = series_from_proto(series(validation__forbid_zero=severity))
    assert definition.validation.forbid_zero == domain
    assert series_to_proto("SPX", definition, 1).validation.forbid_zero == severity


@pytest.mark.parametrize("severity", [quality_pb2.SEVERITY_INFO, 7])
def test_a_zero_severity_that_neither_flags_nor_holds_is_a_violation(severity: int) -> None:
    msg = series(validation__forbid_zero=severity, validation__max_jump_percent="0")
    # Reported with every other violation of the request.
    assert violations_of(msg) == [
        "series.validation.max_jump_percent",
        "series.validation.forbid_zero",
    ]


def test_review_manual_values_travels_both_ways() -> None:
    for on in (False, True):
        definition = series_from_proto(series(validation__review_manual_values=on))
        assert definition.validation.review_manual_values is on
        assert series_to_proto("SPX", definition, 1).validation.review_manual_values is on


@pytest.mark.parametrize("least", [-1, 101, 2**31 - 1])
def test_a_minimum_of_agreeing_sources_beyond_the_bounds_is_a_violation(least: int) -> None:
    msg = series(reconciliation__min_agreeing_sources=least, reconciliation__tolerance_bps="-1")
    assert violations_of(msg) == [
        "series.reconciliation.tolerance_bps",
        "series.reconciliation.min_agreeing_sources",
    ]


@pytest.mark.parametrize("on_low", [series_pb2.BREAK_ACTION_FLAG, series_pb2.BREAK_ACTION_BLOCK])
def test_the_confidence_rule_travels_both_ways(on_low: int) -> None:
    msg = series(reconciliation__min_agreeing_sources=3, reconciliation__on_low_confidence=on_low)
    definition = series_from_proto(msg)
    policy = definition.reconciliation
    assert (policy.min_agreeing_sources, policy.on_low_confidence.value) == (
        3,
        "block" if on_low == series_pb2.BREAK_ACTION_BLOCK else "flag",
    )
    back = series_to_proto("SPX", definition, 1).reconciliation
    assert (back.min_agreeing_sources, back.on_low_confidence) == (3, on_low)


def test_without_the_confidence_rule_the_policy_reads_back_as_before() -> None:
    definition = series_from_proto(series())
    policy = definition.reconciliation
    assert (policy.min_agreeing_sources, policy.checks_confidence) == (0, False)
    back = series_to_proto("SPX", definition, 1).reconciliation
    assert back.min_agreeing_sources == 0
    assert back.on_low_confidence == series_pb2.BREAK_ACTION_UNSPECIFIED


@pytest.mark.parametrize(
    ("rule", "number"),
    [
        ("zero_value", quality_pb2.QUALITY_RULE_ZERO_VALUE),
        ("manual_value", quality_pb2.QUALITY_RULE_MANUAL_VALUE),
        ("confidence_level", quality_pb2.QUALITY_RULE_CONFIDENCE_LEVEL),
        ("benchmark_move", quality_pb2.QUALITY_RULE_BENCHMARK_MOVE),
        ("underlying_move", quality_pb2.QUALITY_RULE_UNDERLYING_MOVE),
        ("flat_while_benchmark_moved", quality_pb2.QUALITY_RULE_FLAT_WHILE_BENCHMARK_MOVED),
    ],
)
def test_issues_of_the_new_rules_reach_clients_with_their_enum_value(
    rule: str, number: int
) -> None:
    issue = QualityIssue(
        issue_id="1-x",
        series_id="SPX",
        snap_us=1,
        rule=rule,
        severity="warning",
        evidence=EVIDENCE[rule],
        status="open",
        raised_at_us=2,
        position=3,
    )
    msg = quality_issue(issue)
    assert (msg.rule, msg.severity) == (number, quality_pb2.SEVERITY_WARNING)
    assert json_format.MessageToDict(msg.evidence) == EVIDENCE[rule]
