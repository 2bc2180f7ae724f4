"""Update masks (AIP-134): which top-level fields of a resource an update names."""

from __future__ import annotations

from collections.abc import Collection

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from qis_domain.bounds import quoted
from qis_domain.errors import FieldViolation

ALL_FIELDS = "*"


def masked_fields(
    mask: field_mask_pb2.FieldMask,
    resource: Message,
    evolvable: Collection[str],
    fixed: Collection[str],
    violations: list[FieldViolation],
) -> list[str]:
    """The fields of `resource` an update names, in the message's field order: the mask's
    paths, "*" for every `evolvable` field, or without a mask the fields set in `resource`
    (present, non-default, non-empty). `fixed` fields (immutable) may be named, to be checked
    against the current value, and are left out of "*". Any other path (an unknown field, a
    nested one, the resource's name, an output-only field) is a violation at its index."""
    names = [f.name for f in resource.DESCRIPTOR.fields if f.name in evolvable or f.name in fixed]
    if not mask.paths:
        present = {f.name for f, _ in resource.ListFields()}
        return [n for n in names if n in present]
    named: set[str] = set()
    for i, path in enumerate(mask.paths):
        if path in names:
            named.add(path)
        elif path == ALL_FIELDS and len(mask.paths) == 1:
            named.update(evolvable)
        else:
            violations.append(
                FieldViolation(f"update_mask.paths[{i}]", _refusal(path, resource, names))
            )
    return [n for n in names if n in named]


def _refusal(path: str, resource: Message, names: Collection[str]) -> str:
    kind = resource.DESCRIPTOR.name
    top = path.split(".", 1)[0]
    if path == ALL_FIELDS:
        return "'*' names every field: it must be the only path"
    if top != path and top in names:
        return f"{quoted(path)} is nested: name the top-level field {top!r} and send all of it"
    if path in resource.DESCRIPTOR.fields_by_name:
        return f"{path!r} of a {kind} cannot be updated (its identity, or set by the service)"
    return f"{quoted(path)} is not a field of {kind}"
