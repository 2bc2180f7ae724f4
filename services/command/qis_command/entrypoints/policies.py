"""Access requests (access.proto) to their commands: every field checked, every violation
recorded (the domain's own checks of a policy, qis_domain.access.policy_violations, included),
so that one answer lists them all. A policy to set or delete, and a denial to record."""

from __future__ import annotations

from google.type import timeofday_pb2
from qis.data.v1 import access_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis_adapters.proto.checks import id_from_proto, name_from_proto
from qis_adapters.proto.definitions import classification_from_proto
from qis_adapters.proto.times import micros_from_proto
from qis_domain.access import (
    DAY_S,
    MAX_POLICY_ITEMS,
    POLICIES_RESOURCE,
    check_reason,
    policy_violations,
)
from qis_domain.bounds import MAX_ID_LENGTH, MAX_TEXT_LENGTH, check_length
from qis_domain.definitions import (
    AccessCondition,
    AccessPolicy,
    ClassificationLimit,
    Permission,
    SourceRestriction,
    TimeWindow,
)
from qis_domain.errors import FieldViolation
from qis_domain.events import AccessDenied, PolicyRefusal

from qis_command.application.commands import DeleteAccessPolicy, RecordDenial, SetAccessPolicy

PERMISSIONS = {
    access_pb2.PERMISSION_READ: Permission.READ,
    access_pb2.PERMISSION_WRITE: Permission.WRITE,
    access_pb2.PERMISSION_PUBLISH: Permission.PUBLISH,
    access_pb2.PERMISSION_ADMIN: Permission.ADMIN,
}
_PERMISSION_NAMES = "PERMISSION_READ, _WRITE, _PUBLISH or _ADMIN"
MAX_RESOURCE_LENGTH = 300
MAX_PEER_LENGTH = 256
MAX_REFUSALS = 1_000
"""Policies a denial names at most (each that names the caller and covers the resource)."""


def set_policy(
    request: pb.SetAccessPolicyRequest, v: list[FieldViolation]
) -> SetAccessPolicy | None:
    policy_id = name_from_proto(request.policy.name, POLICIES_RESOURCE, "policy.name", v)
    policy = policy_from_proto(request.policy, "policy", v)
    check_reason(request.reason, v)
    _revision(request.expected_revision, v)
    if policy_id is None or policy is None:
        return None
    return SetAccessPolicy(policy_id, policy, request.reason, request.expected_revision)


def delete_policy(
    request: pb.DeleteAccessPolicyRequest, v: list[FieldViolation]
) -> DeleteAccessPolicy | None:
    policy_id = name_from_proto(request.name, POLICIES_RESOURCE, "name", v)
    check_reason(request.reason, v)
    _revision(request.expected_revision, v)
    if policy_id is None:
        return None
    return DeleteAccessPolicy(policy_id, request.reason, request.expected_revision)


def record_denial(
    request: pb.RecordAccessDenialRequest, v: list[FieldViolation]
) -> RecordDenial | None:
    # The command id names the denial's stream: an id, not any text.
    id_from_proto(request.command_id, "command_id", v)
    if not request.HasField("denial"):
        v.append(FieldViolation("denial", "the denial to record is required"))
        return None
    denial = _denial(request.denial, "denial", v)
    return None if denial is None else RecordDenial(denial)


def _denial(
    msg: access_pb2.AccessDenial, path: str, v: list[FieldViolation]
) -> AccessDenied | None:
    before = len(v)
    _name(msg.user, f"{path}.user", MAX_ID_LENGTH, v)
    if _count_within(len(msg.roles), MAX_POLICY_ITEMS, f"{path}.roles", v):
        for i, role in enumerate(msg.roles):
            _name(role, f"{path}.roles[{i}]", MAX_ID_LENGTH, v)
    _name(msg.method, f"{path}.method", MAX_ID_LENGTH, v)
    permission = PERMISSIONS.get(msg.permission)
    if permission is None:
        v.append(FieldViolation(f"{path}.permission", _PERMISSION_NAMES))
    _name(msg.resource, f"{path}.resource", MAX_RESOURCE_LENGTH, v)
    level = classification_from_proto(msg.classification, f"{path}.classification", v)
    if _count_within(len(msg.refusals), MAX_REFUSALS, f"{path}.refusals", v):
        for i, refusal in enumerate(msg.refusals):
            _name(refusal.policy_id, f"{path}.refusals[{i}].policy_id", MAX_ID_LENGTH, v)
            check_length(refusal.reason, MAX_TEXT_LENGTH, f"{path}.refusals[{i}].reason", v)
    if msg.policy_version < -1:
        v.append(FieldViolation(f"{path}.policy_version", "a version, or -1: no policy"))
    check_length(msg.peer, MAX_PEER_LENGTH, f"{path}.peer", v)
    if not msg.HasField("denial_time"):
        v.append(FieldViolation(f"{path}.denial_time", "when the call was refused is required"))
    denied_us = micros_from_proto(msg.denial_time, f"{path}.denial_time", v)
    if len(v) > before or permission is None or denied_us is None:
        return None
    return AccessDenied(
        user_id=msg.user,
        roles=sorted(msg.roles),
        method=msg.method,
        permission=permission.value,
        resource=msg.resource,
        classification="" if level is None else level.value,
        refusals=[PolicyRefusal(policy_id=r.policy_id, reason=r.reason) for r in msg.refusals],
        policy_version=msg.policy_version,
        peer=msg.peer,
        denied_us=denied_us,
    )


def _name(text: str, path: str, limit: int, v: list[FieldViolation]) -> None:
    """A user id, role, method or resource name: 1 to `limit` printable characters, no
    blanks."""
    if not 0 < len(text) <= limit or not text.isprintable() or any(c.isspace() for c in text):
        v.append(FieldViolation(path, f"1 to {limit} printable characters, no blanks"))


def policy_from_proto(
    msg: access_pb2.AccessPolicy, path: str, v: list[FieldViolation]
) -> AccessPolicy | None:
    before = len(v)
    permissions: list[Permission] = []
    if _count_within(len(msg.permissions), len(Permission), f"{path}.permissions", v):
        for i, number in enumerate(msg.permissions):
            permission = PERMISSIONS.get(number)
            if permission is None:
                v.append(FieldViolation(f"{path}.permissions[{i}]", _PERMISSION_NAMES))
            else:
                permissions.append(permission)
    conditions: list[AccessCondition] = []
    if _count_within(len(msg.conditions), MAX_POLICY_ITEMS, f"{path}.conditions", v):
        for i, c in enumerate(msg.conditions):
            condition = _condition(c, f"{path}.conditions[{i}]", v)
            if condition is not None:
                conditions.append(condition)
    check_length(msg.description, MAX_TEXT_LENGTH, f"{path}.description", v)
    if len(v) > before:
        return None
    policy = AccessPolicy(
        principals=tuple(msg.principals),
        resources=tuple(msg.resources),
        # Sorted and unique: the same grant sent in another order is the same policy.
        permissions=tuple(sorted(set(permissions))),
        conditions=tuple(conditions),
        description=msg.description,
    )
    problems = policy_violations(policy, path)
    v.extend(problems)
    return None if problems else policy


def _condition(
    msg: access_pb2.AccessCondition, path: str, v: list[FieldViolation]
) -> AccessCondition | None:
    kind = msg.WhichOneof("condition")
    if kind == "time_window":
        return _time_window(msg.time_window, f"{path}.time_window", v)
    if kind == "data_classification":
        field = f"{path}.data_classification.max_classification"
        level = classification_from_proto(msg.data_classification.max_classification, field, v)
        if level is None:
            v.append(FieldViolation(field, "a classification is required"))
            return None
        return ClassificationLimit(max_level=level)
    if kind == "source_restriction":
        return SourceRestriction(sources=tuple(msg.source_restriction.sources))
    v.append(
        FieldViolation(
            path, "one of time_window, data_classification, source_restriction is required"
        )
    )
    return None


def _time_window(
    msg: access_pb2.TimeWindow, path: str, v: list[FieldViolation]
) -> TimeWindow | None:
    before = len(v)
    # DayOfWeek numbers are ISO weekdays (1 = Monday), as the domain's; it checks them.
    _count_within(len(msg.days), 7, f"{path}.days", v)
    start = _seconds(msg.start_time_of_day, f"{path}.start_time_of_day", DAY_S - 1, v)
    end = _seconds(msg.end_time_of_day, f"{path}.end_time_of_day", DAY_S, v)
    check_length(msg.time_zone, MAX_ID_LENGTH, f"{path}.time_zone", v)
    if len(v) > before or start is None or end is None:
        return None
    return TimeWindow(
        days=tuple(sorted(msg.days)), start_s=start, end_s=end, time_zone=msg.time_zone
    )


def _seconds(
    t: timeofday_pb2.TimeOfDay, path: str, limit_s: int, v: list[FieldViolation]
) -> int | None:
    seconds = int(t.hours * 3600 + t.minutes * 60 + t.seconds)
    parts_valid = 0 <= t.hours <= 24 and 0 <= t.minutes <= 59 and 0 <= t.seconds <= 59
    if not parts_valid or t.nanos != 0 or not 0 <= seconds <= limit_s:
        latest = "24:00" if limit_s == DAY_S else "23:59:59"
        v.append(FieldViolation(path, f"a time of day in whole seconds, 00:00 to {latest}"))
        return None
    return seconds


def _count_within(count: int, limit: int, path: str, v: list[FieldViolation]) -> bool:
    """False (recorded) beyond `limit`: the items are then not looked at one by one."""
    if count <= limit:
        return True
    v.append(FieldViolation(path, f"at most {limit}, got {count:,}"))
    return False


def _revision(revision: int, v: list[FieldViolation]) -> None:
    if revision < 0:
        v.append(FieldViolation("expected_revision", "a revision, or 0: no check"))
