"""What the CLI tells a person when something goes wrong: a sentence and an exit code, and the
server's google.rpc details in readable form, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell convention for "stopped by Ctrl-C" (128 + SIGINT)

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class CliError(Exception):
    """Printed as its message alone; by default a usage or connection problem (exit code 2)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    description: str


def code_name(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))


def violations_of(status: status_pb2.Status) -> list[Violation]:
    found: list[Violation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(Violation(v.field, v.description) for v in bad.field_violations)
    return found


def describe_status(status: status_pb2.Status) -> str:
    """'CODE: message', or 'CODE' and one indented line per field violation: the server's
    message only repeats the first violation then."""
    violations = violations_of(status)
    if violations:
        lines = [code_name(status.code)]
        lines.extend(f"  {v.field}: {v.description}" for v in violations)
        return "\n".join(lines)
    text = f"{code_name(status.code)}: {status.message}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            if info.description:
                text += f" (field {info.description})"
    return text


def status_of_rpc_error(error: grpc.RpcError) -> status_pb2.Status:
    """The rich status when the server sent one (grpc-status-details-bin), else code + text."""
    if not isinstance(error, grpc.Call):
        return status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0], message=str(error))
    rich: status_pb2.Status | None = rpc_status.from_call(error)
    if rich is not None:
        return rich
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


def hint_for(status: status_pb2.Status) -> str:
    """What a person can do about a status, for the codes where the fix is on their side."""
    if status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]:
        return "\n  pass --user NAME or set QIS_USER"
    return ""


def rpc_failure(error: grpc.RpcError, address: str) -> CliError:
    """A failed call as a CliError, with the hint a person needs for the common causes. The
    server refusing the command itself (bad definition, already exists) exits 1 like a rejected
    import; not getting through to it at all exits 2."""
    status = status_of_rpc_error(error)
    if status.code == grpc.StatusCode.UNAVAILABLE.value[0]:
        return CliError(
            f"cannot reach the command service at {address} — is `qis up` running?"
            f" ({status.message})"
        )
    if status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]:
        return CliError(describe_status(status) + hint_for(status))
    return CliError(describe_status(status), EXIT_REJECTED)
