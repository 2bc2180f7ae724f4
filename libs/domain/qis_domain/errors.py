"""Domain errors. Entry points map them to transport statuses; the domain knows no transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str  # path in the request, e.g. "points[17].value.price.value"
    description: str


class DomainError(Exception):
    """Base of every rule the domain refuses a command for. `reason`: a stable, documented
    code a client can branch on (google.rpc.ErrorInfo, domain "qis.data"; docs/errors.md
    lists them), where the status code is not enough."""

    reason: str = ""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class InvalidArgument(DomainError):
    """Malformed input: nothing of the command is stored."""

    reason = "BAD_REQUEST"

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        first = violations[0] if violations else FieldViolation("", "invalid argument")
        more = f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""
        super().__init__(f"{first.field}: {first.description}{more}")

    @classmethod
    def single(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class Resource(NamedTuple):
    """A resource as google.rpc.ResourceInfo names it: its type ("qis.data.v1.Series") and its
    resource name ("series/SPX"); `reason_stem` forms the reasons about it (SERIES_NOT_FOUND)."""

    type: str
    name: str
    reason_stem: str


class NotFound(DomainError):
    def __init__(self, resource: Resource, field: str = "") -> None:
        super().__init__(f"{resource.name} not found", f"{resource.reason_stem}_NOT_FOUND")
        self.resource = resource
        self.field = field


class AlreadyExists(DomainError):
    def __init__(self, resource: Resource, reason: str = "", detail: str = "") -> None:
        super().__init__(
            detail or f"{resource.name} already exists",
            reason or f"{resource.reason_stem}_ALREADY_EXISTS",
        )
        self.resource = resource


class FailedPrecondition(DomainError):
    """Well-formed, but the current state does not allow the command."""

    reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """Well-formed, but decided by the client on a state that is no longer current (its
    optimistic concurrency check): read again and reapply; the same request cannot succeed."""

    reason = "ABORTED"


class PermissionDenied(DomainError):
    """The caller may not do this (e.g. approving their own submission: four-eyes)."""

    reason = "PERMISSION_DENIED"


class LimitExceeded(Exception):
    """Not a refusal of the request's content: a limit on what one caller may hold or cost
    (open subscriptions, a subscriber that stopped reading). `reason` says which."""

    reason = "LIMIT_EXCEEDED"


class RetryLater(Exception):
    """Not a refusal: the command was not applied (nothing of it is stored) and the same call
    may succeed later. `kind` says why, so each transport answers with its own code and a
    retry delay: "contention" (other writers kept winning), "unavailable" (a store cannot be
    reached, is locked or read-only), "full" (a store is out of space)."""

    kind = "unavailable"
    retry_after_s = 1.0
