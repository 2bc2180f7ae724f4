"""A day_over_day issue, as the projector stores it, reaches a client as
QUALITY_RULE_DAY_OVER_DAY with its evidence (the prior snap, official value and version), and
the exception queue's filter takes the rule by name."""

from __future__ import annotations

from qis.data.v1 import quality_pb2
from qis_query.application import issues
from qis_query.application.filtering import EnumField
from qis_query.entrypoints import mapping

from tests.contract.readstore.test_readstore_contract import issue

EVIDENCE = {
    "prior_snap": "2025-07-02T20:00:00Z",
    "prior": "100",
    "prior_version": 2,
    "value": "104.3",
    "change": "4.3",
    "change_percent": "4.3000",
    "limit_percent": "3",
}


def test_a_day_over_day_issue_reaches_a_client_with_its_enum_and_evidence() -> None:
    msg = mapping.quality_issue(issue("I1", 10, rule="day_over_day", evidence=EVIDENCE))
    assert msg.rule == quality_pb2.QUALITY_RULE_DAY_OVER_DAY
    assert msg.severity == quality_pb2.SEVERITY_WARNING
    assert dict(msg.evidence) == EVIDENCE


def test_the_queue_filter_knows_the_rule() -> None:
    rule = issues.FIELDS["rule"]
    assert isinstance(rule, EnumField)
    assert rule.words["DAY_OVER_DAY"] == "day_over_day"
