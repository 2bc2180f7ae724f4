"""SetAccessPolicy / DeleteAccessPolicy / RecordAccessDenial requests to commands: a valid policy in the contract's
terms becomes the domain's, and a malformed one is answered with every violation at once, the
contract's field paths and the domain's own checks together."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from google.type import dayofweek_pb2, timeofday_pb2
from qis.data.v1 import access_pb2, series_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis_command.application.commands import DeleteAccessPolicy, RecordDenial, SetAccessPolicy
from qis_command.entrypoints.policies import delete_policy, record_denial, set_policy
from qis_domain.definitions import (
    AccessPolicy,
    Classification,
    ClassificationLimit,
    Permission,
    SourceRestriction,
    TimeWindow,
)
from qis_domain.errors import FieldViolation
from qis_domain.events import AccessDenied, PolicyRefusal


def condition(**kw: object) -> access_pb2.AccessCondition:
    return access_pb2.AccessCondition(**kw)  # type: ignore[arg-type]


def test_a_policy_in_the_contracts_terms_becomes_the_domains() -> None:
    request = pb.SetAccessPolicyRequest(
        command_id="c",
        reason="desk",
        expected_revision=3,
        policy=access_pb2.AccessPolicy(
            name="accessPolicies/data-ops",
            principals=["role:data-ops"],
            resources=["series/*"],
            # Any order, repeated: the same grant.
            permissions=[access_pb2.PERMISSION_PUBLISH, access_pb2.PERMISSION_READ] * 2,
            conditions=[
                condition(
                    time_window=access_pb2.TimeWindow(
                        days=[dayofweek_pb2.FRIDAY, dayofweek_pb2.MONDAY],
                        start_time_of_day=timeofday_pb2.TimeOfDay(hours=7, minutes=30),
                        end_time_of_day=timeofday_pb2.TimeOfDay(hours=24),
                        time_zone="Europe/London",
                    )
                ),
                condition(
                    data_classification=access_pb2.ClassificationLimit(
                        max_classification=series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL
                    )
                ),
                condition(source_restriction=access_pb2.SourceRestriction(sources=["sources/a*"])),
            ],
            description="exception queue",
            revision=9,  # output only: not read
        ),
    )
    v: list[FieldViolation] = []
    assert set_policy(request, v) == SetAccessPolicy(
        "data-ops",
        AccessPolicy(
            principals=("role:data-ops",),
            resources=("series/*",),
            permissions=(Permission.PUBLISH, Permission.READ),
            conditions=(
                TimeWindow(days=(1, 5), start_s=27_000, end_s=86_400, time_zone="Europe/London"),
                ClassificationLimit(max_level=Classification.CONFIDENTIAL),
                SourceRestriction(sources=("sources/a*",)),
            ),
            description="exception queue",
        ),
        "desk",
        3,
    )
    assert v == []


def test_every_violation_in_one_answer() -> None:
    request = pb.SetAccessPolicyRequest(
        command_id="c",
        reason=" ",
        expected_revision=-1,
        policy=access_pb2.AccessPolicy(
            name="policies/x",
            principals=["alice"],
            resources=["series/*"],
            permissions=[access_pb2.PERMISSION_UNSPECIFIED, 42],  # type: ignore[list-item]
            conditions=[
                access_pb2.AccessCondition(),
                condition(
                    time_window=access_pb2.TimeWindow(
                        start_time_of_day=timeofday_pb2.TimeOfDay(hours=24),
                        end_time_of_day=timeofday_pb2.TimeOfDay(hours=1, nanos=5),
                        time_zone="Nowhere",
                    )
                ),
                condition(data_classification=access_pb2.ClassificationLimit()),
            ],
        ),
    )
    v: list[FieldViolation] = []
    assert set_policy(request, v) is None
    assert [x.field for x in v] == [
        "policy.name",
        "policy.permissions[0]",
        "policy.permissions[1]",
        "policy.conditions[0]",
        "policy.conditions[1].time_window.start_time_of_day",
        "policy.conditions[1].time_window.end_time_of_day",
        "policy.conditions[2].data_classification.max_classification",
        "reason",
        "expected_revision",
    ]
    # Once the contract's shapes are right, the domain's checks answer with them.
    fixed = pb.SetAccessPolicyRequest()
    fixed.CopyFrom(request)
    del fixed.policy.permissions[:]
    fixed.policy.permissions.append(access_pb2.PERMISSION_READ)
    del fixed.policy.conditions[:]
    fixed.policy.name = "accessPolicies/x"
    v = []
    assert set_policy(fixed, v) is None
    assert [x.field for x in v] == ["policy.principals[0]", "reason", "expected_revision"]


def test_a_huge_list_is_one_violation_not_one_per_item() -> None:
    policy = access_pb2.AccessPolicy(
        name="accessPolicies/x",
        principals=["*"],
        resources=["*"],
        permissions=[access_pb2.PERMISSION_UNSPECIFIED] * 100_000,
        conditions=[access_pb2.AccessCondition()] * 100_000,
    )
    v: list[FieldViolation] = []
    assert (
        set_policy(pb.SetAccessPolicyRequest(command_id="c", reason="r", policy=policy), v) is None
    )
    assert [x.field for x in v] == ["policy.permissions", "policy.conditions"]


def test_a_deletion_names_the_policy() -> None:
    v: list[FieldViolation] = []
    request = pb.DeleteAccessPolicyRequest(command_id="c", name="accessPolicies/ops", reason="r")
    assert delete_policy(request, v) == DeleteAccessPolicy("ops", "r", 0)
    assert delete_policy(pb.DeleteAccessPolicyRequest(command_id="c", name="ops"), v) is None
    assert [x.field for x in v] == ["name", "reason"]


def _denial(**kw: object) -> access_pb2.AccessDenial:
    fields: dict[str, object] = {
        "user": "mallory",
        "roles": ["z", "a"],
        "method": "QueryRange",
        "permission": access_pb2.PERMISSION_READ,
        "resource": "series/PX/issues",
        "classification": series_pb2.DATA_CLASSIFICATION_RESTRICTED,
        "refusals": [access_pb2.PolicyRefusal(policy_id="QIS_ADMINS", reason="grants admin")],
        "policy_version": -1,
        "peer": "ipv6:[::1]:5000",
        "denial_time": timestamp_pb2.Timestamp(seconds=10, nanos=5_000),
    }
    fields.update(kw)
    return access_pb2.AccessDenial(**fields)  # type: ignore[arg-type]


def test_a_denial_to_record_becomes_the_event_the_command_side_records() -> None:
    v: list[FieldViolation] = []
    request = pb.RecordAccessDenialRequest(command_id="q.1", denial=_denial())
    assert record_denial(request, v) == RecordDenial(
        AccessDenied(
            user_id="mallory",
            roles=["a", "z"],
            method="QueryRange",
            permission="read",
            resource="series/PX/issues",
            classification="restricted",
            refusals=[PolicyRefusal(policy_id="QIS_ADMINS", reason="grants admin")],
            policy_version=-1,
            peer="ipv6:[::1]:5000",
            denied_us=10_000_005,
        )
    )
    assert v == []


def test_a_malformed_denial_is_refused_with_every_violation() -> None:
    v: list[FieldViolation] = []
    request = pb.RecordAccessDenialRequest(
        command_id="a/b",  # names a stream: an id only
        denial=_denial(
            user="two words",
            roles=["ok", ""],
            method="",
            permission=access_pb2.PERMISSION_UNSPECIFIED,
            resource="x" * 301,
            classification=99,
            refusals=[access_pb2.PolicyRefusal(policy_id="p", reason="r" * 1_025)],
            policy_version=-2,
            peer="p" * 257,
            denial_time=timestamp_pb2.Timestamp(seconds=-(10**12)),
        ),
    )
    assert record_denial(request, v) is None
    assert [f.field for f in v] == [
        "command_id",
        "denial.user",
        "denial.roles[1]",
        "denial.method",
        "denial.permission",
        "denial.resource",
        "denial.classification",
        "denial.refusals[0].reason",
        "denial.policy_version",
        "denial.peer",
        "denial.denial_time.seconds",
    ]
    v.clear()
    assert record_denial(pb.RecordAccessDenialRequest(command_id="c"), v) is None
    assert [f.field for f in v] == ["denial"]
